// Custom Diffusion training core (the HF trainer's semantics, fp32): modifier tokens added
// to the tokenizer and the text encoder's embedding table (initialised from raw vocabulary
// pieces), the trainable tensors (UNet attn2 K/V, optionally Q/out, plus one embedding row
// per modifier token), one forward/backward of the masked instance + prior loss, global-norm
// gradient clipping and AdamW. Shared by customdiff-train (which draws the random inputs)
// and customdiff-verify's train case (which replays recorded ones).
//
// One optimizer step = cd_trainer_accumulate() once per micro-batch, then cd_trainer_step().
#ifndef CD_TRAINER_H
#define CD_TRAINER_H
#include <stdint.h>
#include "model/pipeline.h"
#include "model/clip.h"
#include "model/unet.h"

#define CD_TRAINER_MAX_TOKENS 32

typedef struct {
    int mode;                 // CD_TRAIN_CROSSATTN_KV (default) or CD_TRAIN_CROSSATTN
    int gradient_checkpointing;
    float beta1, beta2, eps, weight_decay;   // 0.9, 0.999, 1e-8, 1e-2
    float max_grad_norm;      // 1.0; <= 0 disables clipping
    float prior_loss_weight;  // 1.0
} cd_trainer_opts;

void cd_trainer_opts_default(cd_trainer_opts *o);

typedef struct {
    cd_pipeline *pipe;        // not owned; needs UNET | TEXT | TOKENIZER (| VAE_ENCODER)
    cd_trainer_opts o;
    cd_clip_text_config tcfg;
    cd_clip_text text;        // bound to pipe->text_w; token table grown for the modifiers
    int vpred;                // prediction_type == v_prediction
    float scaling;            // VAE scaling_factor
    int ntrain;               // num_train_timesteps
    float *alphas_cumprod;    // [ntrain]
    int nmod;                 // modifier tokens (trained embedding rows)
    char *mod_tok[CD_TRAINER_MAX_TOKENS];
    int mod_id[CD_TRAINER_MAX_TOKENS], init_id[CD_TRAINER_MAX_TOKENS];
    // Trainable tensors: the UNet's (n_unet, owned by the UNet) then one [C] row per
    // modifier token (w points into the embedding table, g owned here).
    cd_param *params;
    int nparams, n_unet;
    int64_t total;            // sum of numel
    float *adam_m, *adam_v;   // [total], params concatenated in order
    int64_t adam_step;        // optimizer steps done
    // Dynamic loss scaling of fp16 training (model/trainer_cuda.c, torch.cuda.amp.GradScaler's
    // rule and defaults): 0 = off (fp32, tf32, bf16, the CPU). The loss gradient is multiplied by
    // loss_scale; a step whose gradients overflow is skipped and halves it, and every
    // CD_LOSS_SCALE_INTERVAL finite steps in a row double it. Saved in checkpoints.
    double loss_scale;        // fp16: starts at CD_LOSS_SCALE_INIT
    int64_t scale_good;       // finite steps since the scale last changed
    int64_t skipped_steps;    // optimizer steps skipped on an overflow
} cd_trainer;
#define CD_LOSS_SCALE_INIT 65536.0   // GradScaler(init_scale=2**16)
#define CD_LOSS_SCALE_INTERVAL 2000  // GradScaler(growth_interval=2000), growth 2, backoff 0.5

// Set up training on a loaded pipeline. modifiers "<new1>+<new2>" (NULL or "" =
// none), initializers "ktn+pll" (one raw vocabulary piece per modifier). Errors: a
// modifier already in the vocabulary, fewer initializers than modifiers, an initializer that
// is not one vocabulary piece.
int cd_trainer_init(cd_trainer *tr, cd_pipeline *p, const char *modifiers,
                    const char *initializers, const cd_trainer_opts *o);
void cd_trainer_free(cd_trainer *tr);
int cd_trainer_find_param(const cd_trainer *tr, const char *name);   // index or -1

// One micro-batch. Rows [0, n_inst) are instance rows (masked loss, 4x a masked mean as
// upstream); with prior, rows [n_inst, B) are class rows (plain MSE x prior_loss_weight).
typedef struct {
    int B, n_inst, with_prior;
    int H, W;                 // pixel size (latent h = H/f)
    const int32_t *ids;       // [B, 77]
    const float *pixels;      // [B, 3, H, W] in [-1, 1]; NULL when latents are given
    const float *vae_noise;   // [B, lc, h, w]: latent_dist.sample() noise
    const float *mean, *logvar;   // optional cached VAE moments [B, lc, h, w] (pixels unused)
    const float *noise;       // [B, lc, h, w]
    const int *timesteps;     // [B] in [0, ntrain)
    const float *mask;        // [n_inst, 1, h, w]; NULL = ones
    float loss_scale;         // 1 / gradient_accumulation_steps
} cd_train_batch;

typedef struct { double loss, loss_inst, loss_prior; } cd_train_losses;

// Forward + backward of one micro-batch; gradients are added (+=) to the params'.
// latents_out (optional, [B, lc, h, w]) receives the scaled latents that were used.
int cd_trainer_accumulate(cd_trainer *tr, const cd_train_batch *b, cd_train_losses *out,
                          float *latents_out);
// VAE encoder moments of images [B,3,H,W] (for --cache-latents).
int cd_trainer_encode(cd_trainer *tr, const float *pixels, int B, int H, int W, float *mean,
                      float *logvar);
// ---- pieces shared with the GPU trainer (model/trainer_cuda.c) --------------------------
// Latent size of a batch and its checks (rows, prior split, widths, timestep range).
int cd_trainer_batch_shape(const cd_trainer *tr, const cd_train_batch *b, int *lc, int *h, int *w);
// 1 when any of ids[0..n) is a modifier token.
int cd_trainer_batch_uses_modifiers(const cd_trainer *tr, const int32_t *ids, int n);
// z = scaling * (mean + exp(0.5 logvar) * vae_noise), n values.
void cd_trainer_latents(const cd_trainer *tr, const float *mean, const float *logvar,
                        const float *vae_noise, float *z, int64_t n);
// Noisy latents zt, the loss target (noise, or velocity for v_prediction) and float
// timesteps tf [B] from the scaled latents z [B, per].
void cd_trainer_noisy(const cd_trainer *tr, const cd_train_batch *b, const float *z, float *zt,
                      float *target, float *tf, int64_t per);
// Loss of one micro-batch (masked instance MSE, 4x a masked mean as upstream, + weighted prior
// MSE) and d(loss)/d(pred) into dpred (scaled by b->loss_scale). out gets the unscaled losses.
void cd_trainer_loss(const cd_trainer *tr, const cd_train_batch *b, const float *pred,
                     const float *target, float *dpred, int lc, int hw, cd_train_losses *out);

// Global L2 norm of all gradients (double).
double cd_trainer_grad_norm(const cd_trainer *tr);
// Clip at max_grad_norm (torch clip_grad_norm_), AdamW with `lr`, zero the gradients.
// *grad_norm gets the norm before clipping.
int cd_trainer_step(cd_trainer *tr, float lr, double *grad_norm);
void cd_trainer_zero_grad(cd_trainer *tr);
#endif
