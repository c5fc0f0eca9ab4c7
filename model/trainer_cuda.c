// Custom Diffusion training step on the GPU (see model/trainer_cuda.h). The numerics that are
// not tensor work of the networks stay in model/trainer.c and are shared with the CPU trainer:
// batch checks, latent sampling, noising and the loss (cd_trainer_latents / cd_trainer_noisy /
// cd_trainer_loss, on a few hundred KB per micro-batch: latents and prediction cross the bus
// once each way). The networks, their backward, the gradient norm, clipping and AdamW run on
// the device.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/trainer_cuda.h"
#include "core/err.h"
#include "core/log.h"

#ifndef CD_CUDA
int cd_trainer_cuda_new(cd_trainer_cuda **out, cd_trainer *tr, int precision) {
    *out = NULL;
    return cd_err("training on the GPU: this build has no CUDA (rebuild with CUDA=1)");
}
void cd_trainer_cuda_free(cd_trainer_cuda *g) { (void)g; }
int cd_trainer_cuda_accumulate(cd_trainer_cuda *g, const cd_train_batch *b, cd_train_losses *o, float *l) {
    return cd_err("built without CUDA");
}
int cd_trainer_cuda_encode(cd_trainer_cuda *g, const float *p, int B, int H, int W, float *m, float *l) {
    return cd_err("built without CUDA");
}
int cd_trainer_cuda_step(cd_trainer_cuda *g, float lr, double *gn, int *sk) { return cd_err("built without CUDA"); }
int cd_trainer_cuda_to_host(cd_trainer_cuda *g) { return cd_err("built without CUDA"); }
int cd_trainer_cuda_from_host(cd_trainer_cuda *g) { return cd_err("built without CUDA"); }
int cd_trainer_cuda_grads_to_host(cd_trainer_cuda *g) { return cd_err("built without CUDA"); }
void cd_trainer_cuda_get_stats(const cd_trainer_cuda *g, cd_trainer_cuda_stats *s) { memset(s, 0, sizeof *s); }
cd_unet_cuda *cd_trainer_cuda_unet(cd_trainer_cuda *g) { return NULL; }
int cd_trainer_cuda_precision(const cd_trainer_cuda *g) { return CD_PREC_FP32; }
cd_vae_cuda *cd_trainer_cuda_vae(cd_trainer_cuda *g) { return NULL; }
#else
#include "kernels/kernels_cuda.h"
#include "model/unet_cuda.h"
#include "model/clip_cuda.h"
#include "model/vae_cuda.h"

struct cd_trainer_cuda {
    cd_trainer *tr;
    int prec;
    void *st;                      // one stream for every network
    cd_unet_cuda *unet;
    cd_clip_text_cuda *text;
    cd_vae_cuda *vae;              // NULL when the pipeline has no VAE encoder
    float *rowgrad;                // [nmod, C] gradients of the modifier rows
    float *adam;                   // [2, total]: m then v, params in tr->params order
    // per-shape buffers (grown, never shrunk)
    int64_t cap_n, cap_ctx;
    float *zt, *pred, *dpred, *tf, *ctx, *dctx;
    float *h_pred, *h_dpred, *h_z, *h_zt, *h_target, *h_tf, *h_mean, *h_logvar;
    double flops;
};

static float *param_dev(cd_trainer_cuda *g, int i) {
    cd_trainer *tr = g->tr;
    if (i < tr->n_unet) return cd_unet_cuda_param_dev(g->unet, i);
    return cd_clip_text_cuda_row_dev(g->text, tr->mod_id[i - tr->n_unet]);
}
static float *grad_dev(cd_trainer_cuda *g, int i) {
    cd_trainer *tr = g->tr;
    if (i < tr->n_unet) return cd_unet_cuda_grad_dev(g->unet, i);
    return g->rowgrad + (int64_t)(i - tr->n_unet) * tr->tcfg.hidden;
}

static int zero_grads(cd_trainer_cuda *g) {
    cd_unet_cuda_zero_grad(g->unet);
    if (g->tr->nmod)
        return cd_cuda_memset(g->rowgrad, 0, sizeof(float) * g->tr->nmod * g->tr->tcfg.hidden, g->st);
    return 0;
}

