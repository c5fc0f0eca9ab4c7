// customdiff-verify --device cpu|cuda and --precision fp32|tf32|bf16 (verify/device.c): the
// networks a case runs, on the CPU or the GPU; tolerances widened for reduced precision.
#ifndef CD_VERIFY_DEVICE_H
#define CD_VERIFY_DEVICE_H
#include "verify/verify.h"
#include "model/pipeline.h"
#include "model/sampler.h"
#include "model/scheduler.h"
#include "model/trainer_cuda.h"

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
#endif
