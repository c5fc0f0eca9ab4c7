// Element-wise ops, activations, layout changes and embeddings on the GPU: twins of
// kernels/act_cpu.c, resample_cpu.c, embed_cpu.c (same formulas, fp32 math).
#include "kernels/cuda_common.h"
#include <math.h>

#define LAUNCH_EW(kernel, n, st, ...)                                                   \
    do {                                                                                \
        if ((n) > 0) {                                                                  \
            kernel<<<cd_ew_blocks(n), 256, 0, cd_stream(st)>>>(__VA_ARGS__);            \
            cudaCheckLaunch();                                                          \
        }                                                                               \
    } while (0)

// ---- 16-bit conversion (bf16, or fp16 in fp16 mode: cd_cuda_set_fp16) --------------------
template <typename T>
__global__ void k_f32_to_16(T *y, const float *x, int64_t n) {
    CD_GRID_LOOP(i, n) y[i] = cd_to16<T>(x[i]);
}
template <typename T>
__global__ void k_16_to_f32(float *y, const T *x, int64_t n) {
    CD_GRID_LOOP(i, n) y[i] = cd_to32(x[i]);
}
extern "C" void cd_cuda_f32_to_bf16(uint16_t *y, const float *x, int64_t n, void *s) {
    CD_DISPATCH16(T16, LAUNCH_EW(k_f32_to_16<T16>, n, s, (T16 *)y, x, n));
}
extern "C" void cd_cuda_bf16_to_f32(float *y, const uint16_t *x, int64_t n, void *s) {
    CD_DISPATCH16(T16, LAUNCH_EW(k_16_to_f32<T16>, n, s, y, (const T16 *)x, n));
}

// ---- activations ----------------------------------------------------------------------
__device__ __forceinline__ float sigm(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ float gelu_f(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_d(float x) {
    return 0.5f * (1.f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
}

template <typename T>
__global__ void k_silu_fwd(T *y, const T *x, int64_t n) {
    CD_GRID_LOOP(i, n) { float v = cd_ld(x, i); cd_st(y, i, v * sigm(v)); }
}
__global__ void k_silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    CD_GRID_LOOP(i, n) { float v = x[i], s = sigm(v); dx[i] = dy[i] * s * (1.f + v * (1.f - s)); }
}
__global__ void k_gelu_fwd(float *y, const float *x, int64_t n) {
    CD_GRID_LOOP(i, n) y[i] = gelu_f(x[i]);
}
__global__ void k_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    CD_GRID_LOOP(i, n) dx[i] = dy[i] * gelu_d(x[i]);
}
__global__ void k_qgelu_fwd(float *y, const float *x, int64_t n) {
    CD_GRID_LOOP(i, n) { float v = x[i]; y[i] = v * sigm(1.702f * v); }
}
__global__ void k_qgelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    CD_GRID_LOOP(i, n) {
        float v = x[i], s = sigm(1.702f * v);
        dx[i] = dy[i] * (s + 1.702f * v * s * (1.f - s));
    }
}
extern "C" void cd_cuda_silu_fwd(float *y, const float *x, int64_t n, void *s) { LAUNCH_EW(k_silu_fwd<float>, n, s, y, x, n); }
extern "C" void cd_cuda_silu_fwd_bf16(uint16_t *y, const uint16_t *x, int64_t n, void *s) {
    CD_DISPATCH16(T16, LAUNCH_EW(k_silu_fwd<T16>, n, s, (T16 *)y, (const T16 *)x, n));
}
extern "C" void cd_cuda_silu_bwd(float *dx, const float *dy, const float *x, int64_t n, void *s) { LAUNCH_EW(k_silu_bwd, n, s, dx, dy, x, n); }
extern "C" void cd_cuda_gelu_fwd(float *y, const float *x, int64_t n, void *s) { LAUNCH_EW(k_gelu_fwd, n, s, y, x, n); }
extern "C" void cd_cuda_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n, void *s) { LAUNCH_EW(k_gelu_bwd, n, s, dx, dy, x, n); }
extern "C" void cd_cuda_quick_gelu_fwd(float *y, const float *x, int64_t n, void *s) { LAUNCH_EW(k_qgelu_fwd, n, s, y, x, n); }
extern "C" void cd_cuda_quick_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n, void *s) { LAUNCH_EW(k_qgelu_bwd, n, s, dx, dy, x, n); }

