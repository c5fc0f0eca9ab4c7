// GPU benchmarks of the CUDA twins at Stable Diffusion 1.x shapes, each against a
// baseline measured in the same run: the cuBLAS bf16 GEMM rate (8192^3) as the ceiling,
// the fused attention against the unfused cuBLAS + softmax version, fp32 vs tf32 vs bf16
// convolutions. Prints one table (markdown); bench/gpu-check.sh saves it under
// bench/results/. Usage: bench_gpu [quick]   (quick: fewer repetitions)
#include "kernels/kernels_cuda.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef CD_CUDA
int main(void) {
    printf("bench_gpu: built without CUDA (CUDA=0); nothing to measure\n");
    return 0;
}
#else
static int g_quick;
static double g_gemm_bf16; // GFLOP/s ceiling

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef void (*BenchFn)(void *ctx);
// Mean milliseconds per call: 2 warm-ups, then repeats until ~150 ms (40 ms quick) or 200 calls.
static double timeit(BenchFn fn, void *ctx) {
    fn(ctx);
    fn(ctx);
    if (cd_cuda_sync(NULL)) return NAN;
    double budget = g_quick ? 0.04 : 0.15, t0 = now(), t;
    int reps = 0;
    do {
        fn(ctx);
        reps++;
        if (reps % 4 == 0 || reps < 4) cd_cuda_sync(NULL);
        t = now() - t0;
    } while (t < budget && reps < 200);
    if (cd_cuda_sync(NULL) || cd_cuda_status()) return NAN;
    return (now() - t0) * 1e3 / reps;
}

static void row(const char *op, const char *shape, double ms, double gflop, double gbytes, const char *note) {
    char rate[64] = "";
    if (gflop > 0 && ms > 0) snprintf(rate, sizeof rate, "%.1f TFLOP/s (%.0f%% of bf16 GEMM)", gflop / ms,
                                      g_gemm_bf16 > 0 ? 100.0 * gflop * 1e3 / ms / g_gemm_bf16 : 0);
    else if (gbytes > 0 && ms > 0) snprintf(rate, sizeof rate, "%.0f GB/s", gbytes / ms * 1e3);
    printf("| %-30s | %-26s | %9.3f | %-34s | %s |\n", op, shape, ms, rate, note ? note : "");
    fflush(stdout);
}

static float *drand_buf(int64_t n, float amp) {
    float *h = malloc(sizeof(float) * n), *d = cd_cuda_malloc(sizeof(float) * n);
    uint32_t s = (uint32_t)n * 2654435761u + 7;
    for (int64_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; h[i] = amp * ((s >> 8) / 8388608.f - 1.f); }
    if (d) cd_cuda_memcpy_h2d(d, h, sizeof(float) * n, NULL);
    free(h);
    return d;
}

// ---- attention ----------------------------------------------------------------------------
typedef struct {
    int B, H, Nq, Nk, D;
    float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
    uint16_t *qb, *kb, *vb, *ob;
} Attn;
static void at_bf16(void *c) {
    Attn *a = c;
    cd_cuda_attention_fwd_bf16(a->ob, 1, a->lse, a->qb, a->kb, a->vb, a->B, a->H, a->Nq, a->Nk, a->D, 1.f / sqrtf(a->D), NULL);
}
static void at_bf16_fb(void *c) {
    Attn *a = c;
    at_bf16(c);
    cd_cuda_attention_bwd_bf16(a->dq, a->dk, a->dv, a->qb, a->qb, a->kb, a->vb, a->ob, a->lse, a->B, a->H, a->Nq, a->Nk,
                               a->D, 1.f / sqrtf(a->D), a->Nk == 77, NULL);
}
static void at_fwd(void *c) { Attn *a = c; cd_cuda_attention_fwd(a->o, a->lse, a->q, a->k, a->v, a->B, a->H, a->Nq, a->Nk, a->D, 1.f / sqrtf(a->D), NULL); }
static void at_fb(void *c) {
    Attn *a = c;
    at_fwd(c);
    cd_cuda_attention_bwd(a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->o, a->lse, a->B, a->H, a->Nq, a->Nk, a->D,
                          1.f / sqrtf(a->D), a->Nk == 77, NULL);
}
static void at_nfwd(void *c) { Attn *a = c; cd_cuda_attention_naive_fwd(a->o, a->lse, a->q, a->k, a->v, a->B, a->H, a->Nq, a->Nk, a->D, 1.f / sqrtf(a->D), NULL); }
static void at_nfb(void *c) {
    Attn *a = c;
    at_nfwd(c);
    cd_cuda_attention_naive_bwd(a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->B, a->H, a->Nq, a->Nk, a->D,
                                1.f / sqrtf(a->D), a->Nk == 77, NULL);
}