static int setup_networks(cd_trainer_cuda *g) {
    cd_trainer *tr = g->tr;
    cd_pipeline *p = tr->pipe;
    CD_TRY(cd_unet_cuda_new(&g->unet, p->unet, g->st));
    CD_TRY(cd_unet_cuda_train_setup(g->unet));
    if (cd_unet_cuda_nparams(g->unet) != tr->n_unet)
        return cd_err("cuda trainer: the GPU UNet trains %d tensors, the trainer %d", cd_unet_cuda_nparams(g->unet), tr->n_unet);
    CD_TRY(cd_clip_text_cuda_new(&g->text, &tr->text, g->st));
    if (p->vae && p->vae_w.n > 0 && cd_vae_cuda_new(&g->vae, &p->vae_cfg, &p->vae_w, g->st))
        return cd_errctx("cuda trainer: VAE");
    int bf = cd_precision_half(g->prec);
    cd_precision_apply(g->prec);   // before any 16-bit copy is made
    CD_TRY(cd_unet_cuda_set_bf16(g->unet, bf));
    CD_TRY(cd_clip_text_cuda_set_bf16(g->text, bf));
    if (g->vae) CD_TRY(cd_vae_cuda_set_bf16(g->vae, bf));
    return 0;
}

int cd_trainer_cuda_new(cd_trainer_cuda **out, cd_trainer *tr, int precision) {
    *out = NULL;
    char why[256];
    if (!cd_cuda_available(why, sizeof why)) return cd_err("training on the GPU: %s", why);
    cd_trainer_cuda *g = cd_calloc(1, sizeof *g);
    g->tr = tr;
    g->prec = precision;
    if (precision == CD_PREC_FP16 && !(tr->loss_scale > 0)) {   // a fresh run (a resume brings its own)
        tr->loss_scale = CD_LOSS_SCALE_INIT;
        tr->scale_good = 0;
    }
    if (precision != CD_PREC_FP16) tr->loss_scale = 0;
    g->st = cd_cuda_stream_create();
    int rc = g->st ? 0 : cd_err("cuda trainer: cannot create a stream");
    if (rc == 0) rc = setup_networks(g);
    if (rc == 0 && tr->nmod) {
        g->rowgrad = cd_cuda_malloc(sizeof(float) * tr->nmod * tr->tcfg.hidden);
        if (!g->rowgrad) rc = cd_err("cuda trainer: out of device memory (token gradients)");
    }
    if (rc == 0) {
        g->adam = cd_cuda_malloc(sizeof(float) * 2 * (tr->total ? tr->total : 1));
        if (!g->adam) rc = cd_err("cuda trainer: out of device memory (AdamW moments, %.1f MiB)",
                                  2.0 * tr->total * sizeof(float) / 1048576.0);
    }
    if (rc == 0) rc = zero_grads(g);
    if (rc == 0) rc = cd_trainer_cuda_from_host(g);
    if (rc) { cd_trainer_cuda_free(g); return -1; }
    *out = g;
    return 0;
}

void cd_trainer_cuda_free(cd_trainer_cuda *g) {
    if (!g) return;
    if (g->st) cd_cuda_sync(g->st);
    cd_unet_cuda_free(g->unet);   // its training state too
    cd_clip_text_cuda_free(g->text);
    cd_vae_cuda_free(g->vae);
    float *dev[] = {g->rowgrad, g->adam, g->zt, g->pred, g->dpred, g->tf, g->ctx, g->dctx};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) cd_cuda_free(dev[i]);
    float *host[] = {g->h_pred, g->h_dpred, g->h_z, g->h_zt, g->h_target, g->h_tf, g->h_mean, g->h_logvar};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
    if (g->st) cd_cuda_stream_destroy(g->st);
    free(g);
}

// Replace a device buffer by one of n floats.
static int dgrow(float **p, int64_t n) {
    cd_cuda_free(*p);
    *p = cd_cuda_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    return *p ? 0 : cd_err("cuda trainer: out of device memory (%.1f MiB of batch buffers)", n * 4.0 / 1048576.0);
}
static void hgrow(float **p, int64_t n) {
    free(*p);
    *p = cd_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
}