// ---- GEGLU: x[n, 2c] = [hidden | gate] -> y[n, c] = hidden * gelu(gate) ----------------
template <typename T>
__global__ void k_geglu_fwd(T *y, const T *x, const float *bias, int64_t n, int c) {
    CD_GRID_LOOP(i, n * c) {
        int64_t r = i / c;
        int j = (int)(i - r * c);
        float hv = cd_ld(x, r * 2 * c + j), gv = cd_ld(x, r * 2 * c + c + j);
        if (bias) { hv += bias[j]; gv += bias[c + j]; }
        cd_st(y, i, hv * gelu_f(gv));
    }
}
__global__ void k_geglu_bwd(float *dx, const float *dy, const float *x, const float *bias, int64_t n, int c) {
    CD_GRID_LOOP(i, n * c) {
        int64_t r = i / c;
        int j = (int)(i - r * c);
        float hv = x[r * 2 * c + j], gv = x[r * 2 * c + c + j], d = dy[i];
        if (bias) { hv += bias[j]; gv += bias[c + j]; }
        dx[r * 2 * c + j] = d * gelu_f(gv);
        dx[r * 2 * c + c + j] = d * hv * gelu_d(gv);
    }
}
extern "C" void cd_cuda_geglu_fwd(float *y, const float *x, int64_t n, int c, void *s) {
    LAUNCH_EW(k_geglu_fwd<float>, n * c, s, y, x, (const float *)NULL, n, c);
}
extern "C" void cd_cuda_bias_geglu_fwd(float *y, const float *x, const float *bias, int64_t n, int c, void *s) {
    LAUNCH_EW(k_geglu_fwd<float>, n * c, s, y, x, bias, n, c);
}
extern "C" void cd_cuda_bias_geglu_fwd_bf16(uint16_t *y, const uint16_t *x, const float *bias, int64_t n, int c, void *s) {
    CD_DISPATCH16(T16, LAUNCH_EW(k_geglu_fwd<T16>, n * c, s, (T16 *)y, (const T16 *)x, bias, n, c));
}
extern "C" void cd_cuda_geglu_bwd(float *dx, const float *dy, const float *x, int64_t n, int c, void *s) {
    LAUNCH_EW(k_geglu_bwd, n * c, s, dx, dy, x, (const float *)NULL, n, c);
}
extern "C" void cd_cuda_bias_geglu_bwd(float *dx, const float *dy, const float *x, const float *bias, int64_t n, int c,
                                       void *s) {
    LAUNCH_EW(k_geglu_bwd, n * c, s, dx, dy, x, bias, n, c);
}

// ---- arithmetic -------------------------------------------------------------------------
template <typename T>
__global__ void k_add(T *y, const T *a, const T *b, int64_t n) { CD_GRID_LOOP(i, n) cd_st(y, i, cd_ld(a, i) + cd_ld(b, i)); }
__global__ void k_acc(float *y, const float *x, int64_t n) { CD_GRID_LOOP(i, n) y[i] += x[i]; }
__global__ void k_scale(float *y, float s, int64_t n) { CD_GRID_LOOP(i, n) y[i] *= s; }
__global__ void k_clamp(float *y, float lo, float hi, int64_t n) { CD_GRID_LOOP(i, n) y[i] = fminf(fmaxf(y[i], lo), hi); }
template <typename T>
__global__ void k_add_bias_nc(T *y, const float *bias, int64_t nc, int hw) {
    CD_GRID_LOOP(i, nc * hw) cd_st(y, i, cd_ld(y, i) + bias[i / hw]);
}
extern "C" void cd_cuda_add(float *y, const float *a, const float *b, int64_t n, void *s) { LAUNCH_EW(k_add<float>, n, s, y, a, b, n); }
extern "C" void cd_cuda_add_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, int64_t n, void *s) {
    CD_DISPATCH16(T16, LAUNCH_EW(k_add<T16>, n, s, (T16 *)y, (const T16 *)a, (const T16 *)b, n));
}
extern "C" void cd_cuda_acc(float *y, const float *x, int64_t n, void *s) { LAUNCH_EW(k_acc, n, s, y, x, n); }
extern "C" void cd_cuda_scale(float *y, float sc, int64_t n, void *s) { LAUNCH_EW(k_scale, n, s, y, sc, n); }
extern "C" void cd_cuda_clamp(float *y, float lo, float hi, int64_t n, void *s) { LAUNCH_EW(k_clamp, n, s, y, lo, hi, n); }
extern "C" void cd_cuda_add_bias_nc(float *y, const float *bias, int n, int c, int hw, void *s) {
    LAUNCH_EW(k_add_bias_nc<float>, (int64_t)n * c * hw, s, y, bias, (int64_t)n * c, hw);
}
extern "C" void cd_cuda_add_bias_nc_bf16(uint16_t *y, const float *bias, int n, int c, int hw, void *s) {
    CD_DISPATCH16(T16, LAUNCH_EW(k_add_bias_nc<T16>, (int64_t)n * c * hw, s, (T16 *)y, bias, (int64_t)n * c, hw));
}

