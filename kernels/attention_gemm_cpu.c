// Blocked GEMM attention (see kernels/attention_gemm.h). Per (batch, head, query block):
// S = scale * Q K^T via cd_gemm, row softmax (max subtracted, sum in double), O = P V.
// Backward recomputes P from lse: dP = dO V^T, dS = P (dP - rowsum(dO * O)),
// dQ = scale dS K, dK += scale dS^T Q, dV += P^T dO.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/attention_gemm.h"
#include "kernels/kernels.h"
#include "core/err.h"
#include <immintrin.h>

// ---- row kernels: p = exp(s - m) with the row max / sum, AVX2 when the CPU has it -------
// exp: Cephes-style range reduction + degree-6 polynomial, ~1e-7 relative error.
__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// s[n] -> exp(s - max) in place; returns the sum (double), *mx the max.
__attribute__((target("avx2,fma"))) static double softmax_row_avx2(float *s, int n, float *mx) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
    float t[8], m = -INFINITY;
    _mm256_storeu_ps(t, vm);
    for (int i = 0; i < 8; i++) m = t[i] > m ? t[i] : m;
    for (; j < n; j++) m = s[j] > m ? s[j] : m;
    __m256 vmx = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    double sum = 0;
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
        _mm256_storeu_ps(s + j, p);
        acc = _mm256_add_ps(acc, p);
    }
    _mm256_storeu_ps(t, acc);
    for (int i = 0; i < 8; i++) sum += t[i];
    for (; j < n; j++) { s[j] = expf(s[j] - m); sum += s[j]; }
    *mx = m;
    return sum;
}

// p[n] = exp(p - L); s[n] = p * (s - di)
__attribute__((target("avx2,fma"))) static void bwd_row_avx2(float *p, float *s, int n, float L, float di) {
    __m256 vl = _mm256_set1_ps(L), vd = _mm256_set1_ps(di);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + j), vl));
        _mm256_storeu_ps(p + j, e);
        _mm256_storeu_ps(s + j, _mm256_mul_ps(e, _mm256_sub_ps(_mm256_loadu_ps(s + j), vd)));
    }
    for (; j < n; j++) { p[j] = expf(p[j] - L); s[j] = p[j] * (s[j] - di); }
}

static int have_avx2(void) {
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return v;
}

static double softmax_row(float *s, int n, float *mx) {
    if (have_avx2()) return softmax_row_avx2(s, n, mx);
    float m = -INFINITY;
    for (int j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
    double sum = 0;
    for (int j = 0; j < n; j++) { s[j] = expf(s[j] - m); sum += s[j]; }
    *mx = m;
    return sum;
}

static void bwd_row(float *p, float *s, int n, float L, float di) {
    if (have_avx2()) { bwd_row_avx2(p, s, n, L, di); return; }
    for (int j = 0; j < n; j++) { p[j] = expf(p[j] - L); s[j] = p[j] * (s[j] - di); }
}

void cd_attention_gemm_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                           int B, int H, int Nq, int Nk, int D, float scale) {
    int C = H * D, QB = Nq < CD_ATTN_QBLOCK ? Nq : CD_ATTN_QBLOCK;
    float *S = cd_malloc((size_t)QB * Nk * sizeof(float));
    float *inv = cd_malloc((size_t)QB * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *K = k + (int64_t)b * Nk * C + h * D, *V = v + (int64_t)b * Nk * C + h * D;
            for (int i0 = 0; i0 < Nq; i0 += QB) {
                int qb = Nq - i0 < QB ? Nq - i0 : QB;
                const float *Q = q + ((int64_t)b * Nq + i0) * C + h * D;
                float *O = out + ((int64_t)b * Nq + i0) * C + h * D;
                cd_gemm(0, 1, qb, Nk, D, scale, Q, C, K, C, 0.f, S, Nk);
#pragma omp parallel for schedule(static) if ((int64_t)qb * Nk > 65536)
                for (int i = 0; i < qb; i++) {
                    float mx;
                    double sum = softmax_row(S + (int64_t)i * Nk, Nk, &mx);
                    inv[i] = (float)(1.0 / sum);
                    if (lse) lse[((int64_t)b * H + h) * Nq + i0 + i] = mx + (float)log(sum);
                }
                cd_gemm(0, 0, qb, D, Nk, 1.f, S, Nk, V, C, 0.f, O, C);
                for (int i = 0; i < qb; i++)
                    for (int d = 0; d < D; d++) O[(int64_t)i * C + d] *= inv[i];
            }
        }
    free(S); free(inv);
}

void cd_attention_gemm_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *out, const float *lse,
                           int B, int H, int Nq, int Nk, int D, float scale, int detach_k0) {
    int C = H * D, QB = Nq < CD_ATTN_QBLOCK ? Nq : CD_ATTN_QBLOCK;
    float *P = cd_malloc((size_t)QB * Nk * sizeof(float)), *dS = cd_malloc((size_t)QB * Nk * sizeof(float));
    float *Di = cd_malloc((size_t)QB * sizeof(float));
    if (dk) memset(dk, 0, (size_t)B * Nk * C * sizeof(float));
    if (dv) memset(dv, 0, (size_t)B * Nk * C * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int64_t ko = (int64_t)b * Nk * C + h * D;
            for (int i0 = 0; i0 < Nq; i0 += QB) {
                int qb = Nq - i0 < QB ? Nq - i0 : QB;
                int64_t qo = ((int64_t)b * Nq + i0) * C + h * D;
                const float *L = lse + ((int64_t)b * H + h) * Nq + i0;
                cd_gemm(0, 1, qb, Nk, D, scale, q + qo, C, k + ko, C, 0.f, P, Nk);
                cd_gemm(0, 1, qb, Nk, D, 1.f, dout + qo, C, v + ko, C, 0.f, dS, Nk);   // dP
#pragma omp parallel for schedule(static) if ((int64_t)qb * Nk > 65536)
                for (int i = 0; i < qb; i++) {
                    const float *o = out + qo + (int64_t)i * C, *g = dout + qo + (int64_t)i * C;
                    double di = 0;
                    for (int d = 0; d < D; d++) di += (double)o[d] * g[d];
                    Di[i] = (float)di;
                    bwd_row(P + (int64_t)i * Nk, dS + (int64_t)i * Nk, Nk, L[i], Di[i]);
                }
                if (dq) cd_gemm(0, 0, qb, D, Nk, scale, dS, Nk, k + ko, C, 0.f, dq + qo, C);
                if (dk) cd_gemm(1, 0, Nk, D, qb, scale, dS, Nk, q + qo, C, 1.f, dk + ko, C);
                if (dv) cd_gemm(1, 0, Nk, D, qb, 1.f, P, Nk, dout + qo, C, 1.f, dv + ko, C);
            }
        }
    if (detach_k0)
        for (int b = 0; b < B; b++) {
            if (dk) memset(dk + (int64_t)b * Nk * C, 0, C * sizeof(float));
            if (dv) memset(dv + (int64_t)b * Nk * C, 0, C * sizeof(float));
        }
    free(P); free(dS); free(Di);
}
