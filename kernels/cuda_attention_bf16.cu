// Fused flash-style attention forward in 16-bit on tensor cores (WMMA 16x16x16, fp32
// accumulate); softmax statistics and the output accumulator in fp32. Same layout and
// semantics as cd_cuda_attention_fwd (kernels/cuda_attention.cu) with 16-bit q, k, v: the
// element type T is __nv_bfloat16, or __half in fp16 mode (cd_cuda_set_fp16), picked at launch.
//
// Block: 4 warps, 64 queries (16 per warp) x 64-key tiles. Per key tile each warp computes
// its 16 x 64 score tile with WMMA into shared memory, runs the online softmax over it
// (one row at a time across the warp, log2 domain), writes P in 16 bits (T), rescales its rows of
// the fp32 O accumulator (shared memory) and adds P V with WMMA. Head dims are padded to
// a multiple of 16 with zeros (40 -> 48). Never materializes more than a 64 x 64 tile.
// causal (Nq == Nk, the CLIP text model): query i sees keys j <= i; scores of later keys are
// -inf (P = 0) and a query block stops after the key tile holding its last query.
#include "kernels/cuda_common.h"
#include <mma.h>
#include <math.h>

using namespace nvcuda;

#define FB_BQ 64
#define FB_BK 64
#define FB_THREADS 128
#define FB_LOG2E 1.4426950408889634f
#define FB_LN2 0.6931471805599453f

template <int D>
struct FbDims {
    static constexpr int DP = (D + 15) / 16 * 16; // padded head dim
    static constexpr int LB = DP + 8;             // 16-bit tile row stride (elements)
    static constexpr int LS = FB_BK + 4;          // fp32 score row stride
    static constexpr int LP = FB_BK + 8;          // 16-bit P row stride
    static constexpr int LO = DP + 4;             // fp32 O row stride
    static constexpr size_t smem = (size_t)(FB_BQ + 2 * FB_BK) * LB * 2 + (size_t)FB_BQ * LS * 4 +
                                   (size_t)FB_BQ * LP * 2 + (size_t)FB_BQ * LO * 4;
};

// rows [r0, r0+64) of one head into sm[64][LB] (16-bit T), columns >= D and rows >= limit zero.
template <typename T, int D>
__device__ __forceinline__ void fb_load(T *sm, const T *src, int r0, int limit, int HD) {
    constexpr int DP = FbDims<D>::DP, LB = FbDims<D>::LB, CH = DP / 8, CD = D / 8;
    for (int e = threadIdx.x; e < 64 * CH; e += FB_THREADS) {
        int r = e / CH, c = e - r * CH;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (c < CD && r0 + r < limit) val = *(const uint4 *)(src + (int64_t)(r0 + r) * HD + c * 8);
        *(uint4 *)(sm + r * LB + c * 8) = val;
    }
}

