// Host emulation (see kernels/emu/emu.h) of the fp32 GEMM, Linear, convolution, LayerNorm,
// GroupNorm, loss and optimizer twins (kernels/cuda_gemm.cu, cuda_conv.cu, cuda_norm.cu,
// cuda_optim.cu): pointer checks, the .cu preconditions and scratch use, then the CPU reference.
// TF32 mode (cd_cuda_set_tf32(1)) rounds the GEMM/convolution inputs to TF32 first.
#include <math.h>
#include <stdlib.h>
#include <time.h>
#include "kernels/emu/emu.h"

// The stream's scratch as the .cu op asks for it, poisoned (NaN bytes): whatever a caller kept
// there is gone, as on the GPU. NULL on failure (recorded).
void *emu_scratch_use(void *stream, size_t bytes) {
    void *p = cd_cuda_scratch(stream, bytes);
    if (p) memset(emu_real(p), 0xff, bytes);
    return p;
}

// ---- GEMM --------------------------------------------------------------------------------------
// cuBLAS's argument checks for the column-major call the .cu makes (C^T = op(B)^T op(A)^T).
static int gemm_args_ok(const char *op, int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc) {
    if (K < 0 || ldb < (transB ? (K > 1 ? K : 1) : N) || lda < (transA ? M : (K > 1 ? K : 1)) || ldc < N)
        return emu_fail(__FILE__, __LINE__, op, "cuBLAS invalid value (M %d N %d K %d lda %d ldb %d ldc %d)", M, N, K,
                        lda, ldb, ldc);
    return 0;
}

// C = alpha op(A) op(B) + beta C on host-side data in device memory, TF32-rounded inputs when on.
static void gemm_run(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    int64_t na = transA ? emu_span(K, M, lda) : emu_span(M, K, lda);
    int64_t nb = transB ? emu_span(N, K, ldb) : emu_span(K, N, ldb);
    float *oa, *ob;
    const float *a = emu_tf32_copy(A, na, &oa), *b = emu_tf32_copy(B, nb, &ob);
    cd_gemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc);
    free(oa);
    free(ob);
}

