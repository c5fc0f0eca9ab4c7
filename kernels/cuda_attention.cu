// Fused flash-style attention on the GPU (twin of attention_cpu.c), fp32, forward and
// backward; no [Nq, Nk] score matrix ever reaches device memory.
//
// Layout: q, out, dq [B, Nq, H*D]; k, v, dk, dv [B, Nk, H*D] (head h = columns h*D..h*D+D-1);
// lse [B, H, Nq] natural-log log-sum-exp of the scaled scores (backward recomputes it
// when passed NULL, as the CPU op does).
//
// Tiling (both passes): 256 threads = 16 x 16 (tx = tid & 15, ty = tid >> 4), tiles of 64
// queries x 64 keys. A thread owns a 4 x 4 block of the score tile (rows ty*4+r, columns
// tx+16*i) and D/16 columns (tx+16*c) of 4 rows of the output accumulators. Shared-memory
// rows are padded to D+1 floats (odd) so column walks hit distinct banks. Softmax runs in
// the log2 domain (scores pre-multiplied by scale*log2(e), exp2f).
// Forward: grid (query tiles, B*H), online softmax over key tiles (FlashAttention-2).
// Backward: grid (key tiles, query splits, B*H); each block keeps dK, dV of its 64 keys in
// registers over its query tiles, recomputes P from lse, and adds its dQ contribution
// with atomicAdd (dq, dk, dv are zeroed first; query splits also meet in dk/dv by atomics).
// Deterministic mode (cd_cuda_set_deterministic): no float atomics, so a run repeats bit for
// bit. The key-tile kernel skips dQ and stores each split's dK, dV into its own slice (the
// final dk, dv when there is one split), summed over the splits in index order by
// cd_cuda_partials_sum; dQ comes from a second kernel, k_flash_bwd_dq, one block per 64 queries
// looping over the key tiles (it recomputes S and dP: about two more GEMM-sized passes).
#include "kernels/cuda_common.h"
#include <math.h>

#define FA_BQ 64
#define FA_BK 64
#define FA_THREADS 256
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

template <int D>
static size_t fwd_smem(void) { return sizeof(float) * ((size_t)(FA_BQ + 2 * FA_BK) * (D + 1) + FA_BQ * (FA_BK + 1)); }
template <int D>
static size_t bwd_smem(void) {
    return sizeof(float) * ((size_t)(2 * FA_BK + 2 * FA_BQ) * (D + 1) + 2 * FA_BK * (FA_BQ + 1) + 2 * FA_BQ);
}
template <int D>
static size_t dq_smem_bytes(void) {
    return sizeof(float) * ((size_t)(2 * FA_BK + 2 * FA_BQ) * (D + 1) + FA_BQ * (FA_BK + 1) + 2 * FA_BQ);
}

// Loads rows [r0, r0+rows) of one head (D columns, row stride HD) into sm[rows][D+1],
// multiplied by mul; rows past `limit` are zero.
template <int D>
__device__ __forceinline__ void load_tile(float *sm, const float *src, int r0, int rows, int limit, int HD,
                                          float mul) {
    for (int e = threadIdx.x; e < rows * D; e += FA_THREADS) {
        int r = e / D, c = e - r * D;
        sm[r * (D + 1) + c] = (r0 + r < limit) ? src[(int64_t)(r0 + r) * HD + c] * mul : 0.f;
    }
}

