// Every CUDA twin (kernels/kernels_cuda.h) against its CPU reference (kernels/kernels.h) on
// Stable Diffusion shapes: fresh random inputs (seed printed; CD_TEST_SEED repeats a run),
// outputs poisoned with NaN before the op, guard bytes past every device buffer checked
// after it. Tolerances (max|gpu-cpu| / max|cpu|): fp32 1e-5, tf32 3e-4, bf16 1e-2, fp16 2e-3;
// NaN never passes. The 16-bit checks run twice: in bf16 (the default format) and, as the
// *_fp16 tests, in fp16 mode (cd_cuda_set_fp16(1), reset afterwards) on fp16-rounded inputs. Each compared tensor prints an "info:" line with its measured error.
// Without a GPU (or built with CUDA=0) every test prints SKIP. Runs under `make test-cuda`.
#include "tests/cuda_testlib.h"
#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
#include "core/half.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOL32 1e-5
// TF32 keeps 10 mantissa bits: each input is off by up to 2^-11 relative, a product by
// ~4e-4 rms, so on random data max|err| / max|ref| sits near 4e-4 whatever K is. The
// target 3e-4 is printed with each tf32 result; the test fails above 1e-3.
#define TOLTF 1e-3
#define TOLBF 1e-2
// fp16 keeps 11 significant bits (bf16 8): 8x finer rounding, so 2e-3 where bf16 has 1e-2.
#define TOLH 2e-3

#ifdef CD_CUDA
#define GUARD_BYTES 256
#define GUARD_BYTE 0x5A
#define MAXBUF 64
static void *g_bufs[MAXBUF];
static int g_nbuf;
static uint32_t g_seed;
// The 16-bit format the _bf16 checks run in is the process's mode (cd_cuda_get_fp16: 0 bf16,
// 1 fp16): the host rounding (ctl_round16, ctl_to16), the tolerance TOL16 and the names (T16)
// follow it.
#define FP16 cd_cuda_get_fp16()
#define TOL16 (FP16 ? TOLH : TOLBF)
// s with every "bf16" spelled "fp16" in fp16 mode (a static buffer: one use per call).
static const char *T16(const char *s) {
    static char buf[160];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *p = strstr(buf, "bf16"); p && FP16; p = strstr(p + 4, "bf16")) memcpy(p, "fp16", 4);
    return buf;
}

// Device buffer of `bytes` plus guard bytes; contents: host data (h), NaN poison (h == NULL).
static void *dbuf(const void *h, size_t bytes) {
    char *d = cd_cuda_malloc(bytes + GUARD_BYTES);
    if (!d) return NULL;
    if (h) cd_cuda_memcpy_h2d(d, h, bytes, NULL);
    else cd_cuda_memset(d, 0xFF, bytes, NULL); // 0xFFFFFFFF is a NaN in fp32, bf16 and fp16
    cd_cuda_memset(d + bytes, GUARD_BYTE, GUARD_BYTES, NULL);
    if (g_nbuf < MAXBUF) g_bufs[g_nbuf++] = d; // else leaked until exit (tests stay below)
    return d;
}
static float *din(const float *h, int64_t n) { return dbuf(h, sizeof(float) * n); }
static float *dout_(int64_t n) { return dbuf(NULL, sizeof(float) * n); }
static void free_all(void) {
    for (int i = 0; i < g_nbuf; i++) cd_cuda_free(g_bufs[i]);
    g_nbuf = 0;
}

// n random values in [-amp, amp), each call from the next seed.
static float *hrand(int64_t n, float amp) { return ctl_hrand(n, amp, g_seed++); }
static float *hcopy(const float *x, int64_t n) {
    float *y = cd_malloc(sizeof(float) * (n ? n : 1));
    memcpy(y, x, sizeof(float) * n);
    return y;
}

// Copies a device buffer back (bytes), checks its guard bytes and CUDA's error state.
static int fetch(const char *what, void *host, const void *dev, size_t bytes) {
    char *tmp = cd_malloc(bytes + GUARD_BYTES);
    int ok = cd_cuda_sync(NULL) == 0 && cd_cuda_memcpy_d2h(tmp, dev, bytes + GUARD_BYTES, NULL) == 0;
    if (!ok) { tl_fail(__FILE__, __LINE__, "%s: CUDA error: %s", what, cd_errmsg()); free(tmp); return -1; }
    for (size_t i = 0; i < GUARD_BYTES; i++)
        if ((unsigned char)tmp[bytes + i] != GUARD_BYTE) {
            tl_fail(__FILE__, __LINE__, "%s: guard byte %zu past the output was overwritten", what, i);
            ok = 0;
            break;
        }
    memcpy(host, tmp, bytes);
    free(tmp);
    if (cd_cuda_status() != 0) { tl_fail(__FILE__, __LINE__, "%s: op reported: %s", what, cd_errmsg()); ok = 0; }
    return ok ? 0 : -1;
}

// Fetches n floats of dev and compares them with ref; prints the error; fails the test.
static double cmp(const char *what, const float *dev, const float *ref, int64_t n, double tol) {
    float *got = cd_malloc(sizeof(float) * (n ? n : 1));
    double e = INFINITY;
    if (fetch(what, got, dev, sizeof(float) * n) == 0) e = tl_relerr(got, ref, n);
    printf("  info: %-34s relerr %.3e (tol %.0e)%s%s\n", what, e, tol, e <= tol ? "" : "  <-- FAIL",
           tol == TOLTF && e > 3e-4 && e <= tol ? "  (above the 3e-4 tf32 target)" : "");
    if (!(e <= tol)) tl_fail(__FILE__, __LINE__, "%s: relerr %.3e > %.0e", what, e, tol);
    free(got);
    return e;
}

// ---- GEMM and Linear -------------------------------------------------------------------
static void gemm_case(int ta, int tb, int M, int N, int K, int pad, float alpha, float beta, int tf32) {
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int64_t na = (int64_t)(ta ? K : M) * lda, nb = (int64_t)(tb ? N : K) * ldb, nc = (int64_t)M * ldc;
    float *A = hrand(na, 1), *B = hrand(nb, 1), *C = hrand(nc, 1), *Cr = hcopy(C, nc);
    // beta = 0 must not read C: poison it (when no padding columns have to stay intact)
    float *dA = din(A, na), *dB = din(B, nb), *dC = (beta == 0.f && pad == 0) ? dout_(nc) : din(C, nc);
    cd_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cr, ldc);
    cd_cuda_set_tf32(tf32);
    cd_cuda_gemm(ta, tb, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, ldc, NULL);
    cd_cuda_set_tf32(0);
    char name[96];
    snprintf(name, sizeof name, "gemm%s t%d%d %dx%dx%d", tf32 ? " tf32" : "", ta, tb, M, N, K);
    cmp(name, dC, Cr, nc, tf32 ? TOLTF : TOL32);
    free(A); free(B); free(C); free(Cr);
    free_all();
}

TEST(cuda_gemm_fp32) {
    gemm_case(0, 0, 333, 257, 320, 3, 1.f, 0.f, 0);
    gemm_case(1, 0, 200, 301, 77, 1, 0.5f, 1.f, 0);
    gemm_case(0, 1, 129, 65, 640, 0, 1.f, -0.5f, 0);
    gemm_case(1, 1, 96, 160, 33, 5, 2.f, 0.f, 0);
    gemm_case(0, 1, 8192, 320, 320, 0, 1.f, 0.f, 0);
}

TEST(cuda_gemm_tf32) {
    gemm_case(0, 0, 1024, 1280, 640, 0, 1.f, 0.f, 1);
    gemm_case(1, 0, 320, 768, 154, 0, 1.f, 1.f, 1);
}

// A 16-bit GEMM (the current format) against the fp32 CPU GEMM on the same inputs rounded to the
// format on the host (the GPU rounds the fp32 uploads itself); and the GPU's rounding itself
// against core/half.h's.
static void gemm16_case(void) {
    int M = 4096, N = 640, K = 320;
    float *A = hrand((int64_t)M * K, 1), *B = hrand((int64_t)K * N, 1), *C = cd_malloc(sizeof(float) * M * N);
    float *Ar = hcopy(A, (int64_t)M * K), *Br = hcopy(B, (int64_t)K * N);
    free(ctl_round16(Ar, (int64_t)M * K));
    free(ctl_round16(Br, (int64_t)K * N));
    cd_gemm(0, 0, M, N, K, 1.f, Ar, K, Br, N, 0.f, C, N);
    free(Ar); free(Br);
    float *dA = din(A, (int64_t)M * K), *dB = din(B, (int64_t)K * N), *dC = dout_((int64_t)M * N);
    uint16_t *hA = dbuf(NULL, 2 * (size_t)M * K), *hB = dbuf(NULL, 2 * (size_t)K * N);
    cd_cuda_f32_to_bf16(hA, dA, (int64_t)M * K, NULL);
    cd_cuda_f32_to_bf16(hB, dB, (int64_t)K * N, NULL);
    cd_cuda_gemm_bf16(0, 0, M, N, K, 1.f, hA, K, hB, N, 0.f, dC, N, 0, NULL);
    cmp(T16("gemm bf16 4096x640x320"), dC, C, (int64_t)M * N, TOL16);
    // the conversion itself is exact round-to-nearest-even
    uint16_t *got = cd_malloc(2 * (size_t)M * K);
    if (fetch("f32_to_bf16", got, hA, 2 * (size_t)M * K) == 0) {
        int64_t bad = 0;
        for (int64_t i = 0; i < (int64_t)M * K; i++) bad += got[i] != ctl_to16(A[i]);
        CHECKF(bad == 0, "f32_to_bf16 (%s): %lld of %lld values differ from core/half.h", FP16 ? "fp16" : "bf16",
               (long long)bad, (long long)M * K);
    }
    free(got); free(A); free(B); free(C);
    free_all();
}
TEST(cuda_gemm_bf16) { gemm16_case(); }
TEST(cuda_gemm_fp16) { cd_cuda_set_fp16(1); gemm16_case(); cd_cuda_set_fp16(0); }

