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

int main(int argc, char **argv) {
    g_quick = argc > 1 && !strcmp(argv[1], "quick");
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
    printf("| UNet forward (SD1.5, 2x4x64x64) | - | - | - | no GPU path in model/ yet |\n");
    if (cd_cuda_status()) printf("\nbench_gpu: some op failed: %s\n", "see the messages above");
    return 0;
}
#endif
