// --device and --precision of customdiff-verify: the one place where a case runs a network on
// the CPU or on the GPU, and where reduced precision widens the golden tolerances.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "verify/device.h"
#include "core/err.h"
#include "model/unet_cuda.h"
#include "model/vae_cuda.h"
#include "model/sampler_cuda.h"
#include "model/clip_cuda.h"
#include "model/blocks_cuda.h"
#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#endif

int cd_verify_device_init(cd_verify_ctx *v, const char *device, const char *precision) {
    v->device = device;
    v->gpu = 0;
    v->prec = CD_PREC_FP32;
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return cd_err("--device '%s': expected cpu or cuda", device);
    CD_TRY(cd_precision_parse(precision, &v->prec));
    if (!strcmp(device, "cpu")) {
        if (v->prec != CD_PREC_FP32) return cd_err("--precision %s needs --device cuda (the CPU runs fp32)", precision);
        return 0;
    }
#ifdef CD_CUDA
    char why[256], name[256] = "";
    if (!cd_cuda_available(why, sizeof why)) return cd_err("--device cuda: %s", why);
    cd_cuda_device_name(name, sizeof name);
    cd_precision_apply(v->prec);
    printf("device: %s, precision %s\n", name, cd_precision_name(v->prec));
    v->gpu = 1;
    return 0;
#else
    return cd_err("--device cuda: this build of customdiff-verify has no CUDA (rebuild with CUDA=1)");
#endif
}

// Golden tolerances hold for fp32 math. TF32 rounds GEMM/convolution inputs to 10 mantissa
// bits (~5e-4 relative each) and bf16 to 8 (~4e-3); the errors of whole networks stay within
// a few times that, so the tolerances are raised to floors: 3e-3 (tf32) / 3e-2 (bf16) for
// layers and network outputs, and 5x that, 1.5e-2 / 1.5e-1, for gradients, multi-step
// trajectories and the end-to-end pipeline (golden tolerance >= 1e-3). The gradient floor is
// set by attention's backward: delta = rowsum(dO * O) with O in bf16 (as flash attention keeps
// it) is subtracted from near-equal dP values, and the K gradients of the tiny models move by
// up to 1.1e-1 (tiny-sd2, measured through the emulation) while fp32 gives 6e-6.
// fp16 keeps 11 bits (8x bf16's precision, 2^-11 vs 2^-8 relative rounding): its floors are
// 5e-3 and 2.5e-2. Measured through the emulation on tiny-sd and tiny-sd2: layers and outputs
// <= 2.9e-3 (bf16: 2.2e-2), gradients and trained tensors <= 1.2e-2 (bf16: 1.1e-1), pipeline
// 6.4e-3 (bf16: 4.5e-2).
double cd_verify_tol(const cd_verify_ctx *v, double tol) {
    double floor = v->prec == CD_PREC_BF16 ? 3e-2 : v->prec == CD_PREC_FP16 ? 5e-3 : v->prec == CD_PREC_TF32 ? 3e-3 : 0;
    if (tol >= CD_TOL_GRAD) floor *= 5;
    return tol > floor ? tol : floor;
}

int vd_unet_forward(cd_verify_ctx *v, cd_unet *u, float *out, const float *x, const float *t,
                    const float *ctx, int B, int H, int W, int N, cd_unet_act_fn acts, void *actx) {
    if (!v->gpu) return cd_unet_forward(u, out, x, t, ctx, B, H, W, N, acts, actx);
    cd_unet_cuda *g;
    CD_TRY(cd_unet_cuda_new(&g, u, NULL));
    int rc = cd_unet_cuda_set_bf16(g, cd_precision_half(v->prec));
    if (!rc) rc = cd_unet_cuda_forward(g, out, x, t, ctx, B, H, W, N, acts, actx);
    cd_unet_cuda_free(g);
    return rc;
}

static int vae_dev(cd_verify_ctx *v, cd_pipeline *p, cd_vae_cuda **g) {
    CD_TRY(cd_vae_cuda_new(g, &p->vae_cfg, &p->vae_w, NULL));
    if (cd_vae_cuda_set_bf16(*g, cd_precision_half(v->prec))) { cd_vae_cuda_free(*g); return -1; }
    return 0;
}

int vd_vae_encode(cd_verify_ctx *v, cd_pipeline *p, float *mean, float *logvar, const float *img,
                  int B, int H, int W) {
    if (!v->gpu) return cd_vae_encode(p->vae, mean, logvar, img, B, H, W);
    cd_vae_cuda *g;
    CD_TRY(vae_dev(v, p, &g));
    int rc = cd_vae_cuda_encode(g, mean, logvar, img, B, H, W);
    cd_vae_cuda_free(g);
    return rc;
}

int vd_vae_decode(cd_verify_ctx *v, cd_pipeline *p, float *img, const float *lat, int B, int h, int w) {
    if (!v->gpu) return cd_vae_decode(p->vae, img, lat, B, h, w);
    cd_vae_cuda *g;
    CD_TRY(vae_dev(v, p, &g));
    int rc = cd_vae_cuda_decode(g, img, lat, B, h, w);
    cd_vae_cuda_free(g);
    return rc;
}