// Buffers for n latent values (B <= n rows) and nctx context values.
static int buffers(cd_trainer_cuda *g, int64_t n, int64_t nctx) {
    if (n > g->cap_n) {
        float **d[] = {&g->zt, &g->pred, &g->dpred};
        for (size_t i = 0; i < sizeof d / sizeof *d; i++) CD_TRY(dgrow(d[i], n));
        float **h[] = {&g->h_pred, &g->h_dpred, &g->h_z, &g->h_zt, &g->h_target, &g->h_mean, &g->h_logvar};
        for (size_t i = 0; i < sizeof h / sizeof *h; i++) hgrow(h[i], n);
        CD_TRY(dgrow(&g->tf, n));   // B <= n always (each row has >= 1 latent value)
        hgrow(&g->h_tf, n);
        g->cap_n = n;
    }
    if (nctx > g->cap_ctx) {
        CD_TRY(dgrow(&g->ctx, nctx));
        CD_TRY(dgrow(&g->dctx, nctx));
        g->cap_ctx = nctx;
    }
    return 0;
}

int cd_trainer_cuda_encode(cd_trainer_cuda *g, const float *pixels, int B, int H, int W,
                           float *mean, float *logvar) {
    if (!g->vae || !cd_vae_cuda_has_encoder(g->vae))
        return cd_err("%s: the VAE encoder is not loaded", g->tr->pipe->model_path);
    return cd_vae_cuda_encode(g->vae, mean, logvar, pixels, B, H, W);
}

// Scaled latents into g->h_z (host): cached moments, or the VAE encoder on the device.
static int latents(cd_trainer_cuda *g, const cd_train_batch *b, int64_t n) {
    const float *mean = b->mean, *logvar = b->logvar;
    if (!mean) {
        if (!b->pixels) return cd_err("train batch: neither pixels nor cached latents");
        CD_TRY(cd_trainer_cuda_encode(g, b->pixels, b->B, b->H, b->W, g->h_mean, g->h_logvar));
        mean = g->h_mean;
        logvar = g->h_logvar;
    }
    cd_trainer_latents(g->tr, mean, logvar, b->vae_noise, g->h_z, n);
    for (int64_t k = 0; k < n; k++)   // a NaN here would only surface later as a skipped step
        if (!isfinite(g->h_z[k]))
            return cd_err("cuda trainer: the VAE latents are not finite (%g at %lld)%s", g->h_z[k], (long long)k,
                          g->prec == CD_PREC_FP16 && !b->mean ? ": the VAE encoder overflowed fp16 (+-65504); train with "
                                                               "--precision bf16" : "");
    return 0;
}

static int status(const char *what) {
    if (cd_cuda_status()) return cd_errctx("cuda trainer: %s", what);
    return 0;
}

int cd_trainer_cuda_accumulate(cd_trainer_cuda *g, const cd_train_batch *b, cd_train_losses *out,
                               float *latents_out) {
    cd_trainer *tr = g->tr;
    int lc, h, w, B = b->B, L = CD_CLIP_MAX_LEN, C = tr->tcfg.hidden;
    CD_TRY(cd_trainer_batch_shape(tr, b, &lc, &h, &w));
    int64_t per = (int64_t)lc * h * w, n = (int64_t)B * per, nctx = (int64_t)B * L * C;
    CD_TRY(buffers(g, n, nctx));
    CD_TRY(latents(g, b, n));
    if (latents_out) memcpy(latents_out, g->h_z, sizeof(float) * n);
    cd_trainer_noisy(tr, b, g->h_z, g->h_zt, g->h_target, g->h_tf, per);
    CD_TRY(cd_cuda_memcpy_h2d(g->zt, g->h_zt, sizeof(float) * n, g->st));
    CD_TRY(cd_cuda_memcpy_h2d(g->tf, g->h_tf, sizeof(float) * B, g->st));
    int rows = tr->nmod > 0 && cd_trainer_batch_uses_modifiers(tr, b->ids, B * L);
    CD_TRY(cd_clip_text_cuda_forward(g->text, g->ctx, b->ids, B, L, rows));
    CD_TRY(cd_unet_cuda_forward_train(g->unet, g->pred, g->zt, g->tf, g->ctx, B, h, w, L));
    CD_TRY(cd_cuda_memcpy_d2h(g->h_pred, g->pred, sizeof(float) * n, g->st));
    CD_TRY(cd_cuda_sync(g->st));
    CD_TRY(status("forward"));
    cd_trainer_loss(tr, b, g->h_pred, g->h_target, g->h_dpred, lc, h * w, out);
    if (tr->loss_scale > 0)   // fp16: every gradient downstream carries the scale
        for (int64_t k = 0; k < n; k++) g->h_dpred[k] = (float)(g->h_dpred[k] * tr->loss_scale);
    CD_TRY(cd_cuda_memcpy_h2d(g->dpred, g->h_dpred, sizeof(float) * n, g->st));
    CD_TRY(cd_unet_cuda_backward(g->unet, rows ? g->dctx : NULL, g->dpred));
    if (rows) {
        CD_TRY(cd_clip_text_cuda_backward_rows(g->text, g->dctx, tr->nmod, tr->mod_id, g->rowgrad));
    }
    g->flops = cd_unet_cuda_train_flops(g->unet) + cd_clip_text_cuda_flops(g->text);
    return status("backward");
}

