// Custom Diffusion training on an NVIDIA GPU: the step of model/trainer.h (cd_trainer_accumulate
// + cd_trainer_step) with every tensor on the device. The host cd_trainer stays the owner of
// the model, the tokenizer, the trainable-parameter list and the optimizer state; this handle
// holds their device copies and moves them back and forth at checkpoints (to_host/from_host).
//
// Per micro-batch on the device: VAE encoder (or cached moments) -> latent sample -> noise ->
// text encoder (training forward when modifier tokens exist) -> UNet training forward -> masked
// instance + prior MSE and its gradient -> UNet backward (token-0 K/V detach) -> text encoder
// backward to the modifier rows. Per optimizer step: global gradient norm (fp32 sums), clipping,
// AdamW on the fp32 masters (trainable K/V weights, modifier rows), bf16 copies refreshed.
//
// Precision (model/precision.h): fp32 (exact fp32 math), tf32 (fp32 storage, TF32 tensor-core
// GEMMs/convolutions), bf16 and fp16 (frozen weights in 16 bits, trainable fp32 masters with
// 16-bit compute copies, GEMMs / convolutions / attention in 16 bits with fp32 accumulation;
// losses, norms, softmax statistics and parameter gradients in fp32). fp16 adds dynamic loss
// scaling (cd_trainer's loss_scale): activation gradients stored in fp16 would flush to zero
// below 6e-8 unscaled; a step whose gradients overflow is skipped (tr->skipped_steps) and the
// scale halves, as torch.cuda.amp.GradScaler does.
//
// Plain C, no CUDA headers: builds with CUDA=0, where cd_trainer_cuda_new fails with
// "built without CUDA".
#ifndef CD_TRAINER_CUDA_H
#define CD_TRAINER_CUDA_H
#include <stdint.h>
#include "model/trainer.h"
#include "model/unet_cuda.h"
#include "model/vae_cuda.h"
#include "model/precision.h"

typedef struct cd_trainer_cuda cd_trainer_cuda;

// Upload the pipeline's UNet, text encoder (token table incl. modifier rows) and VAE encoder
// (when loaded) and the trainer's parameters and AdamW moments. tr must be initialised
// (cd_trainer_init) and outlive the handle.
int cd_trainer_cuda_new(cd_trainer_cuda **out, cd_trainer *tr, int precision);
void cd_trainer_cuda_free(cd_trainer_cuda *g);

// As cd_trainer_accumulate (host batch in; gradients accumulate on the device).
int cd_trainer_cuda_accumulate(cd_trainer_cuda *g, const cd_train_batch *b, cd_train_losses *out,
                               float *latents_out);
// As cd_trainer_encode (host in/out), on the device.
int cd_trainer_cuda_encode(cd_trainer_cuda *g, const float *pixels, int B, int H, int W,
                           float *mean, float *logvar);
// As cd_trainer_step: clip, AdamW, zero the gradients (device); advances tr->adam_step. fp16:
// the gradients are unscaled first; when they overflowed (non-finite norm) the step is skipped
// instead (*grad_norm = inf, *skipped = 1, tr->adam_step unchanged, the scale halved, gradients
// zeroed). skipped may be NULL. Other precisions: a non-finite norm is an error (diverged).
int cd_trainer_cuda_step(cd_trainer_cuda *g, float lr, double *grad_norm, int *skipped);

// Device trainable weights and AdamW moments -> the host trainer (before a checkpoint, an
// export, validation sampling on the CPU); and back (after a resume).
int cd_trainer_cuda_to_host(cd_trainer_cuda *g);
int cd_trainer_cuda_from_host(cd_trainer_cuda *g);
// The accumulated gradients -> the host params' g (inspection: customdiff-verify, tests).
int cd_trainer_cuda_grads_to_host(cd_trainer_cuda *g);

// The trainer's device UNet (inference forwards see the current trained weights: validation
// samples) and VAE (NULL when the pipeline has none). Owned by the handle.
cd_unet_cuda *cd_trainer_cuda_unet(cd_trainer_cuda *g);
int cd_trainer_cuda_precision(const cd_trainer_cuda *g);   // CD_PREC_*
cd_vae_cuda *cd_trainer_cuda_vae(cd_trainer_cuda *g);

typedef struct {
    int64_t weights;      // device bytes of weights (fp32 + bf16 copies)
    int64_t optimizer;    // gradients + AdamW moments
    int64_t activations;  // activation arenas after the last step (planned once per shape)
    int64_t peak;         // peak bytes allocated through cd_cuda_malloc
    double step_flops;    // FLOPs (2 per MAC) of the last micro-batch's forward + backward
} cd_trainer_cuda_stats;
void cd_trainer_cuda_get_stats(const cd_trainer_cuda *g, cd_trainer_cuda_stats *s);
#endif