void cd_cuda_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc, void *stream) {
    const char *op = "cublasGemmEx (fp32)";
    if (!cd_cuda_cublas(stream) || M <= 0 || N <= 0) return;
    if (gemm_args_ok(op, transA, transB, M, N, K, lda, ldb, ldc) ||
        EMU_DEV(op, A, F4(transA ? emu_span(K, M, lda) : emu_span(M, K, lda))) ||
        EMU_DEV(op, B, F4(transB ? emu_span(N, K, ldb) : emu_span(K, N, ldb))) ||
        EMU_DEV(op, C, F4(emu_span(M, N, ldc))) ||
        emu_no_overlap(op, C, F4(emu_span(M, N, ldc)), A, F4(transA ? emu_span(K, M, lda) : emu_span(M, K, lda))) ||
        emu_no_overlap(op, C, F4(emu_span(M, N, ldc)), B, F4(transB ? emu_span(N, K, ldb) : emu_span(K, N, ldb))))
        return;
    gemm_run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cd_cuda_gemm_batched(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                          int64_t strideA, const float *B, int ldb, int64_t strideB, float beta, float *C, int ldc,
                          int64_t strideC, int batch, void *stream) {
    const char *op = "cublasGemmStridedBatchedEx";
    if (!cd_cuda_cublas(stream) || M <= 0 || N <= 0 || batch <= 0) return;
    int64_t na = transA ? emu_span(K, M, lda) : emu_span(M, K, lda);
    int64_t nb = transB ? emu_span(N, K, ldb) : emu_span(K, N, ldb), nc = emu_span(M, N, ldc);
    if (gemm_args_ok(op, transA, transB, M, N, K, lda, ldb, ldc) ||
        EMU_DEV(op, A, F4((batch - 1) * strideA + na)) || EMU_DEV(op, B, F4((batch - 1) * strideB + nb)) ||
        EMU_DEV(op, C, F4((batch - 1) * strideC + nc)))
        return;
    for (int i = 0; i < batch; i++)
        gemm_run(transA, transB, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta, C + i * strideC,
                 ldc);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// The emulation's "GEMM rate": the CPU's, through the emulated ops (own buffers, as the .cu).
double cd_cuda_gemm_rate_gflops(int n, int bf16, void *stream) {
    if (n <= 0) return -1;
    size_t es = bf16 ? 2 : 4, nn = (size_t)n * n;
    void *A = cd_cuda_malloc(nn * es), *B = cd_cuda_malloc(nn * es), *C = cd_cuda_malloc(nn * 4);
    double rate = -1;
    if (A && B && C) {
        void *ha = emu_real(A), *hb = emu_real(B);   // the .cu fills them on the device
        for (size_t i = 0; i < nn; i++) {
            float v = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
            if (bf16) { ((uint16_t *)ha)[i] = emu_f2bf(v); ((uint16_t *)hb)[i] = emu_f2bf(-v); }
            else { ((float *)ha)[i] = v; ((float *)hb)[i] = -v; }
        }
        double t0 = now_s();
        if (bf16) cd_cuda_gemm_bf16(0, 0, n, n, n, 1.f, A, n, B, n, 0.f, C, n, 0, stream);
        else cd_cuda_gemm(0, 0, n, n, n, 1.f, A, n, B, n, 0.f, C, n, stream);
        double s = now_s() - t0;
        if (!cd_cuda_sync(stream) && s > 0) rate = 2.0 * n * (double)n * n / s / 1e9;
    }
    cd_cuda_free(A);
    cd_cuda_free(B);
    cd_cuda_free(C);
    return rate;
}

// ---- Linear ------------------------------------------------------------------------------------
void cd_cuda_linear_fwd(float *y, const float *x, const float *W, const float *b, int n, int in, int out,
                        void *stream) {
    const char *op = "cd_cuda_linear_fwd";
    if (!cd_cuda_cublas(stream) || n <= 0 || out <= 0) return;
    if (gemm_args_ok(op, 0, 1, n, out, in, in, in, out) || EMU_DEV(op, x, F4((int64_t)n * in)) ||
        EMU_DEV(op, W, F4((int64_t)out * in)) || EMU_OPT(op, b, F4(out)) || EMU_DEV(op, y, F4((int64_t)n * out)) ||
        emu_no_overlap(op, y, F4((int64_t)n * out), x, F4((int64_t)n * in)) ||
        emu_no_overlap(op, y, F4((int64_t)n * out), W, F4((int64_t)out * in)))
        return;
    float *ox, *ow;
    const float *xr = emu_tf32_copy(x, (int64_t)n * in, &ox), *wr = emu_tf32_copy(W, (int64_t)out * in, &ow);
    cd_linear_fwd(y, xr, wr, b, n, in, out);
    free(ox);
    free(ow);
}

void cd_cuda_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int n,
                        int in, int out, void *stream) {
    const char *op = "cd_cuda_linear_bwd";
    if (!cd_cuda_cublas(stream) || n <= 0) return;
    if (EMU_DEV(op, dy, F4((int64_t)n * out)) || EMU_OPT(op, dx, F4((int64_t)n * in)) ||
        EMU_OPT(op, dW, F4((int64_t)out * in)) || EMU_OPT(op, db, F4(out)) ||
        (dx && EMU_DEV(op, W, F4((int64_t)out * in))) || (dW && EMU_DEV(op, x, F4((int64_t)n * in))))
        return;
    float *od, *ox, *ow;
    const float *dyr = emu_tf32_copy(dy, (int64_t)n * out, &od);
    const float *xr = dW ? emu_tf32_copy(x, (int64_t)n * in, &ox) : (ox = NULL, x);
    const float *wr = dx ? emu_tf32_copy(W, (int64_t)out * in, &ow) : (ow = NULL, W);
    cd_linear_bwd(dx, dW, NULL, dyr, xr, wr, n, in, out);
    if (db) cd_linear_bwd(NULL, NULL, db, dy, x, W, n, in, out);   // the bias sum reads fp32 dy
    free(od);
    free(ox);
    free(ow);
}

// ---- convolution (cuDNN) -------------------------------------------------------------------------
// cuDNN's descriptor checks: CUDNN_STATUS_BAD_PARAM for empty or negative shapes.
int emu_conv_args_ok(const char *op, int n, int cin, int h, int w, int cout, int k, int s, int p) {
    int ho = s > 0 ? (h + 2 * p - k) / s + 1 : 0, wo = s > 0 ? (w + 2 * p - k) / s + 1 : 0;
    if (n < 1 || cin < 1 || h < 1 || w < 1 || cout < 1 || k < 1 || s < 1 || p < 0 || h + 2 * p < k ||
        w + 2 * p < k || ho < 1 || wo < 1)
        return emu_fail(__FILE__, __LINE__, op, "CUDNN_STATUS_BAD_PARAM (n %d cin %d %dx%d cout %d k %d s %d p %d)", n,
                        cin, h, w, cout, k, s, p);
    return 0;
}

void cd_cuda_conv2d_fwd(float *y, const float *x, const float *W, const float *b, int n, int cin, int h, int w,
                        int cout, int k, int s, int p, void *stream) {
    const char *op = "cd_cuda_conv2d_fwd";
    if (!cd_cuda_cudnn(stream) || emu_conv_args_ok(op, n, cin, h, w, cout, k, s, p)) return;
    int64_t ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    int64_t nx = (int64_t)n * cin * h * w, nw = (int64_t)cout * cin * k * k;
    if (EMU_DEV(op, x, F4(nx)) || EMU_DEV(op, W, F4(nw)) || EMU_OPT(op, b, F4(cout)) ||
        EMU_DEV(op, y, F4((int64_t)n * cout * ho * wo)) || emu_no_overlap(op, y, F4((int64_t)n * cout * ho * wo), x, F4(nx)))
        return;
    float *ox, *ow;
    const float *xr = emu_tf32_copy(x, nx, &ox), *wr = emu_tf32_copy(W, nw, &ow);
    cd_conv2d_fwd(y, xr, wr, b, n, cin, h, w, cout, k, s, p);
    free(ox);
    free(ow);
}

void cd_cuda_conv2d_bwd(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int n,
                        int cin, int h, int w, int cout, int k, int s, int p, void *stream) {
    const char *op = "cd_cuda_conv2d_bwd";
    if (!cd_cuda_cudnn(stream) || emu_conv_args_ok(op, n, cin, h, w, cout, k, s, p)) return;
    int64_t ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    int64_t nx = (int64_t)n * cin * h * w, nw = (int64_t)cout * cin * k * k, ny = (int64_t)n * cout * ho * wo;
    if (EMU_DEV(op, dy, F4(ny)) || EMU_OPT(op, dx, F4(nx)) || EMU_OPT(op, dW, F4(nw)) || EMU_OPT(op, db, F4(cout)) ||
        (dx && EMU_DEV(op, W, F4(nw))) || (dW && EMU_DEV(op, x, F4(nx))) || emu_no_overlap(op, dx, F4(nx), dy, F4(ny)))
        return;
    float *od, *ox, *ow;
    const float *dyr = emu_tf32_copy(dy, ny, &od);
    const float *xr = dW ? emu_tf32_copy(x, nx, &ox) : (ox = NULL, x);
    const float *wr = dx ? emu_tf32_copy(W, nw, &ow) : (ow = NULL, W);
    if (dx || dW) cd_conv2d_bwd(dx, dW, NULL, dyr, xr, wr, n, cin, h, w, cout, k, s, p);
    if (db) cd_conv2d_bwd(NULL, NULL, db, dy, x, W, n, cin, h, w, cout, k, s, p);
    free(od);
    free(ox);
    free(ow);
}

// ---- LayerNorm and GroupNorm -----------------------------------------------------------------------
void cd_cuda_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g, const float *b, int n,
                           int c, float eps, void *stream) {
    const char *op = "cd_cuda_layernorm_fwd";
    if (n <= 0) return;
    int64_t nc = (int64_t)n * c;
    if (EMU_DEV(op, x, F4(nc)) || EMU_DEV(op, y, F4(nc)) || EMU_OPT(op, mean, F4(n)) || EMU_OPT(op, rstd, F4(n)) ||
        EMU_OPT(op, g, F4(c)) || EMU_OPT(op, b, F4(c)))
        return;
    cd_layernorm_fwd(y, mean, rstd, x, g, b, n, c, eps);
}

