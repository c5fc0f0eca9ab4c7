// Host emulation (see kernels/emu/emu.h) of the bf16 twins: conversions, GEMM and Linear
// (kernels/cuda_gemm.cu), LayerNorm/GroupNorm (cuda_norm.cu), convolution (cuda_conv.cu),
// element-wise and layout ops (cuda_elementwise.cu). 16-bit inputs (bf16, or fp16 in fp16 mode:
// emu_f2bf / emu_bf2f follow cd_cuda_set_fp16) are widened exactly, the math runs in fp32 (the
// CPU reference), and outputs are rounded to the 16-bit format (nearest even) where the .cu
// rounds them: e.g. a 16-bit Linear/convolution output is rounded, then the fp32 bias is added
// and the sum rounded again.
#include <stdlib.h>
#include "kernels/emu/emu.h"

// ---- conversions ---------------------------------------------------------------------------------
// In place would race on the GPU (element i's output bytes are another element's input).
void cd_cuda_f32_to_bf16(uint16_t *y, const float *x, int64_t n, void *stream) {
    const char *op = "cd_cuda_f32_to_bf16";
    if (n <= 0 || EMU_DEV(op, x, F4(n)) || EMU_DEV(op, y, B2(n)) || emu_no_overlap(op, y, B2(n), x, F4(n))) return;
    emu_narrow(y, x, n);
}
void cd_cuda_bf16_to_f32(float *y, const uint16_t *x, int64_t n, void *stream) {
    const char *op = "cd_cuda_bf16_to_f32";
    if (n <= 0 || EMU_DEV(op, x, B2(n)) || EMU_DEV(op, y, F4(n)) || emu_no_overlap(op, y, F4(n), x, B2(n))) return;
    for (int64_t i = 0; i < n; i++) y[i] = emu_bf2f(x[i]);
}

// ---- GEMM and Linear --------------------------------------------------------------------------------
// C[M,N] (row stride ldc; fp32, or bf16 when c_bf16) = alpha op(A) op(B) + beta C; A, B bf16.
static void gemm_bf16_run(int transA, int transB, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                          const uint16_t *B, int ldb, float beta, void *C, int ldc, int c_bf16) {
    int64_t na = transA ? emu_span(K, M, lda) : emu_span(M, K, lda);
    int64_t nb = transB ? emu_span(N, K, ldb) : emu_span(K, N, ldb);
    float *a = emu_widen(A, na), *b = emu_widen(B, nb);
    if (!c_bf16) {
        cd_gemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, (float *)C, ldc);
    } else {   // fp32 result (beta C read from bf16 only when beta != 0), then rounded
        uint16_t *cb = C;
        float *t = emu_tmp((int64_t)M * N);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) t[(int64_t)i * N + j] = beta != 0.f ? emu_bf2f(cb[(int64_t)i * ldc + j]) : 0.f;
        cd_gemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, t, N);
        for (int i = 0; i < M; i++) emu_narrow(cb + (int64_t)i * ldc, t + (int64_t)i * N, N);
        free(t);
    }
    free(a);
    free(b);
}

void cd_cuda_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                       const uint16_t *B, int ldb, float beta, void *C, int ldc, int c_bf16, void *stream) {
    const char *op = "cublasGemmEx (bf16)";
    if (!cd_cuda_cublas(stream) || M <= 0 || N <= 0) return;
    if (K < 0 || ldb < (transB ? (K > 1 ? K : 1) : N) || lda < (transA ? M : (K > 1 ? K : 1)) || ldc < N) {
        emu_fail(__FILE__, __LINE__, op, "cuBLAS invalid value (M %d N %d K %d lda %d ldb %d ldc %d)", M, N, K, lda,
                 ldb, ldc);
        return;
    }
    if (EMU_DEV(op, A, B2(transA ? emu_span(K, M, lda) : emu_span(M, K, lda))) ||
        EMU_DEV(op, B, B2(transB ? emu_span(N, K, ldb) : emu_span(K, N, ldb))) ||
        EMU_DEV(op, C, emu_span(M, N, ldc) * (c_bf16 ? 2 : 4)))
        return;
    gemm_bf16_run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, c_bf16);
}

