// Helpers shared by the simulator's test programs (test.cpp, test_norm.cpp): a seeded uniform
// generator, 16-bit conversions in either format, NaN-poisoned "device" buffers, a fresh stream
// per case and tests/testlib.c's relative error. Each program defines g_seed (its own default seed).
#pragma once
#include <math.h>
#include <string.h>
#include <stdint.h>
#include <stdio.h>
#include <string>
#include "expect.h"
extern "C" {
#include "kernels/kernels_cuda.h"
}
extern uint32_t g_seed;
static float frand() { // uniform [-1, 1)
    g_seed = g_seed * 1664525u + 1013904223u;
    return (float)((g_seed >> 8) * (1.0 / 8388608.0)) - 1.f;
}
static uint16_t to16(float v, int fp16) {
    uint16_t r;
    if (fp16) { __half h = __float2half_rn(v); memcpy(&r, &h, 2); }
    else { __nv_bfloat16 h = __float2bfloat16(v); memcpy(&r, &h, 2); }
    return r;
}
static float to32(uint16_t u, int fp16) {
    if (fp16) { __half h; memcpy((void *)&h, &u, 2); return __half2float(h); }
    __nv_bfloat16 h; memcpy((void *)&h, &u, 2); return __bfloat162float(h);
}
template <typename X> static X *dalloc(size_t n) { // "device" buffer, exact size, NaN-poisoned
    X *p = (X *)cd_cuda_malloc(sizeof(X) * n);
    memset(p, 0xFF, sizeof(X) * n);
    return p;
}
// Each case runs on its own stream (g_st), made in case_begin and destroyed in case_end, so the
// stream's scratch (cd_cuda_scratch) starts NaN-filled in every case: a kernel must write what
// it reads. case_end returns 1 when a CUDA call failed during the case (cd_cuda_status).
static void *g_st;
static void case_begin(int fp16) {
    cd_cuda_set_fp16(fp16);
    g_st = cd_cuda_stream_create();
}
static int case_end() {
    cd_cuda_sync(g_st);
    cd_cuda_stream_destroy(g_st);
    g_st = nullptr;
    return cd_cuda_status() ? 1 : 0;
}
// tl_relerr of tests/testlib.c: max |a-b| / max |b|; any non-finite value -> inf. Counts NaNs.
static double relerr(const float *a, const float *b, int64_t n, int64_t *nan_count) {
    double maxd = 0, maxb = 0;
    int64_t nn = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) { nn++; continue; }
        double d = fabs((double)a[i] - b[i]);
        if (d > maxd) maxd = d;
        if (fabs(b[i]) > maxb) maxb = fabs(b[i]);
    }
    *nan_count = nn;
    if (nn) return INFINITY;
    return maxb > 0 ? maxd / maxb : maxd;
}
// Failures and runs of the program; check() appends " what=err" (or "what=NaN(k)!") to line
// and counts a failure (with a MISMATCH line on stderr) when err > tol or a value is non-finite.
static void check(const char *tag, const char *what, const float *got, const float *ref, int64_t n, double tol,
                  std::string &line) {
    int64_t nn;
    double e = relerr(got, ref, n, &nn);
    char buf[96];
    bool ok = e <= tol;
    if (nn) snprintf(buf, sizeof buf, " %s=NaN(%lld)!", what, (long long)nn);
    else snprintf(buf, sizeof buf, " %s=%.1e%s", what, e, ok ? "" : "!");
    line += buf;
    if (!ok) { g_fail++; fprintf(stderr, "MISMATCH %s %s relerr %g (tol %g, %lld non-finite)\n", tag, what, e, tol, (long long)nn); }
}