void cd_cuda_layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x, const float *mean,
                           const float *rstd, const float *g, int n, int c, void *stream) {
    const char *op = "cd_cuda_layernorm_bwd";
    if (n <= 0) return;
    int64_t nc = (int64_t)n * c;
    if (EMU_DEV(op, dy, F4(nc)) || EMU_DEV(op, x, F4(nc)) || EMU_DEV(op, mean, F4(n)) || EMU_DEV(op, rstd, F4(n)) ||
        EMU_OPT(op, dx, F4(nc)) || EMU_OPT(op, dg, F4(c)) || EMU_OPT(op, db, F4(c)) || EMU_OPT(op, g, F4(c)))
        return;
    cd_layernorm_bwd(dx, dg, db, dy, x, mean, rstd, g, n, c);
}

// Shared by the fp32 and bf16 GroupNorm forward: checks, and the scratch the .cu takes.
int emu_gn_fwd_prep(const char *op, float *mean, float *rstd, const float *g, const float *b, int n, int c, int hw,
                    int groups, void *stream) {
    if (EMU_REQUIRE(groups > 0 && c % groups == 0, "groupnorm: c % groups != 0")) return -1;
    int64_t nc = (int64_t)n * c, ng = (int64_t)n * groups;
    if (!emu_scratch_use(stream, sizeof(float) * (2 * (size_t)nc + 2 * (size_t)ng))) return -1;
    if (EMU_OPT(op, mean, F4(ng)) || EMU_OPT(op, rstd, F4(ng)) || EMU_OPT(op, g, F4(c)) || EMU_OPT(op, b, F4(c)))
        return -1;
    return 0;
}

