// One Custom Diffusion training step on the GPU at SD1.5's shape, random weights: batch 2
// instance + 2 class images at 512 px (latent 4x64x64), context 77x768 from a ViT-L/14-shaped
// text encoder with one modifier token (its embedding row trains), UNet attn2 to_k/to_v trained
// (19.2 M fp32 masters), AdamW. Measured per precision (bf16 first; tf32 as a secondary line),
// latents cached or not (VAE encoder forward at 512 for the 4 images), gradient checkpointing off
// and on: ms per step (median of N after warm-up, each step ends with a stream sync), TFLOP/s,
// its ratio to the bf16 cuBLAS GEMM rate measured in the same run (8192^3), planned and peak
// device memory, and the projection of 250 steps.
//
// What a step is: the device APIs model/trainer_cuda.c chains, in its order (the bench does not
// go through cd_trainer_cuda itself: that needs a cd_pipeline -- tokenizer files, JSON configs --
// which bench/gpu-check.sh's minimal build on a GPU machine without the -dev packages lacks):
//   [VAE encode on the device, moments to the host] -> host: latent sample, noise, timesteps,
//   q_sample (as cd_trainer_latents/cd_trainer_noisy) -> upload zt, t -> text encoder training
//   forward (cd_clip_text_cuda_forward, train = 1) -> UNet training forward -> MSE and its
//   gradient (on the device: cd_cuda_mse_fwd_bwd, where the trainer forms the masked loss on the
//   host from a copy of the prediction: same 256 KiB round trip, one sync) -> UNet backward (dctx)
//   -> text backward to the modifier row -> per-tensor sums of squares (33 syncs, as the
//   trainer), clip at 1.0, AdamW on 33 tensors, bf16 copies refreshed, gradients zeroed, sync.
//
// FLOPs: the APIs' own counters (2 per multiply-add of GEMMs, convolutions and attention):
// cd_unet_cuda_train_flops + cd_clip_text_cuda_flops of the measured step, plus, when latents
// are not cached, the VAE encoder's convolutions and attention counted here from its config
// (vae_encoder_flops; the VAE handle has no counter). "TFLOP/s" divides the FLOPs of the step
// WITHOUT checkpointing (the model's work) by the time, so that recomputation shows as a loss of
// rate; the counted FLOPs with recomputation are printed beside.
//
// Output: a markdown table and one machine-readable line per configuration:
//   train_step prec=bf16 det=0 latents=cached ckpt=0 ms=.. tflops=.. pct_gemm=.. peak_gib=..
//              planned_gib=.. tflop=.. tflop_counted=.. s250=.. loss=.. [vs_default=..]
// peak_gib: the most bytes allocated through cd_cuda_malloc during the configuration's steps
// (weights of all three networks, optimizer state, activation heaps, buffers; not cuBLAS/cuDNN
// workspaces), with the UNet's training state rebuilt first; planned_gib: the UNet training
// heap that cd_unet_cuda_train_plan computes on the host for that configuration.
//   gemm_bf16_tflops X
// Usage: bench_train_cuda [--tiny] [--iters N=10] [--warmup N=3] [--prec bf16,tf32]
//                         [--no-uncached] [--no-ckpt] [--no-det] [--time-limit S=150]
// --no-det: leave out the deterministic-mode row (cached, no checkpointing; its machine line
// adds vs_default=, its time over the default mode's).
// --time-limit: no configuration starts after S seconds from the program's start.
// --tiny: tiny-sd shapes (a smoke run, e.g. under the host emulation kernels/emu/).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/err.h"
#include "model/unet.h"
#include "model/unet_cuda.h"
#include "model/precision.h"
#include "model/tiny.h"
#include "model/clip.h"
#include "model/clip_tiny.h"
#include "model/clip_cuda.h"
#include "model/vae.h"
#include "model/vae_cuda.h"
#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// VAE encoder FLOPs (2 per multiply-add) for B images of H x W: conv_in, per level
// layers_per_block ResNets (two 3x3 convs, 1x1 shortcut when the width changes) and a stride-2
// 3x3 conv (all but the last level), the mid block (ResNet, single-head attention over h*w
// tokens, ResNet), conv_out to 2*latent moments and the 1x1 quant_conv.
static double vae_encoder_flops(const cd_vae_config *c, int B, int H, int W) {
    double m = 0, hw = (double)H * W;
    int cin = c->block_out[0];
    m += 9.0 * c->in_channels * cin * hw;
    for (int i = 0; i < c->nblocks; i++) {
        int co = c->block_out[i];
        for (int l = 0; l < c->layers_per_block; l++) {
            m += 9.0 * cin * co * hw + 9.0 * co * co * hw;
            if (cin != co) m += (double)cin * co * hw;
            cin = co;
        }
        if (i < c->nblocks - 1) { hw /= 4; m += 9.0 * co * co * hw; }
    }
    m += 2 * (18.0 * cin * cin * hw);                    // two mid ResNets
    m += 4.0 * cin * cin * hw + 2.0 * hw * hw * cin;     // q, k, v, out + QK^T, PV
    m += 9.0 * cin * 2 * c->latent_channels * hw + 4.0 * c->latent_channels * c->latent_channels * hw;
    return 2 * m * B;
}

