// GPU denoising loop (see model/sampler_cuda.h); the same steps as cd_sampler_denoise.
#include "model/sampler_cuda.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/progress.h"
#include "core/log.h"
#include "model/precision.h"
#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#endif

#ifdef CD_CUDA
// Device buffers of one denoising run: input [B,C,h,w], eps [B,C,h,w], t [2], ctx [B,77,dim];
// graph: replay the UNet from a CUDA graph (1), not (0), or not yet checked (-1).
typedef struct { float *x, *eps, *t, *ctx; int graph; float *plain; } dbufs;

static void dfree(dbufs *d) {
    cd_cuda_free(d->x); cd_cuda_free(d->eps); cd_cuda_free(d->t); cd_cuda_free(d->ctx);
    free(d->plain);
}

// CUDA graphs are on unless CD_CUDA_GRAPH=0.
static int graph_wanted(void) {
    const char *e = getenv("CD_CUDA_GRAPH");
    return !(e && *e && atoi(e) == 0);
}

static double max_rel(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t k = 0; k < n; k++) {
        double d = fabs((double)a[k] - b[k]);
        if (!isfinite(d)) return NAN;   // a non-finite value on either side
        if (d > num) num = d;
        if (fabs((double)b[k]) > den) den = fabs((double)b[k]);
    }
    return num / (den > 0 ? den : 1);
}

// The UNet forward on the device buffers, from the graph when d->graph allows. The first graph
// step checks itself: the replay must give the plain forward's eps (the same kernels on the same
// buffers: equal up to 1e-5 of the largest value), else the run goes on without a graph and says
// why. Capture failures (a build without graphs, the host emulation) fall back the same way.
static int unet_forward(cd_unet_cuda *g, dbufs *d, float *eps, int B, int64_t n, int h, int w, int M) {
    void *st = cd_unet_cuda_stream(g);
    if (!st) d->graph = 0;   // graphs need a stream of its own
    if (d->graph == -1) {
        CD_TRY(cd_unet_cuda_forward_dev(g, d->eps, d->x, d->t, d->ctx, B, h, w, M));
        if (!d->plain) d->plain = cd_malloc(sizeof(float) * n * B);
        CD_TRY(cd_cuda_memcpy_d2h(d->plain, d->eps, sizeof(float) * n * B, st));
        CD_TRY(cd_cuda_sync(st));
        if (cd_unet_cuda_forward_graph(g, d->eps, d->x, d->t, d->ctx, B, h, w, M)) {
            cd_warn("%s; running without a graph", cd_errmsg());
            cd_cuda_status();   // the failed capture's error is handled here
            d->graph = 0;
            memcpy(eps, d->plain, sizeof(float) * n * B);
            return 0;
        }
        CD_TRY(cd_cuda_memcpy_d2h(eps, d->eps, sizeof(float) * n * B, st));
        CD_TRY(cd_cuda_sync(st));
        double e = max_rel(eps, d->plain, n * B);
        d->graph = e <= 1e-5;
        if (isnan(e)) {   // non-finite outputs: unet_step reports them; no verdict on the graph
            memcpy(eps, d->plain, sizeof(float) * n * B);
            d->graph = -1;
        } else if (!d->graph) {
            cd_warn("cuda: the UNet replayed from a CUDA graph differs from the plain forward by %.3g "
                    "(relative to the largest value); running without a graph", e);
            memcpy(eps, d->plain, sizeof(float) * n * B);
        }
        return 0;
    }
    if (d->graph) CD_TRY(cd_unet_cuda_forward_graph(g, d->eps, d->x, d->t, d->ctx, B, h, w, M));
    else CD_TRY(cd_unet_cuda_forward_dev(g, d->eps, d->x, d->t, d->ctx, B, h, w, M));
    CD_TRY(cd_cuda_memcpy_d2h(eps, d->eps, sizeof(float) * n * B, st));
    return cd_cuda_sync(st);
}

// One UNet call: xin (host) up, forward, eps (host) back.
static int unet_step(cd_unet_cuda *g, dbufs *d, float *eps, const float *xin, float t, int B,
                     int64_t n, int h, int w, int M) {
    void *st = cd_unet_cuda_stream(g);
    float tt[2] = {t, t};
    CD_TRY(cd_cuda_memcpy_h2d(d->x, xin, sizeof(float) * n * B, st));
    CD_TRY(cd_cuda_memcpy_h2d(d->t, tt, sizeof(float) * B, st));
    if (unet_forward(g, d, eps, B, n, h, w, M) || cd_cuda_status()) return cd_errctx("unet cuda: step at t=%g", t);
    for (int64_t k = 0; k < n * B; k++)
        if (!isfinite(eps[k]))
            return cd_err("unet cuda: the UNet's output is %g at t=%g (element %lld)%s", eps[k], t, (long long)k,
                          cd_cuda_get_fp16() ? ": fp16 activations overflowed (range +-65504); sample with --precision bf16" : "");
    return 0;
}