static void linear_case(int n, int in, int out, int bias) {
    float *x = hrand((int64_t)n * in, 1), *W = hrand((int64_t)out * in, 0.1f), *b = bias ? hrand(out, 1) : NULL;
    float *dy = hrand((int64_t)n * out, 1), *dW = hrand((int64_t)out * in, 1), *db = hrand(out, 1);
    float *y = cd_malloc(sizeof(float) * n * out), *dx = cd_malloc(sizeof(float) * n * in);
    float *gx = din(x, (int64_t)n * in), *gW = din(W, (int64_t)out * in), *gb = bias ? din(b, out) : NULL;
    float *gy = dout_((int64_t)n * out), *gdy = din(dy, (int64_t)n * out), *gdx = dout_((int64_t)n * in);
    float *gdW = din(dW, (int64_t)out * in), *gdb = din(db, out);
    cd_linear_fwd(y, x, W, b, n, in, out);
    cd_linear_bwd(dx, dW, bias ? db : NULL, dy, x, W, n, in, out);
    cd_cuda_linear_fwd(gy, gx, gW, gb, n, in, out, NULL);
    cd_cuda_linear_bwd(gdx, gdW, bias ? gdb : NULL, gdy, gx, gW, n, in, out, NULL);
    char nm[96];
    snprintf(nm, sizeof nm, "linear %dx%d->%d y", n, in, out);
    cmp(nm, gy, y, (int64_t)n * out, TOL32);
    snprintf(nm, sizeof nm, "linear %dx%d->%d dx", n, in, out);
    cmp(nm, gdx, dx, (int64_t)n * in, TOL32);
    snprintf(nm, sizeof nm, "linear %dx%d->%d dW(+=)", n, in, out);
    cmp(nm, gdW, dW, (int64_t)out * in, TOL32);
    snprintf(nm, sizeof nm, "linear %dx%d->%d db(+=)", n, in, out);
    cmp(nm, gdb, db, out, TOL32);
    free(x); free(W); free(b); free(dy); free(dW); free(db); free(y); free(dx);
    free_all();
}

TEST(cuda_linear) {
    linear_case(4096, 320, 1280, 1);
    linear_case(154, 768, 320, 0);   // attn2.to_k on the text context (2 x 77 tokens)
    linear_case(2, 1280, 320, 1);    // time embedding projection
}

// ---- norms -----------------------------------------------------------------------------
static void layernorm_case(int n, int c) {
    int64_t nt = (int64_t)n * c;
    float *x = hrand(nt, 2), *g = hrand(c, 1), *b = hrand(c, 1), *dy = hrand(nt, 1);
    float *dg = hrand(c, 1), *db = hrand(c, 1);
    float *y = cd_malloc(4 * nt), *mean = cd_malloc(4 * n), *rstd = cd_malloc(4 * n), *dx = cd_malloc(4 * nt);
    float *gx = din(x, nt), *gg = din(g, c), *gb = din(b, c), *gdy = din(dy, nt), *gdg = din(dg, c), *gdb = din(db, c);
    float *gy = dout_(nt), *gm = dout_(n), *gr = dout_(n), *gdx = dout_(nt);
    cd_layernorm_fwd(y, mean, rstd, x, g, b, n, c, 1e-5f);
    cd_layernorm_bwd(dx, dg, db, dy, x, mean, rstd, g, n, c);
    cd_cuda_layernorm_fwd(gy, gm, gr, gx, gg, gb, n, c, 1e-5f, NULL);
    float *cm = din(mean, n), *cr = din(rstd, n); // backward on the CPU's statistics
    cd_cuda_layernorm_bwd(gdx, gdg, gdb, gdy, gx, cm, cr, gg, n, c, NULL);
    char nm[96];
    snprintf(nm, sizeof nm, "layernorm %dx%d y", n, c); cmp(nm, gy, y, nt, TOL32);
    snprintf(nm, sizeof nm, "layernorm %dx%d mean", n, c); cmp(nm, gm, mean, n, TOL32);
    snprintf(nm, sizeof nm, "layernorm %dx%d rstd", n, c); cmp(nm, gr, rstd, n, TOL32);
    snprintf(nm, sizeof nm, "layernorm %dx%d dx", n, c); cmp(nm, gdx, dx, nt, TOL32);
    snprintf(nm, sizeof nm, "layernorm %dx%d dg(+=)", n, c); cmp(nm, gdg, dg, c, TOL32);
    snprintf(nm, sizeof nm, "layernorm %dx%d db(+=)", n, c); cmp(nm, gdb, db, c, TOL32);
    free(x); free(g); free(b); free(dy); free(dg); free(db); free(y); free(mean); free(rstd); free(dx);
    free_all();
}

TEST(cuda_layernorm) {
    layernorm_case(8192, 320);
    layernorm_case(154, 768);
    layernorm_case(77, 1280);
}

static void groupnorm_case(int n, int c, int hw, int G, int silu) {
    int64_t nt = (int64_t)n * c * hw;
    float *x = hrand(nt, 3), *g = hrand(c, 1), *b = hrand(c, 1), *dy = hrand(nt, 1);
    for (int64_t i = 0; i < nt; i++) x[i] += 0.5f; // non-zero mean
    float *dg = hrand(c, 1), *db = hrand(c, 1);
    float *y = cd_malloc(4 * nt), *mean = cd_malloc(4 * n * G), *rstd = cd_malloc(4 * n * G), *dx = cd_malloc(4 * nt);
    float *gx = din(x, nt), *gg = din(g, c), *gb = din(b, c), *gdy = din(dy, nt), *gdg = din(dg, c), *gdb = din(db, c);
    float *gy = dout_(nt), *gm = dout_(n * G), *gr = dout_(n * G), *gdx = dout_(nt);
    cd_groupnorm_fwd(y, mean, rstd, x, g, b, n, c, hw, G, 1e-6f, silu);
    cd_groupnorm_bwd(dx, dg, db, dy, x, mean, rstd, g, b, n, c, hw, G, silu);
    cd_cuda_groupnorm_fwd(gy, gm, gr, gx, gg, gb, n, c, hw, G, 1e-6f, silu, NULL);
    float *cm = din(mean, n * G), *cr = din(rstd, n * G);
    cd_cuda_groupnorm_bwd(gdx, gdg, gdb, gdy, gx, cm, cr, gg, gb, n, c, hw, G, silu, NULL);
    char nm[96], tag[64];
    snprintf(tag, sizeof tag, "groupnorm%s %dx%dx%d", silu ? "+silu" : "", n, c, hw);
    snprintf(nm, sizeof nm, "%s y", tag); cmp(nm, gy, y, nt, TOL32);
    snprintf(nm, sizeof nm, "%s mean", tag); cmp(nm, gm, mean, n * G, TOL32);
    snprintf(nm, sizeof nm, "%s rstd", tag); cmp(nm, gr, rstd, n * G, TOL32);
    snprintf(nm, sizeof nm, "%s dx", tag); cmp(nm, gdx, dx, nt, TOL32);
    snprintf(nm, sizeof nm, "%s dg(+=)", tag); cmp(nm, gdg, dg, c, TOL32);
    snprintf(nm, sizeof nm, "%s db(+=)", tag); cmp(nm, gdb, db, c, TOL32);
    free(x); free(g); free(b); free(dy); free(dg); free(db); free(y); free(mean); free(rstd); free(dx);
    free_all();
}

TEST(cuda_groupnorm) {
    groupnorm_case(2, 320, 4096, 32, 1);
    groupnorm_case(2, 640, 1024, 32, 0);
    groupnorm_case(2, 1280, 64, 32, 1);
    groupnorm_case(1, 96, 49, 3, 1);
}

// ---- convolution -------------------------------------------------------------------------
static void conv_case(int n, int cin, int h, int w, int cout, int k, int s, int p, int tf32) {
    int ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    int64_t nx = (int64_t)n * cin * h * w, ny = (int64_t)n * cout * ho * wo, nw = (int64_t)cout * cin * k * k;
    float *x = hrand(nx, 1), *W = hrand(nw, 0.1f), *b = hrand(cout, 1), *dy = hrand(ny, 1);
    float *dW = hrand(nw, 1), *db = hrand(cout, 1), *y = cd_malloc(4 * ny), *dx = cd_malloc(4 * nx);
    float *gx = din(x, nx), *gW = din(W, nw), *gb = din(b, cout), *gdy = din(dy, ny), *gdW = din(dW, nw);
    float *gdb = din(db, cout), *gy = dout_(ny), *gdx = dout_(nx);
    cd_conv2d_fwd(y, x, W, b, n, cin, h, w, cout, k, s, p);
    cd_conv2d_bwd(dx, dW, db, dy, x, W, n, cin, h, w, cout, k, s, p);
    cd_cuda_set_tf32(tf32);
    cd_cuda_conv2d_fwd(gy, gx, gW, gb, n, cin, h, w, cout, k, s, p, NULL);
    cd_cuda_conv2d_bwd(gdx, gdW, gdb, gdy, gx, gW, n, cin, h, w, cout, k, s, p, NULL);
    cd_cuda_set_tf32(0);
    double tol = tf32 ? TOLTF : TOL32;
    char nm[96], tag[64];
    snprintf(tag, sizeof tag, "conv%s %dx%dx%dx%d->%d k%ds%dp%d", tf32 ? " tf32" : "", n, cin, h, w, cout, k, s, p);
    snprintf(nm, sizeof nm, "%s y", tag); cmp(nm, gy, y, ny, tol);
    snprintf(nm, sizeof nm, "%s dx", tag); cmp(nm, gdx, dx, nx, tol);
    snprintf(nm, sizeof nm, "%s dW(+=)", tag); cmp(nm, gdW, dW, nw, tol);
    snprintf(nm, sizeof nm, "%s db(+=)", tag); cmp(nm, gdb, db, cout, TOL32);
    free(x); free(W); free(b); free(dy); free(dW); free(db); free(y); free(dx);
    free_all();
}

