// Host emulation (see kernels/emu/emu.h) of the fp32 attention twins: the fused flash-style
// kernels of kernels/cuda_attention.cu (head dims 40, 64, 80, 160 only, as the GPU; other dims
// are refused with the same message and the sticky flag) and the unfused baseline of
// kernels/cuda_attention_naive.cu (any head dim; -1 only where the .cu returns -1).
#include <stdlib.h>
#include "kernels/emu/emu.h"

static int dim_ok(int D) {
    return EMU_REQUIRE(D == 40 || D == 64 || D == 80 || D == 160, "attention: head dim must be 40, 64, 80 or 160");
}

// Pointer checks of a forward: out, q [B,Nq,H*D]; k, v [B,Nk,H*D]; lse [B,H,Nq] (optional);
// out and lse written (out_role EMU_W) or, by a backward, read (EMU_R).
int emu_attn_fwd_ptrs(const char *op, const void *out, size_t oes, const float *lse, const void *q, const void *k,
                      const void *v, size_t ies, int B, int H, int Nq, int Nk, int D, void *stream, int out_role) {
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    return EMU_DEV(op, q, nq * ies) || EMU_DEV(op, k, nk * ies) || EMU_DEV(op, v, nk * ies) ||
           EMU_ACCESS(op, out, nq * oes, out_role) ||
           (lse && EMU_ACCESS(op, lse, F4((int64_t)B * H * Nq), out_role)) ||
           emu_no_overlap(op, out, nq * oes, k, nk * ies) ||
           emu_no_overlap(op, out, nq * oes, v, nk * ies);
}

// Backward: dq, dk, dv (zeroed, then accumulated) must not overlap what the kernel reads.
static int bwd_overlaps(const char *op, const float *dq, const float *dk, const float *dv, const void *dout,
                        const void *q, const void *k, const void *v, const void *out, size_t ies, int64_t nq,
                        int64_t nk) {
    const void *in[5] = {dout, q, k, v, out};
    int64_t nin[5] = {nq, nq, nk, nk, nq};
    for (int i = 0; i < 5; i++)
        if (emu_no_overlap(op, dq, F4(nq), in[i], nin[i] * ies) || emu_no_overlap(op, dk, F4(nk), in[i], nin[i] * ies) ||
            emu_no_overlap(op, dv, F4(nk), in[i], nin[i] * ies))
            return -1;
    return emu_no_overlap(op, dq, F4(nq), dk, F4(nk)) || emu_no_overlap(op, dq, F4(nq), dv, F4(nk)) ||
           emu_no_overlap(op, dk, F4(nk), dv, F4(nk));
}

#define XLATE_FWD() (EMU_XLATE(out), EMU_XLATE(lse), EMU_XLATE(q), EMU_XLATE(k), EMU_XLATE(v))

static void attn_fwd(const char *op, float *out, float *lse, const float *q, const float *k, const float *v, int B,
                     int H, int Nq, int Nk, int D, float scale, int causal, void *stream) {
    if (B <= 0 || H <= 0 || Nq <= 0 || dim_ok(D) || EMU_REQUIRE(Nk > 0, "attention: Nk must be > 0")) return;
    if (emu_attn_fwd_ptrs(op, out, 4, lse, q, k, v, 4, B, H, Nq, Nk, D, stream, EMU_W)) return;
    XLATE_FWD();
    if (causal) cd_attention_causal_fwd(out, lse, q, k, v, B, H, Nq, D, scale);
    else cd_attention_fwd(out, lse, q, k, v, B, H, Nq, Nk, D, scale);
}

static void attn_bwd(const char *op, float *dq, float *dk, float *dv, const float *dout, const float *q,
                     const float *k, const float *v, const float *out, const float *lse, int B, int H, int Nq, int Nk,
                     int D, float scale, int detach_k0, int causal, void *stream) {
    if (B <= 0 || H <= 0 || Nq <= 0 || Nk <= 0 || dim_ok(D)) return;
    // scratch as the .cu: delta [B,H,Nq]; without lse also lse [B,H,Nq] and a throw-away out
    size_t nrow = (size_t)B * H * Nq, extra = lse ? 0 : nrow + (size_t)B * Nq * H * D;
    if (!emu_scratch_use(stream, sizeof(float) * (nrow + extra))) return;
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    if (EMU_DEV(op, dout, F4(nq)) || EMU_DEV(op, out, F4(nq)) || EMU_DEV(op, dq, F4(nq)) || EMU_DEV(op, dk, F4(nk)) ||
        EMU_DEV(op, dv, F4(nk)) || emu_attn_fwd_ptrs(op, out, 4, lse, q, k, v, 4, B, H, Nq, Nk, D, stream, EMU_R) ||
        bwd_overlaps(op, dq, dk, dv, dout, q, k, v, out, 4, nq, nk))
        return;
    XLATE_FWD();
    if (causal) cd_attention_causal_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, D, scale);
    else cd_attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, detach_k0);
}