static void bench_attention(int B, int H, int Nq, int Nk, int D, int naive) {
    Attn a = {B, H, Nq, Nk, D};
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    a.q = drand_buf(nq, 2); a.k = drand_buf(nk, 2); a.v = drand_buf(nk, 1); a.dout = drand_buf(nq, 1);
    a.o = cd_cuda_malloc(4 * nq); a.lse = cd_cuda_malloc(4 * (int64_t)B * H * Nq);
    a.dq = cd_cuda_malloc(4 * nq); a.dk = cd_cuda_malloc(4 * nk); a.dv = cd_cuda_malloc(4 * nk);
    double fwd_gf = 4.0 * B * H * (double)Nq * Nk * D / 1e9; // QK^T + PV
    char shape[64];
    snprintf(shape, sizeof shape, "B%d H%d %dx%d D%d", B, H, Nq, Nk, D);
    a.qb = cd_cuda_malloc(2 * nq); a.kb = cd_cuda_malloc(2 * nk); a.vb = cd_cuda_malloc(2 * nk); a.ob = cd_cuda_malloc(2 * nq);
    cd_cuda_f32_to_bf16(a.qb, a.q, nq, NULL);
    cd_cuda_f32_to_bf16(a.kb, a.k, nk, NULL);
    cd_cuda_f32_to_bf16(a.vb, a.v, nk, NULL);
    double t1 = timeit(at_fwd, &a), t2 = timeit(at_fb, &a), t0 = timeit(at_bf16, &a);
    char note0[96];
    snprintf(note0, sizeof note0, "WMMA flash; %.2fx the fp32 fused fwd", t1 / t0);
    row("attention fused bf16 fwd", shape, t0, fwd_gf, 0, note0);
    double t0b = timeit(at_bf16_fb, &a);
    snprintf(note0, sizeof note0, "WMMA flash; %.2fx the fp32 fused fwd+bwd", t2 / t0b);
    row("attention fused bf16 fwd+bwd", shape, t0b, 3.0 * fwd_gf, 0, note0);
    row("attention fused fp32 fwd", shape, t1, fwd_gf, 0, "flash, no NxN in memory");
    row("attention fused fp32 fwd+bwd", shape, t2, 3.0 * fwd_gf, 0, "bwd counted as 2x fwd");
    if (naive) {
        double t3 = timeit(at_nfwd, &a), t4 = timeit(at_nfb, &a);
        char note[96];
        snprintf(note, sizeof note, "cuBLAS+softmax, fused is %.2fx", t3 / t1);
        row("attention naive fp32 fwd", shape, t3, fwd_gf, 0, note);
        snprintf(note, sizeof note, "cuBLAS+softmax, fused is %.2fx", t4 / t2);
        row("attention naive fp32 fwd+bwd", shape, t4, 3.0 * fwd_gf, 0, note);
        cd_cuda_set_tf32(1);
        double t5 = timeit(at_nfb, &a);
        cd_cuda_set_tf32(0);
        snprintf(note, sizeof note, "cuBLAS tf32, fused fp32 is %.2fx", t5 / t2);
        row("attention naive tf32 fwd+bwd", shape, t5, 3.0 * fwd_gf, 0, note);
    }
    void *bufs[] = {a.q, a.k, a.v, a.dout, a.o, a.lse, a.dq, a.dk, a.dv, a.qb, a.kb, a.vb, a.ob};
    for (int i = 0; i < 13; i++) cd_cuda_free(bufs[i]);
}

