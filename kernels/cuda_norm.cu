// LayerNorm and GroupNorm(+SiLU) forward/backward on the GPU (twins of norm_cpu.c and
// groupnorm_cpu.c). Statistics in fp32 with two-pass (mean, then squared deviations)
// reductions; GroupNorm combines per-(n,c) row statistics into group statistics exactly.
// The _bf16 forwards store the process's 16-bit format (bf16, or fp16: cd_cuda_set_fp16).
#include "kernels/cuda_common.h"
#include <math.h>

// ---- LayerNorm: one warp per row of x[n, c] --------------------------------------------
template <typename T>
__global__ void k_ln_fwd(T *y, float *mean, float *rstd, const T *x, const float *g, const float *b, int n, int c,
                         float eps) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= n) return;
    const T *xr = x + (int64_t)row * c;
    float s = 0.f;
    for (int j = lane; j < c; j += 32) s += cd_ld(xr, j);
    float mu = cd_warp_sum(s) / c;
    float q = 0.f;
    for (int j = lane; j < c; j += 32) { float d = cd_ld(xr, j) - mu; q += d * d; }
    float rs = 1.f / sqrtf(cd_warp_sum(q) / c + eps);
    T *yr = y + (int64_t)row * c;
    for (int j = lane; j < c; j += 32)
        cd_st(yr, j, (cd_ld(xr, j) - mu) * rs * (g ? g[j] : 1.f) + (b ? b[j] : 0.f));
    if (lane == 0) {
        if (mean) mean[row] = mu;
        if (rstd) rstd[row] = rs;
    }
}

__global__ void k_ln_bwd_dx(float *dx, const float *dy, const float *x, const float *mean,
                            const float *rstd, const float *g, int n, int c) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= n) return;
    const float *xr = x + (int64_t)row * c, *dyr = dy + (int64_t)row * c;
    float mu = mean[row], rs = rstd[row], s1 = 0.f, s2 = 0.f;
    for (int j = lane; j < c; j += 32) {
        float dxh = dyr[j] * (g ? g[j] : 1.f), xh = (xr[j] - mu) * rs;
        s1 += dxh;
        s2 += dxh * xh;
    }
    s1 = cd_warp_sum(s1) / c;
    s2 = cd_warp_sum(s2) / c;
    float *dxr = dx + (int64_t)row * c;
    for (int j = lane; j < c; j += 32) {
        float dxh = dyr[j] * (g ? g[j] : 1.f), xh = (xr[j] - mu) * rs;
        dxr[j] = rs * (dxh - s1 - xh * s2);
    }
}

// Per row split: pg[split][j] = sum_r dy[r,j] xhat[r,j], pb[split][j] = sum_r dy[r,j] over the split's
// rows. Block (32, 8), grid (cols/32, splits); cd_cuda_partials_sum then adds them to dg, db.
__global__ void k_ln_dgdb(float *pg, float *pb, const float *dy, const float *x, const float *mean,
                          const float *rstd, int n, int c, int rows_per_block) {
    __shared__ float sg[8][33], sb[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per_block, r1 = min(n, r0 + rows_per_block);
    float a = 0.f, bsum = 0.f;
    if (col < c)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            int64_t o = (int64_t)r * c + col;
            a += dy[o] * (x[o] - mean[r]) * rstd[r];
            bsum += dy[o];
        }
    sg[threadIdx.y][threadIdx.x] = a;
    sb[threadIdx.y][threadIdx.x] = bsum;
    __syncthreads();
    if (threadIdx.y == 0 && col < c) {
        for (int j = 1; j < 8; j++) { a += sg[j][threadIdx.x]; bsum += sb[j][threadIdx.x]; }
        pg[(int64_t)blockIdx.y * c + col] = a;
        pb[(int64_t)blockIdx.y * c + col] = bsum;
    }
}

extern "C" void cd_cuda_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                                      const float *b, int n, int c, float eps, void *stream) {
    if (n <= 0) return;
    k_ln_fwd<float><<<(n + 7) / 8, 256, 0, cd_stream(stream)>>>(y, mean, rstd, x, g, b, n, c, eps);
    cudaCheckLaunch();
}

extern "C" void cd_cuda_layernorm_fwd_bf16(uint16_t *y, float *mean, float *rstd, const uint16_t *x, const float *g,
                                           const float *b, int n, int c, float eps, void *stream) {
    if (n <= 0) return;
    CD_DISPATCH16(T16, k_ln_fwd<T16><<<(n + 7) / 8, 256, 0, cd_stream(stream)>>>((T16 *)y, mean, rstd, (const T16 *)x,
                                                                               g, b, n, c, eps));
    cudaCheckLaunch();
}

