// The VAE decoder (AutoencoderKL, model/vae.c's cd_vae_decode) on an NVIDIA GPU through the
// CUDA twins, fp32. Binds the decoder tensors of ws by their diffusers names (post_quant_conv,
// decoder.*) itself and uploads ws once. Plain C; with CUDA=0 every call fails with
// "built without CUDA".
#ifndef CD_VAE_CUDA_H
#define CD_VAE_CUDA_H
#include "model/vae.h"

typedef struct cd_vae_cuda cd_vae_cuda;

// ws must outlive the handle. stream: a cudaStream_t or NULL.
int cd_vae_cuda_new(cd_vae_cuda **out, const cd_vae_config *cfg, cd_weights *ws, void *stream);
void cd_vae_cuda_free(cd_vae_cuda *v);
// z [B, latent, h, w] (unscaled, host) -> img [B, out_channels, h*f, w*f] (host), not clamped.
int cd_vae_cuda_decode(cd_vae_cuda *v, float *img, const float *z, int B, int h, int w);
#endif
