// A tiny random Stable Diffusion UNet + VAE + scheduler config in the real diffusers layout,
// with tiny-sd's shapes (UNet blocks 32/64/64/64, 8 heads, cross_attention_dim 32, conv
// proj_in/out; VAE blocks 32/32/64/64, 4 latent channels; PNDM scheduler, epsilon).
#ifndef CD_TINY_H
#define CD_TINY_H
#include <stdint.h>
#include "model/unet.h"
#include "model/vae.h"

// Writes DIR/unet/{config.json,diffusion_pytorch_model.safetensors}, DIR/vae/{same} and
// DIR/scheduler/scheduler_config.json (model_index.json, tokenizer/ and text_encoder/ are
// written by tiny-model/main.c). Weights: N(0, 1/fan_in) matrices, norms ~1, small biases,
// from a Philox stream keyed by seed. cross_attention_dim 32 = the tiny text encoder width.
int cd_tiny_unet_vae_write(const char *dir, uint64_t seed);
// The configs it writes.
void cd_tiny_unet_config(cd_unet_config *c);
void cd_tiny_vae_config(cd_vae_config *c);
// Build a model whose missing tensors are created in ws with random values (tests, tiny models).
int cd_unet_new_random(cd_unet **out, const cd_unet_config *cfg, cd_weights *ws, uint64_t seed);
int cd_vae_new_random(cd_vae **out, const cd_vae_config *cfg, cd_weights *ws, uint64_t seed);
#endif