TEST(cuda_conv) {
    conv_case(2, 320, 64, 64, 320, 3, 1, 1, 0);  // down_blocks.0 resnet conv
    conv_case(2, 4, 64, 64, 320, 3, 1, 1, 0);    // conv_in
    conv_case(2, 640, 32, 32, 640, 3, 2, 1, 0);  // downsampler
    conv_case(2, 960, 32, 32, 640, 1, 1, 0, 0);  // 1x1 shortcut
}

TEST(cuda_conv_tf32) {
    conv_case(2, 320, 64, 64, 320, 3, 1, 1, 1);
}

static void conv16_case(void) {
    int n = 2, cin = 320, h = 32, w = 32, cout = 640;
    int64_t nx = (int64_t)n * cin * h * w, ny = (int64_t)n * cout * h * w, nw = (int64_t)cout * cin * 9;
    float *x = hrand(nx, 1), *W = hrand(nw, 0.1f), *b = hrand(cout, 1), *y = cd_malloc(4 * ny);
    free(ctl_round16(x, nx));   // the CPU sees the inputs the GPU converts to
    free(ctl_round16(W, nw));
    cd_conv2d_fwd(y, x, W, b, n, cin, h, w, cout, 3, 1, 1);
    float *gx = din(x, nx), *gW = din(W, nw), *gb = din(b, cout), *gy = dout_(ny);
    uint16_t *bx = dbuf(NULL, 2 * nx), *bW = dbuf(NULL, 2 * nw), *by = dbuf(NULL, 2 * ny);
    cd_cuda_f32_to_bf16(bx, gx, nx, NULL);
    cd_cuda_f32_to_bf16(bW, gW, nw, NULL);
    cd_cuda_conv2d_fwd_bf16(by, bx, bW, gb, n, cin, h, w, cout, 3, 1, 1, NULL);
    cd_cuda_bf16_to_f32(gy, by, ny, NULL);
    cmp(T16("conv bf16 2x320x32x32->640 y"), gy, y, ny, TOL16);
    free(x); free(W); free(b); free(y);
    free_all();
}
TEST(cuda_conv_bf16) { conv16_case(); }
TEST(cuda_conv_fp16) { cd_cuda_set_fp16(1); conv16_case(); cd_cuda_set_fp16(0); }

// bf16 backward data (the trainer's path through every UNet conv) against the CPU's dx on the
// same bf16-rounded dy and W.
static void conv_bf16_bwd_data_case(int n, int cin, int h, int w, int cout, int k, int s, int p) {
    int ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    int64_t nx = (int64_t)n * cin * h * w, ny = (int64_t)n * cout * ho * wo, nw = (int64_t)cout * cin * k * k;
    float *W = hrand(nw, 0.1f), *dy = hrand(ny, 1), *dx = cd_malloc(4 * nx);
    uint16_t *Wb = ctl_round16(W, nw), *dyb = ctl_round16(dy, ny);
    cd_conv2d_bwd(dx, NULL, NULL, dy, NULL, W, n, cin, h, w, cout, k, s, p);
    uint16_t *gW = dbuf(Wb, 2 * nw), *gdy = dbuf(dyb, 2 * ny), *gdx = dbuf(NULL, 2 * nx);
    float *gdxf = dout_(nx);
    cd_cuda_conv2d_bwd_data_bf16(gdx, gdy, gW, n, cin, h, w, cout, k, s, p, NULL);
    cd_cuda_bf16_to_f32(gdxf, gdx, nx, NULL);
    char nm[96];
    snprintf(nm, sizeof nm, "conv bf16 bwd-data %dx%dx%dx%d->%d k%ds%dp%d dx", n, cin, h, w, cout, k, s, p);
    cmp(T16(nm), gdxf, dx, nx, TOL16);
    free(W); free(dy); free(dx); free(Wb); free(dyb);
    free_all();
}

static void conv16_bwd_data_cases(void) {
    conv_bf16_bwd_data_case(2, 320, 16, 16, 640, 3, 1, 1);  // resnet conv (small: the CPU side stays fast)
    conv_bf16_bwd_data_case(2, 320, 16, 16, 4, 3, 1, 1);    // conv_out (4 output channels)
    conv_bf16_bwd_data_case(2, 320, 16, 16, 320, 3, 2, 1);  // downsampler (stride 2)
    conv_bf16_bwd_data_case(2, 960, 16, 16, 640, 1, 1, 0);  // 1x1 shortcut
}
TEST(cuda_conv_bf16_bwd_data) { conv16_bwd_data_cases(); }
TEST(cuda_conv_fp16_bwd_data) { cd_cuda_set_fp16(1); conv16_bwd_data_cases(); cd_cuda_set_fp16(0); }

// ---- attention -------------------------------------------------------------------------------
// causal = 1: the CLIP text variant (Nq == Nk, key j <= query i).
static void attention_case_c(int B, int H, int Nq, int Nk, int D, int detach, int causal) {
    int HD = H * D;
    int64_t nq = (int64_t)B * Nq * HD, nk = (int64_t)B * Nk * HD, nl = (int64_t)B * H * Nq;
    float scale = 1.f / sqrtf((float)D);
    float *q = hrand(nq, 2), *k = hrand(nk, 2), *v = hrand(nk, 1), *dout = hrand(nq, 1);
    float *out = cd_malloc(4 * nq), *lse = cd_malloc(4 * nl), *dq = cd_malloc(4 * nq), *dk = cd_malloc(4 * nk),
          *dv = cd_malloc(4 * nk);
    if (causal) {
        cd_attention_causal_fwd(out, lse, q, k, v, B, H, Nq, D, scale);
        cd_attention_causal_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, D, scale);
    } else {
        cd_attention_fwd(out, lse, q, k, v, B, H, Nq, Nk, D, scale);
        cd_attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, detach);
    }
    float *gq = din(q, nq), *gk = din(k, nk), *gv = din(v, nk), *gdo = din(dout, nq);
    float *go = dout_(nq), *gl = dout_(nl), *gdq = dout_(nq), *gdk = dout_(nk), *gdv = dout_(nk);
    float *co = din(out, nq), *cl = din(lse, nl); // backward on the CPU's forward
    if (causal) {
        cd_cuda_attention_causal_fwd(go, gl, gq, gk, gv, B, H, Nq, D, scale, NULL);
        cd_cuda_attention_causal_bwd(gdq, gdk, gdv, gdo, gq, gk, gv, co, cl, B, H, Nq, D, scale, NULL);
    } else {
        cd_cuda_attention_fwd(go, gl, gq, gk, gv, B, H, Nq, Nk, D, scale, NULL);
        cd_cuda_attention_bwd(gdq, gdk, gdv, gdo, gq, gk, gv, co, cl, B, H, Nq, Nk, D, scale, detach, NULL);
    }
    char nm[96], tag[64];
    snprintf(tag, sizeof tag, "attn%s B%d H%d %dx%d D%d%s", causal ? " causal" : "", B, H, Nq, Nk, D,
             detach ? " det" : "");
    snprintf(nm, sizeof nm, "%s out", tag); cmp(nm, go, out, nq, TOL32);
    snprintf(nm, sizeof nm, "%s lse", tag); cmp(nm, gl, lse, nl, TOL32);
    snprintf(nm, sizeof nm, "%s dq", tag); cmp(nm, gdq, dq, nq, TOL32);
    snprintf(nm, sizeof nm, "%s dk", tag); cmp(nm, gdk, dk, nk, TOL32);
    snprintf(nm, sizeof nm, "%s dv", tag); cmp(nm, gdv, dv, nk, TOL32);
    free(q); free(k); free(v); free(dout); free(out); free(lse); free(dq); free(dk); free(dv);
    free_all();
}
static void attention_case(int B, int H, int Nq, int Nk, int D, int detach) {
    attention_case_c(B, H, Nq, Nk, D, detach, 0);
}

TEST(cuda_attention_self) {
    attention_case(1, 2, 4096, 4096, 40, 0);  // 64x64 latent, SD1.x, 2 of 8 heads
    attention_case(1, 5, 1024, 1024, 64, 0);  // SD2.x head dim 64 at 32x32
    attention_case(1, 4, 1024, 1024, 80, 0);  // 32x32, 640 channels (4 of 8 heads)
    attention_case(2, 8, 256, 256, 160, 0);   // 16x16, 1280 channels
}

TEST(cuda_attention_cross) {
    attention_case(2, 8, 4096, 77, 40, 1);    // attn2 with the token-0 detach
    attention_case(2, 8, 1024, 77, 80, 1);
    attention_case(2, 8, 64, 77, 160, 1);
    attention_case(1, 5, 1024, 77, 64, 0);
}

// bf16 tensor-core forward and backward against the CPU on the same bf16-rounded inputs.