template <typename T, int D, bool CAUSAL>
__global__ void __launch_bounds__(FB_THREADS) k_flash_fwd_bf16(void *out, int out_bf16, float *lse, const T *q,
                                                                const T *k, const T *v, int H, int Nq, int Nk,
                                                                float sl) {
    typedef FbDims<D> F;
    constexpr int DP = F::DP, LB = F::LB, LS = F::LS, LP = F::LP, LO = F::LO, ND = DP / 16;
    extern __shared__ __align__(128) unsigned char fb_sm[];
    T *Qs = (T *)fb_sm, *Ks = Qs + FB_BQ * LB, *Vs = Ks + FB_BK * LB;
    float *Ss = (float *)(Vs + FB_BK * LB);
    T *Ps = (T *)(Ss + FB_BQ * LS);
    float *Os = (float *)(Ps + FB_BQ * LP);
    const int bh = blockIdx.y, b = bh / H, h = bh - b * H, HD = H * D, q0 = blockIdx.x * FB_BQ;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const T *qb = q + (int64_t)b * Nq * HD + h * D;
    const T *kb = k + (int64_t)b * Nk * HD + h * D, *vb = v + (int64_t)b * Nk * HD + h * D;
    fb_load<T, D>(Qs, qb, q0, Nq, HD);
    for (int e = threadIdx.x; e < FB_BQ * LO; e += FB_THREADS) Os[e] = 0.f;
    float m[16], l[16];
#pragma unroll
    for (int r = 0; r < 16; r++) { m[r] = -1e30f; l[r] = 0.f; }
    float *Sw = Ss + w * 16 * LS, *Ow = Os + w * 16 * LO;
    T *Pw = Ps + w * 16 * LP;
    const T *Qw = Qs + w * 16 * LB;
    const int kend = CAUSAL ? min(Nk, q0 + FB_BQ) : Nk; // causal: keys j <= the block's last query
    for (int k0 = 0; k0 < kend; k0 += FB_BK) {
        __syncthreads();
        fb_load<T, D>(Ks, kb, k0, Nk, HD);
        fb_load<T, D>(Vs, vb, k0, Nk, HD);
        __syncthreads();
        // S_w[16, 64] = Q_w K^T
#pragma unroll
        for (int n = 0; n < FB_BK / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < ND; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fbm;
                wmma::load_matrix_sync(fa, Qw + kk * 16, LB);
                wmma::load_matrix_sync(fbm, Ks + n * 16 * LB + kk * 16, LB);
                wmma::mma_sync(acc, fa, fbm, acc);
            }
            wmma::store_matrix_sync(Sw + n * 16, acc, LS, wmma::mem_row_major);
        }
        __syncwarp();
        // keys past Nk, and (causal) keys after the row's query, score -inf
#pragma unroll
        for (int r = 0; r < 16; r++) {
            const int lim = CAUSAL ? min(Nk, q0 + w * 16 + r + 1) : Nk;
            const bool ok0 = k0 + lane < lim, ok1 = k0 + lane + 32 < lim;
            float s0 = ok0 ? Sw[r * LS + lane] * sl : -INFINITY, s1 = ok1 ? Sw[r * LS + lane + 32] * sl : -INFINITY;
            float mx = fmaxf(s0, s1);
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float mn = fmaxf(m[r], mx), alpha = exp2f(m[r] - mn);
            const float p0 = exp2f(s0 - mn), p1 = exp2f(s1 - mn);
            float rs = p0 + p1;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) rs += __shfl_xor_sync(0xffffffffu, rs, o);
            l[r] = l[r] * alpha + rs;
            m[r] = mn;
            Pw[r * LP + lane] = cd_to16<T>(p0);
            Pw[r * LP + lane + 32] = cd_to16<T>(p1);
            for (int c = lane; c < DP; c += 32) Ow[r * LO + c] *= alpha;
        }
        __syncwarp();
        // O_w[16, DP] += P_w[16, 64] V[64, DP]
#pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Ow + nd * 16, LO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < FB_BK / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fbm;
                wmma::load_matrix_sync(fa, Pw + kk * 16, LP);
                wmma::load_matrix_sync(fbm, Vs + kk * 16 * LB + nd * 16, LB);
                wmma::mma_sync(acc, fa, fbm, acc);
            }
            wmma::store_matrix_sync(Ow + nd * 16, acc, LO, wmma::mem_row_major);
        }
        __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < 16; r++) {
        const int row = q0 + w * 16 + r;
        if (row >= Nq) continue;
        const float inv = 1.f / l[r];
        const int64_t o = ((int64_t)b * Nq + row) * HD + h * D;
        for (int c = lane; c < D; c += 32) {
            const float val = Ow[r * LO + c] * inv;
            if (out_bf16) ((T *)out)[o + c] = cd_to16<T>(val);
            else ((float *)out)[o + c] = val;
        }
        if (lse && lane == 0) lse[(int64_t)bh * Nq + row] = (m[r] + log2f(l[r])) * FB_LN2;
    }
}

template <typename T, int D, bool CAUSAL>
static void fb_launch(void *out, int out_bf16, float *lse, const T *q, const T *k, const T *v, int B, int H,
                      int Nq, int Nk, float scale, cudaStream_t st) {
    static int attr_set;
    const size_t smem = FbDims<D>::smem;
    if (!attr_set) {
        if (cudaCheck(cudaFuncSetAttribute(k_flash_fwd_bf16<T, D, CAUSAL>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)))
            return;
        attr_set = 1;
    }
    dim3 grid((Nq + FB_BQ - 1) / FB_BQ, B * H);
    k_flash_fwd_bf16<T, D, CAUSAL><<<grid, FB_THREADS, smem, st>>>(out, out_bf16, lse, q, k, v, H, Nq, Nk,
                                                                   scale * FB_LOG2E);
    cudaCheckLaunch();
}

template <typename T>
static void fwd16(void *out, int out_bf16, float *lse, const T *Q, const T *K, const T *V, int B, int H, int Nq, int Nk,
                  int D, float scale, int causal, cudaStream_t st) {
#define FB_CASE(DD)                                                                                    \
    case DD:                                                                                           \
        if (causal) fb_launch<T, DD, true>(out, out_bf16, lse, Q, K, V, B, H, Nq, Nk, scale, st);       \
        else fb_launch<T, DD, false>(out, out_bf16, lse, Q, K, V, B, H, Nq, Nk, scale, st);             \
        break;
    switch (D) { FB_CASE(40) FB_CASE(64) FB_CASE(80) FB_CASE(160) }
#undef FB_CASE
}