// ---- groupnorm, layernorm, geglu ------------------------------------------------------------------
typedef struct { int n, c, hw; float *x, *y, *g, *b, *m, *r, *dy, *dx, *dg, *db; } Norm;
static void gn_fwd(void *p) { Norm *a = p; cd_cuda_groupnorm_fwd(a->y, a->m, a->r, a->x, a->g, a->b, a->n, a->c, a->hw, 32, 1e-5f, 1, NULL); }
static void gn_fwd_bf(void *p) {
    Norm *a = p;
    cd_cuda_groupnorm_fwd_bf16((uint16_t *)a->dx, a->m, a->r, (const uint16_t *)a->x, a->g, a->b, a->n, a->c, a->hw, 32,
                               1e-5f, 1, NULL);
}
static void gn_bwd(void *p) { Norm *a = p; cd_cuda_groupnorm_bwd(a->dx, a->dg, a->db, a->dy, a->x, a->m, a->r, a->g, a->b, a->n, a->c, a->hw, 32, 1, NULL); }
static void ln_fwd(void *p) { Norm *a = p; cd_cuda_layernorm_fwd(a->y, a->m, a->r, a->x, a->g, a->b, a->n, a->c, 1e-5f, NULL); }
static void ln_bwd(void *p) { Norm *a = p; cd_cuda_layernorm_bwd(a->dx, a->dg, a->db, a->dy, a->x, a->m, a->r, a->g, a->n, a->c, NULL); }
static void gg_fwd(void *p) { Norm *a = p; cd_cuda_bias_geglu_fwd(a->y, a->x, a->b, a->n, a->c, NULL); }
static void gg_bwd(void *p) { Norm *a = p; cd_cuda_geglu_bwd(a->dx, a->dy, a->x, a->n, a->c, NULL); }

static void bench_norms(void) {
    Norm a;
    int64_t big = (int64_t)8192 * 2560; // geglu input, the largest
    a.x = drand_buf(big, 2); a.y = cd_cuda_malloc(4 * big); a.dy = drand_buf(big, 1); a.dx = cd_cuda_malloc(4 * big);
    a.g = drand_buf(2560, 1); a.b = drand_buf(2560, 1); a.dg = drand_buf(2560, 1); a.db = drand_buf(2560, 1);
    a.m = cd_cuda_malloc(4 * 8192); a.r = cd_cuda_malloc(4 * 8192);
    int shapes[3][2] = {{320, 4096}, {640, 1024}, {1280, 256}};
    for (int i = 0; i < 3; i++) {
        a.n = 2; a.c = shapes[i][0]; a.hw = shapes[i][1];
        double mb = 2.0 * a.c * a.hw * 4 / 1e9, sh;
        char s[64];
        snprintf(s, sizeof s, "2x%dx%d G32", a.c, a.hw);
        sh = timeit(gn_fwd, &a);
        row("groupnorm+silu fwd", s, sh, 0, 2 * mb, "GB/s = 1 read + 1 write");
        sh = timeit(gn_fwd_bf, &a);
        row("groupnorm+silu fwd bf16", s, sh, 0, mb, "bf16 in/out; GB/s = 1 read + 1 write");
        sh = timeit(gn_bwd, &a);
        row("groupnorm+silu bwd", s, sh, 0, 3 * mb, "GB/s = 2 reads + 1 write");
    }
    a.n = 8192; a.c = 320;
    double mb = 8192.0 * 320 * 4 / 1e9;
    row("layernorm fwd", "8192x320", timeit(ln_fwd, &a), 0, 2 * mb, "");
    row("layernorm bwd", "8192x320", timeit(ln_bwd, &a), 0, 3 * mb, "");
    a.n = 8192; a.c = 1280;
    mb = 8192.0 * 1280 * 4 / 1e9;
    row("bias+geglu fwd", "8192x2560->1280", timeit(gg_fwd, &a), 0, 3 * mb, "");
    row("geglu bwd", "8192x1280", timeit(gg_bwd, &a), 0, 5 * mb, "");
    float *bufs[] = {a.x, a.y, a.dy, a.dx, a.g, a.b, a.dg, a.db, a.m, a.r};
    for (int i = 0; i < 10; i++) cd_cuda_free(bufs[i]);
}

// ---- convolution -------------------------------------------------------------------------------
typedef struct { int n, cin, h, w, cout; float *x, *W, *b, *y, *dy, *dx, *dW, *db; uint16_t *xb, *Wb, *yb; } Conv;
static void cv_fwd(void *p) { Conv *a = p; cd_cuda_conv2d_fwd(a->y, a->x, a->W, a->b, a->n, a->cin, a->h, a->w, a->cout, 3, 1, 1, NULL); }
static void cv_bwd(void *p) { Conv *a = p; cd_cuda_conv2d_bwd(a->dx, a->dW, a->db, a->dy, a->x, a->W, a->n, a->cin, a->h, a->w, a->cout, 3, 1, 1, NULL); }
static void cv_bf(void *p) { Conv *a = p; cd_cuda_conv2d_fwd_bf16(a->yb, a->xb, a->Wb, a->b, a->n, a->cin, a->h, a->w, a->cout, 3, 1, 1, NULL); }