// causal = 1: the causal twins (Nq == Nk) against cd_attention_causal_fwd/_bwd.
static void attention_bf16_case_c(int B, int H, int Nq, int Nk, int D, int detach, int causal) {
    int HD = H * D;
    int64_t nq = (int64_t)B * Nq * HD, nk = (int64_t)B * Nk * HD, nl = (int64_t)B * H * Nq;
    float scale = 1.f / sqrtf((float)D);
    float *q = hrand(nq, 2), *k = hrand(nk, 2), *v = hrand(nk, 1), *dout = hrand(nq, 1);
    uint16_t *qb = ctl_round16(q, nq), *kb = ctl_round16(k, nk), *vb = ctl_round16(v, nk);
    uint16_t *db = ctl_round16(dout, nq);
    float *out = cd_malloc(4 * nq), *lse = cd_malloc(4 * nl), *dq = cd_malloc(4 * nq), *dk = cd_malloc(4 * nk),
          *dv = cd_malloc(4 * nk);
    if (causal) cd_attention_causal_fwd(out, lse, q, k, v, B, H, Nq, D, scale);
    else cd_attention_fwd(out, lse, q, k, v, B, H, Nq, Nk, D, scale);
    uint16_t *ob = ctl_round16(out, nq); // the CPU backward sees the same rounded out
    if (causal) cd_attention_causal_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, D, scale);
    else cd_attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, detach);
    uint16_t *gq = dbuf(qb, 2 * nq), *gk = dbuf(kb, 2 * nk), *gv = dbuf(vb, 2 * nk), *gdo = dbuf(db, 2 * nq);
    uint16_t *gob = dbuf(NULL, 2 * nq), *gcob = dbuf(ob, 2 * nq);
    float *go = dout_(nq), *gl = dout_(nl), *gof = dout_(nq), *gcl = din(lse, nl);
    float *gdq = dout_(nq), *gdk = dout_(nk), *gdv = dout_(nk);
    if (causal) {
        cd_cuda_attention_causal_fwd_bf16(go, 0, gl, gq, gk, gv, B, H, Nq, D, scale, NULL);
        cd_cuda_attention_causal_fwd_bf16(gob, 1, NULL, gq, gk, gv, B, H, Nq, D, scale, NULL);
    } else {
        cd_cuda_attention_fwd_bf16(go, 0, gl, gq, gk, gv, B, H, Nq, Nk, D, scale, NULL);
        cd_cuda_attention_fwd_bf16(gob, 1, NULL, gq, gk, gv, B, H, Nq, Nk, D, scale, NULL);
    }
    cd_cuda_bf16_to_f32(gof, gob, nq, NULL);
    if (causal)
        cd_cuda_attention_causal_bwd_bf16(gdq, gdk, gdv, gdo, gq, gk, gv, gcob, gcl, B, H, Nq, D, scale, NULL);
    else
        cd_cuda_attention_bwd_bf16(gdq, gdk, gdv, gdo, gq, gk, gv, gcob, gcl, B, H, Nq, Nk, D, scale, detach, NULL);
    char nm[96], tag[64];
    snprintf(tag, sizeof tag, "attn%s %s B%d H%d %dx%d D%d%s", causal ? " causal" : "", FP16 ? "fp16" : "bf16", B,
             H, Nq, Nk, D, detach ? " det" : "");
    snprintf(nm, sizeof nm, "%s out", tag); cmp(nm, go, out, nq, TOL16);
    snprintf(nm, sizeof nm, "%s lse", tag); cmp(nm, gl, lse, nl, TOL16);
    snprintf(nm, sizeof nm, "%s out(16-bit)", tag); cmp(nm, gof, out, nq, TOL16);
    snprintf(nm, sizeof nm, "%s dq", tag); cmp(nm, gdq, dq, nq, TOL16);
    snprintf(nm, sizeof nm, "%s dk", tag); cmp(nm, gdk, dk, nk, TOL16);
    snprintf(nm, sizeof nm, "%s dv", tag); cmp(nm, gdv, dv, nk, TOL16);
    free(q); free(k); free(v); free(dout); free(qb); free(kb); free(vb); free(db); free(ob);
    free(out); free(lse); free(dq); free(dk); free(dv);
    free_all();
}
static void attention_bf16_case(int B, int H, int Nq, int Nk, int D, int detach) {
    attention_bf16_case_c(B, H, Nq, Nk, D, detach, 0);
}

TEST(cuda_attention_bf16) {
    attention_bf16_case(1, 2, 4096, 4096, 40, 0);
    attention_bf16_case(2, 8, 4096, 77, 40, 1);
    attention_bf16_case(1, 5, 1024, 1024, 64, 0);
    attention_bf16_case(1, 4, 1024, 77, 80, 1);
    attention_bf16_case(2, 8, 256, 256, 160, 0);
}

static void attention16_small_cases(void) {
    attention_bf16_case(2, 8, 64, 77, 160, 1);
    attention_bf16_case(1, 3, 100, 33, 40, 0);
    attention_bf16_case(1, 2, 65, 130, 80, 0);
    attention_bf16_case(2, 2, 70, 77, 64, 1);
    attention_bf16_case(1, 1, 1, 1, 40, 0);
}
TEST(cuda_attention_bf16_small) { attention16_small_cases(); }
TEST(cuda_attention_fp16_small) { cd_cuda_set_fp16(1); attention16_small_cases(); cd_cuda_set_fp16(0); }

// The causal 16-bit twins (CLIP's text model): CLIP-L/OpenCLIP text shape, then small odd N
// across one and several 64-query tiles for every head dim (160: the widened fp32 backward).
static void attention16_causal_cases(void) {
    attention_bf16_case_c(2, 12, 77, 77, 64, 0, 1);
    attention_bf16_case_c(1, 2, 37, 37, 64, 0, 1);
    attention_bf16_case_c(1, 3, 131, 131, 40, 0, 1);
    attention_bf16_case_c(1, 2, 67, 67, 80, 0, 1);
    attention_bf16_case_c(1, 2, 45, 45, 160, 0, 1);
    attention_bf16_case_c(1, 1, 1, 1, 64, 0, 1);
}
TEST(cuda_attention_causal_bf16) { attention16_causal_cases(); }
TEST(cuda_attention_causal_fp16) { cd_cuda_set_fp16(1); attention16_causal_cases(); cd_cuda_set_fp16(0); }

// fp16 twins of cuda_attention_bf16 at the UNet's shapes (less the 4096x4096 self-attention,
// whose CPU reference is the slowest: head dim 40 is covered by the 4096x77 case).
TEST(cuda_attention_fp16) {
    cd_cuda_set_fp16(1);
    attention_bf16_case(2, 8, 4096, 77, 40, 1);
    attention_bf16_case(1, 5, 1024, 1024, 64, 0);
    attention_bf16_case(1, 4, 1024, 77, 80, 1);
    attention_bf16_case(2, 8, 256, 256, 160, 0);
    cd_cuda_set_fp16(0);
}

// Ragged tiles (Nq, Nk not multiples of 64) for every head dim: small enough for
// compute-sanitizer memcheck.
TEST(cuda_attention_small) {
    attention_case(1, 3, 100, 100, 40, 0);
    attention_case(2, 2, 70, 77, 64, 1);
    attention_case(1, 1, 130, 77, 80, 1);
    attention_case(1, 2, 65, 33, 160, 0);
    attention_case(1, 1, 1, 1, 40, 0);
    attention_case_c(2, 12, 77, 77, 64, 0, 1);  // CLIP-L text, causal
    attention_case_c(1, 2, 130, 130, 40, 0, 1); // causal across several tiles
}