// ---- resampling and layout ----------------------------------------------------------------
// y[nc, 2h, 2w] from x[nc, h, w]
template <typename T> // plain copies: T = float, or uint16_t for 16-bit (bf16 / fp16) bits
__global__ void k_up2_fwd(T *y, const T *x, int64_t nc, int h, int w) {
    int64_t W2 = 2 * w, HW2 = (int64_t)4 * h * w;
    CD_GRID_LOOP(i, nc * HW2) {
        int64_t p = i / HW2, r = i - p * HW2;
        int Y = (int)(r / W2), X = (int)(r - Y * W2);
        y[i] = x[p * h * w + (int64_t)(Y >> 1) * w + (X >> 1)];
    }
}
__global__ void k_up2_bwd(float *dx, const float *dy, int64_t nc, int h, int w) {
    int64_t hw = (int64_t)h * w;
    CD_GRID_LOOP(i, nc * hw) {
        int64_t p = i / hw, r = i - p * hw;
        int yy = (int)(r / w), xx = (int)(r - (int64_t)yy * w);
        const float *d = dy + p * 4 * hw + (int64_t)(2 * yy) * (2 * w) + 2 * xx;
        dx[i] = d[0] + d[1] + d[2 * w] + d[2 * w + 1];
    }
}
extern "C" void cd_cuda_upsample2x_fwd(float *y, const float *x, int n, int c, int h, int w, void *s) {
    LAUNCH_EW(k_up2_fwd<float>, (int64_t)n * c * 4 * h * w, s, y, x, (int64_t)n * c, h, w);
}
extern "C" void cd_cuda_upsample2x_fwd_bf16(uint16_t *y, const uint16_t *x, int n, int c, int h, int w, void *s) {
    LAUNCH_EW(k_up2_fwd<uint16_t>, (int64_t)n * c * 4 * h * w, s, y, x, (int64_t)n * c, h, w);
}
extern "C" void cd_cuda_upsample2x_bwd(float *dx, const float *dy, int n, int c, int h, int w, void *s) {
    LAUNCH_EW(k_up2_bwd, (int64_t)n * c * h * w, s, dx, dy, (int64_t)n * c, h, w);
}

// Batched transpose: y[b, cols, rows] = x[b, rows, cols], 32x32 tiles through shared memory.
template <typename T>
__global__ void k_transpose(T *y, const T *x, int rows, int cols) {
    __shared__ T t[32][33];
    int64_t base = (int64_t)blockIdx.z * rows * cols;
    int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int j = threadIdx.y; j < 32; j += 8) {
        int r = r0 + j, c = c0 + threadIdx.x;
        if (r < rows && c < cols) t[j][threadIdx.x] = x[base + (int64_t)r * cols + c];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < 32; j += 8) {
        int c = c0 + j, r = r0 + threadIdx.x;
        if (r < rows && c < cols) y[base + (int64_t)c * rows + r] = t[threadIdx.x][j];
    }
}
template <typename T>
static void transpose(T *y, const T *x, int b, int rows, int cols, void *s) {
    if (b <= 0 || rows <= 0 || cols <= 0) return;
    dim3 grid((cols + 31) / 32, (rows + 31) / 32, b), block(32, 8);
    k_transpose<T><<<grid, block, 0, cd_stream(s)>>>(y, x, rows, cols);
    cudaCheckLaunch();
}
extern "C" void cd_cuda_nchw_to_nhwc(float *y, const float *x, int n, int c, int hw, void *s) { transpose(y, x, n, c, hw, s); }
extern "C" void cd_cuda_nhwc_to_nchw(float *y, const float *x, int n, int c, int hw, void *s) { transpose(y, x, n, hw, c, s); }
extern "C" void cd_cuda_nchw_to_nhwc_bf16(uint16_t *y, const uint16_t *x, int n, int c, int hw, void *s) {
    transpose(y, x, n, c, hw, s);
}
extern "C" void cd_cuda_nhwc_to_nchw_bf16(uint16_t *y, const uint16_t *x, int n, int c, int hw, void *s) {
    transpose(y, x, n, hw, c, s);
}