// The forward's checks, then fwd16 in the process's 16-bit format; causal: Nq == Nk.
static void fwd_bf16(void *out, int out_bf16, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                     int B, int H, int Nq, int Nk, int D, float scale, int causal, void *stream) {
    cudaStream_t st = cd_stream(stream);
    if (B <= 0 || H <= 0 || Nq <= 0) return;
    if (cd_cuda_require(D == 40 || D == 64 || D == 80 || D == 160, "attention bf16: head dim must be 40, 64, 80 or 160") ||
        cd_cuda_require(Nk > 0, "attention bf16: Nk must be > 0") ||
        cd_cuda_require((((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) & 15) == 0,
                        "attention bf16: q, k, v must be 16-byte aligned"))
        return;
    CD_DISPATCH16(T16, fwd16<T16>(out, out_bf16, lse, (const T16 *)q, (const T16 *)k, (const T16 *)v, B, H, Nq, Nk, D,
                                  scale, causal, st));
}

extern "C" void cd_cuda_attention_fwd_bf16(void *out, int out_bf16, float *lse, const uint16_t *q, const uint16_t *k,
                                           const uint16_t *v, int B, int H, int Nq, int Nk, int D, float scale,
                                           void *stream) {
    fwd_bf16(out, out_bf16, lse, q, k, v, B, H, Nq, Nk, D, scale, 0, stream);
}

extern "C" void cd_cuda_attention_causal_fwd_bf16(void *out, int out_bf16, float *lse, const uint16_t *q,
                                                  const uint16_t *k, const uint16_t *v, int B, int H, int N, int D,
                                                  float scale, void *stream) {
    fwd_bf16(out, out_bf16, lse, q, k, v, B, H, N, N, D, scale, 1, stream);
}

// ---- backward (head dims 40, 64, 80 on tensor cores; 160 through the fp32 kernel) -------------
// Block: 64 keys of one (b, h), 4 warps x 16 keys; loops over 64-query tiles of its split.
// Per tile and warp: S^T = K_w Q^T and dP^T = V_w dO^T (WMMA, fp32) -> P^T, dS^T in 16-bit T;
// dV_w += P^T dO, dK_w += dS^T Q (fp32 accumulators in shared memory); after a block
// barrier each warp forms dQ for 16 queries = dS K over the block's 64 keys and adds it to
// the fp32 dq with atomicAdd. dK (x scale) and dV leave through atomicAdd at the end.
// causal (Nq == Nk): P = 0 for key j > query i, and a key block starts at the query tile of its
// first key (tiles wholly before it see none of its keys); a split left with no tile exits.
// Deterministic mode (cd_cuda_set_deterministic; see kernels/cuda_attention.cu): no dQ here and
// plain stores of each split's dK, dV slice (a split with no tile stores zeros);
// k_flash_bwd_dq_bf16 forms dQ, one block per 64 queries.
template <int D>
struct FbbDims {
    static constexpr int DP = (D + 15) / 16 * 16, LB = DP + 8, LS = FB_BQ + 4, LP = FB_BQ + 8, LO = DP + 4;
    static constexpr size_t tiles = (size_t)4 * 64 * LB * 2;          // Ks, Vs, Qs, dOs (16-bit)
    static constexpr size_t sp = (size_t)2 * 64 * LS * 4;             // S^T, dP^T (fp32); reused for dQ
    static constexpr size_t pd = (size_t)2 * 64 * LP * 2;             // P^T, dS^T (16-bit)
    static constexpr size_t acc = (size_t)2 * 64 * LO * 4;            // dK, dV accumulators (fp32)
    static constexpr size_t smem = tiles + sp + pd + acc + 2 * 64 * 4; // + lse, delta
    static_assert((size_t)64 * LO * 4 <= sp, "dQ staging must fit in the score buffers");
};

// delta[bh, i] = sum_d dout * out (16-bit inputs, fp32 sum); one warp per (b, i, h).
template <typename T>
__global__ void k_delta_bf16(float *delta, const T *dout, const T *out, int B, int H, int Nq, int D) {
    int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (int64_t)B * Nq * H) return;
    int h = (int)(w % H);
    int64_t bi = w / H;
    int b = (int)(bi / Nq), i = (int)(bi - (int64_t)b * Nq);
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s += cd_to32(dout[w * D + d]) * cd_to32(out[w * D + d]);
    s = cd_warp_sum(s);
    if (lane == 0) delta[((int64_t)b * H + h) * Nq + i] = s;
}