template <int D>
__global__ void __launch_bounds__(FA_THREADS) k_flash_fwd(float *out, float *lse, const float *q, const float *k,
                                                           const float *v, int H, int Nq, int Nk, float sl,
                                                           int causal) {
    constexpr int DS = D + 1, ND = (D + 15) / 16, PS = FA_BK + 1;
    extern __shared__ float sm[];
    float *Qs = sm, *Ks = Qs + FA_BQ * DS, *Vs = Ks + FA_BK * DS, *Ps = Vs + FA_BK * DS;
    const int bh = blockIdx.y, b = bh / H, h = bh - b * H, HD = H * D, q0 = blockIdx.x * FA_BQ;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const float *qb = q + (int64_t)b * Nq * HD + h * D;
    const float *kb = k + (int64_t)b * Nk * HD + h * D, *vb = v + (int64_t)b * Nk * HD + h * D;
    load_tile<D>(Qs, qb, q0, FA_BQ, Nq, HD, sl);
    float m[4], l[4], o[4][ND];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        m[r] = -1e30f;
        l[r] = 0.f;
#pragma unroll
        for (int c = 0; c < ND; c++) o[r][c] = 0.f;
    }
    const int kend = causal ? min(Nk, q0 + FA_BQ) : Nk; // causal: keys j <= query i only
    for (int k0 = 0; k0 < kend; k0 += FA_BK) {
        __syncthreads(); // the previous tile's Ks/Vs/Ps are no longer read
        load_tile<D>(Ks, kb, k0, FA_BK, Nk, HD, 1.f);
        load_tile<D>(Vs, vb, k0, FA_BK, Nk, HD, 1.f);
        __syncthreads();
        float s[4][4];
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int i = 0; i < 4; i++) s[r][i] = 0.f;
#pragma unroll 4
        for (int d = 0; d < D; d++) {
            float qa[4], ka[4];
#pragma unroll
            for (int r = 0; r < 4; r++) qa[r] = Qs[(ty * 4 + r) * DS + d];
#pragma unroll
            for (int i = 0; i < 4; i++) ka[i] = Ks[(tx + 16 * i) * DS + d];
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int i = 0; i < 4; i++) s[r][i] = fmaf(qa[r], ka[i], s[r][i]);
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int r = 0; r < 4; r++)
                if (k0 + tx + 16 * i >= Nk || (causal && k0 + tx + 16 * i > q0 + ty * 4 + r)) s[r][i] = -INFINITY;
#pragma unroll
        for (int r = 0; r < 4; r++) {
            float mx = fmaxf(fmaxf(s[r][0], s[r][1]), fmaxf(s[r][2], s[r][3]));
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            float mn = fmaxf(m[r], mx), alpha = exp2f(m[r] - mn), rs = 0.f;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float p = exp2f(s[r][i] - mn);
                rs += p;
                Ps[(ty * 4 + r) * PS + tx + 16 * i] = p;
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) rs += __shfl_xor_sync(0xffffffffu, rs, off);
            l[r] = l[r] * alpha + rs;
            m[r] = mn;
#pragma unroll
            for (int c = 0; c < ND; c++) o[r][c] *= alpha;
        }
        __syncthreads();
        const int jn = min(FA_BK, Nk - k0);
        for (int j = 0; j < jn; j++) {
            float pr[4];
#pragma unroll
            for (int r = 0; r < 4; r++) pr[r] = Ps[(ty * 4 + r) * PS + j];
#pragma unroll
            for (int c = 0; c < ND; c++) {
                const int col = tx + 16 * c;
                if (D % 16 == 0 || col < D) {
                    float vv = Vs[j * DS + col];
#pragma unroll
                    for (int r = 0; r < 4; r++) o[r][c] = fmaf(pr[r], vv, o[r][c]);
                }
            }
        }
    }
    float *ob = out + (int64_t)b * Nq * HD + h * D;
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int row = q0 + ty * 4 + r;
        if (row >= Nq) continue;
        const float inv = 1.f / l[r];
#pragma unroll
        for (int c = 0; c < ND; c++) {
            const int col = tx + 16 * c;
            if (D % 16 == 0 || col < D) ob[(int64_t)row * HD + col] = o[r][c] * inv;
        }
        if (lse && tx == 0) lse[(int64_t)bh * Nq + row] = (m[r] + log2f(l[r])) * LN2;
    }
}

// delta[bh, i] = sum_d dout[b, i, h, d] * out[b, i, h, d]; one warp per (b, i, h).
__global__ void k_flash_delta(float *delta, const float *dout, const float *out, int B, int H, int Nq, int D) {
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (int64_t)B * Nq * H) return;
    int h = (int)(w % H);
    int64_t bi = w / H; // b * Nq + i
    int b = (int)(bi / Nq), i = (int)(bi - (int64_t)b * Nq);
    const float *a = dout + w * D, *o = out + w * D;
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s += a[d] * o[d];
    s = cd_warp_sum(s);
    if (lane == 0) delta[((int64_t)b * H + h) * Nq + i] = s;
}

