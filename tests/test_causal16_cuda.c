// The causal 16-bit attention (cd_cuda_attention_causal_fwd_bf16 / _bwd_bf16, kernels/kernels_cuda.h:
// the CLIP text model's attention in bf16/fp16 mode), the same on a GPU (`make test-cuda`) and on the
// host emulation of kernels/emu/ (`make test`, CD_CUDA_EMU):
// - forward (fp32 and 16-bit out, lse) and backward (dq, dk, dv) match the fp32 causal twins
//   (cd_cuda_attention_causal_fwd/_bwd) on the same 16-bit-rounded inputs within the 16-bit
//   tolerance (bf16 1e-2, fp16 2e-3, as tests/test_kernels_cuda.c), at CLIP-L's text shape
//   (B 2, H 12, N 77, D 64) and small odd N for head dims 40, 80 and 160 (160: the backward's
//   widened fp32 path), in both 16-bit formats;
// - key j > i has no influence: new values for key j0 (its k and v) leave out and lse of every
//   query before j0 bit-identical and dq of those queries within 1e-6 (GPU atomics may reorder
//   sums), while query j0's output moves by more than the tolerance (the check can fail);
// - refusals as the non-causal op: head dim 48, and a backward without lse, record an error.
// SKIP lines with CUDA=0 or without a GPU.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tests/cuda_testlib.h"
#ifdef CD_CUDA
#define TOLBF 1e-2
#define TOLH 2e-3
#define TOL16 (cd_cuda_get_fp16() ? TOLH : TOLBF)
#define FMT16 (cd_cuda_get_fp16() ? "fp16" : "bf16")

// One shape: the causal 16-bit ops vs the fp32 causal twins on the same rounded inputs.
// Returns the worst relerr (INFINITY on a CUDA failure); prints each tensor's error.
typedef struct { uint16_t *q, *k, *v, *dout; float *fq, *fk, *fv, *fdo; } inputs;
static double match_case(int B, int H, int N, int D, uint32_t seed) {
    int64_t n = (int64_t)B * N * H * D, nl = (int64_t)B * H * N;
    float scale = 1.f / sqrtf((float)D);
    uint16_t *hq, *hk, *hv, *hd;
    float *q = ctl_hrand16(n, 2, seed, &hq), *k = ctl_hrand16(n, 2, seed + 1, &hk);
    float *v = ctl_hrand16(n, 1, seed + 2, &hv), *dout = ctl_hrand16(n, 1, seed + 3, &hd);
    inputs g = {ctl_up(hq, 2 * n), ctl_up(hk, 2 * n), ctl_up(hv, 2 * n), ctl_up(hd, 2 * n),
                ctl_up(q, 4 * n), ctl_up(k, 4 * n), ctl_up(v, 4 * n), ctl_up(dout, 4 * n)};
    float *o16f = cd_cuda_malloc(4 * n), *l16 = cd_cuda_malloc(4 * nl), *o32 = cd_cuda_malloc(4 * n);
    float *l32 = cd_cuda_malloc(4 * nl), *ow = cd_cuda_malloc(4 * n), *d16 = cd_cuda_malloc(12 * n);
    float *d32 = cd_cuda_malloc(12 * n);
    uint16_t *o16 = cd_cuda_malloc(2 * n);
    double worst = INFINITY;
    if (!g.fdo || !o16f || !l16 || !o32 || !l32 || !ow || !d16 || !d32 || !o16) goto done;
    cd_cuda_attention_causal_fwd_bf16(o16f, 0, l16, g.q, g.k, g.v, B, H, N, D, scale, NULL);
    cd_cuda_attention_causal_fwd_bf16(o16, 1, NULL, g.q, g.k, g.v, B, H, N, D, scale, NULL);
    cd_cuda_attention_causal_fwd(o32, l32, g.fq, g.fk, g.fv, B, H, N, D, scale, NULL);
    // backward on the 16-bit forward's out and lse; the fp32 reference on the same out (widened)
    cd_cuda_bf16_to_f32(ow, o16, n, NULL);
    cd_cuda_attention_causal_bwd_bf16(d16, d16 + n, d16 + 2 * n, g.dout, g.q, g.k, g.v, o16, l16, B, H, N, D, scale,
                                      NULL);
    cd_cuda_attention_causal_bwd(d32, d32 + n, d32 + 2 * n, g.fdo, g.fq, g.fk, g.fv, ow, l16, B, H, N, D, scale, NULL);
    float *h[8];
    for (int i = 0; i < 8; i++) h[i] = cd_malloc(4 * 3 * n);
    if (ctl_down(h[0], o16f, 4 * n) || ctl_down(h[1], l16, 4 * nl) || ctl_down(h[2], o32, 4 * n) ||
        ctl_down(h[3], l32, 4 * nl) || ctl_down(h[4], ow, 4 * n) || ctl_down(h[5], d16, 12 * n) ||
        ctl_down(h[6], d32, 12 * n)) {
        tl_fail(__FILE__, __LINE__, "causal %s attention B%d H%d N%d D%d: %s", FMT16, B, H, N, D, cd_errmsg());
    } else {
        double e[6] = {tl_relerr(h[0], h[2], n), tl_relerr(h[1], h[3], nl), tl_relerr(h[4], h[2], n),
                       tl_relerr(h[5], h[6], n), tl_relerr(h[5] + n, h[6] + n, n),
                       tl_relerr(h[5] + 2 * n, h[6] + 2 * n, n)};
        worst = 0;
        for (int i = 0; i < 6; i++) worst = e[i] > worst || isnan(e[i]) ? e[i] : worst;
        printf("  info: causal %s B%d H%d N%d D%d: out %.2e lse %.2e out16 %.2e dq %.2e dk %.2e dv %.2e (tol %.0e)\n",
               FMT16, B, H, N, D, e[0], e[1], e[2], e[3], e[4], e[5], TOL16);
    }
    for (int i = 0; i < 8; i++) free(h[i]);
done:
    cd_cuda_free(g.q); cd_cuda_free(g.k); cd_cuda_free(g.v); cd_cuda_free(g.dout);
    cd_cuda_free(g.fq); cd_cuda_free(g.fk); cd_cuda_free(g.fv); cd_cuda_free(g.fdo);
    cd_cuda_free(o16f); cd_cuda_free(l16); cd_cuda_free(o32); cd_cuda_free(l32); cd_cuda_free(ow);
    cd_cuda_free(d16); cd_cuda_free(d32); cd_cuda_free(o16);
    free(q); free(k); free(v); free(dout); free(hq); free(hk); free(hv); free(hd);
    return worst;
}