static void bench_conv(int n, int cin, int h, int w, int cout) {
    Conv a = {n, cin, h, w, cout};
    int64_t nx = (int64_t)n * cin * h * w, ny = (int64_t)n * cout * h * w, nw = (int64_t)cout * cin * 9;
    a.x = drand_buf(nx, 1); a.W = drand_buf(nw, 0.1f); a.b = drand_buf(cout, 1); a.y = cd_cuda_malloc(4 * ny);
    a.dy = drand_buf(ny, 1); a.dx = cd_cuda_malloc(4 * nx); a.dW = drand_buf(nw, 1); a.db = drand_buf(cout, 1);
    a.xb = cd_cuda_malloc(2 * nx); a.Wb = cd_cuda_malloc(2 * nw); a.yb = cd_cuda_malloc(2 * ny);
    cd_cuda_f32_to_bf16(a.xb, a.x, nx, NULL);
    cd_cuda_f32_to_bf16(a.Wb, a.W, nw, NULL);
    double gf = 2.0 * ny * cin * 9 / 1e9;
    char s[64];
    snprintf(s, sizeof s, "%dx%dx%dx%d->%d k3", n, cin, h, w, cout);
    row("conv fp32 (FMA) fwd", s, timeit(cv_fwd, &a), gf, 0, "cuDNN");
    row("conv fp32 (FMA) bwd data+filter", s, timeit(cv_bwd, &a), 2 * gf, 0, "cuDNN");
    cd_cuda_set_tf32(1);
    row("conv tf32 fwd", s, timeit(cv_fwd, &a), gf, 0, "cuDNN");
    row("conv tf32 bwd data+filter", s, timeit(cv_bwd, &a), 2 * gf, 0, "cuDNN");
    cd_cuda_set_tf32(0);
    row("conv bf16 fwd", s, timeit(cv_bf, &a), gf, 0, "cuDNN NCHW bf16");
    void *bufs[] = {a.x, a.W, a.b, a.y, a.dy, a.dx, a.dW, a.db, a.xb, a.Wb, a.yb};
    for (int i = 0; i < 11; i++) cd_cuda_free(bufs[i]);
}

// ---- SD1.5 UNet forward as an op sequence (proxy) -----------------------------------------------
// The op list and shapes of diffusers' UNet2DConditionModel (SD1.5: 320/640/1280/1280, 2 layers
// per block, 8 heads, context 77 x 768) run through the twins with random weights, in fp32,
// tf32 or bf16 (bf16 activations and weights, fp32 norms/softmax/accumulation): what a UNet
// forward costs with these kernels until model/ has a GPU path. Not a numerical check.
// Batch 2 at 64x64 is one classifier-free-guidance sampling step (cond + uncond).
typedef struct { char *base; size_t off, cap, peak; double flop; float *rnd; uint16_t *rndb; int bf; } Arena;
static Arena U;
static void *ua(int64_t n) { // n elements of the current precision, 256-byte aligned
    size_t b = ((size_t)n * (U.bf ? 2 : 4) + 255) & ~(size_t)255;
    if (U.off + b > U.cap) { fprintf(stderr, "unet proxy: arena full\n"); exit(1); }
    void *p = U.base + U.off;
    U.off += b;
    if (U.off > U.peak) U.peak = U.off;
    return p;
}
#define UW ((const void *)(U.bf ? (const void *)U.rndb : (const void *)U.rnd)) // weights
#define UF ((const float *)U.rnd)                                                 // fp32 params
enum { UB = 2, CTX = 77, CTXD = 768 };
static void *g_ctx;
static const float *g_temb;