// Two 64 x 64 score tiles at once (the backward's S and dP): for rows ty*4+r and columns
// tx+16*i, s = A[row] . B[col] and p = C[row] . E[col] over the D columns of shared-memory
// tiles with row stride D+1, each sum an fmaf chain in d order (so every kernel that forms the
// same scores gets the same bits).
template <int D>
__device__ __forceinline__ void tile_dots2(float s[4][4], float p[4][4], const float *A, const float *B,
                                           const float *C, const float *E, int tx, int ty) {
    constexpr int DS = D + 1;
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int i = 0; i < 4; i++) s[r][i] = p[r][i] = 0.f;
#pragma unroll 2
    for (int d = 0; d < D; d++) {
        float a[4], c[4], b[4], e[4];
#pragma unroll
        for (int r = 0; r < 4; r++) { a[r] = A[(ty * 4 + r) * DS + d]; c[r] = C[(ty * 4 + r) * DS + d]; }
#pragma unroll
        for (int i = 0; i < 4; i++) { b[i] = B[(tx + 16 * i) * DS + d]; e[i] = E[(tx + 16 * i) * DS + d]; }
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                s[r][i] = fmaf(a[r], b[i], s[r][i]);
                p[r][i] = fmaf(c[r], e[i], p[r][i]);
            }
    }
}

// dQ rows ty*4+r, columns tx+16*c: acc[r][c] += sum_{j < jn} dS(row, j) K[j][col], with dS(row, j)
// at dS[row * rs + j * js] (the key-tile kernel keeps dS^T, the dQ kernel dS).
template <int D>
__device__ __forceinline__ void tile_dq(float (*acc)[(D + 15) / 16], const float *dS, int rs, int js,
                                        const float *K, int jn, int tx, int ty) {
    constexpr int DS = D + 1, ND = (D + 15) / 16;
    for (int j = 0; j < jn; j++) {
        float sr[4];
#pragma unroll
        for (int r = 0; r < 4; r++) sr[r] = dS[(ty * 4 + r) * rs + j * js];
#pragma unroll
        for (int c = 0; c < ND; c++) {
            const int col = tx + 16 * c;
            if (D % 16 == 0 || col < D) {
                const float kd = K[j * DS + col];
#pragma unroll
                for (int r = 0; r < 4; r++) acc[r][c] = fmaf(sr[r], kd, acc[r][c]);
            }
        }
    }
}