// Deterministic mode (cd_cuda_set_deterministic(1)): the attention backward against the CPU
// within the usual tolerances, then the same backward twice on the same inputs, which must agree
// bit for bit (in the default mode dq, dk, dv add with float atomics in whatever order the blocks
// run). bits16: the 16-bit kernels (D = 160 through the widened fp32 backward).
static void attention_det_case(int bits16, int B, int H, int Nq, int Nk, int D, int detach, int causal) {
    cd_cuda_set_deterministic(1);
    if (bits16) attention_bf16_case_c(B, H, Nq, Nk, D, detach, causal);
    else attention_case_c(B, H, Nq, Nk, D, detach, causal);
    const int HD = H * D;
    const int64_t nq = (int64_t)B * Nq * HD, nk = (int64_t)B * Nk * HD, nl = (int64_t)B * H * Nq;
    const float scale = 1.f / sqrtf((float)D);
    float *q = hrand(nq, 2), *k = hrand(nk, 2), *v = hrand(nk, 1), *dout = hrand(nq, 1);
    float *gl = dout_(nl), *g[2][3];
    void *gq, *gk, *gv, *gdo, *go;
    if (bits16) {
        uint16_t *qb = ctl_round16(q, nq), *kb = ctl_round16(k, nk), *vb = ctl_round16(v, nk), *db = ctl_round16(dout, nq);
        gq = dbuf(qb, 2 * nq), gk = dbuf(kb, 2 * nk), gv = dbuf(vb, 2 * nk), gdo = dbuf(db, 2 * nq), go = dbuf(NULL, 2 * nq);
        free(qb); free(kb); free(vb); free(db);
        if (causal) cd_cuda_attention_causal_fwd_bf16(go, 1, gl, gq, gk, gv, B, H, Nq, D, scale, NULL);
        else cd_cuda_attention_fwd_bf16(go, 1, gl, gq, gk, gv, B, H, Nq, Nk, D, scale, NULL);
    } else {
        gq = din(q, nq), gk = din(k, nk), gv = din(v, nk), gdo = din(dout, nq), go = dout_(nq);
        if (causal) cd_cuda_attention_causal_fwd(go, gl, gq, gk, gv, B, H, Nq, D, scale, NULL);
        else cd_cuda_attention_fwd(go, gl, gq, gk, gv, B, H, Nq, Nk, D, scale, NULL);
    }
    for (int r = 0; r < 2; r++) {
        g[r][0] = dout_(nq), g[r][1] = dout_(nk), g[r][2] = dout_(nk);
        if (bits16 && causal)
            cd_cuda_attention_causal_bwd_bf16(g[r][0], g[r][1], g[r][2], gdo, gq, gk, gv, go, gl, B, H, Nq, D, scale, NULL);
        else if (bits16)
            cd_cuda_attention_bwd_bf16(g[r][0], g[r][1], g[r][2], gdo, gq, gk, gv, go, gl, B, H, Nq, Nk, D, scale, detach, NULL);
        else if (causal)
            cd_cuda_attention_causal_bwd(g[r][0], g[r][1], g[r][2], gdo, gq, gk, gv, go, gl, B, H, Nq, D, scale, NULL);
        else
            cd_cuda_attention_bwd(g[r][0], g[r][1], g[r][2], gdo, gq, gk, gv, go, gl, B, H, Nq, Nk, D, scale, detach, NULL);
    }
    const int64_t n[3] = {nq, nk, nk};
    const char *what[3] = {"dq", "dk", "dv"};
    for (int t = 0; t < 3; t++) {
        float *a = cd_malloc(4 * n[t]), *b = cd_malloc(4 * n[t]);
        char nm[96];
        snprintf(nm, sizeof nm, "deterministic attn%s %s B%d H%d %dx%d D%d %s", causal ? " causal" : "",
                 bits16 ? T16("bf16") : "fp32", B, H, Nq, Nk, D, what[t]);
        if (fetch(nm, a, g[0][t], 4 * n[t]) == 0 && fetch(nm, b, g[1][t], 4 * n[t]) == 0) {
            int64_t diff = 0;
            for (int64_t i = 0; i < n[t]; i++) diff += memcmp(&a[i], &b[i], 4) != 0;
            printf("  info: %-52s repeat: %s\n", nm, diff ? "DIFFERS" : "bit-identical");
            if (diff) tl_fail(__FILE__, __LINE__, "%s: %lld of %lld values differ between two runs", nm, (long long)diff,
                              (long long)n[t]);
        }
        free(a); free(b);
    }
    free(q); free(k); free(v); free(dout);
    free_all();
    cd_cuda_set_deterministic(0);
}

// SD shapes with query splits (cross-attention with 77 keys: few key tiles, so the queries
// are split; self-attention at 32x32), ragged and causal tiles, every head dim.
TEST(cuda_attention_deterministic) {
    attention_det_case(0, 2, 8, 1024, 77, 40, 1, 0);  // cross, token-0 detach, split queries
    attention_det_case(0, 1, 2, 1024, 1024, 64, 0, 0);
    attention_det_case(0, 1, 2, 130, 130, 80, 0, 1);  // causal, ragged
    attention_det_case(0, 1, 2, 65, 77, 160, 1, 0);
    attention_det_case(1, 2, 8, 4096, 77, 40, 1, 0);
    attention_det_case(1, 1, 4, 1024, 1024, 80, 0, 0);
    attention_det_case(1, 2, 12, 77, 77, 64, 0, 1);   // CLIP-L text
    attention_det_case(1, 2, 8, 64, 77, 160, 1, 0);   // widened to the fp32 backward
}
// Ragged tiles and many query splits per key tile, every head dim (fast enough for the CPU
// simulation in make test).
TEST(cuda_attention_deterministic_small) {
    attention_det_case(0, 1, 2, 130, 77, 40, 1, 0);
    attention_det_case(0, 2, 2, 70, 77, 64, 1, 0);
    attention_det_case(0, 1, 1, 131, 131, 80, 0, 1);
    attention_det_case(0, 1, 2, 65, 33, 160, 0, 0);
    attention_det_case(1, 1, 3, 100, 33, 40, 0, 0);
    attention_det_case(1, 1, 2, 131, 131, 64, 0, 1);
}

// The fused kernels against the unfused cuBLAS version at the full SD shape (GPU only).
TEST(cuda_attention_vs_naive) {
    int B = 2, H = 8, N = 4096, D = 40, HD = H * D;
    int64_t nq = (int64_t)B * N * HD, nl = (int64_t)B * H * N;
    float scale = 1.f / sqrtf((float)D);
    float *q = hrand(nq, 2), *k = hrand(nq, 2), *v = hrand(nq, 1), *dout = hrand(nq, 1);
    float *gq = din(q, nq), *gk = din(k, nq), *gv = din(v, nq), *gdo = din(dout, nq);
    float *o1 = dout_(nq), *l1 = dout_(nl), *o2 = dout_(nq), *l2 = dout_(nl);
    float *dq1 = dout_(nq), *dk1 = dout_(nq), *dv1 = dout_(nq), *dq2 = dout_(nq), *dk2 = dout_(nq), *dv2 = dout_(nq);
    CHECK(cd_cuda_attention_naive_fwd(o2, l2, gq, gk, gv, B, H, N, N, D, scale, NULL) == 0);
    CHECK(cd_cuda_attention_naive_bwd(dq2, dk2, dv2, gdo, gq, gk, gv, B, H, N, N, D, scale, 0, NULL) == 0);
    cd_cuda_attention_fwd(o1, l1, gq, gk, gv, B, H, N, N, D, scale, NULL);
    cd_cuda_attention_bwd(dq1, dk1, dv1, gdo, gq, gk, gv, o1, l1, B, H, N, N, D, scale, 0, NULL);
    float *r = cd_malloc(4 * nq);
    const char *names[4] = {"fused vs naive out", "fused vs naive dq", "fused vs naive dk", "fused vs naive dv"};
    float *ref[4] = {o2, dq2, dk2, dv2}, *got[4] = {o1, dq1, dk1, dv1};
    for (int i = 0; i < 4; i++)
        if (fetch(names[i], r, ref[i], 4 * nq) == 0) cmp(names[i], got[i], r, nq, TOL32);
    if (fetch("naive lse", r, l2, 4 * nl) == 0) cmp("fused vs naive lse", l1, r, nl, TOL32);
    free(r); free(q); free(k); free(v); free(dout);
    free_all();
}

TEST(cuda_attention_bad_dim) {
    float *d = dout_(64);
    cd_cuda_status();
    cd_cuda_attention_fwd(d, NULL, d, d, d, 1, 1, 1, 1, 48, 1.f, NULL);
    CHECKF(cd_cuda_status() == -1, "head dim 48 was not refused");
    CHECKF(strstr(cd_errmsg(), "head dim") != NULL, "error '%s' does not name the head dim", cd_errmsg());
    free_all();
}

// ---- activations and element-wise ----------------------------------------------------------
typedef void (*UnF)(float *, const float *, int64_t);
typedef void (*UnB)(float *, const float *, const float *, int64_t);
typedef void (*UnFc)(float *, const float *, int64_t, void *);
typedef void (*UnBc)(float *, const float *, const float *, int64_t, void *);

static void unary_case(const char *name, UnF f, UnB b, UnFc fc, UnBc bc, int64_t n) {
    float *x = hrand(n, 4), *dy = hrand(n, 1), *y = cd_malloc(4 * n), *dx = cd_malloc(4 * n);
    f(y, x, n);
    b(dx, dy, x, n);
    float *gx = din(x, n), *gdy = din(dy, n), *gy = dout_(n), *gdx = dout_(n), *gin = din(x, n);
    fc(gy, gx, n, NULL);
    bc(gdx, gdy, gx, n, NULL);
    fc(gin, gin, n, NULL); // in place
    char nm[64];
    snprintf(nm, sizeof nm, "%s fwd", name); cmp(nm, gy, y, n, TOL32);
    snprintf(nm, sizeof nm, "%s fwd in-place", name); cmp(nm, gin, y, n, TOL32);
    snprintf(nm, sizeof nm, "%s bwd", name); cmp(nm, gdx, dx, n, TOL32);
    free(x); free(dy); free(y); free(dx);
    free_all();
}

TEST(cuda_activations) {
    int64_t n = (int64_t)2 * 320 * 4096 + 3;
    unary_case("silu", cd_silu_fwd, cd_silu_bwd, cd_cuda_silu_fwd, cd_cuda_silu_bwd, n);
    unary_case("gelu", cd_gelu_fwd, cd_gelu_bwd, cd_cuda_gelu_fwd, cd_cuda_gelu_bwd, n);
    unary_case("quick_gelu", cd_quick_gelu_fwd, cd_quick_gelu_bwd, cd_cuda_quick_gelu_fwd, cd_cuda_quick_gelu_bwd, n);
}

