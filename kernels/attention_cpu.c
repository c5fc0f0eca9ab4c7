// Scaled dot-product attention, CPU reference. q [B,Nq,H*D], k/v [B,Nk,H*D] (heads
// interleaved in the channel dim), out [B,Nq,H*D], lse [B,H,Nq]. Softmax in float with the
// row maximum subtracted; lse = max + log(sum). Each output element is computed by one
// thread in a fixed order, so results do not depend on the thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/kernels.h"

// Dot product; the SIMD lanes' partial sums are added in a fixed order (same bits for any
// thread count).
static inline float dot(const float *a, const float *b, int n) {
    float s = 0.f;
#pragma omp simd reduction(+:s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                     int B, int H, int Nq, int Nk, int D, float scale, int causal) {
    int C = H * D;
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * (Nk > 0 ? Nk : 1));
        double *acc = malloc(sizeof(double) * D);
#pragma omp for schedule(static) collapse(3)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < Nq; i++) {
                    const float *qi = q + ((int64_t)b * Nq + i) * C + h * D;
                    int nk = causal ? i + 1 : Nk;
                    float mx = -INFINITY;
                    for (int j = 0; j < nk; j++) {
                        s[j] = dot(qi, k + ((int64_t)b * Nk + j) * C + h * D, D) * scale;
                        if (s[j] > mx) mx = s[j];
                    }
                    double sum = 0;
                    for (int j = 0; j < nk; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
                    for (int d = 0; d < D; d++) acc[d] = 0;
                    for (int j = 0; j < nk; j++) {
                        const float *vj = v + ((int64_t)b * Nk + j) * C + h * D;
                        for (int d = 0; d < D; d++) acc[d] += (double)s[j] * vj[d];
                    }
                    float *oi = out + ((int64_t)b * Nq + i) * C + h * D;
                    for (int d = 0; d < D; d++) oi[d] = (float)(acc[d] / sum);
                    if (lse) lse[((int64_t)b * H + h) * Nq + i] = mx + (float)log(sum);
                }
        free(s); free(acc);
    }
}

// Backward from dout. With P[i,j] = exp(s_ij - lse_i) and Di = dout_i . out_i:
//   dS = P * (dout_i . v_j - Di);  dq_i = scale sum_j dS k_j;  dk_j = scale sum_i dS q_i;
//   dv_j = sum_i P dout_i. Pass 1 runs over queries (dq), pass 2 over keys (dk, dv).
// lse NULL: recomputed here.
static void attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                     const float *k, const float *v, const float *out, const float *lse_in,
                     int B, int H, int Nq, int Nk, int D, float scale, int causal, int detach_k0) {
    int C = H * D;
    int64_t nrow = (int64_t)B * H * Nq;
    float *Dr = malloc(sizeof(float) * (nrow > 0 ? nrow : 1));
    float *lse = (float *)lse_in;
    if (!lse) {
        lse = malloc(sizeof(float) * (nrow > 0 ? nrow : 1));
        float *tmp = malloc(sizeof(float) * (size_t)B * Nq * C);
        attn_fwd(tmp, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
        free(tmp);
    }
#pragma omp parallel for schedule(static) collapse(3)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Nq; i++) {
                int64_t o = ((int64_t)b * Nq + i) * C + h * D;
                Dr[((int64_t)b * H + h) * Nq + i] = dot(dout + o, out + o, D);
            }
    if (dq) {
#pragma omp parallel
        {
            double *acc = malloc(sizeof(double) * D);
#pragma omp for schedule(static) collapse(3)
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++)
                    for (int i = 0; i < Nq; i++) {
                        int64_t o = ((int64_t)b * Nq + i) * C + h * D, r = ((int64_t)b * H + h) * Nq + i;
                        int nk = causal ? i + 1 : Nk;
                        for (int d = 0; d < D; d++) acc[d] = 0;
                        for (int j = 0; j < nk; j++) {
                            const float *kj = k + ((int64_t)b * Nk + j) * C + h * D;
                            const float *vj = v + ((int64_t)b * Nk + j) * C + h * D;
                            float p = expf(dot(q + o, kj, D) * scale - lse[r]);
                            float ds = p * (dot(dout + o, vj, D) - Dr[r]);
                            for (int d = 0; d < D; d++) acc[d] += (double)ds * kj[d];
                        }
                        for (int d = 0; d < D; d++) dq[o + d] = (float)(acc[d] * scale);
                    }
            free(acc);
        }
    }
    if (dk || dv) {
#pragma omp parallel
        {
            double *ak = malloc(sizeof(double) * D), *av = malloc(sizeof(double) * D);
#pragma omp for schedule(static) collapse(3)
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++)
                    for (int j = 0; j < Nk; j++) {
                        int64_t oj = ((int64_t)b * Nk + j) * C + h * D;
                        for (int d = 0; d < D; d++) { ak[d] = 0; av[d] = 0; }
                        if (!(detach_k0 && j == 0)) {
                            for (int i = causal ? j : 0; i < Nq; i++) {
                                int64_t oi = ((int64_t)b * Nq + i) * C + h * D, r = ((int64_t)b * H + h) * Nq + i;
                                float p = expf(dot(q + oi, k + oj, D) * scale - lse[r]);
                                float ds = p * (dot(dout + oi, v + oj, D) - Dr[r]);
                                for (int d = 0; d < D; d++) {
                                    ak[d] += (double)ds * q[oi + d];
                                    av[d] += (double)p * dout[oi + d];
                                }
                            }
                        }
                        for (int d = 0; d < D; d++) {
                            if (dk) dk[oj + d] = (float)(ak[d] * scale);
                            if (dv) dv[oj + d] = (float)av[d];
                        }
                    }
            free(ak); free(av);
        }
    }
    free(Dr);
    if (lse != lse_in) free(lse);
}

void cd_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                      int B, int H, int Nq, int Nk, int D, float scale) {
    attn_fwd(out, lse, q, k, v, B, H, Nq, Nk, D, scale, 0);
}

void cd_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                      const float *k, const float *v, const float *out, const float *lse,
                      int B, int H, int Nq, int Nk, int D, float scale, int detach_k0) {
    attn_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, 0, detach_k0);
}

void cd_attention_causal_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                             int B, int H, int N, int D, float scale) {
    attn_fwd(out, lse, q, k, v, B, H, N, N, D, scale, 1);
}

void cd_attention_causal_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             int B, int H, int N, int D, float scale) {
    attn_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, N, N, D, scale, 1, 0);
}
