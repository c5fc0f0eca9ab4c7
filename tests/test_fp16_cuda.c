// The process-wide 16-bit storage mode (cd_cuda_set_fp16, kernels/kernels_cuda.h), the same on a
// GPU (`make test-cuda`) and on the host emulation of kernels/emu/ (`make test`, CD_CUDA_EMU):
// the mode round-trips (default bf16); in fp16 mode cd_cuda_f32_to_bf16 writes IEEE binary16 bit
// patterns (round to nearest even, ties to even, overflow to +-inf, subnormals kept, NaN stays
// NaN) and cd_cuda_bf16_to_f32 reads them, with the expected patterns written from the IEEE
// definition (not from our own conversion); back in bf16 mode the same values give bf16 again;
// the 0xFFFF poison reads NaN in both; a 16-bit add overflows to inf; a 16-bit GEMM (fp32 and
// 16-bit C), LayerNorm, SiLU and the fused attention in fp16 mode match the fp32 CPU ops on
// fp16-rounded inputs. Every test resets the mode to bf16. SKIP lines with CUDA=0 or without a GPU.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tests/cuda_testlib.h"
#include "kernels/kernels.h"
#include "core/half.h"
#ifdef CD_CUDA
static float bits2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
// fp16 rounding on the host (for the CPU references; core/half.h is checked by the bit patterns).
static void round16(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = cd_f16_to_f32(cd_f32_to_f16(x[i]));
}

TEST(fp16_mode_roundtrip) {
    CHECKF(cd_cuda_get_fp16() == 0, "the default 16-bit format is not bf16 (mode %d)", cd_cuda_get_fp16());
    cd_cuda_set_fp16(1);
    int on = cd_cuda_get_fp16();
    cd_cuda_set_fp16(7);
    int on7 = cd_cuda_get_fp16();
    cd_cuda_set_fp16(0);
    CHECKF(on == 1 && on7 == 1 && cd_cuda_get_fp16() == 0, "set 1 -> %d, set 7 -> %d, set 0 -> %d", on, on7,
           cd_cuda_get_fp16());
}

// Values and their binary16 patterns (sign | 5-bit exponent, bias 15 | 10-bit fraction) and bf16
// patterns (sign | 8-bit exponent, bias 127 | 7-bit fraction), worked out by hand:
static const struct { float x; uint16_t h, b; const char *why; } k_vals[] = {
    {1.0f, 0x3C00, 0x3F80, "1 = 2^0: exponent 15 / 127"},
    {-2.0f, 0xC000, 0xC000, "-2"},
    {65504.0f, 0x7BFF, 0x4780, "fp16 max (2^15 * (2 - 2^-10)); bf16 rounds up to 2^16"},
    {65519.0f, 0x7BFF, 0x4780, "below the fp16 overflow midpoint 65520"},
    {65520.0f, 0x7C00, 0x4780, "the midpoint: ties to even overflow to inf"},
    {70000.0f, 0x7C00, 0x4789, "overflow -> +inf (bf16: 2^16 * (1 + 9/128))"},
    {-70000.0f, 0xFC00, 0xC789, "overflow -> -inf"},
    {1.0f / 3.0f, 0x3555, 0x3EAB, "1/3 = 2^-2 * 1.0101...b"},
    {2049.0f, 0x6800, 0x4500, "tie between 2048 and 2050: to even 2048"},
    {2051.0f, 0x6802, 0x4500, "tie between 2050 and 2052: to even 2052"},
    {6.103515625e-05f, 0x0400, 0x3880, "2^-14: smallest fp16 normal"},
    {5.9604644775390625e-08f, 0x0001, 0x3380, "2^-24: smallest fp16 subnormal"},
    {1e-7f, 0x0002, 0x33D7, "subnormal: 1e-7 / 2^-24 = 1.68 -> 2"},
    {2.98023223876953125e-08f, 0x0000, 0x3300, "2^-25: tie between 0 and 2^-24: to even 0"},
    {4.4703483581542969e-08f, 0x0001, 0x3340, "1.5 * 2^-25: rounds up to 2^-24"},
    {-0.0f, 0x8000, 0x8000, "-0 keeps its sign"},
};
#define NV ((int)(sizeof k_vals / sizeof k_vals[0]))

// Converts k_vals (plus +inf and NaN) on the device in the current mode; got[NV + 2].
static int convert(uint16_t *got) {
    float x[NV + 2];
    for (int i = 0; i < NV; i++) x[i] = k_vals[i].x;
    x[NV] = bits2f(0x7f800000u);
    x[NV + 1] = bits2f(0x7fc00000u);
    float *dx = ctl_up(x, sizeof x);
    uint16_t *dy = cd_cuda_malloc(sizeof(uint16_t) * (NV + 2));
    int rc = dx && dy ? 0 : -1;
    if (!rc) cd_cuda_f32_to_bf16(dy, dx, NV + 2, NULL);
    if (!rc) rc = ctl_down(got, dy, sizeof(uint16_t) * (NV + 2));
    cd_cuda_free(dx);
    cd_cuda_free(dy);
    return rc;
}