// (the caller translates y, x, W, b afterwards)
static int lin_check(const char *op, void *y, size_t yes, const uint16_t *x, const uint16_t *W, const float *b,
                     int n, int in, int out, void *stream) {
    return EMU_DEV(op, x, B2((int64_t)n * in)) || EMU_DEV(op, W, B2((int64_t)out * in)) || EMU_OPT(op, b, F4(out)) ||
           EMU_DEV(op, y, (int64_t)n * out * yes);
}

void cd_cuda_linear_fwd_bf16(float *y, const uint16_t *x, const uint16_t *W, const float *b, int n, int in, int out,
                             void *stream) {
    if (!cd_cuda_cublas(stream) || n <= 0 || out <= 0 ||
        lin_check("cd_cuda_linear_fwd_bf16", y, 4, x, W, b, n, in, out, stream))
        return;
    EMU_XLATE(y), EMU_XLATE(x), EMU_XLATE(W), EMU_XLATE(b);
    gemm_bf16_run(0, 1, n, out, in, 1.f, x, in, W, in, 0.f, y, out, 0);
    if (b)
        for (int64_t i = 0; i < (int64_t)n * out; i++) y[i] += b[i % out];
}

void cd_cuda_linear_fwd_bf16_out(uint16_t *y, const uint16_t *x, const uint16_t *W, const float *b, int n, int in,
                                 int out, void *stream) {
    if (!cd_cuda_cublas(stream) || n <= 0 || out <= 0 ||
        lin_check("cd_cuda_linear_fwd_bf16_out", y, 2, x, W, b, n, in, out, stream))
        return;
    EMU_XLATE(y), EMU_XLATE(x), EMU_XLATE(W), EMU_XLATE(b);
    gemm_bf16_run(0, 1, n, out, in, 1.f, x, in, W, in, 0.f, y, out, 1);
    if (b)
        for (int64_t i = 0; i < (int64_t)n * out; i++) y[i] = emu_f2bf(emu_bf2f(y[i]) + b[i % out]);
}

// ---- norms --------------------------------------------------------------------------------------------
void cd_cuda_layernorm_fwd_bf16(uint16_t *y, float *mean, float *rstd, const uint16_t *x, const float *g,
                                const float *b, int n, int c, float eps, void *stream) {
    const char *op = "cd_cuda_layernorm_fwd_bf16";
    if (n <= 0) return;
    int64_t nc = (int64_t)n * c;
    if (EMU_DEV(op, x, B2(nc)) || EMU_DEV(op, y, B2(nc)) || EMU_OPT(op, mean, F4(n)) || EMU_OPT(op, rstd, F4(n)) ||
        EMU_OPT(op, g, F4(c)) || EMU_OPT(op, b, F4(c)))
        return;
    float *xf = emu_widen(x, nc), *t = emu_tmp(nc);
    cd_layernorm_fwd(t, mean, rstd, xf, g, b, n, c, eps);
    emu_narrow(y, t, nc);
    free(xf);
    free(t);
}

void cd_cuda_groupnorm_fwd_bf16(uint16_t *y, float *mean, float *rstd, const uint16_t *x, const float *g,
                                const float *b, int n, int c, int hw, int groups, float eps, int silu, void *stream) {
    const char *op = "cd_cuda_groupnorm_fwd_bf16";
    if (n <= 0 || emu_gn_fwd_prep(op, mean, rstd, g, b, n, c, hw, groups, stream)) return;
    EMU_XLATE(mean), EMU_XLATE(rstd), EMU_XLATE(g), EMU_XLATE(b);
    int64_t nt = (int64_t)n * c * hw;
    if (EMU_DEV(op, x, B2(nt)) || EMU_DEV(op, y, B2(nt))) return;
    float *xf = emu_widen(x, nt), *t = emu_tmp(nt);
    cd_groupnorm_fwd(t, mean, rstd, xf, g, b, n, c, hw, groups, eps, silu);
    emu_narrow(y, t, nt);
    free(xf);
    free(t);
}

