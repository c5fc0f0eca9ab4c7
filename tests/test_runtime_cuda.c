// The CUDA runtime API and the ops' refusals (kernels/kernels_cuda.h), the same on a GPU
// (`make test-cuda`) and on the host emulation of kernels/emu/ (`make test`, CD_CUDA_EMU):
// cd_cuda_alloc_bytes / peak accounting; bf16 conversion rounds to nearest even; the fused
// attention refuses head dims other than 40/64/80/160 with a clear message and the sticky flag
// (cleared by reading it); bf16 attention refuses unaligned inputs and a backward without lse;
// GroupNorm refuses c % groups != 0; the unfused attention takes any head dim and matches the
// CPU; the bf16 fused attention (forward, backward) is within bf16 tolerance of the CPU; CUDA graphs capture and replay (GPU) or fail cleanly without setting the flag (emulation).
// Emulation only: fresh device memory reads NaN, a host pointer, an overrun or an output that
// overlaps an input the kernel reads elsewhere is refused, TF32
// mode rounds GEMM inputs to 10 mantissa bits, a cross-stream access without a synchronisation
// is refused (and clean with one), a host dereference of device memory faults. SKIP lines with CUDA=0 or without a GPU.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/cuda_testlib.h"
#include "kernels/kernels.h"
#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"

// The op just run must have been refused with a message containing `needle`; the flag is
// cleared by the first read.
#define CHECK_REFUSED(needle) do { int st_ = cd_cuda_status(); cd_cuda_sync(NULL); \
    CHECKF(st_ == -1, "not refused (expected '%s')", (needle)); \
    CHECKF(strstr(cd_errmsg(), (needle)) != NULL, "message '%s' does not mention '%s'", cd_errmsg(), (needle)); \
    CHECKF(cd_cuda_status() == 0, "the sticky flag was not cleared by cd_cuda_status()"); } while (0)

TEST(runtime_alloc_accounting) {
    cd_cuda_status();
    int64_t peak = -1, a0 = cd_cuda_alloc_bytes(&peak);
    CHECK(a0 >= 0 && peak >= a0);
    cd_cuda_alloc_reset_peak();
    void *p = cd_cuda_malloc(1000), *q = cd_cuda_malloc(3000);
    CHECK(p && q);
    int64_t a1 = cd_cuda_alloc_bytes(&peak);
    CHECKF(a1 == a0 + 4000, "allocated %lld bytes more, expected 4000", (long long)(a1 - a0));
    CHECKF(peak == a0 + 4000, "peak %lld, expected %lld", (long long)peak, (long long)(a0 + 4000));
    cd_cuda_free(q);
    int64_t a2 = cd_cuda_alloc_bytes(&peak);
    CHECKF(a2 == a0 + 1000 && peak == a0 + 4000, "after a free: %lld (peak %lld)", (long long)(a2 - a0),
           (long long)(peak - a0));
    cd_cuda_alloc_reset_peak();
    cd_cuda_alloc_bytes(&peak);
    CHECKF(peak == a0 + 1000, "reset peak %lld, expected %lld", (long long)(peak - a0), 1000LL);
    cd_cuda_free(p);
    CHECK(cd_cuda_alloc_bytes(NULL) == a0);
    CHECK(cd_cuda_status() == 0);
}

TEST(runtime_bf16_round_to_nearest_even) {
    // 1 + 2^-8 (a tie: to even, 1.0), 1 + 3*2^-8 (a tie: up to 1 + 2^-6), 1 + 2^-8 + 2^-20 (above
    // the tie: up), -2.5, a NaN (stays NaN), 1e39 (overflow: Inf)
    float h[6] = {1.00390625f, 1.01171875f, 1.0039072f, -2.5f, NAN, 1e38f * 10.f};
    uint16_t want[5] = {0x3f80, 0x3f82, 0x3f81, 0xc020, 0};
    float back[6];
    uint16_t bits[6];
    float *d = ctl_upf(h, 6);
    uint16_t *b = cd_cuda_malloc(sizeof bits);
    float *w = cd_cuda_malloc(sizeof back);
    CHECK(d && b && w);
    cd_cuda_f32_to_bf16(b, d, 6, NULL);
    cd_cuda_bf16_to_f32(w, b, 6, NULL);
    int ok = !cd_cuda_memcpy_d2h(bits, b, sizeof bits, NULL) && !cd_cuda_memcpy_d2h(back, w, sizeof back, NULL) &&
             !cd_cuda_status();
    cd_cuda_free(d); cd_cuda_free(b); cd_cuda_free(w);
    CHECK(ok);
    for (int i = 0; i < 4; i++) CHECKF(bits[i] == want[i], "bf16(%.9g) = 0x%04x, expected 0x%04x", h[i], bits[i], want[i]);
    CHECKF(isnan(back[4]), "NaN came back as %g", back[4]);
    CHECKF(isinf(back[5]), "Inf came back as %g", back[5]);
    CHECK(back[0] == 1.f && back[3] == -2.5f);
}