template <int D>
__global__ void __launch_bounds__(FA_THREADS) k_flash_bwd(float *dq, float *dk, float *dv, const float *dout,
                                                           const float *q, const float *k, const float *v,
                                                           const float *lse, const float *delta, int H, int Nq,
                                                           int Nk, float scale, int tiles_per_split, int causal,
                                                           int det, int64_t split_stride) {
    constexpr int DS = D + 1, ND = (D + 15) / 16, PS = FA_BQ + 1;
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = Ks + FA_BK * DS, *Qs = Vs + FA_BK * DS, *Os = Qs + FA_BQ * DS;
    float *Ps = Os + FA_BQ * DS, *Ss = Ps + FA_BK * PS, *Ls = Ss + FA_BK * PS, *Dl = Ls + FA_BQ;
    const int bh = blockIdx.z, b = bh / H, h = bh - b * H, HD = H * D, k0 = blockIdx.x * FA_BK;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const float sl = scale * LOG2E;
    const int64_t qoff = (int64_t)b * Nq * HD + h * D, koff = (int64_t)b * Nk * HD + h * D;
    load_tile<D>(Ks, k + koff, k0, FA_BK, Nk, HD, 1.f);
    load_tile<D>(Vs, v + koff, k0, FA_BK, Nk, HD, 1.f);
    float dK[4][ND], dV[4][ND];
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < ND; c++) dK[r][c] = dV[r][c] = 0.f;
    const int qtiles = (Nq + FA_BQ - 1) / FA_BQ;
    const int t0 = blockIdx.y * tiles_per_split, t1 = min(qtiles, t0 + tiles_per_split);
    for (int t = t0; t < t1; t++) {
        const int q0 = t * FA_BQ;
        __syncthreads();
        load_tile<D>(Qs, q + qoff, q0, FA_BQ, Nq, HD, 1.f);
        load_tile<D>(Os, dout + qoff, q0, FA_BQ, Nq, HD, 1.f);
        for (int i = threadIdx.x; i < FA_BQ; i += FA_THREADS) {
            const bool ok = q0 + i < Nq;
            Ls[i] = ok ? lse[(int64_t)bh * Nq + q0 + i] * LOG2E : 0.f;
            Dl[i] = ok ? delta[(int64_t)bh * Nq + q0 + i] : 0.f;
        }
        __syncthreads();
        // S^T and dP^T for keys ty*4+r, queries tx+16*i
        float s[4][4], dp[4][4];
        tile_dots2<D>(s, dp, Ks, Qs, Vs, Os, tx, ty);
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int kr = ty * 4 + r, qi = tx + 16 * i;
                const bool ok = (k0 + kr < Nk) && (q0 + qi < Nq) && (!causal || k0 + kr <= q0 + qi);
                const float p = ok ? exp2f(s[r][i] * sl - Ls[qi]) : 0.f;
                Ps[kr * PS + qi] = p;
                Ss[kr * PS + qi] = p * (dp[r][i] - Dl[qi]);
            }
        __syncthreads();
        const int in = min(FA_BQ, Nq - q0);
        for (int i = 0; i < in; i++) {
            float pr[4], sr[4];
#pragma unroll
            for (int r = 0; r < 4; r++) { pr[r] = Ps[(ty * 4 + r) * PS + i]; sr[r] = Ss[(ty * 4 + r) * PS + i]; }
#pragma unroll
            for (int c = 0; c < ND; c++) {
                const int col = tx + 16 * c;
                if (D % 16 == 0 || col < D) {
                    const float od = Os[i * DS + col], qd = Qs[i * DS + col];
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        dV[r][c] = fmaf(pr[r], od, dV[r][c]);
                        dK[r][c] = fmaf(sr[r], qd, dK[r][c]);
                    }
                }
            }
        }
        if (det) continue; // dQ: k_flash_bwd_dq (the next tile's first barrier orders the reuse)
        // dQ rows ty*4+r (queries), columns tx+16*c: sum over this block's keys.
        float acc[4][ND];
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int c = 0; c < ND; c++) acc[r][c] = 0.f;
        tile_dq<D>(acc, Ss, 1, PS, Ks, min(FA_BK, Nk - k0), tx, ty);
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int row = q0 + ty * 4 + r;
            if (row >= Nq) continue;
#pragma unroll
            for (int c = 0; c < ND; c++) {
                const int col = tx + 16 * c;
                if (D % 16 == 0 || col < D) atomicAdd(&dq[qoff + (int64_t)row * HD + col], acc[r][c] * scale);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int key = k0 + ty * 4 + r;
        if (key >= Nk) continue;
#pragma unroll
        for (int c = 0; c < ND; c++) {
            const int col = tx + 16 * c;
            if (D % 16 == 0 || col < D) {
                const int64_t o = koff + (int64_t)key * HD + col;
                if (det) {
                    dk[blockIdx.y * split_stride + o] = dK[r][c] * scale;
                    dv[blockIdx.y * split_stride + o] = dV[r][c];
                } else {
                    atomicAdd(&dk[o], dK[r][c] * scale);
                    atomicAdd(&dv[o], dV[r][c]);
                }
            }
        }
    }
}