static void p_conv(void *y, const void *x, int cin, int h, int cout, int k, int s) {
    int p = k / 2, ho = (h + 2 * p - k) / s + 1;
    if (U.bf) cd_cuda_conv2d_fwd_bf16(y, x, UW, UF, UB, cin, h, h, cout, k, s, p, NULL);
    else cd_cuda_conv2d_fwd(y, x, UW, UF, UB, cin, h, h, cout, k, s, p, NULL);
    U.flop += 2.0 * UB * cout * ho * ho * cin * k * k;
}
static void p_linear(void *y, const void *x, int n, int in, int out, int bias) {
    if (U.bf) cd_cuda_linear_fwd_bf16_out(y, x, UW, bias ? UF : NULL, n, in, out, NULL);
    else cd_cuda_linear_fwd(y, x, UW, bias ? UF : NULL, n, in, out, NULL);
    U.flop += 2.0 * n * in * out;
}
static void p_gn(void *y, const void *x, int c, int hw, float eps, int silu) {
    if (U.bf) cd_cuda_groupnorm_fwd_bf16(y, NULL, NULL, x, UF, UF, UB, c, hw, 32, eps, silu, NULL);
    else cd_cuda_groupnorm_fwd(y, NULL, NULL, x, UF, UF, UB, c, hw, 32, eps, silu, NULL);
}
static void p_ln(void *y, const void *x, int n, int c) {
    if (U.bf) cd_cuda_layernorm_fwd_bf16(y, NULL, NULL, x, UF, UF, n, c, 1e-5f, NULL);
    else cd_cuda_layernorm_fwd(y, NULL, NULL, x, UF, UF, n, c, 1e-5f, NULL);
}
static void p_add(void *y, const void *a, const void *b, int64_t n) {
    if (U.bf) cd_cuda_add_bf16(y, a, b, n, NULL);
    else cd_cuda_add(y, a, b, n, NULL);
}
static void p_bias_nc(void *y, int c, int hw) {
    if (U.bf) cd_cuda_add_bias_nc_bf16(y, g_temb, UB, c, hw, NULL);
    else cd_cuda_add_bias_nc(y, g_temb, UB, c, hw, NULL);
}
static void p_t(void *y, const void *x, int c, int hw, int to_nhwc) {
    if (U.bf) (to_nhwc ? cd_cuda_nchw_to_nhwc_bf16 : cd_cuda_nhwc_to_nchw_bf16)(y, x, UB, c, hw, NULL);
    else (to_nhwc ? cd_cuda_nchw_to_nhwc : cd_cuda_nhwc_to_nchw)(y, x, UB, c, hw, NULL);
}
static void *u_resnet(const void *x, int cin, int cout, int h) {
    int64_t hw = (int64_t)h * h;
    void *t1 = ua(UB * cin * hw), *t2 = ua(UB * cout * hw), *t3 = ua(UB * cout * hw), *y = ua(UB * cout * hw);
    p_gn(t1, x, cin, (int)hw, 1e-5f, 1);
    p_conv(t2, t1, cin, h, cout, 3, 1);
    p_bias_nc(t2, cout, (int)hw);
    p_gn(t3, t2, cout, (int)hw, 1e-5f, 1);
    p_conv(t2, t3, cout, h, cout, 3, 1);
    const void *sc = x;
    if (cin != cout) { p_conv(t3, x, cin, h, cout, 1, 1); sc = t3; }
    p_add(y, t2, sc, UB * cout * hw);
    return y;
}
// h[n, C] += out_proj(attention(q = x Wq, k/v from src (context rows) or from x (self)))
static void u_attn(void *h, const void *x, const void *src, int n, int C, int Nk, int hw, int D) {
    int H = C / D;
    void *q = ua((int64_t)n * C), *k = ua((int64_t)UB * Nk * C), *v = ua((int64_t)UB * Nk * C), *o = ua((int64_t)n * C);
    p_linear(q, x, n, C, C, 0);
    int kin = src ? CTXD : C;
    p_linear(k, src ? src : x, UB * Nk, kin, C, 0);
    p_linear(v, src ? src : x, UB * Nk, kin, C, 0);
    float sc = 1.f / sqrtf((float)D);
    if (U.bf) cd_cuda_attention_fwd_bf16(o, 1, NULL, q, k, v, UB, H, hw, Nk, D, sc, NULL);
    else cd_cuda_attention_fwd(o, NULL, q, k, v, UB, H, hw, Nk, D, sc, NULL);
    U.flop += 4.0 * UB * H * (double)hw * Nk * D;
    p_linear(q, o, n, C, C, 1);
    p_add(h, h, q, (int64_t)n * C);
}
static void *u_transformer(const void *x, int C, int hsz) {
    int hw = hsz * hsz, n = UB * hw, D = C / 8;
    void *t = ua((int64_t)n * C), *t2 = ua((int64_t)n * C), *h = ua((int64_t)n * C), *f = ua((int64_t)n * 8 * C);
    void *g = ua((int64_t)n * 4 * C), *y = ua((int64_t)n * C);
    p_gn(t, x, C, hw, 1e-6f, 0);
    p_conv(t2, t, C, hsz, C, 1, 1); // proj_in (1x1 conv in SD1.x)
    p_t(h, t2, C, hw, 1);
    p_ln(t, h, n, C);
    u_attn(h, t, NULL, n, C, hw, hw, D);
    p_ln(t, h, n, C);
    u_attn(h, t, g_ctx, n, C, CTX, hw, D);
    p_ln(t, h, n, C);
    p_linear(f, t, n, C, 8 * C, 0);
    if (U.bf) cd_cuda_bias_geglu_fwd_bf16(g, f, UF, n, 4 * C, NULL);
    else cd_cuda_bias_geglu_fwd(g, f, UF, n, 4 * C, NULL);
    p_linear(t, g, n, 4 * C, C, 1);
    p_add(h, h, t, (int64_t)n * C);
    p_t(t, h, C, hw, 0);
    p_conv(t2, t, C, hsz, C, 1, 1); // proj_out
    p_add(y, t2, x, (int64_t)n * C);
    return y;
}
static void unet_forward(void *unused) {
    (void)unused;
    size_t keep = U.off;
    U.flop = 0;
    static const int ch[4] = {320, 640, 1280, 1280};
    void *skips[12];
    int skc[12], ns = 0, h = 64, c = 320;
    void *x = ua(UB * 4 * 64 * 64), *cur = ua(UB * 320 * 64 * 64);
    cd_cuda_memcpy_d2d(x, UW, (U.bf ? 2 : 4) * UB * 4 * 64 * 64, NULL);
    p_conv(cur, x, 4, 64, 320, 3, 1);
    skips[ns] = cur; skc[ns++] = c;
    for (int b = 0; b < 4; b++) {
        for (int l = 0; l < 2; l++) {
            cur = u_resnet(cur, c, ch[b], h);
            c = ch[b];
            if (b < 3) cur = u_transformer(cur, c, h);
            skips[ns] = cur; skc[ns++] = c;
        }
        if (b < 3) {
            void *d = ua(UB * c * (h / 2) * (h / 2));
            p_conv(d, cur, c, h, c, 3, 2);
            cur = d; h /= 2;
            skips[ns] = cur; skc[ns++] = c;
        }
    }
    cur = u_resnet(cur, 1280, 1280, h);
    cur = u_transformer(cur, 1280, h);
    cur = u_resnet(cur, 1280, 1280, h);
    for (int b = 0; b < 4; b++) {
        int co = ch[3 - b];
        for (int l = 0; l < 3; l++) {
            int cs = skc[--ns];
            void *cat = ua((int64_t)UB * (c + cs) * h * h);
            if (U.bf) cd_cuda_concat_c_bf16(cat, cur, skips[ns], UB, c, cs, h * h, NULL);
            else cd_cuda_concat_c(cat, cur, skips[ns], UB, c, cs, h * h, NULL);
            cur = u_resnet(cat, c + cs, co, h);
            c = co;
            if (b > 0) cur = u_transformer(cur, c, h);
        }
        if (b < 3) {
            void *up = ua((int64_t)UB * c * 4 * h * h), *o = ua((int64_t)UB * c * 4 * h * h);
            if (U.bf) cd_cuda_upsample2x_fwd_bf16(up, cur, UB, c, h, h, NULL);
            else cd_cuda_upsample2x_fwd(up, cur, UB, c, h, h, NULL);
            h *= 2;
            p_conv(o, up, c, h, c, 3, 1);
            cur = o;
        }
    }
    void *t = ua(UB * 320 * 64 * 64), *out = ua(UB * 4 * 64 * 64);
    p_gn(t, cur, 320, 4096, 1e-5f, 1);
    p_conv(out, t, 320, 64, 4, 3, 1);
    U.off = keep; // activations are dead after the call; the next forward reuses the arena
}