static void match_cases(void) {
    static const int sh[][4] = {{2, 12, 77, 64}, {1, 2, 67, 40}, {1, 3, 131, 80}, {1, 2, 45, 160}};
    for (int i = 0; i < 4; i++) {
        double e = match_case(sh[i][0], sh[i][1], sh[i][2], sh[i][3], 100 + 10 * i);
        CHECKF(e <= TOL16, "causal %s B%d H%d N%d D%d: relerr %.3e > %.0e", FMT16, sh[i][0], sh[i][1],
               sh[i][2], sh[i][3], e, TOL16);
    }
}
TEST(causal16_bf16_matches_fp32) { match_cases(); }
TEST(causal16_fp16_matches_fp32) {
    cd_cuda_set_fp16(1);
    match_cases();
    cd_cuda_set_fp16(0);
}

// Runs forward (out fp32, lse) and backward (dq) from host 16-bit q, k, v, dout [1,N,H*D].
static int run_fb(int H, int N, int D, const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *dout,
                  float *out, float *lse, float *dq) {
    int64_t n = (int64_t)N * H * D;
    float scale = 1.f / sqrtf((float)D);
    uint16_t *gq = ctl_up(q, 2 * n), *gk = ctl_up(k, 2 * n), *gv = ctl_up(v, 2 * n), *gd = ctl_up(dout, 2 * n);
    uint16_t *o16 = cd_cuda_malloc(2 * n);
    float *go = cd_cuda_malloc(4 * n), *gl = cd_cuda_malloc(4 * (int64_t)H * N), *gg = cd_cuda_malloc(12 * n);
    int rc = -1;
    if (gd && o16 && go && gl && gg) {
        cd_cuda_attention_causal_fwd_bf16(go, 0, gl, gq, gk, gv, 1, H, N, D, scale, NULL);
        cd_cuda_attention_causal_fwd_bf16(o16, 1, NULL, gq, gk, gv, 1, H, N, D, scale, NULL);
        cd_cuda_attention_causal_bwd_bf16(gg, gg + n, gg + 2 * n, gd, gq, gk, gv, o16, gl, 1, H, N, D, scale, NULL);
        rc = ctl_down(out, go, 4 * n) || ctl_down(lse, gl, 4 * (int64_t)H * N) || ctl_down(dq, gg, 4 * n) ? -1 : 0;
    }
    cd_cuda_free(gq); cd_cuda_free(gk); cd_cuda_free(gv); cd_cuda_free(gd); cd_cuda_free(o16);
    cd_cuda_free(go); cd_cuda_free(gl); cd_cuda_free(gg);
    return rc;
}

// max |a - b| over rows [r0, r1) of `w` values each, relative to max |b| over all n rows.
static double rows_diff(const float *a, const float *b, int r0, int r1, int w, int n) {
    double mx = 0, d = 0;
    for (int64_t i = 0; i < (int64_t)n * w; i++) mx = fmax(mx, fabs(b[i]));
    for (int64_t i = (int64_t)r0 * w; i < (int64_t)r1 * w; i++) d = fmax(d, fabs(a[i] - b[i]));
    return mx > 0 ? d / mx : d;
}