// Deterministic dQ: grid (query tiles, B*H), 256 threads as in k_flash_bwd. Per 64-key tile a
// thread recomputes S and dP for queries ty*4+r, keys tx+16*i (tile_dots2, as k_flash_bwd, so P
// matches it bit for bit), the block stages dS = P (dP - delta) in shared
// memory, and each thread adds dS K into its dQ rows ty*4+r, columns tx+16*c in registers.
// dq is written once, with plain stores. causal: key tiles past the block's last query are skipped.
template <int D>
__global__ void __launch_bounds__(FA_THREADS) k_flash_bwd_dq(float *dq, const float *dout, const float *q,
                                                              const float *k, const float *v, const float *lse,
                                                              const float *delta, int H, int Nq, int Nk,
                                                              float scale, int causal) {
    constexpr int DS = D + 1, ND = (D + 15) / 16, PS = FA_BK + 1;
    extern __shared__ float sm[];
    float *Qs = sm, *Os = Qs + FA_BQ * DS, *Ks = Os + FA_BQ * DS, *Vs = Ks + FA_BK * DS;
    float *Ss = Vs + FA_BK * DS, *Ls = Ss + FA_BQ * PS, *Dl = Ls + FA_BQ;
    const int bh = blockIdx.y, b = bh / H, h = bh - b * H, HD = H * D, q0 = blockIdx.x * FA_BQ;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const float sl = scale * LOG2E;
    const int64_t qoff = (int64_t)b * Nq * HD + h * D, koff = (int64_t)b * Nk * HD + h * D;
    load_tile<D>(Qs, q + qoff, q0, FA_BQ, Nq, HD, 1.f);
    load_tile<D>(Os, dout + qoff, q0, FA_BQ, Nq, HD, 1.f);
    for (int i = threadIdx.x; i < FA_BQ; i += FA_THREADS) {
        const bool ok = q0 + i < Nq;
        Ls[i] = ok ? lse[(int64_t)bh * Nq + q0 + i] * LOG2E : 0.f;
        Dl[i] = ok ? delta[(int64_t)bh * Nq + q0 + i] : 0.f;
    }
    float acc[4][ND];
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < ND; c++) acc[r][c] = 0.f;
    const int kend = causal ? min(Nk, q0 + FA_BQ) : Nk;
    for (int k0 = 0; k0 < kend; k0 += FA_BK) {
        __syncthreads(); // the previous tile's Ks/Vs/Ss are no longer read
        load_tile<D>(Ks, k + koff, k0, FA_BK, Nk, HD, 1.f);
        load_tile<D>(Vs, v + koff, k0, FA_BK, Nk, HD, 1.f);
        __syncthreads();
        float s[4][4], dp[4][4]; // S and dP for queries ty*4+r, keys tx+16*i
        tile_dots2<D>(s, dp, Qs, Ks, Os, Vs, tx, ty);
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int qi = ty * 4 + r, kj = tx + 16 * i;
                const bool ok = (k0 + kj < Nk) && (q0 + qi < Nq) && (!causal || k0 + kj <= q0 + qi);
                const float p = ok ? exp2f(s[r][i] * sl - Ls[qi]) : 0.f;
                Ss[qi * PS + kj] = p * (dp[r][i] - Dl[qi]);
            }
        __syncthreads();
        tile_dq<D>(acc, Ss, PS, 1, Ks, min(FA_BK, Nk - k0), tx, ty);
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int row = q0 + ty * 4 + r;
        if (row >= Nq) continue;
#pragma unroll
        for (int c = 0; c < ND; c++) {
            const int col = tx + 16 * c;
            if (D % 16 == 0 || col < D) dq[qoff + (int64_t)row * HD + col] = acc[r][c] * scale;
        }
    }
}


// dk, dv rows of key 0 of every batch -> 0 (Custom Diffusion's token-0 detach).
__global__ void k_zero_key0(float *dk, float *dv, int B, int Nk, int HD) {
    CD_GRID_LOOP(i, (int64_t)B * HD) {
        int64_t b = i / HD, j = i - b * HD;
        dk[b * Nk * HD + j] = 0.f;
        dv[b * Nk * HD + j] = 0.f;
    }
}

// The current device's SM count, asked at each call (an attribute query: no synchronisation).
static int sm_count(void) {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        n < 1)
        n = 132;
    return n;
}

