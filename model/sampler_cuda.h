// The denoising loop of model/sampler.h with the UNet on the GPU (model/unet_cuda.h): text
// encoding and VAE decoding stay on the CPU (cd_sampler_encode / cd_sampler_decode); per step
// the scaled latents go up, the UNet runs on the device on the batch [uncond, cond], eps comes
// back and guidance plus the scheduler step run on the CPU (a few hundred KiB per step).
#ifndef CD_SAMPLER_CUDA_H
#define CD_SAMPLER_CUDA_H
#include "model/sampler.h"
#include "model/unet_cuda.h"

// As cd_sampler_denoise, with g (made from s->pipe->unet after any deltas were applied).
int cd_sampler_denoise_cuda(cd_sampler *s, cd_unet_cuda *g, cd_scheduler *sch,
                            const float *ctx_cond, const float *ctx_uncond, float guidance,
                            float *lat, int h, int w, cd_sampler_step_fn cb, void *cb_ctx);
#endif