int cd_sampler_denoise_cuda(cd_sampler *s, cd_unet_cuda *g, cd_scheduler *sch,
                            const float *ctx_cond, const float *ctx_uncond, float guidance,
                            float *lat, int h, int w, cd_sampler_step_fn cb, void *cb_ctx) {
    const cd_unet_config *uc = cd_unet_cfg(s->pipe->unet);
    int C = uc->in_channels, cfg = guidance > 1.0f;
    int B = cfg ? 2 : 1;
    int64_t n = (int64_t)C * h * w, nctx = (int64_t)s->ctx_len * s->ctx_dim;
    if (uc->out_channels != C) return cd_err("UNet out_channels %d != in_channels %d", uc->out_channels, C);
    dbufs d = {cd_cuda_malloc(sizeof(float) * n * B), cd_cuda_malloc(sizeof(float) * n * B),
               cd_cuda_malloc(sizeof(float) * 2), cd_cuda_malloc(sizeof(float) * nctx * B),
               graph_wanted() ? -1 : 0, NULL};
    if (!d.x || !d.eps || !d.t || !d.ctx) { dfree(&d); return cd_errctx("sampler cuda: device buffers"); }
    void *st = cd_unet_cuda_stream(g);
    int rc = 0;
    if (cfg) {   // batch [uncond, cond], as diffusers concatenates them
        rc = cd_cuda_memcpy_h2d(d.ctx, ctx_uncond, sizeof(float) * nctx, st) ||
             cd_cuda_memcpy_h2d(d.ctx + nctx, ctx_cond, sizeof(float) * nctx, st);
    } else {
        rc = cd_cuda_memcpy_h2d(d.ctx, ctx_cond, sizeof(float) * nctx, st);
    }
    float *xin = cd_malloc(sizeof(float) * n * B), *eps = cd_malloc(sizeof(float) * n * B);
    for (int64_t k = 0; k < n; k++) lat[k] *= sch->init_noise_sigma;
    for (int i = 0; i < sch->n && !rc; i++) {
        double t0 = cd_now();
        cd_sched_scale_input(sch, i, xin, lat, n);
        if (cfg) memcpy(xin + n, xin, sizeof(float) * n);
        rc = unet_step(g, &d, eps, xin, sch->timesteps[i], B, n, h, w, s->ctx_len);
        if (rc) break;
        if (cfg)
            for (int64_t k = 0; k < n; k++) eps[k] = eps[k] + guidance * (eps[n + k] - eps[k]);
        rc = cd_sched_step(sch, i, eps, lat, n);
        if (cb) cb(cb_ctx, i, sch->n, cd_now() - t0);
    }
    free(xin); free(eps);
    dfree(&d);
    return rc ? -1 : 0;
}
int cd_sampler_cuda_init(cd_sampler_cuda *g, cd_sampler *s, const char *precision) {
    memset(g, 0, sizeof *g);
    const char *pname = precision && *precision ? precision : getenv("CD_CUDA_PRECISION");
    int prec = CD_PREC_FP32;
    CD_TRY(cd_precision_parse(pname && *pname ? pname : NULL, &prec));
    char why[256] = "";
    if (!cd_cuda_available(why, sizeof why)) return cd_err("--device cuda: no usable GPU: %s", why);
    g->stream = cd_cuda_stream_create();   // NULL (the default stream) if that fails
    if (cd_unet_cuda_new(&g->unet, s->pipe->unet, g->stream) ||
        cd_vae_cuda_new(&g->vae, cd_vae_cfg(s->pipe->vae), &s->pipe->vae_w, NULL)) {
        cd_sampler_cuda_free(g);
        return -1;
    }
    cd_precision_apply(prec);   // before the 16-bit copies are made
    if (cd_precision_half(prec) && cd_unet_cuda_set_bf16(g->unet, 1)) { cd_sampler_cuda_free(g); return -1; }
    return 0;
}

void cd_sampler_cuda_free(cd_sampler_cuda *g) {
    cd_unet_cuda_free(g->unet);
    cd_vae_cuda_free(g->vae);
    if (g->stream) cd_cuda_stream_destroy(g->stream);
    memset(g, 0, sizeof *g);
}

int cd_sampler_decode_cuda(cd_sampler *s, cd_vae_cuda *v, const float *lat, int h, int w,
                           float *img, cd_image *out) {
    int lc = cd_vae_cfg(s->pipe->vae)->latent_channels;
    int64_t n = (int64_t)lc * h * w;
    int H = h * s->f, W = w * s->f;
    float *z = cd_malloc(sizeof(float) * n);
    for (int64_t k = 0; k < n; k++) z[k] = lat[k] / s->scaling;
    float *im = img ? img : cd_malloc(sizeof(float) * 3 * (size_t)H * W);
    int rc = cd_vae_cuda_decode(v, im, z, 1, h, w);
    free(z);
    if (!rc && out) {
        out->w = W; out->h = H;
        out->rgb = cd_malloc((size_t)H * W * 3);
        cd_sampler_to_uint8(im, H, W, out->rgb);
    }
    if (!img) free(im);
    return rc;
}
#else
#define NOCUDA cd_err("sampler: customdiff was built without CUDA (CUDA=0)")
int cd_sampler_cuda_init(cd_sampler_cuda *g, cd_sampler *s, const char *precision) { memset(g, 0, sizeof *g); return NOCUDA; }
void cd_sampler_cuda_free(cd_sampler_cuda *g) { memset(g, 0, sizeof *g); }
int cd_sampler_decode_cuda(cd_sampler *s, cd_vae_cuda *v, const float *lat, int h, int w,
                           float *img, cd_image *out) { return NOCUDA; }
int cd_sampler_denoise_cuda(cd_sampler *s, cd_unet_cuda *g, cd_scheduler *sch,
                            const float *ctx_cond, const float *ctx_uncond, float guidance,
                            float *lat, int h, int w, cd_sampler_step_fn cb, void *cb_ctx) {
    return NOCUDA;
}
#endif