TEST(cuda_geglu) {
    int64_t n = 8192;
    int c = 1280;
    float *x = hrand(n * 2 * c, 3), *dy = hrand(n * c, 1), *bias = hrand(2 * c, 1);
    float *y = cd_malloc(4 * n * c), *dx = cd_malloc(8 * n * c), *xb = hcopy(x, n * 2 * c), *yb = cd_malloc(4 * n * c);
    cd_geglu_fwd(y, x, n, c);
    cd_geglu_bwd(dx, dy, x, n, c);
    for (int64_t r = 0; r < n; r++)
        for (int j = 0; j < 2 * c; j++) xb[r * 2 * c + j] += bias[j];
    cd_geglu_fwd(yb, xb, n, c);
    float *dxb = cd_malloc(8 * n * c);
    cd_geglu_bwd(dxb, dy, xb, n, c);
    float *gx = din(x, n * 2 * c), *gdy = din(dy, n * c), *gb = din(bias, 2 * c);
    float *gy = dout_(n * c), *gdx = dout_(n * 2 * c), *gyb = dout_(n * c), *gdxb = dout_(n * 2 * c);
    cd_cuda_geglu_fwd(gy, gx, n, c, NULL);
    cd_cuda_geglu_bwd(gdx, gdy, gx, n, c, NULL);
    cd_cuda_bias_geglu_fwd(gyb, gx, gb, n, c, NULL);
    cd_cuda_bias_geglu_bwd(gdxb, gdy, gx, gb, n, c, NULL);
    cmp("geglu fwd 8192x1280", gy, y, n * c, TOL32);
    cmp("geglu bwd 8192x1280", gdx, dx, n * 2 * c, TOL32);
    cmp("bias+geglu fwd 8192x1280", gyb, yb, n * c, TOL32);
    cmp("bias+geglu bwd 8192x1280", gdxb, dxb, n * 2 * c, TOL32);
    free(x); free(dy); free(bias); free(y); free(dx); free(xb); free(yb); free(dxb);
    free_all();
}

TEST(cuda_arith) {
    int n = 2, c = 640, hw = 1024;
    int64_t nt = (int64_t)n * c * hw;
    float *a = hrand(nt, 1), *b = hrand(nt, 1), *bias = hrand(n * c, 1);
    float *sum = cd_malloc(4 * nt), *acc = hcopy(a, nt), *sc = hcopy(a, nt), *bi = hcopy(a, nt), *cl = hcopy(a, nt);
    cd_add(sum, a, b, nt);
    cd_acc(acc, b, nt);
    cd_scale(sc, 0.18215f, nt);
    cd_add_bias_nc(bi, bias, n, c, hw);
    cd_clamp(cl, -0.3f, 0.2f, nt);
    float *ga = din(a, nt), *gb = din(b, nt), *gbias = din(bias, n * c), *gs = dout_(nt);
    float *gacc = din(a, nt), *gsc = din(a, nt), *gbi = din(a, nt), *galias = din(a, nt), *gcl = din(a, nt);
    cd_cuda_add(gs, ga, gb, nt, NULL);
    cd_cuda_add(galias, galias, gb, nt, NULL); // dst aliases a
    cd_cuda_acc(gacc, gb, nt, NULL);
    cd_cuda_scale(gsc, 0.18215f, nt, NULL);
    cd_cuda_add_bias_nc(gbi, gbias, n, c, hw, NULL);
    cd_cuda_clamp(gcl, -0.3f, 0.2f, nt, NULL);
    cmp("add", gs, sum, nt, TOL32);
    cmp("add aliased", galias, sum, nt, TOL32);
    cmp("acc", gacc, acc, nt, TOL32);
    cmp("scale", gsc, sc, nt, TOL32);
    cmp("add_bias_nc", gbi, bi, nt, TOL32);
    cmp("clamp", gcl, cl, nt, 0);
    free(a); free(b); free(bias); free(sum); free(acc); free(sc); free(bi); free(cl);
    free_all();
}

TEST(cuda_layout) {
    int n = 2, c = 1280, h = 16, w = 16, hw = h * w, ca = 640, cb = 320, chw = 32 * 32;
    int64_t nx = (int64_t)n * c * hw, nup = nx * 4;
    float *x = hrand(nx, 1), *dyu = hrand(nup, 1), *up = cd_malloc(4 * nup), *dup = cd_malloc(4 * nx);
    cd_upsample2x_fwd(up, x, n, c, h, w);
    cd_upsample2x_bwd(dup, dyu, n, c, h, w);
    int64_t nt = (int64_t)n * 320 * 4096;
    float *t = hrand(nt, 1), *tr = cd_malloc(4 * nt), *back = cd_malloc(4 * nt);
    cd_nchw_to_nhwc(tr, t, n, 320, 4096);
    cd_nhwc_to_nchw(back, t, n, 320, 4096);
    int64_t na = (int64_t)n * ca * chw, nb = (int64_t)n * cb * chw;
    float *a = hrand(na, 1), *b = hrand(nb, 1), *cat = cd_malloc(4 * (na + nb)), *dy = hrand(na + nb, 1);
    float *da = cd_malloc(4 * na), *db = cd_malloc(4 * nb);
    cd_concat_c(cat, a, b, n, ca, cb, chw);
    cd_split_c(da, db, dy, n, ca, cb, chw);
    float *gx = din(x, nx), *gdyu = din(dyu, nup), *gup = dout_(nup), *gdup = dout_(nx);
    float *gt = din(t, nt), *gtr = dout_(nt), *gback = dout_(nt);
    float *gA = din(a, na), *gB = din(b, nb), *gcat = dout_(na + nb), *gdy = din(dy, na + nb);
    float *gda = dout_(na), *gdb = dout_(nb);
    cd_cuda_upsample2x_fwd(gup, gx, n, c, h, w, NULL);
    cd_cuda_upsample2x_bwd(gdup, gdyu, n, c, h, w, NULL);
    cd_cuda_nchw_to_nhwc(gtr, gt, n, 320, 4096, NULL);
    cd_cuda_nhwc_to_nchw(gback, gt, n, 320, 4096, NULL);
    cd_cuda_concat_c(gcat, gA, gB, n, ca, cb, chw, NULL);
    cd_cuda_split_c(gda, gdb, gdy, n, ca, cb, chw, NULL);
    cmp("upsample2x fwd", gup, up, nup, TOL32);
    cmp("upsample2x bwd", gdup, dup, nx, TOL32);
    cmp("nchw_to_nhwc", gtr, tr, nt, TOL32);
    cmp("nhwc_to_nchw", gback, back, nt, TOL32);
    cmp("concat_c", gcat, cat, na + nb, TOL32);
    cmp("split_c a", gda, da, na, TOL32);
    cmp("split_c b", gdb, db, nb, TOL32);
    free(x); free(dyu); free(up); free(dup); free(t); free(tr); free(back);
    free(a); free(b); free(cat); free(dy); free(da); free(db);
    free_all();
}

TEST(cuda_embeddings) {
    // timestep: sin/cos of t * exp(.) up to t = 999 rad; a 1-ulp difference of expf between
    // libm and CUDA moves the angle by ~6e-5, so this one op is held to 2e-4.
    float t[4] = {0.f, 1.f, 500.f, 999.f};
    int dim = 321;
    float *ref = cd_malloc(4 * 4 * dim), *ref2 = cd_malloc(4 * 4 * dim);
    cd_timestep_embedding(ref, t, 4, dim, 1, 0.f, 10000.f);
    cd_timestep_embedding(ref2, t, 4, dim - 1, 0, 1.f, 10000.f);
    float *gt = din(t, 4), *go = dout_(4 * dim), *go2 = dout_(4 * (dim - 1));
    cd_cuda_timestep_embedding(go, gt, 4, dim, 1, 0.f, 10000.f, NULL);
    cd_cuda_timestep_embedding(go2, gt, 4, dim - 1, 0, 1.f, 10000.f, NULL);
    cmp("timestep_embedding flip dim 321", go, ref, 4 * dim, 2e-4);
    cmp("timestep_embedding shift 1", go2, ref2, 4 * (dim - 1), 2e-4);
    int V = 49409, c = 768, n = 154;
    int32_t ids[154];
    uint8_t *mask = calloc(V, 1);
    for (int i = 0; i < n; i++) ids[i] = (i * 7919 + 13) % V;
    ids[5] = ids[9] = ids[100] = 49408; // a repeated (new-token) row
    mask[49408] = 1;
    mask[ids[1]] = 1;
    float *table = hrand((int64_t)V * c, 1), *dout = hrand((int64_t)n * c, 1), *out = cd_malloc(4 * n * c);
    cd_embedding_fwd(out, ids, table, n, c);
    float *gtab = din(table, (int64_t)V * c), *gdo = din(dout, (int64_t)n * c), *gout = dout_((int64_t)n * c);
    int32_t *gids = dbuf(ids, sizeof ids);
    uint8_t *gmask = dbuf(mask, V);
    float *init = hrand((int64_t)V * c, 1), *r1 = hcopy(init, (int64_t)V * c), *r2 = hcopy(init, (int64_t)V * c);
    cd_embedding_bwd(r1, dout, ids, n, c, mask);
    cd_embedding_bwd(r2, dout, ids, n, c, NULL);
    float *g1 = din(init, (int64_t)V * c), *g2 = din(init, (int64_t)V * c);
    cd_cuda_embedding_fwd(gout, gids, gtab, n, c, NULL);
    cd_cuda_embedding_bwd(g1, gdo, gids, n, c, gmask, NULL);
    cd_cuda_embedding_bwd(g2, gdo, gids, n, c, NULL, NULL);
    cmp("embedding fwd", gout, out, (int64_t)n * c, TOL32);
    // one thread per column adds the positions in order, as the CPU does: exactly equal
    cmp("embedding bwd masked (+=, exact)", g1, r1, (int64_t)V * c, 0);
    cmp("embedding bwd all (+=, exact)", g2, r2, (int64_t)V * c, 0);
    free(ref); free(ref2); free(mask); free(table); free(dout); free(out); free(init); free(r1); free(r2);
    free_all();
}

