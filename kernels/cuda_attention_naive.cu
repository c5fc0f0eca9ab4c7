// Unfused attention baseline: cuBLAS strided-batched GEMMs over the heads of one batch
// item and row-wise softmax kernels, with the full [H, Nq, Nk] fp32 score matrix in
// device memory (stream scratch: 2 * H * Nq * Nk floats for backward). For benchmarks and
// as a second opinion in the twin tests; fp32 (tf32 when cd_cuda_set_tf32(1)).
#include "kernels/cuda_common.h"
#include <math.h>

// In place: S[row, :Nk] -> softmax(S * scale); lse[row] = log-sum-exp of the scaled row.
__global__ void k_softmax_rows(float *S, float *lse, int Nk, float scale) {
    __shared__ float sh[32];
    float *r = S + (int64_t)blockIdx.x * Nk;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < Nk; j += blockDim.x) mx = fmaxf(mx, r[j] * scale);
    // block max through the sum helper's shared slots: reduce max by warps
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = (threadIdx.x & 31) < (blockDim.x >> 5) ? sh[threadIdx.x & 31] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float s = 0.f;
    for (int j = threadIdx.x; j < Nk; j += blockDim.x) s += expf(r[j] * scale - mx);
    s = cd_block_sum(s, sh);
    const float inv = 1.f / s;
    for (int j = threadIdx.x; j < Nk; j += blockDim.x) r[j] = expf(r[j] * scale - mx) * inv;
    if (lse && threadIdx.x == 0) lse[blockIdx.x] = mx + logf(s);
}

// In place: dP[row, :] -> scale * P * (dP - sum_j P dP)
__global__ void k_softmax_bwd_rows(float *dP, const float *P, int Nk, float scale) {
    __shared__ float sh[32];
    float *d = dP + (int64_t)blockIdx.x * Nk;
    const float *p = P + (int64_t)blockIdx.x * Nk;
    float s = 0.f;
    for (int j = threadIdx.x; j < Nk; j += blockDim.x) s += p[j] * d[j];
    s = cd_block_sum(s, sh);
    for (int j = threadIdx.x; j < Nk; j += blockDim.x) d[j] = scale * p[j] * (d[j] - s);
}

__global__ void k_zero_key0_naive(float *dk, float *dv, int B, int Nk, int HD) {
    CD_GRID_LOOP(i, (int64_t)B * HD) {
        int64_t b = i / HD, j = i - b * HD;
        dk[b * Nk * HD + j] = 0.f;
        dv[b * Nk * HD + j] = 0.f;
    }
}

// P[h] = softmax(scale * Q_bh K_bh^T) for one batch item b; lse_b may be NULL.
static int probs(float *P, float *lse_b, const float *qb, const float *kb, int H, int Nq, int Nk, int D,
                 float scale, void *stream) {
    const int HD = H * D;
    const int64_t sS = (int64_t)Nq * Nk;
    cd_cuda_gemm_batched(0, 1, Nq, Nk, D, 1.f, qb, HD, D, kb, HD, D, 0.f, P, Nk, sS, H, stream);
    k_softmax_rows<<<H * Nq, 256, 0, cd_stream(stream)>>>(P, lse_b, Nk, scale);
    return cudaCheckLaunch();
}

extern "C" int cd_cuda_attention_naive_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                           int B, int H, int Nq, int Nk, int D, float scale, void *stream) {
    const int HD = H * D;
    const int64_t sS = (int64_t)Nq * Nk;
    float *P = (float *)cd_cuda_scratch(stream, sizeof(float) * (size_t)H * sS);
    if (!P) return -1;
    for (int b = 0; b < B; b++) {
        const float *qb = q + (int64_t)b * Nq * HD, *kb = k + (int64_t)b * Nk * HD, *vb = v + (int64_t)b * Nk * HD;
        CD_CU_TRY(probs(P, lse ? lse + (int64_t)b * H * Nq : NULL, qb, kb, H, Nq, Nk, D, scale, stream));
        cd_cuda_gemm_batched(0, 0, Nq, D, Nk, 1.f, P, Nk, sS, vb, HD, D, 0.f, out + (int64_t)b * Nq * HD, HD, D, H,
                             stream);
    }
    return 0;
}

extern "C" int cd_cuda_attention_naive_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                           const float *k, const float *v, int B, int H, int Nq, int Nk, int D,
                                           float scale, int detach_k0, void *stream) {
    const int HD = H * D;
    const int64_t sS = (int64_t)Nq * Nk;
    float *P = (float *)cd_cuda_scratch(stream, sizeof(float) * 2 * (size_t)H * sS);
    if (!P) return -1;
    float *dP = P + H * sS;
    for (int b = 0; b < B; b++) {
        const int64_t qo = (int64_t)b * Nq * HD, ko = (int64_t)b * Nk * HD;
        CD_CU_TRY(probs(P, NULL, q + qo, k + ko, H, Nq, Nk, D, scale, stream));
        // dV = P^T dO ; dP = dO V^T ; dS = scale P (dP - rowsum(P dP)) ; dQ = dS K ; dK = dS^T Q
        cd_cuda_gemm_batched(1, 0, Nk, D, Nq, 1.f, P, Nk, sS, dout + qo, HD, D, 0.f, dv + ko, HD, D, H, stream);
        cd_cuda_gemm_batched(0, 1, Nq, Nk, D, 1.f, dout + qo, HD, D, v + ko, HD, D, 0.f, dP, Nk, sS, H, stream);
        k_softmax_bwd_rows<<<H * Nq, 256, 0, cd_stream(stream)>>>(dP, P, Nk, scale);
        CD_CU_TRY(cudaCheckLaunch());
        cd_cuda_gemm_batched(0, 0, Nq, D, Nk, 1.f, dP, Nk, sS, k + ko, HD, D, 0.f, dq + qo, HD, D, H, stream);
        cd_cuda_gemm_batched(1, 0, Nk, D, Nq, 1.f, dP, Nk, sS, q + qo, HD, D, 0.f, dk + ko, HD, D, H, stream);
    }
    if (detach_k0) {
        k_zero_key0_naive<<<cd_ew_blocks((int64_t)B * HD), 256, 0, cd_stream(stream)>>>(dk, dv, B, Nk, HD);
        CD_CU_TRY(cudaCheckLaunch());
    }
    return 0;
}