// One warp's two 16 x 64 score tiles of the backward: S = A_w B^T and P = C_w E^T (WMMA, fp32
// accumulate) over the padded head dim, with A_w, C_w 16 rows and B, E 64 rows of 16-bit tiles
// (row stride LB); stored row-major into S_w, P_w (row stride LS).
template <typename T, int D>
__device__ __forceinline__ void fbb_dots2(float *S_w, float *P_w, int LS, const T *A_w, const T *B, const T *C_w,
                                          const T *E) {
    constexpr int LB = FbDims<D>::LB, ND = FbDims<D>::DP / 16;
#pragma unroll
    for (int n = 0; n < 4; n++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> s, p;
        wmma::fill_fragment(s, 0.f);
        wmma::fill_fragment(p, 0.f);
#pragma unroll
        for (int kk = 0; kk < ND; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a, c;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b, e;
            wmma::load_matrix_sync(a, A_w + kk * 16, LB);
            wmma::load_matrix_sync(c, C_w + kk * 16, LB);
            wmma::load_matrix_sync(b, B + n * 16 * LB + kk * 16, LB);
            wmma::load_matrix_sync(e, E + n * 16 * LB + kk * 16, LB);
            wmma::mma_sync(s, a, b, s);
            wmma::mma_sync(p, c, e, p);
        }
        wmma::store_matrix_sync(S_w + n * 16, s, LS, wmma::mem_row_major);
        wmma::store_matrix_sync(P_w + n * 16, p, LS, wmma::mem_row_major);
    }
}