extern "C" void cd_cuda_layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                                      const float *mean, const float *rstd, const float *g, int n, int c,
                                      void *stream) {
    cudaStream_t st = cd_stream(stream);
    if (n <= 0) return;
    if (dx) {
        k_ln_bwd_dx<<<(n + 7) / 8, 256, 0, st>>>(dx, dy, x, mean, rstd, g, n, c);
        cudaCheckLaunch();
    }
    if (dg || db) { // deterministic: per-split sums, added in split order
        int rpb, ys = cd_cuda_row_splits(n, c, &rpb);
        float *part = (float *)cd_cuda_scratch(stream, sizeof(float) * 2 * (size_t)ys * c);
        if (!part) return;
        k_ln_dgdb<<<dim3((c + 31) / 32, ys), dim3(32, 8), 0, st>>>(part, part + (size_t)ys * c, dy, x, mean, rstd, n,
                                                                  c, rpb);
        if (cudaCheckLaunch()) return;
        if (dg) cd_cuda_partials_sum(dg, part, ys, c, 1, st);
        if (db) cd_cuda_partials_sum(db, part + (size_t)ys * c, ys, c, 1, st);
    }
}

// ---- GroupNorm over x[n, c, hw] --------------------------------------------------------------
// Per row (n,c) of length hw: mean and M2 = sum (x - mean)^2.
template <typename T>
__global__ void k_row_stats(float *rmean, float *rm2, const T *x, int hw) {
    __shared__ float sh[32];
    const T *xr = x + (int64_t)blockIdx.x * hw;
    float s = 0.f;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) s += cd_ld(xr, j);
    float mu = cd_block_sum(s, sh) / hw;
    float q = 0.f;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) { float d = cd_ld(xr, j) - mu; q += d * d; }
    q = cd_block_sum(q, sh);
    if (threadIdx.x == 0) { rmean[blockIdx.x] = mu; rm2[blockIdx.x] = q; }
}

// Per (n, group): combine cpg equal-count rows into mean and rstd.
__global__ void k_group_stats(float *mean, float *rstd, const float *rmean, const float *rm2, int ngroups,
                              int cpg, int hw, float eps) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= ngroups) return;
    const float *m = rmean + (int64_t)i * cpg, *q = rm2 + (int64_t)i * cpg;
    float mu = 0.f;
    for (int j = 0; j < cpg; j++) mu += m[j];
    mu /= cpg;
    float m2 = 0.f;
    for (int j = 0; j < cpg; j++) { float d = m[j] - mu; m2 += q[j] + (float)hw * d * d; }
    mean[i] = mu;
    rstd[i] = 1.f / sqrtf(m2 / ((float)cpg * hw) + eps);
}

__device__ __forceinline__ float silu_d(float z) {
    float s = 1.f / (1.f + expf(-z));
    return s * (1.f + z * (1.f - s));
}

template <typename T>
__global__ void k_gn_apply(T *y, const T *x, const float *mean, const float *rstd, const float *g, const float *b,
                           int64_t total, int c, int hw, int cpg, int silu) {
    CD_GRID_LOOP(i, total) {
        int64_t nc = i / hw;
        int ch = (int)(nc % c);
        int64_t ng = nc / cpg; // rows of one group are consecutive: (n*c + ch)/cpg = n*G + ch/cpg
        float z = (cd_ld(x, i) - mean[ng]) * rstd[ng] * (g ? g[ch] : 1.f) + (b ? b[ch] : 0.f);
        cd_st(y, i, silu ? z / (1.f + expf(-z)) : z);
    }
}

template <typename T>
static void gn_fwd(T *y, float *mean, float *rstd, const T *x, const float *g, const float *b, int n, int c, int hw,
                   int groups, float eps, int silu, void *stream) {
    cudaStream_t st = cd_stream(stream);
    if (n <= 0 || cd_cuda_require(groups > 0 && c % groups == 0, "groupnorm: c % groups != 0")) return;
    int nc = n * c, ng = n * groups, cpg = c / groups;
    float *scr = (float *)cd_cuda_scratch(stream, sizeof(float) * (2 * (size_t)nc + 2 * (size_t)ng));
    if (!scr) return;
    float *rmean = scr, *rm2 = scr + nc;
    if (!mean) mean = scr + 2 * nc;
    if (!rstd) rstd = scr + 2 * nc + ng;
    k_row_stats<T><<<nc, hw >= 1024 ? 512 : 128, 0, st>>>(rmean, rm2, x, hw);
    k_group_stats<<<(ng + 127) / 128, 128, 0, st>>>(mean, rstd, rmean, rm2, ng, cpg, hw, eps);
    int64_t total = (int64_t)nc * hw;
    k_gn_apply<T><<<cd_ew_blocks(total), 256, 0, st>>>(y, x, mean, rstd, g, b, total, c, hw, cpg, silu);
    cudaCheckLaunch();
}

extern "C" void cd_cuda_groupnorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                                      const float *b, int n, int c, int hw, int groups, float eps, int silu,
                                      void *stream) {
    gn_fwd<float>(y, mean, rstd, x, g, b, n, c, hw, groups, eps, silu, stream);
}

