// Host emulation (see kernels/emu/emu.h) of the bf16 fused attention of
// kernels/cuda_attention_bf16.cu: the same refusals (head dims 40/64/80/160, Nk > 0, the
// forward's lse in backward, 16-byte aligned q, k, v (dout)), the same scratch and device
// allocations, and the kernels' roundings: the forward runs the online softmax over 64-key
// tiles and rounds each tile's probabilities to 16 bits before P V (fp32 row sums, fp32 O); the
// backward rounds P and dS = P (dP - delta) to 16 bits before dV = P^T dO, dK = dS^T Q, dQ = dS K
// (fp32 accumulation; head dim 160 widens and runs the fp32 backward, as the .cu does). 16 bits:
// bf16, or fp16 in fp16 mode (emu_bfround / emu_widen follow cd_cuda_set_fp16).
// The causal twins (Nq == Nk) are the same loops with keys j > query i left out, as the kernels
// give them P = 0 and skip the key tiles past a query block (cd_attention_causal_fwd/_bwd's math).
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "kernels/emu/emu.h"

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

// out [B,Nq,H*D] (fp32), lse [B,H,Nq] (may be NULL) from widened q, k, v: k_flash_fwd_bf16.
// causal: query i sees keys j <= i only.
static void flash_fwd_bf16(float *out, float *lse, const float *q, const float *k, const float *v, int B, int H,
                           int Nq, int Nk, int D, float scale, int causal) {
    const int HD = H * D;
    const float sl = scale * LOG2E;
#pragma omp parallel for collapse(2) schedule(static)
    for (int bh = 0; bh < B * H; bh++)
        for (int i = 0; i < Nq; i++) {
            int b = bh / H, h = bh % H;
            const float *qi = q + ((int64_t)b * Nq + i) * HD + h * D;
            float o[160] = {0}, s[64], m = -1e30f, l = 0.f;
            const int kn = causal && i + 1 < Nk ? i + 1 : Nk;   // keys the query sees
            for (int k0 = 0; k0 < kn; k0 += 64) {
                int jn = kn - k0 < 64 ? kn - k0 : 64;
                float mx = -INFINITY;
                for (int j = 0; j < jn; j++) {
                    const float *kj = k + ((int64_t)b * Nk + k0 + j) * HD + h * D;
                    float d = 0.f;
                    for (int c = 0; c < D; c++) d += qi[c] * kj[c];
                    s[j] = d * sl;
                    mx = fmaxf(mx, s[j]);
                }
                float mn = fmaxf(m, mx), alpha = exp2f(m - mn), rs = 0.f;
                for (int c = 0; c < D; c++) o[c] *= alpha;
                for (int j = 0; j < jn; j++) {
                    float p = exp2f(s[j] - mn);
                    rs += p;
                    float pb = emu_bfround(p);
                    const float *vj = v + ((int64_t)b * Nk + k0 + j) * HD + h * D;
                    for (int c = 0; c < D; c++) o[c] += pb * vj[c];
                }
                l = l * alpha + rs;
                m = mn;
            }
            float *oi = out + ((int64_t)b * Nq + i) * HD + h * D, inv = 1.f / l;
            for (int c = 0; c < D; c++) oi[c] = o[c] * inv;
            if (lse) lse[(int64_t)bh * Nq + i] = (m + log2f(l)) * LN2;
        }
}