int vd_sample(cd_verify_ctx *v, cd_sampler *s, cd_scheduler *sch, const float *cond,
              const float *unc, float guidance, float *lat, int h, int w, float *img, cd_image *im) {
    if (!v->gpu) {
        CD_TRY(cd_sampler_denoise(s, sch, cond, unc, guidance, lat, h, w, NULL, NULL));
        return cd_sampler_decode(s, lat, h, w, img, im);
    }
    cd_sampler_cuda g;
    CD_TRY(cd_sampler_cuda_init(&g, s, cd_precision_name(v->prec)));
    int rc = cd_sampler_denoise_cuda(s, g.unet, sch, cond, unc, guidance, lat, h, w, NULL, NULL);
    if (!rc) rc = cd_sampler_decode_cuda(s, g.vae, lat, h, w, img, im);
    cd_sampler_cuda_free(&g);
    return rc;
}

int vd_text_forward(cd_verify_ctx *v, cd_clip_text *t, const int32_t *ids, int B, int L,
                    float *hidden, float *pooled) {
    if (!v->gpu) return cd_clip_text_forward(t, ids, B, L, hidden, pooled);
#ifdef CD_CUDA
    int64_t n = (int64_t)B * L * t->cfg.hidden;
    cd_clip_text_cuda *g;
    CD_TRY(cd_clip_text_cuda_new(&g, t, NULL));
    float *d = cd_cuda_malloc(sizeof(float) * n);
    int rc = d ? cd_clip_text_cuda_set_bf16(g, cd_precision_half(v->prec)) : cd_err("out of device memory");
    if (!rc) rc = cd_clip_text_cuda_forward(g, d, ids, B, L, 0);
    if (!rc) rc = cd_cuda_memcpy_d2h(hidden, d, sizeof(float) * n, NULL);
    if (!rc) rc = cd_cuda_sync(NULL);
    if (!rc && cd_cuda_status()) rc = cd_errctx("text encoder on the GPU");
    if (!rc && pooled) cd_clip_text_pool(t, ids, B, L, hidden, pooled);
    cd_cuda_free(d);
    cd_clip_text_cuda_free(g);
    return rc;
#else
    return cd_err("built without CUDA");
#endif
}

int vd_text_embed(cd_verify_ctx *v, cd_clip_text *t, const int32_t *ids, int B, int L, float *emb,
                  int normalize) {
    if (!v->gpu) return cd_clip_text_embed(t, ids, B, L, emb, normalize);
    int C = t->cfg.hidden;
    float *hid = cd_malloc(sizeof(float) * (size_t)B * L * C), *pooled = cd_malloc(sizeof(float) * (size_t)B * C);
    int rc = vd_text_forward(v, t, ids, B, L, hid, pooled);
    if (!rc) rc = cd_clip_text_project(t, pooled, B, emb, normalize);
    free(hid);
    free(pooled);
    return rc;
}

int vd_vision_forward(cd_verify_ctx *v, const cd_clip_vision *m, const float *pixels, int B,
                      float *pooled, float *emb, int normalize) {
    if (!v->gpu) return cd_clip_vision_forward(m, pixels, B, pooled, emb, normalize);
    cd_clip_vision_cuda *g;
    CD_TRY(cd_clip_vision_cuda_new(&g, m, NULL));
    int rc = cd_clip_vision_cuda_set_bf16(g, cd_precision_half(v->prec));
    if (!rc) rc = cd_clip_vision_cuda_forward(g, pooled, emb, normalize, pixels, B);
    cd_clip_vision_cuda_free(g);
    return rc;
}

int vd_block_transformer(cd_verify_ctx *v, cd_weights *ws, const char *prefix,
                         const cd_tblock_spec *s, const float *x, const float *ctx, int B, int H,
                         int W, int M, float *out, const float *grad_out, float *grad_x,
                         float *grad_ctx, float *gk, float *gv) {
    if (!v->gpu)
        return cd_block_transformer_run(ws, prefix, s, x, ctx, B, H, W, M, out, grad_out, grad_x, grad_ctx, gk, gv);
    return cd_block_transformer_run_cuda(ws, prefix, s, x, ctx, B, H, W, M, out, grad_out, grad_x, grad_ctx,
                                         gk, gv, cd_precision_half(v->prec));
}

int vd_block_resnet(cd_verify_ctx *v, cd_weights *ws, const char *prefix, int cin, int cout,
                    int temb_dim, int groups, float eps, const float *x, const float *temb, int B,
                    int H, int W, float *out) {
    if (!v->gpu) return cd_block_resnet_run(ws, prefix, cin, cout, temb_dim, groups, eps, x, temb, B, H, W, out);
    return cd_block_resnet_run_cuda(ws, prefix, cin, cout, temb_dim, groups, eps, x, temb, B, H, W, out,
                                    cd_precision_half(v->prec));
}