TEST(fp16_convert_bits) {
    uint16_t h[NV + 2], b[NV + 2];
    cd_cuda_set_fp16(1);
    int rc = convert(h);
    cd_cuda_set_fp16(0);
    CHECKF(rc == 0, "fp16 conversion failed: %s", cd_errmsg());
    CHECKF(convert(b) == 0, "bf16 conversion failed: %s", cd_errmsg());
    for (int i = 0; i < NV; i++) {
        CHECKF(h[i] == k_vals[i].h, "fp16(%.9g) = 0x%04X, expected 0x%04X (%s)", k_vals[i].x, h[i], k_vals[i].h,
               k_vals[i].why);
        CHECKF(b[i] == k_vals[i].b, "bf16 mode after fp16: bf16(%.9g) = 0x%04X, expected 0x%04X", k_vals[i].x, b[i],
               k_vals[i].b);
    }
    CHECKF(h[NV] == 0x7C00, "fp16(+inf) = 0x%04X", h[NV]);
    CHECKF((h[NV + 1] & 0x7C00) == 0x7C00 && (h[NV + 1] & 0x3FF) != 0, "fp16(NaN) = 0x%04X is not a NaN", h[NV + 1]);
    CHECKF(b[NV] == 0x7F80 && (b[NV + 1] & 0x7F80) == 0x7F80 && (b[NV + 1] & 0x7F) != 0,
           "bf16(+inf) = 0x%04X, bf16(NaN) = 0x%04X", b[NV], b[NV + 1]);
}

TEST(fp16_widen_bits) {
    // fp16 patterns -> exact values: 1, fp16 max, 2^-24, 0x3555 = (1 + 341/1024) / 4, -inf, 2^-14 * 1023/1024
    static const uint16_t in[] = {0x3C00, 0x7BFF, 0x0001, 0x3555, 0xFC00, 0x03FF, 0xFFFF, 0x7C01};
    const float want[] = {1.f, 65504.f, ldexpf(1.f, -24), (1.f + 341.f / 1024.f) / 4.f, -INFINITY,
                          ldexpf(1023.f, -24)};
    uint16_t *d = ctl_up(in, sizeof in);
    float *y = cd_cuda_malloc(sizeof(float) * 8), got[8], got_bf[8];
    CHECK(d && y);
    cd_cuda_set_fp16(1);
    cd_cuda_bf16_to_f32(y, d, 8, NULL);
    int rc = ctl_down(got, y, sizeof got);
    cd_cuda_set_fp16(0);
    cd_cuda_bf16_to_f32(y, d, 8, NULL);
    int rc2 = ctl_down(got_bf, y, sizeof got_bf);
    cd_cuda_free(d);
    cd_cuda_free(y);
    CHECKF(rc == 0 && rc2 == 0, "widening failed: %s", cd_errmsg());
    for (int i = 0; i < 6; i++) CHECKF(got[i] == want[i], "fp16 0x%04X -> %.9g, expected %.9g", in[i], got[i], want[i]);
    CHECKF(isnan(got[6]) && isnan(got[7]), "fp16 0xFFFF (the poison) / 0x7C01 -> %g / %g, not NaN", got[6], got[7]);
    // the same bits in bf16 mode: 0x3C00 = 2^-7 * 1.0 (exponent 120), 0xFFFF NaN
    CHECKF(got_bf[0] == ldexpf(1.f, -7) && isnan(got_bf[6]), "bf16 mode: 0x3C00 -> %g, 0xFFFF -> %g", got_bf[0],
           got_bf[6]);
}

