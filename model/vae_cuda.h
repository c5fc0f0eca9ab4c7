// The VAE (AutoencoderKL, model/vae.c's cd_vae_decode and cd_vae_encode) on an NVIDIA GPU through
// the CUDA twins, fp32 (or bf16 convolutions/GEMMs with fp32 accumulation: cd_vae_cuda_set_bf16).
// Binds the decoder tensors of ws by their diffusers names (post_quant_conv, decoder.*) with
// model/vae.c's binding (cd_vae_bind, model/vae_internal.h), and the encoder's (encoder.*,
// quant_conv) when ws has them, and uploads ws once. Plain C; with CUDA=0 every call fails with
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
// The same on device buffers (asynchronous on the handle's stream).
int cd_vae_cuda_decode_dev(cd_vae_cuda *v, float *d_img, const float *d_z, int B, int h, int w);
// pixels [B, in_channels, H, W] in [-1,1] (device) -> d_mean, d_logvar [B, latent, H/f, W/f]
// (device), as cd_vae_encode: the moments after quant_conv, logvar clamped to [-30, 20]
// (the clamp makes a round trip through the host, so this call synchronizes the stream).
int cd_vae_cuda_encode_dev(cd_vae_cuda *v, float *d_mean, float *d_logvar, const float *d_pixels,
                           int B, int H, int W);
// Host in/out variant of cd_vae_cuda_encode_dev.
int cd_vae_cuda_encode(cd_vae_cuda *v, float *mean, float *logvar, const float *pixels, int B,
                       int H, int W);
// bf16 mode (on = 1): bf16 weight copies, fp32 accumulation; the decoder keeps bf16 activations
// between layers (model/nn16_cuda.h; latents in and image out stay fp32), the encoder fp32
// activations with bf16 convolution/GEMM inputs.
int cd_vae_cuda_set_bf16(cd_vae_cuda *v, int on);
int cd_vae_cuda_has_encoder(const cd_vae_cuda *v);     // 1 when the encoder tensors were bound
int64_t cd_vae_cuda_arena_bytes(const cd_vae_cuda *v);
#endif
