// AutoencoderKL (diffusers 0.25 semantics), fp32 on the CPU. Images are [B, 3, H, W] in
// [-1, 1]; latents are [B, latent_channels, H/f, W/f] with f = 2^(nblocks-1) (8 for SD).
// Latents fed to the UNet are sample * scaling_factor (0.18215 for SD v1/v2); decode takes
// the unscaled latent (divide by scaling_factor first, as the pipelines do).
#ifndef CD_VAE_H
#define CD_VAE_H
#include <stdint.h>
#include <cjson/cJSON.h>
#include "model/weights.h"

#define CD_VAE_MAX_BLOCKS 8

typedef struct {
    int in_channels, out_channels, latent_channels;   // 3, 3, 4
    int nblocks;
    int block_out[CD_VAE_MAX_BLOCKS];                 // block_out_channels
    int layers_per_block;                             // encoder; the decoder has one more
    int groups;                                       // norm_num_groups
    float scaling_factor;                             // 0.18215
    int sample_size;
} cd_vae_config;

// Parse vae/config.json (AutoencoderKL with Down/UpEncoderBlock2D; others are an error).
int cd_vae_config_parse(cd_vae_config *c, const cJSON *j, const char *what);
cJSON *cd_vae_config_to_json(const cd_vae_config *c);

typedef struct cd_vae cd_vae;
// Bind every tensor (diffusers names: encoder.*, decoder.*, quant_conv, post_quant_conv).
// need_encoder=0 skips the encoder (a sampler needs the decoder only).
int cd_vae_new(cd_vae **out, const cd_vae_config *cfg, cd_weights *ws, int need_encoder);
void cd_vae_free(cd_vae *v);
const cd_vae_config *cd_vae_cfg(const cd_vae *v);
int cd_vae_downscale(const cd_vae *v);   // f

// Encoder moments after quant_conv: mean, logvar [B, latent, H/f, W/f]; logvar clamped to
// [-30, 20] as DiagonalGaussianDistribution does.
int cd_vae_encode(cd_vae *v, float *mean, float *logvar, const float *img, int B, int H, int W);
// z = mean + exp(0.5 * logvar) * noise (elementwise, n values): latent_dist.sample().
void cd_vae_sample(float *z, const float *mean, const float *logvar, const float *noise, int64_t n);
// Decoder: z [B, latent, h, w] (unscaled) -> img [B, out_channels, h*f, w*f], not clamped.
int cd_vae_decode(cd_vae *v, float *img, const float *z, int B, int h, int w);
#endif