TEST(fp16_add_overflows) {
    // 40000 + 40000 = 80000 > 65504: inf in fp16; 1 + 2^-11 (a tie) -> 1 in fp16 (ties to even)
    const float xa[3] = {40000.f, 1.f, -40000.f}, xb[3] = {40000.f, ldexpf(1.f, -11), -40000.f};
    float *da = ctl_up(xa, sizeof xa), *db = ctl_up(xb, sizeof xb), got[3];
    uint16_t *ha = cd_cuda_malloc(6), *hb = cd_cuda_malloc(6), *hy = cd_cuda_malloc(6);
    float *y = cd_cuda_malloc(sizeof got);
    CHECK(da && db && ha && hb && hy && y);
    cd_cuda_set_fp16(1);
    cd_cuda_f32_to_bf16(ha, da, 3, NULL);
    cd_cuda_f32_to_bf16(hb, db, 3, NULL);   // 2^-11 is an fp16 normal: exact
    cd_cuda_add_bf16(hy, ha, hb, 3, NULL);
    cd_cuda_bf16_to_f32(y, hy, 3, NULL);
    int rc = ctl_down(got, y, sizeof got);
    cd_cuda_set_fp16(0);
    cd_cuda_free(da); cd_cuda_free(db); cd_cuda_free(ha); cd_cuda_free(hb); cd_cuda_free(hy); cd_cuda_free(y);
    CHECKF(rc == 0, "add failed: %s", cd_errmsg());
    CHECKF(isinf(got[0]) && got[0] > 0 && isinf(got[2]) && got[2] < 0, "fp16 40000 + 40000 = %g, -40000 - 40000 = %g",
           got[0], got[2]);
    CHECKF(got[1] == 1.f, "fp16 1 + 2^-11 = %.9g, expected 1 (tie to even)", got[1]);
}

// The max |a - b| / max |b| (NaN: inf).
static double relerr(const float *a, const float *b, int64_t n) { return tl_relerr(a, b, n); }

TEST(fp16_gemm) {
    int M = 37, N = 29, K = 70;
    float *A = ctl_hrand((int64_t)M * K, 4.f, 11), *B = ctl_hrand((int64_t)K * N, 3.f, 12);
    float *C = cd_malloc(sizeof(float) * M * N), *C16 = cd_malloc(sizeof(float) * M * N), *Cr = cd_malloc(sizeof(float) * M * N);
    float *dA = ctl_up(A, sizeof(float) * M * K), *dB = ctl_up(B, sizeof(float) * K * N);
    float *dC = cd_cuda_malloc(sizeof(float) * M * N);
    uint16_t *hA = cd_cuda_malloc(2 * (size_t)M * K), *hB = cd_cuda_malloc(2 * (size_t)K * N);
    uint16_t *hC = cd_cuda_malloc(2 * (size_t)M * N);
    float *dC16 = cd_cuda_malloc(sizeof(float) * M * N);
    CHECK(dA && dB && dC && hA && hB && hC && dC16);
    cd_cuda_set_fp16(1);
    cd_cuda_f32_to_bf16(hA, dA, (int64_t)M * K, NULL);
    cd_cuda_f32_to_bf16(hB, dB, (int64_t)K * N, NULL);
    cd_cuda_gemm_bf16(0, 0, M, N, K, 1.f, hA, K, hB, N, 0.f, dC, N, 0, NULL);
    cd_cuda_gemm_bf16(0, 0, M, N, K, 1.f, hA, K, hB, N, 0.f, hC, N, 1, NULL);
    cd_cuda_bf16_to_f32(dC16, hC, (int64_t)M * N, NULL);
    int rc = ctl_down(C, dC, sizeof(float) * M * N) || ctl_down(C16, dC16, sizeof(float) * M * N);
    cd_cuda_set_fp16(0);
    cd_cuda_free(dA); cd_cuda_free(dB); cd_cuda_free(dC); cd_cuda_free(hA); cd_cuda_free(hB); cd_cuda_free(hC);
    cd_cuda_free(dC16);
    round16(A, (int64_t)M * K);
    round16(B, (int64_t)K * N);
    cd_gemm(0, 0, M, N, K, 1.f, A, K, B, N, 0.f, Cr, N);
    double e = relerr(C, Cr, (int64_t)M * N);
    round16(Cr, (int64_t)M * N);
    double e16 = relerr(C16, Cr, (int64_t)M * N);
    printf("  info: fp16 gemm %dx%dx%d: fp32 C relerr %.2e, fp16 C relerr %.2e\n", M, N, K, e, e16);
    free(A); free(B); free(C); free(C16); free(Cr);
    CHECKF(rc == 0, "fp16 gemm failed: %s", cd_errmsg());
    // fp32 accumulation of exactly representable products: only the summation order differs.
    // A 16-bit C is the rounded sum: a summation order may flip a rounding by one fp16 ulp
    // (<= 2^-10 of the value's binade).
    CHECKF(e <= 1e-5, "fp16 gemm (fp32 C) relerr %.3e > 1e-5", e);
    CHECKF(e16 <= 2e-3, "fp16 gemm (fp16 C) relerr %.3e > 2e-3", e16);
}