// ---- 16-bit storage variants (forward) vs the CPU on the same rounded inputs ----------------------
// Uploads 16-bit bits; returns the device copy.
static uint16_t *dbf(const uint16_t *h, int64_t n) { return dbuf(h, 2 * (size_t)n); }
// Widens a device 16-bit tensor (the current format) into a fresh device fp32 one (for cmp).
static float *widen(const uint16_t *d, int64_t n) {
    float *f = dout_(n);
    cd_cuda_bf16_to_f32(f, d, n, NULL);
    return f;
}

static void forward16_cases(void) {
    int n = 2, c = 320, hw = 4096;
    int64_t nt = (int64_t)n * c * hw;
    float *x = hrand(nt, 3), *g = hrand(c, 1), *b = hrand(c, 1), *y = cd_malloc(4 * nt);
    float *m = cd_malloc(4 * n * 32), *r = cd_malloc(4 * n * 32);
    uint16_t *xb = ctl_round16(x, nt);
    cd_groupnorm_fwd(y, m, r, x, g, b, n, c, hw, 32, 1e-5f, 1);
    uint16_t *gx = dbf(xb, nt), *gy = dbuf(NULL, 2 * nt);
    float *gg = din(g, c), *gb = din(b, c), *gm = dout_(n * 32), *gr = dout_(n * 32);
    cd_cuda_groupnorm_fwd_bf16(gy, gm, gr, gx, gg, gb, n, c, hw, 32, 1e-5f, 1, NULL);
    cmp(T16("groupnorm+silu bf16 y"), widen(gy, nt), y, nt, TOL16);
    cmp(T16("groupnorm+silu bf16 mean"), gm, m, n * 32, TOL32 * 10);
    cmp(T16("groupnorm+silu bf16 rstd"), gr, r, n * 32, TOL32 * 10);
    // silu, add on the same tensor
    float *s1 = cd_malloc(4 * nt), *s2 = cd_malloc(4 * nt);
    cd_silu_fwd(s1, x, nt);
    cd_add(s2, x, s1, nt);
    uint16_t *gs = dbuf(NULL, 2 * nt), *ga = dbuf(NULL, 2 * nt);
    cd_cuda_silu_fwd_bf16(gs, gx, nt, NULL);
    cd_cuda_add_bf16(ga, gx, gs, nt, NULL);
    cmp(T16("silu bf16"), widen(gs, nt), s1, nt, TOL16);
    cmp(T16("add bf16"), widen(ga, nt), s2, nt, TOL16);
    free(x); free(g); free(b); free(y); free(m); free(r); free(xb); free(s1); free(s2);
    free_all();
    // layernorm 8192 x 320 and bias+GEGLU 8192 x 2560 -> 1280
    int rows = 8192, lc = 320, gc = 1280;
    float *lx = hrand((int64_t)rows * lc, 2), *lg = hrand(lc, 1), *lb = hrand(lc, 1), *ly = cd_malloc(4 * rows * lc);
    uint16_t *lxb = ctl_round16(lx, (int64_t)rows * lc);
    cd_layernorm_fwd(ly, NULL, NULL, lx, lg, lb, rows, lc, 1e-5f);
    uint16_t *glx = dbf(lxb, (int64_t)rows * lc), *gly = dbuf(NULL, 2 * (size_t)rows * lc);
    cd_cuda_layernorm_fwd_bf16(gly, NULL, NULL, glx, din(lg, lc), din(lb, lc), rows, lc, 1e-5f, NULL);
    cmp(T16("layernorm bf16 8192x320"), widen(gly, (int64_t)rows * lc), ly, (int64_t)rows * lc, TOL16);
    int64_t ng = (int64_t)rows * 2 * gc;
    float *ex = hrand(ng, 3), *eb = hrand(2 * gc, 1), *ey = cd_malloc(4 * (int64_t)rows * gc);
    uint16_t *exb = ctl_round16(ex, ng);
    for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < 2 * gc; j++) ex[i * 2 * gc + j] += eb[j];
    cd_geglu_fwd(ey, ex, rows, gc);
    uint16_t *gex = dbf(exb, ng), *gey = dbuf(NULL, 2 * (size_t)rows * gc);
    cd_cuda_bias_geglu_fwd_bf16(gey, gex, din(eb, 2 * gc), rows, gc, NULL);
    cmp(T16("bias+geglu bf16 8192x1280"), widen(gey, (int64_t)rows * gc), ey, (int64_t)rows * gc, TOL16);
    free(lx); free(lg); free(lb); free(ly); free(lxb); free(ex); free(eb); free(ey); free(exb);
    free_all();
    // layout moves (exact), bias adds and a Linear with bf16 output
    int bn = 2, bc = 640, bh = 16, bhw = bh * bh, ca = 320;
    int64_t nx = (int64_t)bn * bc * bhw, ncat = (int64_t)bn * (bc + ca) * bhw;
    float *ux = hrand(nx, 1), *ua_ = hrand((int64_t)bn * ca * bhw, 1), *bias = hrand(bn * bc, 1);
    uint16_t *uxb = ctl_round16(ux, nx), *uab = ctl_round16(ua_, (int64_t)bn * ca * bhw);
    float *up = cd_malloc(16 * nx), *tr = cd_malloc(4 * nx), *tb = cd_malloc(4 * nx), *cat = cd_malloc(4 * ncat);
    float *bi = hcopy(ux, nx);
    cd_upsample2x_fwd(up, ux, bn, bc, bh, bh);
    cd_nchw_to_nhwc(tr, ux, bn, bc, bhw);
    cd_nhwc_to_nchw(tb, ux, bn, bc, bhw);
    cd_concat_c(cat, ux, ua_, bn, bc, ca, bhw);
    cd_add_bias_nc(bi, bias, bn, bc, bhw);
    uint16_t *lgx = dbf(uxb, nx), *lga = dbf(uab, (int64_t)bn * ca * bhw);
    uint16_t *gup = dbuf(NULL, 8 * nx), *gtr = dbuf(NULL, 2 * nx), *gtb = dbuf(NULL, 2 * nx), *gcat = dbuf(NULL, 2 * ncat);
    uint16_t *gbi = dbf(uxb, nx);
    cd_cuda_upsample2x_fwd_bf16(gup, lgx, bn, bc, bh, bh, NULL);
    cd_cuda_nchw_to_nhwc_bf16(gtr, lgx, bn, bc, bhw, NULL);
    cd_cuda_nhwc_to_nchw_bf16(gtb, lgx, bn, bc, bhw, NULL);
    cd_cuda_concat_c_bf16(gcat, lgx, lga, bn, bc, ca, bhw, NULL);
    cd_cuda_add_bias_nc_bf16(gbi, din(bias, bn * bc), bn, bc, bhw, NULL);
    cmp(T16("upsample2x bf16 (exact)"), widen(gup, 4 * nx), up, 4 * nx, 0);
    cmp(T16("nchw_to_nhwc bf16 (exact)"), widen(gtr, nx), tr, nx, 0);
    cmp(T16("nhwc_to_nchw bf16 (exact)"), widen(gtb, nx), tb, nx, 0);
    cmp(T16("concat_c bf16 (exact)"), widen(gcat, ncat), cat, ncat, 0);
    cmp(T16("add_bias_nc bf16"), widen(gbi, nx), bi, nx, TOL16);
    free(ux); free(ua_); free(bias); free(uxb); free(uab); free(up); free(tr); free(tb); free(cat); free(bi);
    free_all();
    int ln = 4096, lin = 320, lout = 1280;
    float *wx = hrand((int64_t)ln * lin, 1), *wW = hrand((int64_t)lout * lin, 0.1f), *wb = hrand(lout, 1);
    float *wy = cd_malloc(4 * (int64_t)ln * lout);
    uint16_t *wxb = ctl_round16(wx, (int64_t)ln * lin), *wWb = ctl_round16(wW, (int64_t)lout * lin);
    cd_linear_fwd(wy, wx, wW, wb, ln, lin, lout);
    uint16_t *gwy = dbuf(NULL, 2 * (size_t)ln * lout);
    float *gwyf = dout_((int64_t)ln * lout);
    cd_cuda_linear_fwd_bf16_out(gwy, dbf(wxb, (int64_t)ln * lin), dbf(wWb, (int64_t)lout * lin), din(wb, lout), ln, lin,
                                lout, NULL);
    cd_cuda_linear_fwd_bf16(gwyf, dbf(wxb, (int64_t)ln * lin), dbf(wWb, (int64_t)lout * lin), din(wb, lout), ln, lin,
                            lout, NULL);
    cmp(T16("linear bf16 -> bf16 4096x320->1280"), widen(gwy, (int64_t)ln * lout), wy, (int64_t)ln * lout, TOL16);
    cmp(T16("linear bf16 -> fp32 4096x320->1280"), gwyf, wy, (int64_t)ln * lout, TOL16);
    free(wx); free(wW); free(wb); free(wy); free(wxb); free(wWb);
    free_all();
}
TEST(cuda_bf16_forward) { forward16_cases(); }
TEST(cuda_fp16_forward) { cd_cuda_set_fp16(1); forward16_cases(); cd_cuda_set_fp16(0); }