// Global gradient norm: two reductions (every UNet gradient lives in one buffer, the token
// rows in another), each one synchronisation, added in double on the host.
static double grad_norm(cd_trainer_cuda *g) {
    int64_t n = 0;
    float *all = cd_unet_cuda_grad_all(g->unet, &n);
    double s = n ? cd_cuda_sumsq(all, n, g->st) : 0;
    if (g->tr->nmod) s += cd_cuda_sumsq(g->rowgrad, (int64_t)g->tr->nmod * g->tr->tcfg.hidden, g->st);
    return sqrt(s);
}

static void scale_grads(cd_trainer_cuda *g, float coef) {
    int64_t n = 0;
    float *all = cd_unet_cuda_grad_all(g->unet, &n);
    if (n) cd_cuda_scale(all, coef, n, g->st);
    if (g->tr->nmod) cd_cuda_scale(g->rowgrad, coef, (int64_t)g->tr->nmod * g->tr->tcfg.hidden, g->st);
}

// fp16's overflowed step (the norm of the scaled gradients is not finite): no update, the
// scale halves, the gradients are dropped (GradScaler's backoff). At scale 1 an overflow is an
// error: GradScaler would skip every step from then on without saying why.
static int skip_step(cd_trainer_cuda *g, double norm) {
    cd_trainer *tr = g->tr;
    if (tr->loss_scale <= 1)   // no scale left to take back: the forward itself leaves fp16's range
        return cd_err("fp16: the gradients overflow even at loss scale 1 (optimizer step %lld): activations "
                      "exceed fp16's range (+-65504); train with --precision bf16", (long long)tr->adam_step + 1);
    tr->skipped_steps++;
    tr->scale_good = 0;
    tr->loss_scale *= 0.5;
    cd_info("fp16: gradients overflowed (norm %g) at optimizer step %lld: step skipped, loss scale now %g",
            norm, (long long)tr->adam_step + 1, tr->loss_scale);
    CD_TRY(zero_grads(g));
    CD_TRY(cd_cuda_sync(g->st));
    return status("skipping an overflowed step");
}

int cd_trainer_cuda_step(cd_trainer_cuda *g, float lr, double *grad_norm_out, int *skipped) {
    cd_trainer *tr = g->tr;
    double S = tr->loss_scale > 0 ? tr->loss_scale : 1.0;
    double norm = grad_norm(g);
    CD_TRY(status("gradient norm"));
    if (skipped) *skipped = 0;
    if (!isfinite(norm) && tr->loss_scale > 0) {
        if (grad_norm_out) *grad_norm_out = INFINITY;
        if (skipped) *skipped = 1;
        return skip_step(g, norm);
    }
    norm /= S;   // the true norm (fp16: the gradients carry the loss scale)
    if (grad_norm_out) *grad_norm_out = norm;
    if (!isfinite(norm)) return cd_err("gradient norm is %g at optimizer step %lld: training diverged",
                                       norm, (long long)tr->adam_step + 1);
    // Unscale and clip in one pass: torch.nn.utils.clip_grad_norm_'s coef = max / (norm + 1e-6),
    // clamped to 1 (as the CPU step), times 1 / S.
    double coef = 1.0;
    if (tr->o.max_grad_norm > 0 && tr->o.max_grad_norm / (norm + 1e-6) < 1.0) coef = tr->o.max_grad_norm / (norm + 1e-6);
    if (coef / S != 1.0) scale_grads(g, (float)(coef / S));
    if (tr->loss_scale > 0 && ++tr->scale_good >= CD_LOSS_SCALE_INTERVAL) {   // GradScaler's growth
        tr->loss_scale *= 2;
        tr->scale_good = 0;
    }
    tr->adam_step++;
    int64_t off = 0;
    for (int i = 0; i < tr->nparams; i++) {
        int64_t k = tr->params[i].numel;
        cd_cuda_adamw_step(param_dev(g, i), grad_dev(g, i), g->adam + off, g->adam + tr->total + off, k, lr,
                           tr->o.beta1, tr->o.beta2, tr->o.eps, tr->o.weight_decay, (int)tr->adam_step, g->st);
        off += k;
    }
    CD_TRY(cd_unet_cuda_params_changed(g->unet));
    if (tr->nmod) CD_TRY(cd_clip_text_cuda_rows_changed(g->text));
    CD_TRY(zero_grads(g));
    CD_TRY(cd_cuda_sync(g->st));
    return status("optimizer step");
}