// dq (overwritten) [B,Nq,H*D], dk, dv [B,Nk,H*D] from widened inputs: k_flash_bwd_bf16.
// causal: pairs (query i, key j > i) contribute nothing.
static void flash_bwd_bf16(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const float *out, const float *lse, int B, int H, int Nq, int Nk, int D,
                           float scale, int detach_k0, int causal) {
    const int HD = H * D;
    const float sl = scale * LOG2E;
    memset(dq, 0, F4((int64_t)B * Nq * HD));
    memset(dk, 0, F4((int64_t)B * Nk * HD));
    memset(dv, 0, F4((int64_t)B * Nk * HD));
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        for (int i = 0; i < Nq; i++) {
            const float *qi = q + ((int64_t)b * Nq + i) * HD + h * D, *di = dout + ((int64_t)b * Nq + i) * HD + h * D;
            const float *oi = out + ((int64_t)b * Nq + i) * HD + h * D;
            float delta = 0.f, li = lse[(int64_t)bh * Nq + i] * LOG2E, *dqi = dq + ((int64_t)b * Nq + i) * HD + h * D;
            for (int c = 0; c < D; c++) delta += di[c] * oi[c];
            const int kn = causal && i + 1 < Nk ? i + 1 : Nk;
            for (int j = 0; j < kn; j++) {
                const float *kj = k + ((int64_t)b * Nk + j) * HD + h * D, *vj = v + ((int64_t)b * Nk + j) * HD + h * D;
                float sdot = 0.f, dp = 0.f;
                for (int c = 0; c < D; c++) { sdot += kj[c] * qi[c]; dp += vj[c] * di[c]; }
                float p = exp2f(sdot * sl - li), pb = emu_bfround(p), ds = emu_bfround(p * (dp - delta));
                float *dkj = dk + ((int64_t)b * Nk + j) * HD + h * D, *dvj = dv + ((int64_t)b * Nk + j) * HD + h * D;
                for (int c = 0; c < D; c++) {
                    dvj[c] += pb * di[c];
                    dkj[c] += ds * qi[c] * scale;
                    dqi[c] += ds * kj[c] * scale;
                }
            }
        }
        if (detach_k0)
            for (int c = 0; c < D; c++) {
                dk[(int64_t)b * Nk * HD + h * D + c] = 0.f;
                dv[(int64_t)b * Nk * HD + h * D + c] = 0.f;
            }
    }
}

static int aligned16(const void *a, const void *b, const void *c, const void *d) {
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d) & 15) == 0;
}

static void fwd_bf16(const char *op, void *out, int out_bf16, float *lse, const uint16_t *q, const uint16_t *k,
                     const uint16_t *v, int B, int H, int Nq, int Nk, int D, float scale, int causal, void *stream) {
    if (B <= 0 || H <= 0 || Nq <= 0) return;
    if (EMU_REQUIRE(D == 40 || D == 64 || D == 80 || D == 160, "attention bf16: head dim must be 40, 64, 80 or 160") ||
        EMU_REQUIRE(Nk > 0, "attention bf16: Nk must be > 0") ||
        EMU_REQUIRE(aligned16(q, k, v, NULL), "attention bf16: q, k, v must be 16-byte aligned"))
        return;
    if (emu_attn_fwd_ptrs(op, out, out_bf16 ? 2 : 4, lse, q, k, v, 2, B, H, Nq, Nk, D, stream, EMU_W)) return;
    EMU_XLATE(out), EMU_XLATE(lse), EMU_XLATE(q), EMU_XLATE(k), EMU_XLATE(v);
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    float *qf = emu_widen(q, nq), *kf = emu_widen(k, nk), *vf = emu_widen(v, nk);
    float *o = out_bf16 ? emu_tmp(nq) : out;
    flash_fwd_bf16(o, lse, qf, kf, vf, B, H, Nq, Nk, D, scale, causal);
    if (out_bf16) {
        emu_narrow(out, o, nq);
        free(o);
    }
    free(qf);
    free(kf);
    free(vf);
}

void cd_cuda_attention_fwd_bf16(void *out, int out_bf16, float *lse, const uint16_t *q, const uint16_t *k,
                                const uint16_t *v, int B, int H, int Nq, int Nk, int D, float scale, void *stream) {
    fwd_bf16("cd_cuda_attention_fwd_bf16", out, out_bf16, lse, q, k, v, B, H, Nq, Nk, D, scale, 0, stream);
}

void cd_cuda_attention_causal_fwd_bf16(void *out, int out_bf16, float *lse, const uint16_t *q, const uint16_t *k,
                                       const uint16_t *v, int B, int H, int N, int D, float scale, void *stream) {
    fwd_bf16("cd_cuda_attention_causal_fwd_bf16", out, out_bf16, lse, q, k, v, B, H, N, N, D, scale, 1, stream);
}