template <typename T, int D, bool CAUSAL>
__global__ void __launch_bounds__(FB_THREADS) k_flash_bwd_bf16(float *dq, float *dk, float *dv, const T *dout,
                                                                const T *q, const T *k, const T *v,
                                                                const float *lse, const float *delta, int H, int Nq,
                                                                int Nk, float scale, int tiles_per_split, int det,
                                                                int64_t split_stride) {
    typedef FbbDims<D> F;
    constexpr int DP = F::DP, LB = F::LB, LS = F::LS, LP = F::LP, LO = F::LO, ND = DP / 16;
    extern __shared__ __align__(128) unsigned char fbb_sm[];
    T *Ks = (T *)fbb_sm, *Vs = Ks + 64 * LB, *Qs = Vs + 64 * LB, *Os = Qs + 64 * LB;
    float *St = (float *)(Os + 64 * LB), *dPt = St + 64 * LS;
    T *Pt = (T *)(dPt + 64 * LS), *dSt = Pt + 64 * LP;
    float *dKs = (float *)(dSt + 64 * LP), *dVs = dKs + 64 * LO, *Ls = dVs + 64 * LO, *Dl = Ls + 64;
    float *dQt = St; // [64][LO] staging for dQ, reuses S^T/dP^T after they are consumed
    const int bh = blockIdx.z, b = bh / H, h = bh - b * H, HD = H * D, k0 = blockIdx.x * 64;
    const int s0 = (int)blockIdx.y * tiles_per_split, t1 = min((Nq + 63) / 64, s0 + tiles_per_split);
    const int t0 = CAUSAL ? max(s0, k0 / 64) : s0;
    if (CAUSAL && t0 >= t1 && !det) return; // every query of this split precedes the block's keys
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float sl = scale * FB_LOG2E;
    const int64_t qoff = (int64_t)b * Nq * HD + h * D, koff = (int64_t)b * Nk * HD + h * D;
    fb_load<T, D>(Ks, k + koff, k0, Nk, HD);
    fb_load<T, D>(Vs, v + koff, k0, Nk, HD);
    for (int e = threadIdx.x; e < 2 * 64 * LO; e += FB_THREADS) dKs[e] = 0.f; // dKs and dVs
    float *St_w = St + w * 16 * LS, *dPt_w = dPt + w * 16 * LS, *dK_w = dKs + w * 16 * LO, *dV_w = dVs + w * 16 * LO;
    T *Pt_w = Pt + w * 16 * LP, *dSt_w = dSt + w * 16 * LP;
    const T *K_w = Ks + w * 16 * LB, *V_w = Vs + w * 16 * LB;
    for (int t = t0; t < t1; t++) {
        const int q0 = t * 64;
        __syncthreads();
        fb_load<T, D>(Qs, q + qoff, q0, Nq, HD);
        fb_load<T, D>(Os, dout + qoff, q0, Nq, HD);
        for (int i = threadIdx.x; i < 64; i += FB_THREADS) {
            const bool ok = q0 + i < Nq;
            Ls[i] = ok ? lse[(int64_t)bh * Nq + q0 + i] * FB_LOG2E : 0.f;
            Dl[i] = ok ? delta[(int64_t)bh * Nq + q0 + i] : 0.f;
        }
        __syncthreads();
        fbb_dots2<T, D>(St_w, dPt_w, LS, K_w, Qs, V_w, Os); // S^T = K_w Q^T, dP^T = V_w dO^T
        __syncwarp();
        for (int e = lane; e < 16 * 64; e += 32) {
            const int r = e >> 6, c = e & 63;
            const int key = k0 + w * 16 + r;
            const bool ok = (key < Nk) && (q0 + c < Nq) && (!CAUSAL || key <= q0 + c);
            const float p = ok ? exp2f(St_w[r * LS + c] * sl - Ls[c]) : 0.f;
            Pt_w[r * LP + c] = cd_to16<T>(p);
            dSt_w[r * LP + c] = cd_to16<T>(p * (dPt_w[r * LS + c] - Dl[c]));
        }
        __syncwarp();
#pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> av, ak;
            wmma::load_matrix_sync(av, dV_w + nd * 16, LO, wmma::mem_row_major);
            wmma::load_matrix_sync(ak, dK_w + nd * 16, LO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa, sa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> ob, qb;
                wmma::load_matrix_sync(pa, Pt_w + kk * 16, LP);
                wmma::load_matrix_sync(sa, dSt_w + kk * 16, LP);
                wmma::load_matrix_sync(ob, Os + kk * 16 * LB + nd * 16, LB);
                wmma::load_matrix_sync(qb, Qs + kk * 16 * LB + nd * 16, LB);
                wmma::mma_sync(av, pa, ob, av);
                wmma::mma_sync(ak, sa, qb, ak);
            }
            wmma::store_matrix_sync(dV_w + nd * 16, av, LO, wmma::mem_row_major);
            wmma::store_matrix_sync(dK_w + nd * 16, ak, LO, wmma::mem_row_major);
        }
        if (det) continue; // dQ: k_flash_bwd_dq_bf16 (the next tile's first barrier orders the reuse)
        __syncthreads(); // every warp's dS^T is written; S^T/dP^T are free for dQ staging
        float *dQ_w = dQt + w * 16 * LO;
#pragma unroll
        for (int nd = 0; nd < ND; nd++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> aq;
            wmma::fill_fragment(aq, 0.f);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> sa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> kb;
                wmma::load_matrix_sync(sa, dSt + kk * 16 * LP + w * 16, LP);
                wmma::load_matrix_sync(kb, Ks + kk * 16 * LB + nd * 16, LB);
                wmma::mma_sync(aq, sa, kb, aq);
            }
            wmma::store_matrix_sync(dQ_w + nd * 16, aq, LO, wmma::mem_row_major);
        }
        __syncwarp();
        for (int e = lane; e < 16 * D; e += 32) {
            const int r = e / D, c = e - r * D, row = q0 + w * 16 + r;
            if (row < Nq) atomicAdd(&dq[qoff + (int64_t)row * HD + c], dQ_w[r * LO + c] * scale);
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < 64 * D; e += FB_THREADS) {
        const int r = e / D, c = e - r * D, key = k0 + r;
        if (key >= Nk) continue;
        const int64_t o = koff + (int64_t)key * HD + c;
        if (det) {
            dk[blockIdx.y * split_stride + o] = dKs[r * LO + c] * scale;
            dv[blockIdx.y * split_stride + o] = dVs[r * LO + c];
        } else {
            atomicAdd(&dk[o], dKs[r * LO + c] * scale);
            atomicAdd(&dv[o], dVs[r * LO + c]);
        }
    }
}

// Deterministic dQ: grid (query tiles, B*H), 4 warps x 16 queries. Per 64-key tile each warp
// computes S = Q_w K^T and dP = dO_w V^T (WMMA, fp32) into shared memory, forms dS = P (dP - delta)
// in 16-bit T, and adds dS K into its dQ fragments (fp32, in registers over the key tiles).
// At the end the fragments are staged through shared memory and dq is stored once (x scale).
// causal: key tiles past the block's last query are skipped.
template <int D>
struct FbqDims {
    static constexpr int DP = (D + 15) / 16 * 16, LB = DP + 8, LS = FB_BK + 4, LP = FB_BK + 8, LO = DP + 4;
    static constexpr size_t tiles = (size_t)4 * 64 * LB * 2; // Qs, dOs, Ks, Vs (16-bit)
    static constexpr size_t sp = (size_t)2 * 64 * LS * 4;    // S, dP (fp32); dQ staging at the end
    static constexpr size_t smem = tiles + sp + (size_t)64 * LP * 2 + 2 * 64 * 4; // + dS, lse, delta
    static_assert((size_t)64 * LO * 4 <= sp, "dQ staging must fit in the score buffers");
};