void cd_cuda_groupnorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g, const float *b, int n,
                           int c, int hw, int groups, float eps, int silu, void *stream) {
    const char *op = "cd_cuda_groupnorm_fwd";
    if (n <= 0 || emu_gn_fwd_prep(op, mean, rstd, g, b, n, c, hw, groups, stream)) return;
    EMU_XLATE(mean), EMU_XLATE(rstd), EMU_XLATE(g), EMU_XLATE(b);
    int64_t nt = (int64_t)n * c * hw;
    if (EMU_DEV(op, x, F4(nt)) || EMU_DEV(op, y, F4(nt))) return;
    cd_groupnorm_fwd(y, mean, rstd, x, g, b, n, c, hw, groups, eps, silu);
}

void cd_cuda_groupnorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x, const float *mean,
                           const float *rstd, const float *g, const float *b, int n, int c, int hw, int groups,
                           int silu, void *stream) {
    const char *op = "cd_cuda_groupnorm_bwd";
    if (n <= 0 || EMU_REQUIRE(groups > 0 && c % groups == 0, "groupnorm: c % groups != 0")) return;
    int64_t nc = (int64_t)n * c, ng = (int64_t)n * groups, nt = nc * hw;
    if (!emu_scratch_use(stream, sizeof(float) * (2 * (size_t)nc + 2 * (size_t)ng))) return;
    if (EMU_DEV(op, dy, F4(nt)) || EMU_DEV(op, x, F4(nt)) || EMU_DEV(op, mean, F4(ng)) || EMU_DEV(op, rstd, F4(ng)) ||
        EMU_OPT(op, dx, F4(nt)) || EMU_OPT(op, dg, F4(c)) || EMU_OPT(op, db, F4(c)) || EMU_OPT(op, g, F4(c)) ||
        EMU_OPT(op, b, F4(c)))
        return;
    cd_groupnorm_bwd(dx, dg, db, dy, x, mean, rstd, g, b, n, c, hw, groups, silu);
}

// ---- loss, optimizer, sum of squares ------------------------------------------------------------------
// Both return a value on the host: the .cu synchronises the stream (so the tracker retires it).
static double mse_run(float *grad, const float *a, const float *b, const float *mask, int64_t n, float scale,
                      void *stream) {
    const char *op = "cd_cuda_mse_fwd_bwd";
    if (!emu_scratch_use(stream, sizeof(double))) return NAN;
    if (n <= 0) return 0;
    if (EMU_DEV(op, a, F4(n)) || EMU_DEV(op, b, F4(n)) || EMU_OPT(op, mask, F4(n)) || EMU_OPT(op, grad, F4(n)))
        return NAN;
    return cd_mse_fwd_bwd(grad, a, b, mask, n, scale);
}
double cd_cuda_mse_fwd_bwd(float *grad, const float *a, const float *b, const float *mask, int64_t n, float scale,
                           void *stream) {
    double r = mse_run(grad, a, b, mask, n, scale, stream);
    emu_retire(stream, 0);
    return r;
}

static double sumsq_run(const float *x, int64_t n, void *stream) {
    if (!emu_scratch_use(stream, sizeof(double))) return NAN;
    if (n <= 0) return 0;
    if (EMU_DEV("cd_cuda_sumsq", x, F4(n))) return NAN;
    return cd_sumsq(x, n);
}
double cd_cuda_sumsq(const float *x, int64_t n, void *stream) {
    double r = sumsq_run(x, n, stream);
    emu_retire(stream, 0);
    return r;
}

void cd_cuda_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                        float eps, float wd, int step, void *stream) {
    const char *op = "cd_cuda_adamw_step";
    if (n <= 0) return;
    if (EMU_DEV(op, p, F4(n)) || EMU_DEV(op, g, F4(n)) || EMU_DEV(op, m, F4(n)) || EMU_DEV(op, v, F4(n))) return;
    cd_adamw_step(p, g, m, v, n, lr, beta1, beta2, eps, wd, step);
}