int cd_attn_bwd_splits(int B, int H, int Nq, int Nk, int *per) {
    int ktiles = (Nk + 63) / 64, qtiles = (Nq + 63) / 64;
    int want = (2 * sm_count() + ktiles * B * H - 1) / (ktiles * B * H);
    int splits = want < 1 ? 1 : (want > qtiles ? qtiles : want);
    *per = (qtiles + splits - 1) / splits;
    return (qtiles + *per - 1) / *per;
}

template <int D>
static void fwd_launch(float *out, float *lse, const float *q, const float *k, const float *v, int B, int H,
                       int Nq, int Nk, float scale, int causal, cudaStream_t st) {
    static int attr_set;
    size_t smem = fwd_smem<D>();
    if (!attr_set) {
        if (cudaCheck(cudaFuncSetAttribute(k_flash_fwd<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)))
            return;
        attr_set = 1;
    }
    dim3 grid((Nq + FA_BQ - 1) / FA_BQ, B * H);
    k_flash_fwd<D><<<grid, FA_THREADS, smem, st>>>(out, lse, q, k, v, H, Nq, Nk, scale * LOG2E, causal);
    cudaCheckLaunch();
}

// det: part is the [splits][B, Nk, H*D] slices of dK, dV (NULL with one split: dk, dv directly).
template <int D>
static void bwd_launch(float *dq, float *dk, float *dv, float *part, const float *dout, const float *q,
                       const float *k, const float *v, const float *lse, const float *delta, int B, int H, int Nq,
                       int Nk, float scale, int causal, int det, cudaStream_t st) {
    static int attr_set;
    size_t smem = bwd_smem<D>(), dq_smem = dq_smem_bytes<D>();
    if (!attr_set) {
        if (cudaCheck(cudaFuncSetAttribute(k_flash_bwd<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) ||
            cudaCheck(cudaFuncSetAttribute(k_flash_bwd_dq<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dq_smem)))
            return;
        attr_set = 1;
    }
    int per, splits = cd_attn_bwd_splits(B, H, Nq, Nk, &per);
    int ktiles = (Nk + FA_BK - 1) / FA_BK, qtiles = (Nq + FA_BQ - 1) / FA_BQ;
    dim3 grid(ktiles, splits, B * H);
    const int64_t nk = (int64_t)B * Nk * H * D;
    float *pk = det && part ? part : dk, *pv = det && part ? part + (int64_t)splits * nk : dv;
    k_flash_bwd<D><<<grid, FA_THREADS, smem, st>>>(dq, pk, pv, dout, q, k, v, lse, delta, H, Nq, Nk, scale, per,
                                                   causal, det, nk);
    if (cudaCheckLaunch() || !det) return;
    if (part) {
        cd_cuda_partials_sum(dk, pk, splits, nk, 0, st);
        cd_cuda_partials_sum(dv, pv, splits, nk, 0, st);
    }
    k_flash_bwd_dq<D><<<dim3(qtiles, B * H), FA_THREADS, dq_smem, st>>>(dq, dout, q, k, v, lse, delta, H, Nq, Nk,
                                                                        scale, causal);
    cudaCheckLaunch();
}

static int dim_ok(int D) {
    return cd_cuda_require(D == 40 || D == 64 || D == 80 || D == 160,
                           "attention: head dim must be 40, 64, 80 or 160");
}

static void attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int B, int H, int Nq,
                     int Nk, int D, float scale, int causal, void *stream) {
    cudaStream_t st = cd_stream(stream);
    if (B <= 0 || H <= 0 || Nq <= 0 || dim_ok(D) || cd_cuda_require(Nk > 0, "attention: Nk must be > 0")) return;
    switch (D) {
    case 40: fwd_launch<40>(out, lse, q, k, v, B, H, Nq, Nk, scale, causal, st); break;
    case 64: fwd_launch<64>(out, lse, q, k, v, B, H, Nq, Nk, scale, causal, st); break;
    case 80: fwd_launch<80>(out, lse, q, k, v, B, H, Nq, Nk, scale, causal, st); break;
    case 160: fwd_launch<160>(out, lse, q, k, v, B, H, Nq, Nk, scale, causal, st); break;
    }
}

