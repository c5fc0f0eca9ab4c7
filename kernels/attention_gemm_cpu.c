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
#pragma omp parallel for schedule(static)
                for (int i = 0; i < qb; i++) {
                    float *s = S + (int64_t)i * Nk, mx = -INFINITY;
                    for (int j = 0; j < Nk; j++) mx = s[j] > mx ? s[j] : mx;
                    double sum = 0;
                    for (int j = 0; j < Nk; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
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
#pragma omp parallel for schedule(static)
                for (int i = 0; i < qb; i++) {
                    const float *o = out + qo + (int64_t)i * C, *g = dout + qo + (int64_t)i * C;
                    double di = 0;
                    for (int d = 0; d < D; d++) di += (double)o[d] * g[d];
                    Di[i] = (float)di;
                    float *p = P + (int64_t)i * Nk, *s = dS + (int64_t)i * Nk;
                    for (int j = 0; j < Nk; j++) { p[j] = expf(p[j] - L[i]); s[j] = p[j] * (s[j] - Di[i]); }
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