TEST(runtime_refusals) {
    int B = 1, H = 2, N = 16, D = 32;
    int64_t n = (int64_t)B * N * H * 160;
    float *x = cd_cuda_malloc(n * 4), *o = cd_cuda_malloc(n * 4), *lse = cd_cuda_malloc(B * H * N * 4);
    uint16_t *xb = cd_cuda_malloc(n * 2 + 64);
    CHECK(x && o && lse && xb);
    cd_cuda_memset(x, 0, n * 4, NULL);
    cd_cuda_memset(xb, 0, n * 2 + 64, NULL);
    cd_cuda_status();
    cd_cuda_attention_fwd(o, lse, x, x, x, B, H, N, N, D, 0.1f, NULL);
    CHECK_REFUSED("head dim must be 40, 64, 80 or 160");
    cd_cuda_attention_bwd(o, o, o, x, x, x, x, x, lse, B, H, N, N, 100, 0.1f, 0, NULL);
    CHECK_REFUSED("head dim must be 40, 64, 80 or 160");
    cd_cuda_attention_causal_fwd(o, lse, x, x, x, B, H, N, 48, 0.1f, NULL);
    CHECK_REFUSED("head dim must be 40, 64, 80 or 160");
    cd_cuda_attention_fwd(o, lse, x, x, x, B, H, N, 0, 64, 0.1f, NULL);
    CHECK_REFUSED("Nk must be > 0");
    cd_cuda_attention_fwd(o, lse, x, x, x, 0, H, N, N, D, 0.1f, NULL);   // empty batch: nothing to do
    CHECK(cd_cuda_status() == 0);
    cd_cuda_attention_fwd_bf16(o, 0, lse, xb, xb, xb, B, H, N, N, 24, 0.1f, NULL);
    CHECK_REFUSED("attention bf16: head dim must be 40, 64, 80 or 160");
    cd_cuda_attention_fwd_bf16(o, 0, lse, xb + 1, xb, xb, B, H, N, N, 64, 0.1f, NULL);
    CHECK_REFUSED("16-byte aligned");
    cd_cuda_attention_bwd_bf16(o, o, o, xb, xb, xb, xb, xb, NULL, B, H, N, N, 64, 0.1f, 0, NULL);
    CHECK_REFUSED("the forward's lse");
    cd_cuda_groupnorm_fwd(o, NULL, NULL, x, NULL, NULL, 1, 6, 4, 4, 1e-5f, 0, NULL);
    CHECK_REFUSED("c % groups != 0");
    cd_cuda_free(x); cd_cuda_free(o); cd_cuda_free(lse); cd_cuda_free(xb);
}