static void attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                     const float *v, const float *out, const float *lse, int B, int H, int Nq, int Nk, int D,
                     float scale, int detach_k0, int causal, void *stream) {
    cudaStream_t st = cd_stream(stream);
    if (B <= 0 || H <= 0 || Nq <= 0 || Nk <= 0 || dim_ok(D)) return;
    const int det = cd_cuda_get_deterministic();
    int per, splits = cd_attn_bwd_splits(B, H, Nq, Nk, &per);
    // scratch: delta [B,H,Nq]; when lse is NULL also lse [B,H,Nq] and a throw-away out;
    // deterministic with query splits: the splits' dK, dV slices.
    size_t nrow = (size_t)B * H * Nq, extra = lse ? 0 : nrow + (size_t)B * Nq * H * D;
    size_t nk = (size_t)B * Nk * H * D, nparts = det && splits > 1 ? 2 * (size_t)splits * nk : 0;
    float *delta = (float *)cd_cuda_scratch(stream, sizeof(float) * (nrow + extra + nparts));
    if (!delta) return;
    float *part = nparts ? delta + nrow + extra : NULL;
    if (!lse) {
        float *lse_tmp = delta + nrow;
        attn_fwd(lse_tmp + nrow, lse_tmp, q, k, v, B, H, Nq, Nk, D, scale, causal, stream);
        lse = lse_tmp;
    }
    size_t qbytes = sizeof(float) * (size_t)B * Nq * H * D, kbytes = sizeof(float) * nk;
    // the atomics add into zeros; the deterministic kernels store every element once
    if (!det && (cudaCheck(cudaMemsetAsync(dq, 0, qbytes, st)) || cudaCheck(cudaMemsetAsync(dk, 0, kbytes, st)) ||
                 cudaCheck(cudaMemsetAsync(dv, 0, kbytes, st))))
        return;
    int64_t warps = (int64_t)B * Nq * H;
    k_flash_delta<<<cd_blocks(warps * 32, 256), 256, 0, st>>>(delta, dout, out, B, H, Nq, D);
    if (cudaCheckLaunch()) return;
    switch (D) {
    case 40: bwd_launch<40>(dq, dk, dv, part, dout, q, k, v, lse, delta, B, H, Nq, Nk, scale, causal, det, st); break;
    case 64: bwd_launch<64>(dq, dk, dv, part, dout, q, k, v, lse, delta, B, H, Nq, Nk, scale, causal, det, st); break;
    case 80: bwd_launch<80>(dq, dk, dv, part, dout, q, k, v, lse, delta, B, H, Nq, Nk, scale, causal, det, st); break;
    case 160: bwd_launch<160>(dq, dk, dv, part, dout, q, k, v, lse, delta, B, H, Nq, Nk, scale, causal, det, st); break;
    }
    if (detach_k0) {
        k_zero_key0<<<cd_ew_blocks((int64_t)B * H * D), 256, 0, st>>>(dk, dv, B, Nk, H * D);
        cudaCheckLaunch();
    }
}

extern "C" void cd_cuda_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                      int B, int H, int Nq, int Nk, int D, float scale, void *stream) {
    attn_fwd(out, lse, q, k, v, B, H, Nq, Nk, D, scale, 0, stream);
}
extern "C" void cd_cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                      const float *k, const float *v, const float *out, const float *lse, int B,
                                      int H, int Nq, int Nk, int D, float scale, int detach_k0, void *stream) {
    attn_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, detach_k0, 0, stream);
}
extern "C" void cd_cuda_attention_causal_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                                             int B, int H, int N, int D, float scale, void *stream) {
    attn_fwd(out, lse, q, k, v, B, H, N, N, D, scale, 1, stream);
}
extern "C" void cd_cuda_attention_causal_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                             const float *k, const float *v, const float *out, const float *lse,
                                             int B, int H, int N, int D, float scale, void *stream) {
    attn_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, N, N, D, scale, 0, 1, stream);
}