int cd_trainer_cuda_to_host(cd_trainer_cuda *g) {
    cd_trainer *tr = g->tr;
    CD_TRY(cd_unet_cuda_params_to_host(g->unet));
    if (tr->nmod) CD_TRY(cd_clip_text_cuda_rows_to_host(g->text, tr->nmod, tr->mod_id));
    CD_TRY(cd_cuda_memcpy_d2h(tr->adam_m, g->adam, sizeof(float) * tr->total, g->st));
    CD_TRY(cd_cuda_memcpy_d2h(tr->adam_v, g->adam + tr->total, sizeof(float) * tr->total, g->st));
    CD_TRY(cd_cuda_sync(g->st));
    return status("copying the trained tensors to the host");
}

int cd_trainer_cuda_grads_to_host(cd_trainer_cuda *g) {
    cd_trainer *tr = g->tr;
    for (int i = 0; i < tr->nparams; i++)
        CD_TRY(cd_cuda_memcpy_d2h(tr->params[i].g, grad_dev(g, i), sizeof(float) * tr->params[i].numel, g->st));
    CD_TRY(cd_cuda_sync(g->st));
    if (tr->loss_scale > 0)   // fp16: the true gradients
        for (int i = 0; i < tr->nparams; i++)
            for (int64_t k = 0; k < tr->params[i].numel; k++) tr->params[i].g[k] = (float)(tr->params[i].g[k] / tr->loss_scale);
    return status("copying the gradients to the host");
}

int cd_trainer_cuda_from_host(cd_trainer_cuda *g) {
    cd_trainer *tr = g->tr;
    CD_TRY(cd_unet_cuda_params_from_host(g->unet));
    if (tr->nmod) CD_TRY(cd_clip_text_cuda_rows_from_host(g->text, tr->nmod, tr->mod_id));
    CD_TRY(cd_cuda_memcpy_h2d(g->adam, tr->adam_m, sizeof(float) * tr->total, g->st));
    CD_TRY(cd_cuda_memcpy_h2d(g->adam + tr->total, tr->adam_v, sizeof(float) * tr->total, g->st));
    CD_TRY(cd_unet_cuda_params_changed(g->unet));
    if (tr->nmod) CD_TRY(cd_clip_text_cuda_rows_changed(g->text));
    CD_TRY(cd_cuda_sync(g->st));
    return status("copying the trained tensors to the device");
}

cd_unet_cuda *cd_trainer_cuda_unet(cd_trainer_cuda *g) { return g->unet; }
int cd_trainer_cuda_precision(const cd_trainer_cuda *g) { return g->prec; }
cd_vae_cuda *cd_trainer_cuda_vae(cd_trainer_cuda *g) { return g->vae; }

void cd_trainer_cuda_get_stats(const cd_trainer_cuda *g, cd_trainer_cuda_stats *s) {
    memset(s, 0, sizeof *s);
    s->weights = cd_unet_cuda_weight_bytes(g->unet) + cd_clip_text_cuda_weight_bytes(g->text);
    s->optimizer = (int64_t)sizeof(float) * 3 * g->tr->total;
    s->activations = cd_unet_cuda_train_arena_bytes(g->unet) + cd_clip_text_cuda_arena_bytes(g->text);
    int64_t peak = 0;
    cd_cuda_alloc_bytes(&peak);
    s->peak = peak;
    s->step_flops = g->flops;
}
#endif
