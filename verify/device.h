// customdiff-verify --device cpu|cuda and --precision fp32|tf32|bf16 (verify/device.c): the
// networks a case runs, on the CPU or the GPU; tolerances widened for reduced precision.
#ifndef CD_VERIFY_DEVICE_H
#define CD_VERIFY_DEVICE_H
#include "verify/verify.h"
#include "model/pipeline.h"
#include "model/sampler.h"
#include "model/scheduler.h"
#include "model/trainer_cuda.h"
#include "model/blocks.h"

// Errors: unknown device/precision, reduced precision on the CPU, no GPU, a build without CUDA.
int cd_verify_device_init(cd_verify_ctx *v, const char *device, const char *precision);
// The tolerance to use for a golden tolerance `tol` at v's precision.
double cd_verify_tol(const cd_verify_ctx *v, double tol);

int vd_unet_forward(cd_verify_ctx *v, cd_unet *u, float *out, const float *x, const float *t,
                    const float *ctx, int B, int H, int W, int N, cd_unet_act_fn acts, void *actx);
int vd_vae_encode(cd_verify_ctx *v, cd_pipeline *p, float *mean, float *logvar, const float *img,
                  int B, int H, int W);
int vd_vae_decode(cd_verify_ctx *v, cd_pipeline *p, float *img, const float *lat, int B, int h, int w);
// Denoise lat in place (final latents), then decode into img / im (as the sampler).
int vd_sample(cd_verify_ctx *v, cd_sampler *s, cd_scheduler *sch, const float *cond,
              const float *unc, float guidance, float *lat, int h, int w, float *img, cd_image *im);
// Text encoder: hidden [B,L,C] and pooled [B,C] (may be NULL) as cd_clip_text_forward;
// projected embeddings as cd_clip_text_embed. Vision tower as cd_clip_vision_forward.
int vd_text_forward(cd_verify_ctx *v, cd_clip_text *t, const int32_t *ids, int B, int L,
                    float *hidden, float *pooled);
int vd_text_embed(cd_verify_ctx *v, cd_clip_text *t, const int32_t *ids, int B, int L, float *emb,
                  int normalize);
int vd_vision_forward(cd_verify_ctx *v, const cd_clip_vision *m, const float *pixels, int B,
                      float *pooled, float *emb, int normalize);
// Single blocks as model/blocks.h (the real-size blocks-sd15 set).
int vd_block_transformer(cd_verify_ctx *v, cd_weights *ws, const char *prefix,
                         const cd_tblock_spec *s, const float *x, const float *ctx, int B, int H,
                         int W, int M, float *out, const float *grad_out, float *grad_x,
                         float *grad_ctx, float *gk, float *gv);
int vd_block_resnet(cd_verify_ctx *v, cd_weights *ws, const char *prefix, int cin, int cout,
                    int temb_dim, int groups, float eps, const float *x, const float *temb, int B,
                    int H, int W, float *out);
#endif