// ---- convolution ------------------------------------------------------------------------------------------
void cd_cuda_conv2d_fwd_bf16(uint16_t *y, const uint16_t *x, const uint16_t *W, const float *b, int n, int cin, int h,
                             int w, int cout, int k, int s, int p, void *stream) {
    const char *op = "cd_cuda_conv2d_fwd_bf16";
    if (!cd_cuda_cudnn(stream) || emu_conv_args_ok(op, n, cin, h, w, cout, k, s, p)) return;
    int64_t hw = (int64_t)((h + 2 * p - k) / s + 1) * ((w + 2 * p - k) / s + 1);
    int64_t nx = (int64_t)n * cin * h * w, nw = (int64_t)cout * cin * k * k, ny = (int64_t)n * cout * hw;
    if (EMU_DEV(op, x, B2(nx)) || EMU_DEV(op, W, B2(nw)) || EMU_OPT(op, b, F4(cout)) || EMU_DEV(op, y, B2(ny))) return;
    float *xf = emu_widen(x, nx), *wf = emu_widen(W, nw), *t = emu_tmp(ny);
    cd_conv2d_fwd(t, xf, wf, NULL, n, cin, h, w, cout, k, s, p);
    emu_narrow(y, t, ny);   // cuDNN writes bf16 y; the bias kernel then adds in fp32 and rounds again
    if (b)
        for (int64_t i = 0; i < ny; i++) y[i] = emu_f2bf(emu_bf2f(y[i]) + b[(i / hw) % cout]);
    free(xf);
    free(wf);
    free(t);
}

// ---- element-wise and layout ----------------------------------------------------------------------------
void cd_cuda_silu_fwd_bf16(uint16_t *y, const uint16_t *x, int64_t n, void *stream) {
    if (n <= 0 || EMU_DEV("cd_cuda_silu_fwd_bf16", x, B2(n)) || EMU_DEV("cd_cuda_silu_fwd_bf16", y, B2(n))) return;
    float *t = emu_widen(x, n);
    cd_silu_fwd(t, t, n);
    emu_narrow(y, t, n);
    free(t);
}

void cd_cuda_bias_geglu_fwd_bf16(uint16_t *y, const uint16_t *x, const float *bias, int64_t n, int c, void *stream) {
    const char *op = "cd_cuda_bias_geglu_fwd_bf16";
    if (n * c <= 0 || EMU_DEV(op, x, B2(n * 2 * c)) || EMU_DEV(op, y, B2(n * c)) || EMU_OPT(op, bias, F4(2 * c)))
        return;
    const uint16_t *ye = y + n * c, *xe = x + n * 2 * c;
    if (y < xe && x < ye) { emu_fail(__FILE__, __LINE__, op, "output and input overlap (the GPU kernel would race)"); return; }
    float *t = emu_widen(x, n * 2 * c), *o = emu_tmp(n * c);
    if (bias)
        for (int64_t r = 0; r < n; r++)
            for (int j = 0; j < 2 * c; j++) t[r * 2 * c + j] += bias[j];
    cd_geglu_fwd(o, t, n, c);
    emu_narrow(y, o, n * c);
    free(t);
    free(o);
}

void cd_cuda_add_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, int64_t n, void *stream) {
    const char *op = "cd_cuda_add_bf16";
    if (n <= 0 || EMU_DEV(op, a, B2(n)) || EMU_DEV(op, b, B2(n)) || EMU_DEV(op, y, B2(n))) return;
    for (int64_t i = 0; i < n; i++) y[i] = emu_f2bf(emu_bf2f(a[i]) + emu_bf2f(b[i]));
}

