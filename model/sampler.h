// Text-to-image sampling as diffusers' StableDiffusionPipeline does it (0.25): prompt and
// negative prompt through the text encoder (77 tokens, last_hidden_state), latents times the
// scheduler's init_noise_sigma, then per step: scale_model_input, one UNet call on the batch
// [uncond, cond] (classifier-free guidance: eps = u + g (c - u); guidance <= 1 runs the cond
// branch alone), scheduler step; finally VAE decode of latents / scaling_factor and
// uint8 = round(clamp(x / 2 + 0.5, 0, 1) * 255).
// Shared by customdiff-sample and customdiff-verify's pipeline case.
#ifndef CD_SAMPLER_H
#define CD_SAMPLER_H
#include <stdint.h>
#include "core/image.h"
#include "model/pipeline.h"
#include "model/clip.h"
#include "model/scheduler.h"
#include "model/delta.h"

typedef struct {
    cd_pipeline *pipe;          // not owned; needs UNET | VAE_DECODER | TEXT | TOKENIZER
                                // (the text encoder is pipe->text)
    int ctx_len, ctx_dim;       // 77, text width (= cross_attention_dim)
    float scaling;              // VAE scaling_factor (0.18215)
    int f;                      // VAE downscale (8)
} cd_sampler;

int cd_sampler_init(cd_sampler *s, cd_pipeline *p);
void cd_sampler_free(cd_sampler *s);
// Apply deltas to the loaded model (tokens, then UNet tensors and a UNet rebind).
int cd_sampler_apply_deltas(cd_sampler *s, cd_delta *const *ds, int n, int check_base);
// Text -> ctx [ctx_len, ctx_dim] (the UNet's encoder_hidden_states for one prompt).
int cd_sampler_encode(cd_sampler *s, const char *prompt, float *ctx);

// Called after every step: i (0-based), n steps in all, seconds that step took.
typedef void (*cd_sampler_step_fn)(void *ctx, int i, int n, double secs);

// Denoise one image. lat [4, h, w]: on entry the unit-variance initial noise (or given
// init latents; multiplied by init_noise_sigma here, as prepare_latents does), on exit the
// final latents. sch must have had set_timesteps (and a noise source if it needs one).
int cd_sampler_denoise(cd_sampler *s, cd_scheduler *sch, const float *ctx_cond,
                       const float *ctx_uncond, float guidance, float *lat, int h, int w,
                       cd_sampler_step_fn cb, void *cb_ctx);
// Latents [4, h, w] -> decoder output img [3, h*f, w*f] (may be NULL) and an RGB8 image.
int cd_sampler_decode(cd_sampler *s, const float *lat, int h, int w, float *img, cd_image *out);
// [3, H, W] in [-1, 1] -> RGB8 HWC: round(clamp(x/2+0.5, 0, 1) * 255), half to even.
void cd_sampler_to_uint8(const float *img, int H, int W, uint8_t *rgb);
#endif