// ---- loss, optimizer, reductions ---------------------------------------------------------------
TEST(cuda_optim) {
    int64_t n = (int64_t)4 * 4 * 64 * 64 + 5;
    float *a = hrand(n, 1), *b = hrand(n, 1), *m = hrand(n, 1), *g1 = cd_malloc(4 * n), *g2 = cd_malloc(4 * n);
    for (int64_t i = 0; i < n; i++) m[i] = m[i] > 0 ? 1.f : 0.f;
    double s1 = cd_mse_fwd_bwd(g1, a, b, m, n, 0.25f), s2 = cd_mse_fwd_bwd(g2, a, b, NULL, n, 1.f / n);
    float *ga = din(a, n), *gb = din(b, n), *gm = din(m, n), *gg1 = dout_(n), *gg2 = dout_(n);
    double c1 = cd_cuda_mse_fwd_bwd(gg1, ga, gb, gm, n, 0.25f, NULL);
    double c2 = cd_cuda_mse_fwd_bwd(gg2, ga, gb, NULL, n, 1.f / n, NULL);
    double c3 = cd_cuda_mse_fwd_bwd(NULL, ga, gb, NULL, n, 1.f, NULL);
    printf("  info: mse masked %.9g vs %.9g, plain %.9g vs %.9g\n", c1, s1, c2, s2);
    CHECKF(fabs(c1 - s1) <= 1e-9 * fabs(s1) && fabs(c2 - s2) <= 1e-9 * fabs(s2) && fabs(c3 - s2) <= 1e-9 * fabs(s2),
           "mse sums differ: %.12g/%.12g %.12g/%.12g %.12g", c1, s1, c2, s2, c3);
    cmp("mse grad masked", gg1, g1, n, TOL32);
    cmp("mse grad plain", gg2, g2, n, TOL32);
    double q1 = cd_sumsq(a, n), q2 = cd_cuda_sumsq(ga, n, NULL);
    CHECKF(fabs(q1 - q2) <= 1e-9 * q1, "sumsq %.12g vs %.12g", q2, q1);
    int64_t np = 19169280 / 16; // one block's to_k + to_v
    float *p = hrand(np, 1), *gr = hrand(np, 0.01f), *mm = cd_calloc(np, 4), *vv = cd_calloc(np, 4);
    float *gp = din(p, np), *ggr = din(gr, np), *gmm = din(mm, np), *gvv = din(vv, np);
    for (int step = 1; step <= 3; step++) {
        cd_adamw_step(p, gr, mm, vv, np, 1e-5f * 8, 0.9f, 0.999f, 1e-8f, 1e-2f, step);
        cd_cuda_adamw_step(gp, ggr, gmm, gvv, np, 1e-5f * 8, 0.9f, 0.999f, 1e-8f, 1e-2f, step, NULL);
    }
    cmp("adamw p (3 steps)", gp, p, np, TOL32);
    cmp("adamw m", gmm, mm, np, TOL32);
    cmp("adamw v", gvv, vv, np, TOL32);
    free(a); free(b); free(m); free(g1); free(g2); free(p); free(gr); free(mm); free(vv);
    free_all();
}

// The reductions that trained tensors' gradients, the loss and the gradient norm go through
// are deterministic in both modes: two runs on the same inputs give the same bits (the
// simulator starts blocks in a new order at every launch, as a GPU may, and its cuDNN's atomic
// algorithms sum in a new order at every call).
static int same_bits(const char *what, const void *a, const void *b, size_t bytes) {
    int same = !memcmp(a, b, bytes);
    printf("  info: %-40s repeat: %s\n", what, same ? "bit-identical" : "DIFFERS");
    if (!same) tl_fail(__FILE__, __LINE__, "%s: two runs on the same inputs differ", what);
    return same;
}
TEST(cuda_deterministic_reductions) {
    int n = 4096, in = 320, out = 320;
    int64_t nx = (int64_t)n * in, ny = (int64_t)n * out;
    float *x = hrand(nx, 1), *W = hrand((int64_t)out * in, 1), *dy = hrand(ny, 1), *b0 = hrand(out, 1);
    float *gx = din(x, nx), *gW = din(W, (int64_t)out * in), *gdy = din(dy, ny);
    float *gdb[2], *gdg[2], *gdbl[2], h[2][3][320];
    float *cm = din(x, n), *cr = din(x, n); // any statistics: the same in both runs
    for (int r = 0; r < 2; r++) {
        gdb[r] = din(b0, out), gdg[r] = din(b0, out), gdbl[r] = din(b0, out);
        cd_cuda_linear_bwd(NULL, NULL, gdb[r], gdy, gx, gW, n, in, out, NULL);           // bias grad: column sums
        cd_cuda_layernorm_bwd(NULL, gdg[r], gdbl[r], gdy, gdy, cm, cr, NULL, n, out, NULL); // LayerNorm dg, db
        fetch("linear db", h[r][0], gdb[r], sizeof h[r][0]);
        fetch("layernorm dg", h[r][1], gdg[r], sizeof h[r][1]);
        fetch("layernorm db", h[r][2], gdbl[r], sizeof h[r][2]);
    }
    same_bits("linear bwd db 4096x320", h[0][0], h[1][0], sizeof h[0][0]);
    same_bits("layernorm bwd dg 4096x320", h[0][1], h[1][1], sizeof h[0][1]);
    same_bits("layernorm bwd db 4096x320", h[0][2], h[1][2], sizeof h[0][2]);
    int64_t m = (int64_t)4 * 4 * 64 * 64 + 5;
    float *a = hrand(m, 1), *bb = hrand(m, 1), *ga = din(a, m), *gb = din(bb, m);
    double s1 = cd_cuda_mse_fwd_bwd(NULL, ga, gb, NULL, m, 1.f, NULL), s2 = cd_cuda_mse_fwd_bwd(NULL, ga, gb, NULL, m, 1.f, NULL);
    double q1 = cd_cuda_sumsq(ga, m, NULL), q2 = cd_cuda_sumsq(ga, m, NULL);
    same_bits("mse sum (65541 values)", &s1, &s2, sizeof s1);
    same_bits("sum of squares (65541 values)", &q1, &q2, sizeof q1);
    // convolution backward (data, filter, bias): cuDNN ranks its atomic algorithms first; the
    // plans must pick deterministic ones
    int cn = 2, ci = 32, ch = 16, co = 64;
    int64_t ncx = (int64_t)cn * ci * ch * ch, ncy = (int64_t)cn * co * ch * ch, ncw = (int64_t)co * ci * 9;
    float *cx = hrand(ncx, 1), *cw = hrand(ncw, 1), *cdy = hrand(ncy, 1), *hc[2][3];
    float *gcx = din(cx, ncx), *gcw = din(cw, ncw), *gcdy = din(cdy, ncy);
    for (int r = 0; r < 2; r++) {
        float *gdx = dout_(ncx), *gdw = din(cw, ncw), *gdb = din(b0, co);   // dW, db accumulate
        cd_cuda_conv2d_bwd(gdx, gdw, gdb, gcdy, gcx, gcw, cn, ci, ch, ch, co, 3, 1, 1, NULL);
        hc[r][0] = cd_malloc(4 * ncx), hc[r][1] = cd_malloc(4 * ncw), hc[r][2] = cd_malloc(4 * co);
        fetch("conv dx", hc[r][0], gdx, 4 * ncx);
        fetch("conv dW", hc[r][1], gdw, 4 * ncw);
        fetch("conv db", hc[r][2], gdb, 4 * co);
    }
    same_bits("conv2d bwd dx 2x32x16x16 k3", hc[0][0], hc[1][0], 4 * ncx);
    same_bits("conv2d bwd dW", hc[0][1], hc[1][1], 4 * ncw);
    same_bits("conv2d bwd db", hc[0][2], hc[1][2], 4 * co);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 3; t++) free(hc[r][t]);
    free(cx); free(cw); free(cdy);
    free(x); free(W); free(dy); free(b0); free(a); free(bb);
    free_all();
}
#endif

#define ALL_TESTS(X) X(cuda_attention_small) X(cuda_attention_bf16_small) X(cuda_attention_bad_dim) \
    X(cuda_gemm_fp32) X(cuda_gemm_tf32) X(cuda_gemm_bf16) X(cuda_linear) X(cuda_layernorm)           \
    X(cuda_groupnorm) X(cuda_conv) X(cuda_conv_tf32) X(cuda_conv_bf16) X(cuda_conv_bf16_bwd_data)    \
    X(cuda_attention_self)                                                                             \
    X(cuda_attention_cross) X(cuda_attention_vs_naive) X(cuda_attention_bf16) X(cuda_activations)    \
    X(cuda_geglu) X(cuda_arith) X(cuda_layout) X(cuda_embeddings) X(cuda_optim) X(cuda_bf16_forward)   \
    X(cuda_gemm_fp16) X(cuda_conv_fp16) X(cuda_conv_fp16_bwd_data) X(cuda_attention_fp16_small)         \
    X(cuda_attention_fp16) X(cuda_fp16_forward) X(cuda_attention_causal_bf16) X(cuda_attention_causal_fp16) \
    X(cuda_attention_deterministic) X(cuda_attention_deterministic_small) X(cuda_deterministic_reductions)

#define SKIP_ONE(t) printf("SKIP %s: %s\n", #t, why);
#define RUN_ONE(t) RUN(t);   // CD_TEST_ONLY selects (tl_run)

#define LIST_ONE(t) printf("%s\n", #t);

// Usage: test_kernels_cuda [--list]   (--list prints the test names, one per line)
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        ALL_TESTS(LIST_ONE)
        return 0;
    }
    char why[256];
    if (ctl_have_gpu(why, sizeof why, 0)) {
#ifdef CD_CUDA
        const char *s = getenv("CD_TEST_SEED");
        g_seed = s ? (uint32_t)strtoul(s, NULL, 10) : (uint32_t)time(NULL);
        char dev[256] = "?";
        cd_cuda_device_name(dev, sizeof dev);
        printf("  info: device %s; seed %u (CD_TEST_SEED=%u repeats this run)\n", dev, g_seed, g_seed);
        ALL_TESTS(RUN_ONE)
#endif
        return tl_done();
    }
    ALL_TESTS(SKIP_ONE)
    return 0;
}