// The unfused attention takes head dims the fused kernels refuse; fp32 vs the CPU.
TEST(runtime_naive_attention_any_head_dim) {
    int B = 2, H = 3, Nq = 19, Nk = 7, D = 12;
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *ref = malloc(nq * 4), *got = malloc(nq * 4);
    tl_rand(q, nq, 1); tl_rand(k, nk, 2); tl_rand(v, nk, 3);
    cd_attention_fwd(ref, NULL, q, k, v, B, H, Nq, Nk, D, 0.3f);
    cd_cuda_set_tf32(0);
    float *dq = ctl_upf(q, nq), *dk = ctl_upf(k, nk), *dv = ctl_upf(v, nk), *dout = cd_cuda_malloc(nq * 4);
    int ok = dq && dk && dv && dout && !cd_cuda_attention_naive_fwd(dout, NULL, dq, dk, dv, B, H, Nq, Nk, D, 0.3f, NULL) &&
             !cd_cuda_memcpy_d2h(got, dout, nq * 4, NULL) && !cd_cuda_status();
    double e = ok ? tl_relerr(got, ref, nq) : 1e9;
    cd_cuda_free(dq); cd_cuda_free(dk); cd_cuda_free(dv); cd_cuda_free(dout);
    free(q); free(k); free(v); free(ref); free(got);
    CHECKF(ok, "%s", cd_errmsg());
    CHECKF(e <= 1e-5, "naive attention (head dim %d) vs CPU rel err %.3e > 1e-5", D, e);
}

// n random values in [-1,1) rounded to bf16: fp32 copy in f, bits in b.
static void rand_bf16(float *f, uint16_t *b, int64_t n, uint32_t seed) {
    tl_rand(f, n, seed);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        u += 0x7fffu + ((u >> 16) & 1u);
        b[i] = (uint16_t)(u >> 16);
        u = (uint32_t)b[i] << 16;
        memcpy(&f[i], &u, 4);
    }
}

// The bf16 fused attention (fp32 out, lse; backward with the detach of key 0) vs the CPU's fp32
// attention on the same bf16-exact inputs: within bf16 tolerance (the kernels round the softmax
// probabilities and dS to bf16). 70 queries and 77 keys cross the 64-row tiles.
TEST(runtime_attention_bf16_vs_cpu) {
    int B = 2, H = 2, Nq = 70, Nk = 77, D = 40;
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D, nl = (int64_t)B * H * Nq;
    float *h = malloc(sizeof(float) * (3 * nq + 2 * nk)), *q = h, *dO = q + nq, *k = dO + nq, *v = k + nk, *ref = v + nk;
    uint16_t *hb = malloc(2 * (2 * nq + 2 * nk + nq)), *qb = hb, *dOb = qb + nq, *kb = dOb + nq, *vb = kb + nk, *ob = vb + nk;
    float *rl = malloc(4 * nl), *got = malloc(4 * nq), *gl = malloc(4 * nl);
    float *rdq = malloc(4 * nq), *rdk = malloc(4 * nk), *rdv = malloc(4 * nk), *gdq = malloc(4 * nq), *gdk = malloc(4 * nk),
          *gdv = malloc(4 * nk), *of = malloc(4 * nq);
    rand_bf16(q, qb, nq, 11); rand_bf16(k, kb, nk, 12); rand_bf16(v, vb, nk, 13); rand_bf16(dO, dOb, nq, 14);
    float sc = 1.f / sqrtf((float)D);
    cd_attention_fwd(ref, rl, q, k, v, B, H, Nq, Nk, D, sc);
    uint16_t *d16 = cd_cuda_malloc(2 * (2 * nq + 2 * nk + nq));
    float *d32 = cd_cuda_malloc(4 * (2 * nq + 2 * nl + nq + 2 * nk));
    int ok = d16 && d32 && !cd_cuda_memcpy_h2d(d16, hb, 2 * (2 * nq + 2 * nk), NULL);
    uint16_t *dq16 = d16, *ddo16 = dq16 + nq, *dk16 = ddo16 + nq, *dv16 = dk16 + nk, *do16 = dv16 + nk;
    float *dout = d32, *dlse = dout + nq, *dlse2 = dlse + nl, *ddq = dlse2 + nl, *ddk = ddq + nq, *ddv = ddk + nk;
    if (ok) {
        cd_cuda_attention_fwd_bf16(dout, 0, dlse, dq16, dk16, dv16, B, H, Nq, Nk, D, sc, NULL);
        cd_cuda_attention_fwd_bf16(do16, 1, dlse2, dq16, dk16, dv16, B, H, Nq, Nk, D, sc, NULL);
        cd_cuda_attention_bwd_bf16(ddq, ddk, ddv, ddo16, dq16, dk16, dv16, do16, dlse2, B, H, Nq, Nk, D, sc, 1, NULL);
        ok = !cd_cuda_memcpy_d2h(got, dout, 4 * nq, NULL) && !cd_cuda_memcpy_d2h(gl, dlse, 4 * nl, NULL) &&
             !cd_cuda_memcpy_d2h(ob, do16, 2 * nq, NULL) && !cd_cuda_memcpy_d2h(gdq, ddq, 4 * nq, NULL) &&
             !cd_cuda_memcpy_d2h(gdk, ddk, 4 * nk, NULL) && !cd_cuda_memcpy_d2h(gdv, ddv, 4 * nk, NULL) &&
             !cd_cuda_status();
    }
    double ef = 1e9, elsq = 1e9, edq = 1e9, edk = 1e9, edv = 1e9;
    if (ok) {
        for (int64_t i = 0; i < nq; i++) { uint32_t u = (uint32_t)ob[i] << 16; memcpy(&of[i], &u, 4); }
        cd_attention_bwd(rdq, rdk, rdv, dO, q, k, v, of, NULL, B, H, Nq, Nk, D, sc, 1);
        ef = tl_relerr(got, ref, nq); elsq = tl_relerr(gl, rl, nl);
        edq = tl_relerr(gdq, rdq, nq); edk = tl_relerr(gdk, rdk, nk); edv = tl_relerr(gdv, rdv, nk);
        printf("  info: bf16 attention vs CPU fp32: out %.2e, lse %.2e, dq %.2e, dk %.2e, dv %.2e\n", ef, elsq, edq, edk, edv);
    }
    cd_cuda_free(d16); cd_cuda_free(d32);
    free(h); free(hb); free(rl); free(got); free(gl); free(rdq); free(rdk); free(rdv); free(gdq); free(gdk); free(gdv); free(of);
    CHECKF(ok, "%s", cd_errmsg());
    CHECKF(ef <= 1e-2 && elsq <= 1e-3, "forward: out rel err %.3e (tol 1e-2), lse %.3e (tol 1e-3)", ef, elsq);
    CHECKF(edq <= 2e-2 && edk <= 2e-2 && edv <= 2e-2, "backward rel err dq %.3e dk %.3e dv %.3e (tol 2e-2)", edq, edk, edv);
}