void cd_cuda_add_bias_nc_bf16(uint16_t *y, const float *bias, int n, int c, int hw, void *stream) {
    const char *op = "cd_cuda_add_bias_nc_bf16";
    int64_t nc = (int64_t)n * c;
    if (nc * hw <= 0 || EMU_DEV(op, y, B2(nc * hw)) || EMU_DEV(op, bias, F4(nc))) return;
    for (int64_t i = 0; i < nc * hw; i++) y[i] = emu_f2bf(emu_bf2f(y[i]) + bias[i / hw]);
}

static int overlap16(const char *op, const uint16_t *y, int64_t ny, const uint16_t *x, int64_t nx) {
    y = emu_real(y), x = emu_real(x);
    if (y < x + nx && x < y + ny) return emu_fail(__FILE__, __LINE__, op, "output and input overlap (the GPU kernel would race)");
    return 0;
}

void cd_cuda_upsample2x_fwd_bf16(uint16_t *y, const uint16_t *x, int n, int c, int h, int w, void *stream) {
    const char *op = "cd_cuda_upsample2x_fwd_bf16";
    int64_t nx = (int64_t)n * c * h * w;
    if (nx <= 0 || EMU_DEV(op, x, B2(nx)) || EMU_DEV(op, y, B2(4 * nx)) || overlap16(op, y, 4 * nx, x, nx)) return;
    for (int64_t p = 0; p < (int64_t)n * c; p++)
        for (int Y = 0; Y < 2 * h; Y++)
            for (int X = 0; X < 2 * w; X++)
                y[p * 4 * h * w + (int64_t)Y * 2 * w + X] = x[p * h * w + (int64_t)(Y >> 1) * w + (X >> 1)];
}

// y[b, cols, rows] = x[b, rows, cols] (bit copies)
static void transpose16(const char *op, uint16_t *y, const uint16_t *x, int b, int rows, int cols, void *stream) {
    int64_t nt = (int64_t)b * rows * cols;
    if (b <= 0 || rows <= 0 || cols <= 0 || EMU_DEV(op, x, B2(nt)) || EMU_DEV(op, y, B2(nt)) ||
        overlap16(op, y, nt, x, nt))
        return;
    for (int64_t i = 0; i < b; i++)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                y[i * rows * cols + (int64_t)c * rows + r] = x[i * rows * cols + (int64_t)r * cols + c];
}
void cd_cuda_nchw_to_nhwc_bf16(uint16_t *y, const uint16_t *x, int n, int c, int hw, void *stream) {
    transpose16("cd_cuda_nchw_to_nhwc_bf16", y, x, n, c, hw, stream);
}
void cd_cuda_nhwc_to_nchw_bf16(uint16_t *y, const uint16_t *x, int n, int c, int hw, void *stream) {
    transpose16("cd_cuda_nhwc_to_nchw_bf16", y, x, n, hw, c, stream);
}

void cd_cuda_concat_c_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, int n, int ca, int cb, int hw, void *stream) {
    const char *op = "cd_cuda_concat_c_bf16";
    int64_t sa = (int64_t)ca * hw, sb = (int64_t)cb * hw, ny = (int64_t)n * (sa + sb);
    if (ny <= 0 || EMU_DEV(op, y, B2(ny)) || EMU_DEV(op, a, B2(n * sa)) || EMU_DEV(op, b, B2(n * sb)) ||
        overlap16(op, y, ny, a, n * sa) || overlap16(op, y, ny, b, n * sb))
        return;
    for (int64_t p = 0; p < n; p++) {
        memcpy(y + p * (sa + sb), a + p * sa, B2(sa));
        memcpy(y + p * (sa + sb) + sa, b + p * sb, B2(sb));
    }
}