// y[n, ca+cb, hw] = [a | b] (dir 0); da/db from dy (dir 1, either may be NULL)
__global__ void k_concat(float *y, float *a, float *b, int64_t n, int64_t sa, int64_t sb, int dir) {
    int64_t st = sa + sb;
    CD_GRID_LOOP(i, n * st) {
        int64_t p = i / st, r = i - p * st;
        float *src = r < sa ? (a ? a + p * sa + r : NULL) : (b ? b + p * sb + (r - sa) : NULL);
        if (dir == 0) y[i] = *src;
        else if (src) *src = y[i];
    }
}
extern "C" void cd_cuda_concat_c(float *y, const float *a, const float *b, int n, int ca, int cb, int hw, void *s) {
    LAUNCH_EW(k_concat, (int64_t)n * (ca + cb) * hw, s, y, (float *)a, (float *)b, (int64_t)n,
              (int64_t)ca * hw, (int64_t)cb * hw, 0);
}
extern "C" void cd_cuda_split_c(float *da, float *db, const float *dy, int n, int ca, int cb, int hw, void *s) {
    LAUNCH_EW(k_concat, (int64_t)n * (ca + cb) * hw, s, (float *)dy, da, db, (int64_t)n,
              (int64_t)ca * hw, (int64_t)cb * hw, 1);
}

// y[n, ca+cb, hw] = [a | b] for 16-bit (bf16 / fp16) bits
__global__ void k_concat_u16(uint16_t *y, const uint16_t *a, const uint16_t *b, int64_t n, int64_t sa, int64_t sb) {
    int64_t st = sa + sb;
    CD_GRID_LOOP(i, n * st) {
        int64_t p = i / st, r = i - p * st;
        y[i] = r < sa ? a[p * sa + r] : b[p * sb + (r - sa)];
    }
}
extern "C" void cd_cuda_concat_c_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, int n, int ca, int cb, int hw,
                                      void *s) {
    LAUNCH_EW(k_concat_u16, (int64_t)n * (ca + cb) * hw, s, y, a, b, (int64_t)n, (int64_t)ca * hw, (int64_t)cb * hw);
}

// ---- embeddings ---------------------------------------------------------------------------------
// nl = (float)-ln(max_period) and den = half - freq_shift come from the host (as embed_cpu.c).
__global__ void k_timestep(float *out, const float *t, int n, int dim, int flip, float nl, float den) {
    int half = dim / 2;
    CD_GRID_LOOP(i, (int64_t)n * dim) {
        int r = (int)(i / dim), j = (int)(i - (int64_t)r * dim);
        float v = 0.f;
        if (j < 2 * half) {
            int f = j < half ? j : j - half;
            float e = (nl * (float)f) / den;
            float arg = t[r] * expf(e);
            int first = j < half; // first half: sin (cos when flipped)
            v = (first != (flip != 0)) ? sinf(arg) : cosf(arg);
        }
        out[i] = v;
    }
}
extern "C" void cd_cuda_timestep_embedding(float *out, const float *t, int n, int dim, int flip,
                                           float shift, float maxp, void *s) {
    float nl = (float)(-log((double)maxp)), den = (float)(dim / 2) - shift;
    LAUNCH_EW(k_timestep, (int64_t)n * dim, s, out, t, n, dim, flip, nl, den);
}

__global__ void k_embed_fwd(float *out, const int32_t *ids, const float *table, int n, int c) {
    CD_GRID_LOOP(i, (int64_t)n * c) {
        int64_t r = i / c;
        out[i] = table[(int64_t)ids[r] * c + (i - r * c)];
    }
}
// dtable[ids[r], j] += dout[r, j] for the positions r in order, one thread per column j: no
// atomics, and the same order of additions as the CPU twin (a position whose id repeats adds
// into the sum so far). Rows the mask leaves out cost one load of ids and mask per position.
__global__ void k_embed_bwd(float *dtable, const float *dout, const int32_t *ids, int n, int c, const uint8_t *mask) {
    CD_GRID_LOOP(j, (int64_t)c) {
        for (int r = 0; r < n; r++) {
            const int id = ids[r];
            if (!mask || mask[id]) dtable[(int64_t)id * c + j] += dout[(int64_t)r * c + j];
        }
    }
}
extern "C" void cd_cuda_embedding_fwd(float *out, const int32_t *ids, const float *table, int n, int c, void *s) {
    LAUNCH_EW(k_embed_fwd, (int64_t)n * c, s, out, ids, table, n, c);
}
extern "C" void cd_cuda_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int n, int c,
                                      const uint8_t *row_mask, void *s) {
    LAUNCH_EW(k_embed_bwd, (int64_t)c, s, dtable, dout, ids, n, c, row_mask);
}