// A graph of two scale ops replayed twice multiplies by 16 (GPU); the emulation refuses to
// capture, clearly, without setting the sticky flag.
TEST(runtime_graph) {
    void *st = cd_cuda_stream_create();
    CHECK(st);
    float h[4] = {1, 2, 3, 4}, r[4];
    float *d = ctl_upf(h, 4);
    CHECK(d);
    cd_cuda_status();
#ifdef CD_CUDA_EMU
    int rc = cd_cuda_graph_begin(st);
    CHECKF(rc == -1 && strstr(cd_errmsg(), "graph capture is not emulated"), "graph_begin: %d (%s)", rc, cd_errmsg());
    CHECK(cd_cuda_status() == 0);
    (void)r;
#else
    void *ex = NULL;
    CHECK_OK(cd_cuda_graph_begin(st));
    cd_cuda_scale(d, 2.f, 4, st);
    cd_cuda_scale(d, 2.f, 4, st);
    CHECK_OK(cd_cuda_graph_end(st, &ex));
    CHECK(ex && cd_cuda_status() == 0);
    CHECK_OK(cd_cuda_graph_launch(ex, st));
    CHECK_OK(cd_cuda_graph_launch(ex, st));
    CHECK_OK(cd_cuda_memcpy_d2h(r, d, sizeof r, st));
    cd_cuda_graph_destroy(ex);
    for (int i = 0; i < 4; i++) CHECKF(r[i] == 16.f * h[i], "graph replay: %g, expected %g", r[i], 16.f * h[i]);
#endif
    cd_cuda_free(d);
    cd_cuda_stream_destroy(st);
}