extern "C" void cd_cuda_groupnorm_fwd_bf16(uint16_t *y, float *mean, float *rstd, const uint16_t *x, const float *g,
                                           const float *b, int n, int c, int hw, int groups, float eps, int silu,
                                           void *stream) {
    CD_DISPATCH16(T16, gn_fwd<T16>((T16 *)y, mean, rstd, (const T16 *)x, g, b, n, c, hw, groups, eps, silu, stream));
}

// Per row (n,c): A = sum dz * xhat, B = sum dz, where dz = dL/d(pre-SiLU affine output).
__global__ void k_gn_bwd_rows(float *A, float *B, const float *dy, const float *x, const float *mean,
                              const float *rstd, const float *g, const float *b, int c, int hw, int cpg,
                              int silu) {
    __shared__ float sh[32];
    int64_t nc = blockIdx.x;
    int ch = (int)(nc % c);
    int64_t ng = nc / cpg;
    float mu = mean[ng], rs = rstd[ng], gc = g ? g[ch] : 1.f, bc = b ? b[ch] : 0.f;
    const float *xr = x + nc * hw, *dyr = dy + nc * hw;
    float a = 0.f, s = 0.f;
    for (int j = threadIdx.x; j < hw; j += blockDim.x) {
        float xh = (xr[j] - mu) * rs, dz = dyr[j];
        if (silu) dz *= silu_d(xh * gc + bc);
        a += dz * xh;
        s += dz;
    }
    a = cd_block_sum(a, sh);
    s = cd_block_sum(s, sh);
    if (threadIdx.x == 0) { A[nc] = a; B[nc] = s; }
}

// Per (n, group): c1 = mean(dxhat), c2 = mean(dxhat * xhat) with dxhat = dz * g.
__global__ void k_gn_bwd_group(float *c1, float *c2, const float *A, const float *B, const float *g,
                               int ngroups, int c, int cpg, int hw) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= ngroups) return;
    int ch0 = (int)(((int64_t)i * cpg) % c);
    float s1 = 0.f, s2 = 0.f;
    for (int j = 0; j < cpg; j++) {
        float gc = g ? g[ch0 + j] : 1.f;
        s1 += gc * B[(int64_t)i * cpg + j];
        s2 += gc * A[(int64_t)i * cpg + j];
    }
    c1[i] = s1 / ((float)cpg * hw);
    c2[i] = s2 / ((float)cpg * hw);
}

__global__ void k_gn_bwd_dx(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                            const float *g, const float *b, const float *c1, const float *c2, int64_t total,
                            int c, int hw, int cpg, int silu) {
    CD_GRID_LOOP(i, total) {
        int64_t nc = i / hw;
        int ch = (int)(nc % c);
        int64_t ng = nc / cpg;
        float rs = rstd[ng], gc = g ? g[ch] : 1.f, xh = (x[i] - mean[ng]) * rs, dz = dy[i];
        if (silu) dz *= silu_d(xh * gc + (b ? b[ch] : 0.f));
        dx[i] = rs * (gc * dz - c1[ng] - xh * c2[ng]);
    }
}

__global__ void k_gn_dgdb(float *dg, float *db, const float *A, const float *B, int n, int c) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    float a = 0.f, s = 0.f;
    for (int i = 0; i < n; i++) { a += A[(int64_t)i * c + ch]; s += B[(int64_t)i * c + ch]; }
    if (dg) dg[ch] += a;
    if (db) db[ch] += s;
}

extern "C" void cd_cuda_groupnorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                                      const float *mean, const float *rstd, const float *g, const float *b,
                                      int n, int c, int hw, int groups, int silu, void *stream) {
    cudaStream_t st = cd_stream(stream);
    if (n <= 0 || cd_cuda_require(groups > 0 && c % groups == 0, "groupnorm: c % groups != 0")) return;
    int nc = n * c, ng = n * groups, cpg = c / groups;
    float *scr = (float *)cd_cuda_scratch(stream, sizeof(float) * (2 * (size_t)nc + 2 * (size_t)ng));
    if (!scr) return;
    float *A = scr, *B = scr + nc, *c1 = scr + 2 * nc, *c2 = c1 + ng;
    k_gn_bwd_rows<<<nc, hw >= 1024 ? 512 : 128, 0, st>>>(A, B, dy, x, mean, rstd, g, b, c, hw, cpg, silu);
    if (dx) {
        k_gn_bwd_group<<<(ng + 127) / 128, 128, 0, st>>>(c1, c2, A, B, g, ng, c, cpg, hw);
        int64_t total = (int64_t)nc * hw;
        k_gn_bwd_dx<<<cd_ew_blocks(total), 256, 0, st>>>(dx, dy, x, mean, rstd, g, b, c1, c2, total, c, hw,
                                                         cpg, silu);
    }
    if (dg || db) k_gn_dgdb<<<(c + 127) / 128, 128, 0, st>>>(dg, db, A, B, n, c);
    cudaCheckLaunch();
}