template <typename T, int D, bool CAUSAL>
__global__ void __launch_bounds__(FB_THREADS) k_flash_bwd_dq_bf16(float *dq, const T *dout, const T *q, const T *k,
                                                                   const T *v, const float *lse, const float *delta,
                                                                   int H, int Nq, int Nk, float scale) {
    typedef FbqDims<D> F;
    constexpr int DP = F::DP, LB = F::LB, LS = F::LS, LP = F::LP, LO = F::LO, ND = DP / 16;
    extern __shared__ __align__(128) unsigned char fbq_sm[];
    T *Qs = (T *)fbq_sm, *Os = Qs + 64 * LB, *Ks = Os + 64 * LB, *Vs = Ks + 64 * LB;
    float *Ss = (float *)(Vs + 64 * LB), *dPs = Ss + 64 * LS;
    T *dSs = (T *)(dPs + 64 * LS);
    float *Ls = (float *)(dSs + 64 * LP), *Dl = Ls + 64;
    const int bh = blockIdx.y, b = bh / H, h = bh - b * H, HD = H * D, q0 = blockIdx.x * 64;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float sl = scale * FB_LOG2E;
    const int64_t qoff = (int64_t)b * Nq * HD + h * D, koff = (int64_t)b * Nk * HD + h * D;
    fb_load<T, D>(Qs, q + qoff, q0, Nq, HD);
    fb_load<T, D>(Os, dout + qoff, q0, Nq, HD);
    for (int i = threadIdx.x; i < 64; i += FB_THREADS) {
        const bool ok = q0 + i < Nq;
        Ls[i] = ok ? lse[(int64_t)bh * Nq + q0 + i] * FB_LOG2E : 0.f;
        Dl[i] = ok ? delta[(int64_t)bh * Nq + q0 + i] : 0.f;
    }
    float *S_w = Ss + w * 16 * LS, *dP_w = dPs + w * 16 * LS;
    T *dS_w = dSs + w * 16 * LP;
    const T *Q_w = Qs + w * 16 * LB, *O_w = Os + w * 16 * LB;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> aq[ND];
#pragma unroll
    for (int nd = 0; nd < ND; nd++) wmma::fill_fragment(aq[nd], 0.f);
    const int kend = CAUSAL ? min(Nk, q0 + 64) : Nk;
    for (int k0 = 0; k0 < kend; k0 += 64) {
        __syncthreads(); // the previous tile's Ks/Vs are no longer read (and, first, Qs/dOs/Ls/Dl are written)
        fb_load<T, D>(Ks, k + koff, k0, Nk, HD);
        fb_load<T, D>(Vs, v + koff, k0, Nk, HD);
        __syncthreads();
        fbb_dots2<T, D>(S_w, dP_w, LS, Q_w, Ks, O_w, Vs); // S = Q_w K^T, dP = dO_w V^T
        __syncwarp();
        for (int e = lane; e < 16 * 64; e += 32) {
            const int r = e >> 6, c = e & 63, qi = w * 16 + r, key = k0 + c;
            const bool ok = (key < Nk) && (q0 + qi < Nq) && (!CAUSAL || key <= q0 + qi);
            const float p = ok ? exp2f(S_w[r * LS + c] * sl - Ls[qi]) : 0.f;
            dS_w[r * LP + c] = cd_to16<T>(p * (dP_w[r * LS + c] - Dl[qi]));
        }
        __syncwarp();
#pragma unroll
        for (int nd = 0; nd < ND; nd++)
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> sa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> kb;
                wmma::load_matrix_sync(sa, dS_w + kk * 16, LP);
                wmma::load_matrix_sync(kb, Ks + kk * 16 * LB + nd * 16, LB);
                wmma::mma_sync(aq[nd], sa, kb, aq[nd]);
            }
    }
    __syncthreads(); // every warp is done with S/dP: they become the dQ staging
    float *dQ_w = Ss + w * 16 * LO;