// D = 160: the .cu widens into a device buffer (kept per stream) and runs the fp32 fused backward.
static void bwd_via_fp32(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q, const uint16_t *k,
                         const uint16_t *v, const uint16_t *out, const float *lse, int B, int H, int Nq, int Nk, int D,
                         float scale, int detach_k0, int causal, void *stream) {
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    float *buf = cd_cuda_malloc(sizeof(float) * (3 * nq + 2 * nk));
    if (!buf) return;
    float *fd = buf, *fq = fd + nq, *fo = fq + nq, *fk = fo + nq, *fv = fk + nk;
    cd_cuda_bf16_to_f32(fd, dout, nq, stream);
    cd_cuda_bf16_to_f32(fq, q, nq, stream);
    cd_cuda_bf16_to_f32(fo, out, nq, stream);
    cd_cuda_bf16_to_f32(fk, k, nk, stream);
    cd_cuda_bf16_to_f32(fv, v, nk, stream);
    if (causal) cd_cuda_attention_causal_bwd(dq, dk, dv, fd, fq, fk, fv, fo, lse, B, H, Nq, D, scale, stream);
    else cd_cuda_attention_bwd(dq, dk, dv, fd, fq, fk, fv, fo, lse, B, H, Nq, Nk, D, scale, detach_k0, stream);
    cd_cuda_free(buf);   // (the .cu keeps one buffer per stream; no synchronisation either way)
}

static void bwd_bf16(const char *op, float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q,
                     const uint16_t *k, const uint16_t *v, const uint16_t *out, const float *lse, int B, int H, int Nq,
                     int Nk, int D, float scale, int detach_k0, int causal, void *stream) {
    if (B <= 0 || H <= 0 || Nq <= 0) return;
    if (EMU_REQUIRE(D == 40 || D == 64 || D == 80 || D == 160, "attention bf16: head dim must be 40, 64, 80 or 160") ||
        EMU_REQUIRE(Nk > 0 && lse != NULL, "attention bf16 backward: needs Nk > 0 and the forward's lse") ||
        EMU_REQUIRE(aligned16(q, k, v, dout), "attention bf16: q, k, v, dout must be 16-byte aligned"))
        return;
    if (D == 160) {
        bwd_via_fp32(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, detach_k0, causal, stream);
        return;
    }
    if (!emu_scratch_use(stream, sizeof(float) * (size_t)B * H * Nq)) return;
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    if (emu_attn_fwd_ptrs(op, out, 2, lse, q, k, v, 2, B, H, Nq, Nk, D, stream, EMU_R) || EMU_DEV(op, dout, B2(nq)) ||
        EMU_DEV(op, dq, F4(nq)) || EMU_DEV(op, dk, F4(nk)) || EMU_DEV(op, dv, F4(nk)))
        return;
    EMU_XLATE(out), EMU_XLATE(lse), EMU_XLATE(q), EMU_XLATE(k), EMU_XLATE(v);
    float *df = emu_widen(dout, nq), *qf = emu_widen(q, nq), *kf = emu_widen(k, nk), *vf = emu_widen(v, nk);
    float *of = emu_widen(out, nq);
    flash_bwd_bf16(dq, dk, dv, df, qf, kf, vf, of, lse, B, H, Nq, Nk, D, scale, detach_k0, causal);
    free(df);
    free(qf);
    free(kf);
    free(vf);
    free(of);
}

void cd_cuda_attention_bwd_bf16(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q,
                                const uint16_t *k, const uint16_t *v, const uint16_t *out, const float *lse, int B,
                                int H, int Nq, int Nk, int D, float scale, int detach_k0, void *stream) {
    bwd_bf16("cd_cuda_attention_bwd_bf16", dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, detach_k0, 0,
             stream);
}

void cd_cuda_attention_causal_bwd_bf16(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q,
                                       const uint16_t *k, const uint16_t *v, const uint16_t *out, const float *lse,
                                       int B, int H, int N, int D, float scale, void *stream) {
    bwd_bf16("cd_cuda_attention_causal_bwd_bf16", dq, dk, dv, dout, q, k, v, out, lse, B, H, N, N, D, scale, 0, 1,
             stream);
}