// LayerNorm and SiLU (16-bit storage) and the fused attention forward in fp16 mode against the CPU
// on the same fp16-rounded inputs: within fp16 rounding of the outputs (2e-3).
TEST(fp16_norm_silu_attention) {
    int n = 64, c = 320, B = 1, H = 2, Nq = 70, Nk = 77, D = 40;
    int64_t nx = (int64_t)n * c, nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    float *x = ctl_hrand(nx, 3.f, 21), *g = ctl_hrand(c, 1.f, 22), *b = ctl_hrand(c, 1.f, 23);
    float *q = ctl_hrand(nq, 2.f, 24), *k = ctl_hrand(nk, 2.f, 25), *v = ctl_hrand(nk, 1.f, 26);
    float *y = cd_malloc(4 * nx), *s = cd_malloc(4 * nx), *o = cd_malloc(4 * nq);
    float *gy = cd_malloc(4 * nx), *gs = cd_malloc(4 * nx), *go = cd_malloc(4 * nq);
    float *dx = ctl_up(x, 4 * nx), *dg = ctl_up(g, 4 * c), *db = ctl_up(b, 4 * c), *dq = ctl_up(q, 4 * nq);
    float *dk = ctl_up(k, 4 * nk), *dv = ctl_up(v, 4 * nk), *f = cd_cuda_malloc(4 * (nx > nq ? nx : nq));
    float *fo = cd_cuda_malloc(4 * nq);
    uint16_t *hx = cd_cuda_malloc(2 * nx), *hy = cd_cuda_malloc(2 * nx), *hq = cd_cuda_malloc(2 * nq);
    uint16_t *hk = cd_cuda_malloc(2 * nk), *hv = cd_cuda_malloc(2 * nk);
    CHECK(dx && dg && db && dq && dk && dv && f && fo && hx && hy && hq && hk && hv);
    cd_cuda_set_fp16(1);
    cd_cuda_f32_to_bf16(hx, dx, nx, NULL);
    cd_cuda_layernorm_fwd_bf16(hy, NULL, NULL, hx, dg, db, n, c, 1e-5f, NULL);
    cd_cuda_bf16_to_f32(f, hy, nx, NULL);
    int rc = ctl_down(gy, f, 4 * nx);
    cd_cuda_silu_fwd_bf16(hy, hx, nx, NULL);
    cd_cuda_bf16_to_f32(f, hy, nx, NULL);
    rc = rc || ctl_down(gs, f, 4 * nx);
    cd_cuda_f32_to_bf16(hq, dq, nq, NULL);
    cd_cuda_f32_to_bf16(hk, dk, nk, NULL);
    cd_cuda_f32_to_bf16(hv, dv, nk, NULL);
    cd_cuda_attention_fwd_bf16(fo, 0, NULL, hq, hk, hv, B, H, Nq, Nk, D, 1.f / sqrtf((float)D), NULL);
    rc = rc || ctl_down(go, fo, 4 * nq);
    cd_cuda_set_fp16(0);
    cd_cuda_free(dx); cd_cuda_free(dg); cd_cuda_free(db); cd_cuda_free(dq); cd_cuda_free(dk); cd_cuda_free(dv);
    cd_cuda_free(f); cd_cuda_free(fo); cd_cuda_free(hx); cd_cuda_free(hy); cd_cuda_free(hq); cd_cuda_free(hk);
    cd_cuda_free(hv);
    round16(x, nx);
    round16(q, nq);
    round16(k, nk);
    round16(v, nk);
    cd_layernorm_fwd(y, NULL, NULL, x, g, b, n, c, 1e-5f);
    cd_silu_fwd(s, x, nx);
    cd_attention_fwd(o, NULL, q, k, v, B, H, Nq, Nk, D, 1.f / sqrtf((float)D));
    double el = relerr(gy, y, nx), es = relerr(gs, s, nx), ea = relerr(go, o, nq);
    printf("  info: fp16 layernorm relerr %.2e, silu %.2e, attention (D40, 70x77) %.2e\n", el, es, ea);
    free(x); free(g); free(b); free(q); free(k); free(v); free(y); free(s); free(o); free(gy); free(gs); free(go);
    CHECKF(rc == 0, "fp16 ops failed: %s", cd_errmsg());
    CHECKF(el <= 2e-3 && es <= 2e-3 && ea <= 2e-3, "fp16 relerr layernorm %.3e silu %.3e attention %.3e > 2e-3", el,
           es, ea);
}
#endif

#define ALL_TESTS(X) X(fp16_mode_roundtrip) X(fp16_convert_bits) X(fp16_widen_bits) X(fp16_add_overflows) \
    X(fp16_gemm) X(fp16_norm_silu_attention)

int main(void) {
    static const ctl_test tests[] = {ALL_TESTS(CTL_ENTRY)};
    return ctl_run_all(tests, CTL_COUNT(tests), 0) ? tl_done() : 0;
}