static void bench_unet_proxy(void) {
    U.cap = (size_t)4 << 30; // the fp32 forward needs ~2.5 GiB (no buffer reuse)
    U.base = cd_cuda_malloc(U.cap);
    if (!U.base) { printf("| UNet proxy | - | - | - | could not allocate 4 GiB |\n"); return; }
    const int64_t nr = (int64_t)1 << 25; // 32M >= the largest weight (1280x2560x3x3)
    U.rnd = drand_buf(nr, 0.05f);
    U.rndb = cd_cuda_malloc(2 * nr);
    if (!U.rnd || !U.rndb) return;
    cd_cuda_f32_to_bf16(U.rndb, U.rnd, nr, NULL);
    g_temb = U.rnd;
    const char *names[3] = {"UNet fwd proxy fp32 (SD1.5)", "UNet fwd proxy tf32 (SD1.5)", "UNet fwd proxy bf16 (SD1.5)"};
    for (int mode = 0; mode < 3; mode++) {
        U.off = U.peak = 0;
        U.bf = mode == 2;
        cd_cuda_set_tf32(mode == 1);
        g_ctx = ua((int64_t)UB * CTX * CTXD);
        cd_cuda_memcpy_d2d(g_ctx, UW, (U.bf ? 2 : 4) * UB * CTX * CTXD, NULL);
        double ms = timeit(unet_forward, NULL);
        char note[160];
        snprintf(note, sizeof note, "proxy, random weights; %.3f TFLOP; = %.1f CFG it/s at 512; %.2f GiB activations",
                 U.flop / 1e12, 1e3 / ms, U.peak / 1073741824.0);
        row(names[mode], "B2 4x64x64, ctx 77x768", ms, U.flop / 1e9, 0, note);
    }
    cd_cuda_set_tf32(0);
    U.bf = 0;
    size_t used = 0, tot = 0;
    cd_cuda_mem_info(&used, &tot);
    printf("| device memory in use | | | %.1f GiB of %.1f | arena 4 GiB incl. |\n", used / 1073741824.0, tot / 1073741824.0);
    cd_cuda_free(U.rnd);
    cd_cuda_free(U.rndb);
    cd_cuda_free(U.base);
}