#ifdef CD_CUDA

typedef struct {
    int tiny, iters, warmup, uncached, ckpt, det;
    double time_limit;
    char prec[64];
} opts;

typedef struct {
    // host models
    cd_unet_config ucfg;
    cd_weights uw, tw, vw;
    cd_unet *u;
    cd_param *params;
    int nparams;
    cd_clip_text_config tcfg;
    cd_clip_text text;
    cd_vae_config vcfg;
    cd_vae *vae;
    // device
    void *st;
    cd_unet_cuda *gu;
    cd_clip_text_cuda *gt;
    cd_vae_cuda *gv;          // NULL when the VAE could not be set up (uncached rows skipped)
    int B, n_inst, h, w, H, W, L, C, mod_id;
    int64_t n, total;
    int32_t *ids;
    float *h_lat, *h_mean, *h_logvar, *h_noise, *h_zt, *h_tf, *acp;
    float *d_pix, *d_mean, *d_logvar, *d_zt, *d_tf, *d_target, *d_pred, *d_dpred, *d_ctx, *d_dctx;
    float *d_rowgrad, *d_adam;
    int64_t adam_step;
    uint64_t seed;
} bench;

static uint64_t mix(uint64_t *s) {   // splitmix64
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float unif(uint64_t *s) { return (float)((mix(s) >> 40) * (1.0 / 16777216.0)); }
static float gauss(uint64_t *s) {
    float a = unif(s) + 1e-7f, b = unif(s);
    return sqrtf(-2.f * logf(a)) * cosf(6.2831853f * b);
}

static float *dalloc(int64_t nfloats) {
    float *p = cd_cuda_malloc(sizeof(float) * (size_t)(nfloats > 0 ? nfloats : 1));
    return p;
}

static int build_models(bench *b, const opts *o) {
    if (o->tiny) {
        cd_tiny_unet_config(&b->ucfg);
        cd_tiny_text_config(&b->tcfg);
        cd_tiny_vae_config(&b->vcfg);
        b->h = b->w = 16;
    } else {
        cd_unet_config_sd15(&b->ucfg);
        cd_clip_text_config_vit_l14(&b->tcfg);
        cd_vae_config *v = &b->vcfg;   // SD1.x AutoencoderKL
        memset(v, 0, sizeof *v);
        v->in_channels = v->out_channels = 3;
        v->latent_channels = 4;
        v->nblocks = 4;
        int bo[4] = {128, 256, 512, 512};
        for (int i = 0; i < 4; i++) v->block_out[i] = bo[i];
        v->layers_per_block = 2;
        v->groups = 32;
        v->scaling_factor = 0.18215f;
        v->sample_size = 512;
        b->h = b->w = 64;
    }
    cd_weights_init(&b->uw, "random UNet");
    cd_weights_init(&b->tw, "random text encoder");
    cd_weights_init(&b->vw, "random VAE");
    CD_TRY(cd_unet_new_random(&b->u, &b->ucfg, &b->uw, 1));
    CD_TRY(cd_unet_set_train(b->u, CD_TRAIN_CROSSATTN_KV, &b->params, &b->nparams));
    cd_tiny_clip_weights(&b->tw, &b->tcfg, 0, NULL, 2);
    CD_TRY(cd_clip_text_bind(&b->text, &b->tcfg, &b->tw));
    b->mod_id = b->tcfg.vocab_size;   // one modifier token, initialised from a vocabulary row
    CD_TRY(cd_clip_text_resize_tokens(&b->text, b->tcfg.vocab_size + 1));
    CD_TRY(cd_clip_text_copy_row(&b->text, b->mod_id, 320));
    if (cd_vae_new_random(&b->vae, &b->vcfg, &b->vw, 3)) {
        printf("VAE: %s (uncached rows skipped)\n", cd_errmsg());
        b->vae = NULL;
    }
    return 0;
}

static int upload(bench *b) {
    b->st = cd_cuda_stream_create();
    if (!b->st) return cd_err("cannot create a stream");
    CD_TRY(cd_unet_cuda_new(&b->gu, b->u, b->st));
    CD_TRY(cd_unet_cuda_train_setup(b->gu));
    if (cd_unet_cuda_nparams(b->gu) != b->nparams)
        return cd_err("GPU UNet trains %d tensors, the host model %d", cd_unet_cuda_nparams(b->gu), b->nparams);
    CD_TRY(cd_clip_text_cuda_new(&b->gt, &b->text, b->st));
    if (b->vae && (cd_vae_cuda_new(&b->gv, &b->vcfg, &b->vw, b->st) || !cd_vae_cuda_has_encoder(b->gv))) {
        printf("VAE on the device: %s (uncached rows skipped)\n", b->gv ? "no encoder bound" : cd_errmsg());
        cd_vae_cuda_free(b->gv);
        b->gv = NULL;
    }
    return 0;
}

static int buffers(bench *b) {
    b->B = 4;
    b->n_inst = 2;
    b->L = 77;
    b->C = b->tcfg.hidden;
    int f = 1 << (b->vcfg.nblocks - 1);
    b->H = b->h * f;
    b->W = b->w * f;
    int lc = b->ucfg.in_channels;
    b->n = (int64_t)b->B * lc * b->h * b->w;
    int64_t nctx = (int64_t)b->B * b->L * b->C, npix = (int64_t)b->B * 3 * b->H * b->W;
    b->total = 0;
    for (int i = 0; i < b->nparams; i++) b->total += b->params[i].numel;
    b->total += b->C;   // the modifier row
    b->seed = 12345;
    b->ids = malloc(sizeof(int32_t) * b->B * b->L);
    for (int i = 0; i < b->B * b->L; i++) b->ids[i] = (int32_t)(mix(&b->seed) % (uint64_t)(b->tcfg.vocab_size - 3)) + 1;
    for (int r = 0; r < b->n_inst; r++) b->ids[r * b->L + 5] = b->mod_id;   // "photo of a <new1> cat"
    float **hb[] = {&b->h_lat, &b->h_mean, &b->h_logvar, &b->h_noise, &b->h_zt};
    for (size_t i = 0; i < sizeof hb / sizeof *hb; i++) *hb[i] = malloc(sizeof(float) * b->n);
    b->h_tf = malloc(sizeof(float) * b->B);
    for (int64_t k = 0; k < b->n; k++) b->h_lat[k] = 0.18215f * gauss(&b->seed);
    b->acp = malloc(sizeof(float) * 1000);   // scaled_linear betas 0.00085 .. 0.012
    double a = 1;
    for (int t = 0; t < 1000; t++) {
        double s = sqrt(0.00085) + (sqrt(0.012) - sqrt(0.00085)) * t / 999.0;
        a *= 1 - s * s;
        b->acp[t] = (float)a;
    }
    float **db[] = {&b->d_mean, &b->d_logvar, &b->d_zt, &b->d_target, &b->d_pred, &b->d_dpred};
    for (size_t i = 0; i < sizeof db / sizeof *db; i++) if (!(*db[i] = dalloc(b->n))) return -1;
    if (!(b->d_tf = dalloc(b->B)) || !(b->d_ctx = dalloc(nctx)) || !(b->d_dctx = dalloc(nctx)) ||
        !(b->d_rowgrad = dalloc(b->C)) || !(b->d_adam = dalloc(2 * b->total)))
        return -1;
    CD_TRY(cd_cuda_memset(b->d_rowgrad, 0, sizeof(float) * b->C, b->st));
    CD_TRY(cd_cuda_memset(b->d_adam, 0, sizeof(float) * 2 * b->total, b->st));
    if (b->gv) {
        if (!(b->d_pix = dalloc(npix))) return -1;
        float *px = malloc(sizeof(float) * npix);
        for (int64_t k = 0; k < npix; k++) px[k] = 2.f * unif(&b->seed) - 1.f;
        int rc = cd_cuda_memcpy_h2d(b->d_pix, px, sizeof(float) * npix, b->st);
        free(px);
        CD_TRY(rc);
    }
    return cd_cuda_sync(b->st);
}

// The latents (cached, or encoded now) -> noisy latents and targets on the device.
static int inputs(bench *b, int uncached) {
    const float *z = b->h_lat;
    if (uncached) {
        CD_TRY(cd_vae_cuda_encode_dev(b->gv, b->d_mean, b->d_logvar, b->d_pix, b->B, b->H, b->W));
        CD_TRY(cd_cuda_memcpy_d2h(b->h_mean, b->d_mean, sizeof(float) * b->n, b->st));
        CD_TRY(cd_cuda_memcpy_d2h(b->h_logvar, b->d_logvar, sizeof(float) * b->n, b->st));
        CD_TRY(cd_cuda_sync(b->st));
        for (int64_t k = 0; k < b->n; k++)   // latent_dist.sample() * scaling_factor
            b->h_mean[k] = b->vcfg.scaling_factor * (b->h_mean[k] + expf(0.5f * b->h_logvar[k]) * gauss(&b->seed));
        z = b->h_mean;
    }
    int64_t per = b->n / b->B;
    for (int r = 0; r < b->B; r++) {
        int t = (int)(mix(&b->seed) % 1000);
        b->h_tf[r] = (float)t;
        float sa = sqrtf(b->acp[t]), sb = sqrtf(1 - b->acp[t]);
        for (int64_t k = r * per; k < (r + 1) * per; k++) {
            b->h_noise[k] = gauss(&b->seed);
            b->h_zt[k] = sa * z[k] + sb * b->h_noise[k];
        }
    }
    CD_TRY(cd_cuda_memcpy_h2d(b->d_zt, b->h_zt, sizeof(float) * b->n, b->st));
    CD_TRY(cd_cuda_memcpy_h2d(b->d_target, b->h_noise, sizeof(float) * b->n, b->st));
    return cd_cuda_memcpy_h2d(b->d_tf, b->h_tf, sizeof(float) * b->B, b->st);
}

static float *param_dev(bench *b, int i) {
    return i < b->nparams ? cd_unet_cuda_param_dev(b->gu, i) : cd_clip_text_cuda_row_dev(b->gt, b->mod_id);
}
static float *grad_dev(bench *b, int i) {
    return i < b->nparams ? cd_unet_cuda_grad_dev(b->gu, i) : b->d_rowgrad;
}
static int64_t numel(bench *b, int i) { return i < b->nparams ? b->params[i].numel : b->C; }

// One optimizer step (one micro-batch): see the file comment.
static int train_step(bench *b, int uncached, double *loss) {
    CD_TRY(inputs(b, uncached));
    CD_TRY(cd_clip_text_cuda_forward(b->gt, b->d_ctx, b->ids, b->B, b->L, 1));
    CD_TRY(cd_unet_cuda_forward_train(b->gu, b->d_pred, b->d_zt, b->d_tf, b->d_ctx, b->B, b->h, b->w, b->L));
    *loss = cd_cuda_mse_fwd_bwd(b->d_dpred, b->d_pred, b->d_target, NULL, b->n, 1.f / (float)b->n, b->st) / (double)b->n;
    CD_TRY(cd_unet_cuda_backward(b->gu, b->d_dctx, b->d_dpred));
    CD_TRY(cd_clip_text_cuda_backward_rows(b->gt, b->d_dctx, 1, &b->mod_id, b->d_rowgrad));
    double s = 0;
    for (int i = 0; i <= b->nparams; i++) s += cd_cuda_sumsq(grad_dev(b, i), numel(b, i), b->st);
    double norm = sqrt(s), coef = 1.0 / (norm + 1e-6);
    if (!isfinite(norm)) return cd_err("gradient norm %g", norm);
    b->adam_step++;
    int64_t off = 0;
    for (int i = 0; i <= b->nparams; i++) {
        if (coef < 1.0) cd_cuda_scale(grad_dev(b, i), (float)coef, numel(b, i), b->st);
        cd_cuda_adamw_step(param_dev(b, i), grad_dev(b, i), b->d_adam + off, b->d_adam + b->total + off, numel(b, i),
                           1e-5f, 0.9f, 0.999f, 1e-8f, 1e-2f, (int)b->adam_step, b->st);
        off += numel(b, i);
    }
    CD_TRY(cd_unet_cuda_params_changed(b->gu));
    CD_TRY(cd_clip_text_cuda_rows_changed(b->gt));
    cd_unet_cuda_zero_grad(b->gu);
    CD_TRY(cd_cuda_memset(b->d_rowgrad, 0, sizeof(float) * b->C, b->st));
    CD_TRY(cd_cuda_sync(b->st));
    if (cd_cuda_status()) return cd_errctx("training step");
    return isfinite(*loss) ? 0 : cd_err("loss is %g", *loss);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct { double ms, flops, flops_counted, peak, planned, loss; } result;

static int measure(bench *b, const opts *o, int uncached, result *r) {
    double loss = 0, *t = malloc(sizeof(double) * (o->iters > 0 ? o->iters : 1));
    // a fresh training state (the previous configuration's activation heap released), so that
    // the peak is this configuration's: weights, optimizer, this heap, the other networks
    cd_unet_cuda_train_free(b->gu);
    int rc = cd_unet_cuda_train_setup(b->gu) || cd_unet_cuda_params_changed(b->gu) || cd_cuda_sync(b->st);
    cd_cuda_alloc_reset_peak();
    for (int i = 0; i < o->warmup && !rc; i++) rc = train_step(b, uncached, &loss);
    for (int i = 0; i < o->iters && !rc; i++) {
        double t0 = now();
        rc = train_step(b, uncached, &loss);
        t[i] = (now() - t0) * 1e3;
    }
    if (!rc) {
        qsort(t, o->iters, sizeof(double), cmp_d);
        r->ms = t[o->iters / 2];
        r->loss = loss;
        r->flops_counted = cd_unet_cuda_train_flops(b->gu) + cd_clip_text_cuda_flops(b->gt) +
                           (uncached ? vae_encoder_flops(&b->vcfg, b->B, b->H, b->W) : 0);
        int64_t peak = 0;
        cd_cuda_alloc_bytes(&peak);
        r->peak = (double)peak;
    }
    free(t);
    return rc;
}

static void parse_args(opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->iters = 10;
    o->warmup = 3;
    o->uncached = o->ckpt = o->det = 1;
    o->time_limit = 150;
    snprintf(o->prec, sizeof o->prec, "bf16,tf32");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--tiny")) o->tiny = 1;
        else if (!strcmp(a, "--no-uncached")) o->uncached = 0;
        else if (!strcmp(a, "--no-ckpt")) o->ckpt = 0;
        else if (!strcmp(a, "--no-det")) o->det = 0;
        else if (!strcmp(a, "--iters")) { o->iters = atoi(v); i++; }
        else if (!strcmp(a, "--warmup")) { o->warmup = atoi(v); i++; }
        else if (!strcmp(a, "--time-limit")) { o->time_limit = atof(v); i++; }
        else if (!strcmp(a, "--prec")) { snprintf(o->prec, sizeof o->prec, "%s", v); i++; }
        else fprintf(stderr, "bench_train_cuda: unknown argument %s (see the file comment)\n", a);
    }
    if (o->iters < 1) o->iters = 1;
}

// fp16 times the step without the trainer's loss scaling (one host multiply per micro-batch).
static int set_precision(bench *b, const char *p) {
    int prec;
    CD_TRY(cd_precision_parse(p, &prec));
    int bf = cd_precision_half(prec);
    // back to fp32 copies first: 16-bit copies are made in the format the process has then
    CD_TRY(cd_unet_cuda_set_bf16(b->gu, 0));
    CD_TRY(cd_clip_text_cuda_set_bf16(b->gt, 0));
    if (b->gv) CD_TRY(cd_vae_cuda_set_bf16(b->gv, 0));
    cd_precision_apply(prec);
    CD_TRY(cd_unet_cuda_set_bf16(b->gu, bf));
    CD_TRY(cd_unet_cuda_params_changed(b->gu));
    CD_TRY(cd_clip_text_cuda_set_bf16(b->gt, bf));
    if (b->gv) CD_TRY(cd_vae_cuda_set_bf16(b->gv, bf));
    return 0;
}

// One row of the table and its machine-readable line. useful: the FLOPs the rate is measured by.
static void print_result(const char *p, int det, int unc, int ck, const result *r, double useful, double gemm,
                         double ms_default) {
    double tfs = useful / r->ms / 1e9, pct = gemm > 0 ? 100 * tfs * 1e3 / gemm : 0;
    printf("| %s%s | %s | %s | %.2f | %.4g | %.1f%% | %.3f (%.3f counted) | %.2f / %.2f | %.1f |\n", p,
           det ? " deterministic" : "", unc ? "not cached" : "cached", ck ? "on" : "off", r->ms, tfs, pct,
           useful / 1e12, r->flops_counted / 1e12, r->planned / 1073741824.0, r->peak / 1073741824.0, 250 * r->ms / 1e3);
    printf("train_step prec=%s det=%d latents=%s ckpt=%d ms=%.3f tflops=%.4g pct_gemm=%.1f peak_gib=%.3f "
           "planned_gib=%.3f tflop=%.4g tflop_counted=%.4g s250=%.2f loss=%.4g", p, det,
           unc ? "uncached" : "cached", ck, r->ms, tfs, pct, r->peak / 1073741824.0, r->planned / 1073741824.0,
           useful / 1e12, r->flops_counted / 1e12, 250 * r->ms / 1e3, r->loss);
    if (det && ms_default > 0) printf(" vs_default=%.3f", r->ms / ms_default);
    printf("\n");
    fflush(stdout);
}

// Every configuration of one precision: rows of the table and machine-readable lines; then,
// unless --no-det, the cached step without checkpointing again in deterministic mode
// (cd_cuda_set_deterministic: the attention backward without float atomics), with its time
// relative to the default mode's.
static int run_precision(bench *b, const opts *o, const char *p, double gemm, double t_start) {
    if (set_precision(b, p)) { printf("| %s | FAILED: %s |\n", p, cd_errmsg()); return -1; }
    double base_flops = 0, base_ms = 0;   // the cached step without checkpointing (the model's work)
    int rc = 0;
    const int half = !strcmp(p, "bf16") || !strcmp(p, "fp16");
    for (int unc = 0; unc <= o->uncached; unc++) {
        if (unc && !b->gv) { printf("| %s | not cached | skipped: no VAE encoder on the device |\n", p); continue; }
        for (int ck = 0; ck <= o->ckpt; ck++) {
            if (now() - t_start > o->time_limit) {
                printf("| %s | %s | ckpt %s | skipped: --time-limit %.0f s reached |\n", p, unc ? "not cached" : "cached",
                       ck ? "on" : "off", o->time_limit);
                continue;
            }
            cd_unet_set_checkpointing(b->u, ck);
            result r = {0};
            r.planned = (double)cd_unet_cuda_train_plan(b->u, half, b->B, b->h, b->w, b->L, NULL);
            if (measure(b, o, unc, &r)) {
                printf("| %s | %s | %s | FAILED: %s |\n", p, unc ? "not cached" : "cached", ck ? "on" : "off", cd_errmsg());
                rc = -1;
                continue;
            }
            if (!ck && !unc) { base_flops = r.flops_counted; base_ms = r.ms; }
            double useful = base_flops > 0 ? base_flops + (unc ? vae_encoder_flops(&b->vcfg, b->B, b->H, b->W) : 0)
                                           : r.flops_counted;
            print_result(p, 0, unc, ck, &r, useful, gemm, 0);
        }
    }
    cd_unet_set_checkpointing(b->u, 0);
    if (o->det && base_ms > 0) {
        if (now() - t_start > o->time_limit) {
            printf("| %s deterministic | cached | off | skipped: --time-limit %.0f s reached |\n", p, o->time_limit);
            return rc;
        }
        cd_cuda_set_deterministic(1);
        result r = {0};
        r.planned = (double)cd_unet_cuda_train_plan(b->u, half, b->B, b->h, b->w, b->L, NULL);
        if (measure(b, o, 0, &r)) {
            printf("| %s deterministic | cached | off | FAILED: %s |\n", p, cd_errmsg());
            rc = -1;
        } else print_result(p, 1, 0, 0, &r, base_flops, gemm, base_ms);
        cd_cuda_set_deterministic(0);
    }
    return rc;
}

int main(int argc, char **argv) {
    opts o;
    parse_args(&o, argc, argv);
    char why[256] = "", dev[256] = "?";
    if (!cd_cuda_available(why, sizeof why)) { printf("bench_train_cuda: skipped: %s\n", why); return 0; }
    cd_cuda_device_name(dev, sizeof dev);
    double t0 = now();
    bench b;
    memset(&b, 0, sizeof b);
    if (build_models(&b, &o) || upload(&b) || buffers(&b)) {
        fprintf(stderr, "bench_train_cuda: %s\n", cd_errmsg());
        return 1;
    }
    printf("device %s; random %s models built and uploaded in %.1f s; trainable %lld values "
           "(%d UNet tensors + 1 modifier row)\n", dev, o.tiny ? "tiny-sd" : "SD1.5", now() - t0,
           (long long)b.total, b.nparams);
    double gemm = cd_cuda_gemm_rate_gflops(o.tiny ? 256 : 8192, 1, b.st);
    printf("bf16 GEMM rate (cuBLAS, %d^3, bf16 in, fp32 accumulate): %.4g TFLOP/s\n", o.tiny ? 256 : 8192, gemm / 1e3);
    printf("gemm_bf16_tflops %.4g\n", gemm / 1e3);
    printf("\n| precision | latents | grad. ckpt | ms/step | TFLOP/s | of GEMM rate | TFLOP/step | UNet heap planned / device peak GiB | 250 steps (s) |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    double ts = t0;   // --time-limit counts from the start, model building included
    int rc = 0;
    char list[64];
    snprintf(list, sizeof list, "%s", o.prec);
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save))
        if (run_precision(&b, &o, p, gemm, ts)) rc = 1;
    size_t used = 0, tot = 0;
    cd_cuda_mem_info(&used, &tot);
    printf("\nweights on the device: UNet %.2f GiB, text %.2f GiB; device memory in use %.1f of %.1f GiB\n",
           cd_unet_cuda_weight_bytes(b.gu) / 1073741824.0, cd_clip_text_cuda_weight_bytes(b.gt) / 1073741824.0,
           used / 1073741824.0, tot / 1073741824.0);
    printf("TFLOP/s = FLOPs of the step without checkpointing (UNet + text counters%s) / time; "
           "targets: >= 40%% of the GEMM rate, 250 steps < 10 s (H100)\n", b.gv ? " + VAE encoder by config" : "");
    cd_unet_cuda_train_free(b.gu);
    cd_unet_cuda_free(b.gu);
    cd_clip_text_cuda_free(b.gt);
    cd_vae_cuda_free(b.gv);
    float *dev_bufs[] = {b.d_pix, b.d_mean, b.d_logvar, b.d_zt, b.d_tf, b.d_target, b.d_pred, b.d_dpred,
                         b.d_ctx, b.d_dctx, b.d_rowgrad, b.d_adam};
    for (size_t i = 0; i < sizeof dev_bufs / sizeof *dev_bufs; i++) cd_cuda_free(dev_bufs[i]);
    if (b.st) cd_cuda_stream_destroy(b.st);
    return rc;
}
#else
int main(void) {
    (void)now;
    (void)vae_encoder_flops;
    printf("bench_train_cuda: skipped: built without CUDA (CUDA=0)\n");
    return 0;
}
#endif