void cd_cuda_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int B, int H,
                           int Nq, int Nk, int D, float scale, void *stream) {
    attn_fwd("cd_cuda_attention_fwd", out, lse, q, k, v, B, H, Nq, Nk, D, scale, 0, stream);
}
void cd_cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const float *out, const float *lse, int B, int H, int Nq, int Nk, int D,
                           float scale, int detach_k0, void *stream) {
    attn_bwd("cd_cuda_attention_bwd", dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale, detach_k0, 0,
             stream);
}
void cd_cuda_attention_causal_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int B,
                                  int H, int N, int D, float scale, void *stream) {
    attn_fwd("cd_cuda_attention_causal_fwd", out, lse, q, k, v, B, H, N, N, D, scale, 1, stream);
}
void cd_cuda_attention_causal_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                  const float *v, const float *out, const float *lse, int B, int H, int N, int D,
                                  float scale, void *stream) {
    attn_bwd("cd_cuda_attention_causal_bwd", dq, dk, dv, dout, q, k, v, out, lse, B, H, N, N, D, scale, 0, 1,
             stream);
}

// ---- unfused baseline ------------------------------------------------------------------------
// The .cu keeps [H, Nq, Nk] scores (x2 for backward) in the stream's scratch and runs cuBLAS
// GEMMs (TF32 when on): the emulation takes the same scratch and rounds q, k (v, dout) to TF32
// in TF32 mode. It has no head-dim limit.
static const float *tf(const float *x, int64_t n, float **o) { return emu_tf32_copy(x, n, o); }

int cd_cuda_attention_naive_fwd(float *out, float *lse, const float *q, const float *k, const float *v, int B, int H,
                                int Nq, int Nk, int D, float scale, void *stream) {
    const char *op = "cd_cuda_attention_naive_fwd";
    if (!emu_scratch_use(stream, sizeof(float) * (size_t)H * Nq * Nk)) return -1;
    if (B <= 0 || H <= 0 || Nq <= 0 || Nk <= 0 || D <= 0) return 0;
    if (emu_attn_fwd_ptrs(op, out, 4, lse, q, k, v, 4, B, H, Nq, Nk, D, stream, EMU_W)) return 0;   // a fault: sticky flag set
    XLATE_FWD();
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    float *o1, *o2, *o3;
    const float *qr = tf(q, nq, &o1), *kr = tf(k, nk, &o2), *vr = tf(v, nk, &o3);
    cd_attention_fwd(out, lse, qr, kr, vr, B, H, Nq, Nk, D, scale);
    free(o1); free(o2); free(o3);
    return 0;
}

int cd_cuda_attention_naive_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                const float *v, int B, int H, int Nq, int Nk, int D, float scale, int detach_k0,
                                void *stream) {
    const char *op = "cd_cuda_attention_naive_bwd";
    if (!emu_scratch_use(stream, sizeof(float) * 2 * (size_t)H * Nq * Nk)) return -1;
    if (B <= 0 || H <= 0 || Nq <= 0 || Nk <= 0 || D <= 0) return 0;
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    if (EMU_DEV(op, dout, F4(nq)) || EMU_DEV(op, dq, F4(nq)) || EMU_DEV(op, dk, F4(nk)) || EMU_DEV(op, dv, F4(nk)) ||
        emu_attn_fwd_ptrs(op, dq, 4, NULL, q, k, v, 4, B, H, Nq, Nk, D, stream, EMU_W) ||
        bwd_overlaps(op, dq, dk, dv, dout, q, k, v, NULL, 4, nq, nk))
        return 0;
    EMU_XLATE(q), EMU_XLATE(k), EMU_XLATE(v);
    float *o1, *o2, *o3, *o4;
    const float *qr = tf(q, nq, &o1), *kr = tf(k, nk, &o2), *vr = tf(v, nk, &o3), *dr = tf(dout, nq, &o4);
    // the CPU backward wants the forward's out (for delta): recompute it on the host
    float *o = emu_tmp(nq);
    cd_attention_fwd(o, NULL, qr, kr, vr, B, H, Nq, Nk, D, scale);
    cd_attention_bwd(dq, dk, dv, dr, qr, kr, vr, o, NULL, B, H, Nq, Nk, D, scale, detach_k0);
    free(o); free(o1); free(o2); free(o3); free(o4);
    return 0;
}
