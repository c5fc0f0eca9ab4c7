// customdiff-train internals: options, data (stores, augmentation as the HF Custom Diffusion
// trainer), the training loop's step, checkpoints and logs. The numeric core (tokens,
// trainable tensors, loss, backward, AdamW) is model/trainer.h.
#ifndef CD_TRAIN_H
#define CD_TRAIN_H
#include <stdint.h>
#include "core/image.h"
#include "core/rng.h"
#include "model/trainer.h"
#include "model/trainer_cuda.h"

// ---- options (main.c) ------------------------------------------------------------------
typedef struct {
    const char *model, *tokenizer, *instance_data, *class_data, *instance_prompt, *class_prompt;
    const char *modifier_token, *initializer_token, *concepts, *train_mode, *validation_prompt;
    const char *out, *resume;
    const char *device, *precision;   // cpu | cuda; fp32 | tf32 | bf16 (cuda)
    int overwrite;           // start a fresh run in an --out that holds an earlier run
    int with_prior, real_prior, num_class_images, resolution, batch, warmup, max_steps, accum;
    int checkpointing_steps, checkpoints_limit, hflip, noaug, center_crop, cache_latents;
    int grad_ckpt, validation_steps, scale_lr, deterministic;
    double prior_loss_weight, lr, max_grad_norm, adam_beta1, adam_beta2, adam_eps, weight_decay;
    int64_t seed;
} cd_train_args;

// ---- data (data.c) ---------------------------------------------------------------------
typedef struct {
    char *instance_prompt, *class_prompt, *instance_dir, *class_dir;
} cd_concept;

// Custom Diffusion's concepts list: a JSON array of {instance_prompt, class_prompt,
// instance_data_dir, class_data_dir} (class_* optional without prior preservation).
int cd_concepts_load(const char *path, cd_concept **out, int *n);
void cd_concepts_free(cd_concept *c, int n);

typedef struct cd_imgsrc cd_imgsrc;

typedef struct {
    int src;            // index into the dataset's sources
    int idx;            // image index inside the source
    int concept;
} cd_item;

typedef struct {
    int N, f;           // resolution, latent factor (mask size N/f)
    int hflip, noaug, center_crop, with_prior, real_prior;
    int nsrc;
    cd_imgsrc **src;
    int n_inst, n_class;
    cd_item *inst, *cls; // instance items shuffled once (seeded), class items in store order
    cd_concept *concepts;   // not owned
    int nconcepts;
    int len;            // max(n_inst, n_class) (n_inst without prior)
    uint64_t seed;
    int64_t epoch, pos; // position: next sample is perm(epoch)[pos]
    int *perm;          // [len] the current epoch's order
    int64_t perm_epoch;
    int64_t cache_bytes, cache_cap;
} cd_dataset;

// Open every concept's instance (and, with prior, class) images. Errors: missing folder,
// empty store/folder, unreadable list.
int cd_dataset_open(cd_dataset *d, cd_concept *c, int nc, const cd_train_args *a, int f);
void cd_dataset_free(cd_dataset *d);

typedef struct {
    int B, n_inst, N, mask_n;   // rows, instance rows, resolution, mask side
    float *pixels;      // [B, 3, N, N] in [-1, 1]
    float *mask;        // [n_inst, 1, mask_n, mask_n]
    char **captions;    // [B] heap strings
    int *item;          // [B] dataset index of each row (for caches)
    int *deterministic; // [B] 1 when the row's pixels do not depend on the RNG
} cd_batch;

// Next b samples (b instance rows, then b class rows with prior), augmented with aug rng.
int cd_dataset_next(cd_dataset *d, cd_rng *aug, int b, cd_batch *out);
void cd_batch_free(cd_batch *bt);

// Augmentations exposed for tests (HF profile). Instance: random scale s, paste/crop, mask
// (border of one latent pixel as upstream), caption prefix. px [3,N,N], mask [N/f, N/f].
// Returns the caption prefix ("" or "a far away " ...).
const char *cd_aug_instance(const cd_image *im, int N, int f, int noaug, int hflip, cd_rng *r,
                            float *px, float *mask, int *scale_out);
// Class: flip, resize shorter side to N (bilinear), random or centre crop N.
int cd_aug_class(const cd_image *im, int N, int hflip, int center_crop, cd_rng *r, float *px);

// ---- step (step.c) ---------------------------------------------------------------------
typedef struct {
    cd_trainer tr;
    cd_trainer_cuda *gpu;        // --device cuda: the step runs there (NULL: CPU)
    cd_pipeline pipe;
    cd_dataset data;
    cd_concept *concepts;
    int nconcepts;
    const cd_train_args *a;
    cd_rng rng_aug, rng_noise;   // data augmentation; vae noise / noise / timesteps
    int64_t step;                // optimizer steps done
    double lr;                   // base learning rate after --scale-lr
    // latent cache (--cache-latents): VAE moments (mean then logvar) per instance item,
    // then per class item; NULL until computed
    float **cache_mean;
    int cache_n;
    int lc, h;                   // latent channels, latent side
} cd_run;

// lr at optimizer step k (0-based): constant, linear warmup when warmup > 0 (diffusers'
// constant_with_warmup: k / warmup for k < warmup).
double cd_lr_at(double base, int warmup, int64_t k);
// Base lr after --scale-lr as upstream (one process): lr * accum * batch, x2 with prior
// preservation (Q2); --learning-rate unchanged without --scale-lr.
double cd_lr_scaled(const cd_train_args *a);
typedef struct {
    double loss, loss_inst, loss_prior, grad_norm, lr, ms;
    int images;
    int skipped;   // fp16: the optimizer step was skipped (gradients overflowed; grad_norm inf)
} cd_step_stats;
// One optimizer step (accum micro-batches).
int cd_run_step(cd_run *r, cd_step_stats *st);

// ---- checkpoints (checkpoint.c) -------------------------------------------------------
// RUN/checkpoints/checkpoint-NNNNNN/{state.safetensors, state.json}, written into a
// temporary folder and renamed into place (a kill leaves the previous ones valid).
int cd_ckpt_save(const cd_run *r, const char *run_dir, int keep_last);
// Newest complete checkpoint of RUN (or a checkpoint folder itself); *found = 0 when none.
int cd_ckpt_find_latest(const char *path, char **dir, int *found);
int cd_ckpt_load(cd_run *r, const char *dir);

// ---- logs (log.c) ---------------------------------------------------------------------
typedef struct {
    void *fp;                    // train.log (append)
    char *run_dir;
    int n, cap;
    double *loss, *loss_inst, *loss_prior, *gnorm, *lr, *ms;
    int64_t *step;
    double t0;
} cd_trainlog;
int cd_trainlog_open(cd_trainlog *l, const char *run_dir, int64_t resume_step);
void cd_trainlog_add(cd_trainlog *l, int64_t step, const cd_step_stats *st, int batch_images);
// metrics.json and loss.png
int cd_trainlog_finish(cd_trainlog *l, const cd_train_args *a, int64_t steps, double seconds);
void cd_trainlog_close(cd_trainlog *l);
// Draw a polyline chart of y[n] (and optionally y2) into a w x h RGB image.
int cd_plot_curve(const double *y, const double *y2, int n, int w, int h, cd_image *out);
#endif