#ifdef CD_CUDA_EMU
// What only the emulation can check: poisoned memory, host pointers, overruns, TF32 rounding.
TEST(emu_memory_checks) {
    float h[8], *d = cd_cuda_malloc(8 * sizeof(float));
    CHECK(d);
    CHECK_OK(cd_cuda_memcpy_d2h(h, d, sizeof h, NULL));
    for (int i = 0; i < 8; i++) CHECKF(isnan(h[i]), "fresh device memory read %g, expected NaN", h[i]);
    for (int i = 0; i < 8; i++) h[i] = (float)i;
    cd_cuda_status();
    cd_cuda_add(d, d, h, 8, NULL);   // h is a host pointer
    CHECK_REFUSED("is not device memory");
    cd_cuda_add(d, d, d, 9, NULL);   // one past the end
    CHECK_REFUSED("run past the end");
    cd_cuda_nchw_to_nhwc(d + 1, d, 1, 2, 3, NULL);   // a transpose in place races on the GPU
    CHECK_REFUSED("output and input overlap");
    cd_cuda_gemm(0, 0, 2, 2, 2, 1.f, d, 2, d + 4, 2, 0.f, d + 2, 2, NULL);   // C over A
    CHECK_REFUSED("output and input overlap");
    CHECK_ERR(cd_cuda_memcpy_h2d(d, d, 8, NULL), "a host pointer was expected");
    cd_cuda_status();
    float *e = cd_cuda_malloc(4);
    CHECK(e);
    cd_cuda_free(e);
    cd_cuda_scale(e, 2.f, 1, NULL);   // freed
    CHECK_REFUSED("is not device memory");
    cd_cuda_free(d);
}

TEST(emu_tf32_rounds_gemm_inputs) {
    // 1 + 2^-12 is a quarter TF32 ulp above 1 (rounds to 1); 1 + 3*2^-12 three quarters (up)
    float a[2] = {1.f + 1.f / 4096, 1.f + 3.f / 4096}, one = 1.f, r[2];
    float *da = ctl_upf(a, 2), *db = ctl_upf(&one, 1), *dc = cd_cuda_malloc(8);
    CHECK(da && db && dc);
    cd_cuda_set_tf32(1);
    cd_cuda_gemm(0, 0, 2, 1, 1, 1.f, da, 1, db, 1, 0.f, dc, 1, NULL);
    cd_cuda_set_tf32(0);
    int ok = !cd_cuda_memcpy_d2h(r, dc, 8, NULL);
    cd_cuda_gemm(0, 0, 2, 1, 1, 1.f, da, 1, db, 1, 0.f, dc, 1, NULL);
    float e[2];
    ok = ok && !cd_cuda_memcpy_d2h(e, dc, 8, NULL) && !cd_cuda_status();
    cd_cuda_free(da); cd_cuda_free(db); cd_cuda_free(dc);
    CHECK(ok);
    CHECKF(r[0] == 1.f && r[1] == 1.f + 1.f / 1024, "tf32: %.9g %.9g", r[0], r[1]);
    CHECKF(e[0] == a[0] && e[1] == a[1], "fp32: %.9g %.9g", e[0], e[1]);
}
// The stream-race tracker (kernels/emu/emu_runtime.c): an op on one stream that reads memory
// another stream wrote, or writes memory another stream read or wrote, with no synchronisation
// in between, is refused with both streams named; cd_cuda_sync of the writer, a device-wide
// sync, or a copy to/from the host on the writer's stream (they synchronise it) make it clean.
TEST(emu_stream_race) {
    void *a = cd_cuda_stream_create(), *b = cd_cuda_stream_create();
    float *d = cd_cuda_malloc(16 * sizeof(float)), *e = cd_cuda_malloc(16 * sizeof(float)), h[16];
    CHECK(a && b && d && e);
    for (int i = 0; i < 16; i++) h[i] = (float)i;
    cd_cuda_status();
    cd_cuda_sync(NULL);
    // read after write: d written on a, read on the default stream
    cd_cuda_memset(d, 0, 16 * sizeof(float), a);
    cd_cuda_add(e, d, d, 16, NULL);
    CHECK_REFUSED("stream race: cd_cuda_add on stream 0 reads memory written on stream");
    // the same with cd_cuda_sync(a) in between: clean
    cd_cuda_memset(d, 0, 16 * sizeof(float), a);
    CHECK_OK(cd_cuda_sync(a));
    cd_cuda_add(e, d, d, 16, NULL);
    CHECKF(cd_cuda_status() == 0, "a synchronised read was refused: %s", cd_errmsg());
    cd_cuda_sync(NULL);
    // write after read: d read on b, then written on a
    cd_cuda_add(e, d, d, 16, b);
    cd_cuda_scale(d, 2.f, 16, a);
    CHECK_REFUSED("writes memory read on stream");
    // write after write, between two created streams; a device-wide sync makes it clean
    cd_cuda_scale(d, 2.f, 16, a);
    cd_cuda_scale(d, 2.f, 16, b);
    CHECK_REFUSED("writes memory written on stream");
    cd_cuda_scale(d, 2.f, 16, a);
    CHECK_OK(cd_cuda_sync(NULL));
    cd_cuda_scale(d, 2.f, 16, b);
    CHECKF(cd_cuda_status() == 0, "refused after cd_cuda_sync(NULL): %s", cd_errmsg());
    cd_cuda_sync(NULL);
    // a copy from the host on a synchronises a; a copy to the host on b of memory a wrote races
    CHECK_OK(cd_cuda_memcpy_h2d(d, h, sizeof h, a));
    cd_cuda_add(e, d, d, 16, b);
    CHECKF(cd_cuda_status() == 0, "a read after a copy (which synchronises) was refused: %s", cd_errmsg());
    cd_cuda_sync(NULL);
    cd_cuda_scale(d, 2.f, 16, a);
    CHECK_ERR(cd_cuda_memcpy_d2h(h, d, sizeof h, b), "stream race");
    CHECK_REFUSED("stream race");
    // a stream destroyed with a pending write (no context: not synchronised) still races
    void *c = cd_cuda_stream_create();
    CHECK(c);
    cd_cuda_scale(d, 2.f, 16, c);
    cd_cuda_stream_destroy(c);
    cd_cuda_add(e, d, d, 16, NULL);
    CHECK_REFUSED("written on a stream since destroyed");
    cd_cuda_free(d);
    cd_cuda_free(e);
    cd_cuda_stream_destroy(a);
    cd_cuda_stream_destroy(b);
}