int main(int argc, char **argv) {
    g_quick = argc > 1 && !strcmp(argv[1], "quick");
    int only_unet = argc > 1 && !strcmp(argv[1], "unet");
    char why[256], dev[256];
    if (!cd_cuda_available(why, sizeof why)) {
        printf("bench_gpu: %s\n", why);
        return 0;
    }
    cd_cuda_device_name(dev, sizeof dev);
    printf("device: %s\n\n", dev);
    printf("| %-30s | %-26s | %9s | %-34s | %s |\n", "op", "shape", "ms", "rate", "note");
    printf("|---|---|---|---|---|\n");
    g_gemm_bf16 = cd_cuda_gemm_rate_gflops(8192, 1, NULL);
    if (only_unet) {
        bench_unet_proxy();
        return 0;
    }
    row("cuBLAS GEMM bf16 (ceiling)", "8192^3", 2.0 * 8192.0 * 8192 * 8192 / g_gemm_bf16 / 1e6,
        2.0 * 8192.0 * 8192 * 8192 / 1e9, 0, "fp32 accumulate");
    double r32 = cd_cuda_gemm_rate_gflops(4096, 0, NULL);
    row("cuBLAS GEMM fp32", "4096^3", 2.0 * 4096.0 * 4096 * 4096 / r32 / 1e6, 2.0 * 4096.0 * 4096 * 4096 / 1e9, 0, "");
    cd_cuda_set_tf32(1);
    double rtf = cd_cuda_gemm_rate_gflops(8192, 0, NULL);
    cd_cuda_set_tf32(0);
    row("cuBLAS GEMM tf32", "8192^3", 2.0 * 8192.0 * 8192 * 8192 / rtf / 1e6, 2.0 * 8192.0 * 8192 * 8192 / 1e9, 0, "");
    bench_attention(2, 8, 4096, 4096, 40, 1);
    bench_attention(2, 8, 4096, 77, 40, 1);
    bench_attention(2, 8, 1024, 1024, 80, 1);
    bench_attention(2, 8, 256, 256, 160, 0);
    bench_attention(2, 5, 4096, 4096, 64, 0);
    bench_norms();
    bench_conv(2, 320, 64, 64, 320);
    bench_conv(2, 1280, 16, 16, 1280);
    printf("| UNet forward (model/, SD1.5) | - | - | - | no GPU path in model/ yet; see `bench_gpu unet` |\n");
    if (cd_cuda_status()) printf("\nbench_gpu: some op failed: %s\n", "see the messages above");
    return 0;
}
#endif