TEST(causal16_later_keys_no_influence) {
    const int H = 2, N = 77, D = 64, HD = H * D, j0 = 70;   // j0 past the first 64-query tile
    int64_t n = (int64_t)N * HD;
    uint16_t *q, *k, *v, *dout, *k2 = cd_malloc(2 * n), *v2 = cd_malloc(2 * n), *nk, *nv;
    float *fq = ctl_hrand16(n, 2, 7, &q), *fk = ctl_hrand16(n, 2, 8, &k), *fv = ctl_hrand16(n, 1, 9, &v);
    float *fd = ctl_hrand16(n, 1, 10, &dout), *fk2 = ctl_hrand16(n, 2, 11, &nk), *fv2 = ctl_hrand16(n, 1, 12, &nv);
    memcpy(k2, k, 2 * n);
    memcpy(v2, v, 2 * n);
    for (int c = 0; c < HD; c++) {   // key j0 (every head) gets new k and v
        k2[(int64_t)j0 * HD + c] = nk[(int64_t)j0 * HD + c];
        v2[(int64_t)j0 * HD + c] = nv[(int64_t)j0 * HD + c];
    }
    float *o1 = cd_malloc(4 * n), *o2 = cd_malloc(4 * n), *l1 = cd_malloc(4 * H * N), *l2 = cd_malloc(4 * H * N);
    float *g1 = cd_malloc(4 * n), *g2 = cd_malloc(4 * n);
    int rc = run_fb(H, N, D, q, k, v, dout, o1, l1, g1) || run_fb(H, N, D, q, k2, v2, dout, o2, l2, g2);
    int same_out = !rc && !memcmp(o1, o2, 4 * (size_t)j0 * HD), same_lse = 1;
    for (int h = 0; h < H && !rc; h++) same_lse &= !memcmp(l1 + h * N, l2 + h * N, 4 * (size_t)j0);
    double dq_before = rc ? INFINITY : rows_diff(g2, g1, 0, j0, HD, N);
    double moved = rc ? 0 : rows_diff(o2, o1, j0, j0 + 1, HD, N);
    printf("  info: key %d replaced: queries < %d out/lse %s, dq moved %.2e; query %d out moved %.2e\n", j0, j0,
           same_out && same_lse ? "bit-identical" : "CHANGED", dq_before, j0, moved);
    free(fq); free(fk); free(fv); free(fd); free(fk2); free(fv2);
    free(q); free(k); free(v); free(dout); free(nk); free(nv); free(k2); free(v2);
    free(o1); free(o2); free(l1); free(l2); free(g1); free(g2);
    CHECKF(!rc, "causal 16-bit attention failed: %s", cd_errmsg());
    CHECKF(same_out && same_lse, "a later key changed an earlier query's out (%d) or lse (%d)", !same_out, !same_lse);
    CHECKF(dq_before <= 1e-6, "a later key changed an earlier query's dq by %.3e", dq_before);
    CHECKF(moved > TOL16, "the new key %d did not move its own query's output (%.3e)", j0, moved);
}

TEST(causal16_refusals) {
    uint16_t *b = cd_cuda_malloc(2 * 48 * 4);
    float *f = cd_cuda_malloc(4 * 48 * 4);
    CHECK(b && f);
    cd_cuda_status();
    cd_errclear();
    cd_cuda_attention_causal_fwd_bf16(f, 0, NULL, b, b, b, 1, 1, 4, 48, 1.f, NULL);
    int bad_dim = cd_cuda_status() == -1 && strstr(cd_errmsg(), "head dim") != NULL;
    cd_errclear();
    cd_cuda_attention_causal_bwd_bf16(f, f, f, b, b, b, b, b, NULL, 1, 1, 2, 40, 1.f, NULL);
    int no_lse = cd_cuda_status() == -1 && strstr(cd_errmsg(), "lse") != NULL;
    cd_cuda_free(b);
    cd_cuda_free(f);
    CHECKF(bad_dim, "head dim 48 was not refused (%s)", cd_errmsg());
    CHECKF(no_lse, "a backward without lse was not refused (%s)", cd_errmsg());
}
#endif

#define ALL_TESTS(X) X(causal16_bf16_matches_fp32) X(causal16_fp16_matches_fp32) \
    X(causal16_later_keys_no_influence) X(causal16_refusals)

int main(void) {
    static const ctl_test tests[] = {ALL_TESTS(CTL_ENTRY)};
    return ctl_run_all(tests, CTL_COUNT(tests), 0) ? tl_done() : 0;
}