#pragma unroll
    for (int nd = 0; nd < ND; nd++) wmma::store_matrix_sync(dQ_w + nd * 16, aq[nd], LO, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 16 * D; e += 32) {
        const int r = e / D, c = e - r * D, row = q0 + w * 16 + r;
        if (row < Nq) dq[qoff + (int64_t)row * HD + c] = dQ_w[r * LO + c] * scale;
    }
}

__global__ void k_zero_key0_bf(float *dk, float *dv, int B, int Nk, int HD) {
    CD_GRID_LOOP(i, (int64_t)B * HD) {
        int64_t b = i / HD, j = i - b * HD;
        dk[b * Nk * HD + j] = 0.f;
        dv[b * Nk * HD + j] = 0.f;
    }
}

// det: part is the [splits][B, Nk, H*D] slices of dK, dV (NULL with one split: dk, dv directly).
template <typename T, int D, bool CAUSAL>
static void fbb_launch(float *dq, float *dk, float *dv, float *part, const T *dout, const T *q, const T *k,
                       const T *v, const float *lse, const float *delta, int B, int H, int Nq, int Nk, float scale,
                       int det, cudaStream_t st) {
    static int attr_set;
    const size_t smem = FbbDims<D>::smem, dq_smem = FbqDims<D>::smem;
    if (!attr_set) {
        if (cudaCheck(cudaFuncSetAttribute(k_flash_bwd_bf16<T, D, CAUSAL>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) ||
            cudaCheck(cudaFuncSetAttribute(k_flash_bwd_dq_bf16<T, D, CAUSAL>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dq_smem)))
            return;
        attr_set = 1;
    }
    int per, splits = cd_attn_bwd_splits(B, H, Nq, Nk, &per);
    dim3 grid((Nk + 63) / 64, splits, B * H);
    const int64_t nk = (int64_t)B * Nk * H * D;
    float *pk = det && part ? part : dk, *pv = det && part ? part + (int64_t)splits * nk : dv;
    k_flash_bwd_bf16<T, D, CAUSAL><<<grid, FB_THREADS, smem, st>>>(dq, pk, pv, dout, q, k, v, lse, delta, H, Nq, Nk,
                                                                   scale, per, det, nk);
    if (cudaCheckLaunch() || !det) return;
    if (part) {
        cd_cuda_partials_sum(dk, pk, splits, nk, 0, st);
        cd_cuda_partials_sum(dv, pv, splits, nk, 0, st);
    }
    k_flash_bwd_dq_bf16<T, D, CAUSAL><<<dim3((Nq + 63) / 64, B * H), FB_THREADS, dq_smem, st>>>(
        dq, dout, q, k, v, lse, delta, H, Nq, Nk, scale);
    cudaCheckLaunch();
}

template <typename T>
__global__ void k_bf_to_f(float *y, const T *x, int64_t n) { CD_GRID_LOOP(i, n) y[i] = cd_to32(x[i]); }

// D = 160 (8x8 and 16x16 latents only): widen to fp32 and use the fp32 fused kernel. The widened
// copies live in the stream's outer scratch (the fp32 backward uses its plain scratch).
template <typename T>
static void bwd_bf16_via_fp32(float *dq, float *dk, float *dv, const T *dout, const T *q, const T *k,
                              const T *v, const T *out, const float *lse, int B, int H, int Nq, int Nk, int D,
                              float scale, int detach_k0, int causal, void *stream) {
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    float *buf = (float *)cd_cuda_scratch_outer(stream, sizeof(float) * (3 * nq + 2 * nk));
    if (!buf) return;
    float *fd = buf, *fq = fd + nq, *fo = fq + nq, *fk = fo + nq, *fv = fk + nk;
    cudaStream_t st = cd_stream(stream);
    k_bf_to_f<T><<<cd_ew_blocks(nq), 256, 0, st>>>(fd, dout, nq);
    k_bf_to_f<T><<<cd_ew_blocks(nq), 256, 0, st>>>(fq, q, nq);
    k_bf_to_f<T><<<cd_ew_blocks(nq), 256, 0, st>>>(fo, out, nq);
    k_bf_to_f<T><<<cd_ew_blocks(nk), 256, 0, st>>>(fk, k, nk);
    k_bf_to_f<T><<<cd_ew_blocks(nk), 256, 0, st>>>(fv, v, nk);
    if (cudaCheckLaunch()) return;
    if (causal) cd_cuda_attention_causal_bwd(dq, dk, dv, fd, fq, fk, fv, fo, lse, B, H, Nq, D, scale, stream);
    else cd_cuda_attention_bwd(dq, dk, dv, fd, fq, fk, fv, fo, lse, B, H, Nq, Nk, D, scale, detach_k0, stream);
}

// The backward once bwd_bf16's checks passed; T the 16-bit element type; causal: Nq == Nk.
template <typename T>
static void bwd16(float *dq, float *dk, float *dv, const T *dO, const T *Q, const T *K, const T *V, const T *out,
                  const float *lse, int B, int H, int Nq, int Nk, int D, float scale, int detach_k0, int causal,
                  void *stream) {
    cudaStream_t st = cd_stream(stream);
    if (D == 160) {
        bwd_bf16_via_fp32<T>(dq, dk, dv, dO, Q, K, V, out, lse, B, H, Nq, Nk, D, scale, detach_k0, causal, stream);
        return;
    }
    const int det = cd_cuda_get_deterministic();
    int per, splits = cd_attn_bwd_splits(B, H, Nq, Nk, &per);
    // scratch: delta [B,H,Nq]; deterministic with query splits also the splits' dK, dV slices
    size_t nrow = (size_t)B * H * Nq, nk = (size_t)B * Nk * H * D;
    size_t nparts = det && splits > 1 ? 2 * (size_t)splits * nk : 0;
    float *delta = (float *)cd_cuda_scratch(stream, sizeof(float) * (nrow + nparts));
    if (!delta) return;
    float *part = nparts ? delta + nrow : NULL;
    size_t qbytes = sizeof(float) * (size_t)B * Nq * H * D, kbytes = sizeof(float) * nk;
    // the atomics add into zeros; the deterministic kernels store every element once
    if (!det && (cudaCheck(cudaMemsetAsync(dq, 0, qbytes, st)) || cudaCheck(cudaMemsetAsync(dk, 0, kbytes, st)) ||
                 cudaCheck(cudaMemsetAsync(dv, 0, kbytes, st))))
        return;
    int64_t warps = (int64_t)B * Nq * H;
    k_delta_bf16<T><<<cd_blocks(warps * 32, 256), 256, 0, st>>>(delta, dO, out, B, H, Nq, D);
    if (cudaCheckLaunch()) return;
#define FBB_CASE(DD)                                                                                   \
    case DD:                                                                                           \
        if (causal) fbb_launch<T, DD, true>(dq, dk, dv, part, dO, Q, K, V, lse, delta, B, H, Nq, Nk, scale, det, st); \
        else fbb_launch<T, DD, false>(dq, dk, dv, part, dO, Q, K, V, lse, delta, B, H, Nq, Nk, scale, det, st);       \
        break;
    switch (D) { FBB_CASE(40) FBB_CASE(64) FBB_CASE(80) }
#undef FBB_CASE
    if (detach_k0) {
        k_zero_key0_bf<<<cd_ew_blocks((int64_t)B * H * D), 256, 0, st>>>(dk, dv, B, Nk, H * D);
        cudaCheckLaunch();
    }
}

static void bwd_bf16(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q, const uint16_t *k,
                     const uint16_t *v, const uint16_t *out, const float *lse, int B, int H, int Nq, int Nk, int D,
                     float scale, int detach_k0, int causal, void *stream) {
    if (B <= 0 || H <= 0 || Nq <= 0) return;
    if (cd_cuda_require(D == 40 || D == 64 || D == 80 || D == 160, "attention bf16: head dim must be 40, 64, 80 or 160") ||
        cd_cuda_require(Nk > 0 && lse != NULL, "attention bf16 backward: needs Nk > 0 and the forward's lse") ||
        cd_cuda_require((((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)dout) & 15) == 0,
                        "attention bf16: q, k, v, dout must be 16-byte aligned"))
        return;
    CD_DISPATCH16(T16, bwd16<T16>(dq, dk, dv, (const T16 *)dout, (const T16 *)q, (const T16 *)k, (const T16 *)v,
                                  (const T16 *)out, lse, B, H, Nq, Nk, D, scale, detach_k0, causal, stream));
}

extern "C" void cd_cuda_attention_bwd_bf16(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q,
                                           const uint16_t *k, const uint16_t *v, const uint16_t *out,
                                           const float *lse, int B, int H, int Nq, int Nk, int D, float scale,
                                           int detach_k0, void *stream) {
    bwd_bf16(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, detach_k0, 0, stream);
}

extern "C" void cd_cuda_attention_causal_bwd_bf16(float *dq, float *dk, float *dv, const uint16_t *dout,
                                                  const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                                  const uint16_t *out, const float *lse, int B, int H, int N, int D,
                                                  float scale, void *stream) {
    bwd_bf16(dq, dk, dv, dout, q, k, v, out, lse, B, H, N, N, D, scale, 0, 1, stream);
}