// Device memory is not host memory: a host dereference of a device pointer faults (in a forked
// child), as on a GPU; reading it through cd_cuda_memcpy_d2h works.
TEST(emu_host_dereference_faults) {
    float *d = cd_cuda_malloc(4 * sizeof(float)), h[4] = {1, 2, 3, 4};
    CHECK(d);
    CHECK_OK(cd_cuda_memcpy_h2d(d, h, sizeof h, NULL));
    for (int mode = 0; mode < 2; mode++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            int fd = open("/dev/null", O_WRONLY);   // the fault's report is expected: keep it out of the log
            if (fd >= 0) dup2(fd, 2);
            if (mode == 0) {
                volatile float v = d[1];   // a host read of device memory
                (void)v;
            } else {
                d[2] = 5.f;                // a host write
            }
            _exit(0);
        }
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECKF(!(WIFEXITED(st) && WEXITSTATUS(st) == 0), "a host %s of device memory did not fault",
               mode ? "write" : "read");
    }
    float r[4];
    CHECK_OK(cd_cuda_memcpy_d2h(r, d, sizeof r, NULL));
    CHECK(r[1] == 2.f && r[2] == 3.f);
    cd_cuda_free(d);
}
#define EMU_TESTS(X) X(emu_memory_checks) X(emu_tf32_rounds_gemm_inputs) X(emu_stream_race) \
    X(emu_host_dereference_faults)
#endif  // CD_CUDA_EMU
#endif  // CD_CUDA
#ifndef CD_CUDA_EMU
#define EMU_TESTS(X)
#endif
#define ALL_TESTS(X) X(runtime_alloc_accounting) X(runtime_bf16_round_to_nearest_even) X(runtime_refusals) \
    X(runtime_naive_attention_any_head_dim) X(runtime_attention_bf16_vs_cpu) X(runtime_graph) EMU_TESTS(X)

int main(void) {
    static const ctl_test tests[] = {ALL_TESTS(CTL_ENTRY)};
    return ctl_run_all(tests, CTL_COUNT(tests), 1) ? tl_done() : 0;
}
