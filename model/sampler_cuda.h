// Sampling of model/sampler.h with the UNet and the VAE decoder on the GPU (model/unet_cuda.h,
// model/vae_cuda.h); the text encoder stays on the CPU (cd_sampler_encode: once per prompt).
// Per step the scaled latents go up, the UNet runs on the device on the batch [uncond, cond],
// eps comes back and guidance plus the scheduler step run on the CPU (a few hundred KiB).
#ifndef CD_SAMPLER_CUDA_H
#define CD_SAMPLER_CUDA_H
#include "model/sampler.h"
#include "model/unet_cuda.h"
#include "model/vae_cuda.h"

// The sampler's models on the device; the UNet on a stream of its own.
typedef struct { cd_unet_cuda *unet; cd_vae_cuda *vae; void *stream; } cd_sampler_cuda;
// Upload s->pipe's UNet and VAE decoder (after any deltas were applied). Errors: no GPU,
// built without CUDA, out of device memory, unknown precision. precision (the UNet's,
// model/precision.h): "fp32" (matches the CPU within 1e-4), "tf32", "bf16" or "fp16"
// (cd_unet_cuda_set_bf16 in that 16-bit format: faster, ~1e-2 from the CPU's eps); NULL or "":
// $CD_CUDA_PRECISION, else fp32. Sets the process's CUDA math modes (cd_precision_apply).
int cd_sampler_cuda_init(cd_sampler_cuda *g, cd_sampler *s, const char *precision);
void cd_sampler_cuda_free(cd_sampler_cuda *g);

// As cd_sampler_denoise, with g (made from s->pipe->unet after any deltas were applied).
// With g on a stream of its own, each step replays the UNet from a CUDA graph
// (cd_unet_cuda_forward_graph) unless CD_CUDA_GRAPH=0. The first step checks the replay against
// the plain forward (one extra forward per run); a capture that fails or a replay that differs
// makes the run go on without a graph, with a warning saying why. Guidance and the scheduler
// step stay on the host (a few hundred KiB per step: under 1% of a step at 512).
int cd_sampler_denoise_cuda(cd_sampler *s, cd_unet_cuda *g, cd_scheduler *sch,
                            const float *ctx_cond, const float *ctx_uncond, float guidance,
                            float *lat, int h, int w, cd_sampler_step_fn cb, void *cb_ctx);
// As cd_sampler_decode with the decoder on the GPU.
int cd_sampler_decode_cuda(cd_sampler *s, cd_vae_cuda *v, const float *lat, int h, int w,
                           float *img, cd_image *out);
#endif
