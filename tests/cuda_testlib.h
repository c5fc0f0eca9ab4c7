// Helpers shared by the GPU tests (tests/test_*_cuda.c), one copy each. Header-only (static
// inline): tests/*.c files other than test_*.c are linked into every test, CPU-only builds
// included, which have no cd_cuda_* symbols. The device parts need CD_CUDA (a CUDA build or the
// host emulation, CD_CUDA_EMU); without it only the skip path of main() is compiled.
//   #define ALL_TESTS(X) X(first_test) X(second_test)
//   int main(void) {
//       static const ctl_test tests[] = {ALL_TESTS(CTL_ENTRY)};
//       return ctl_run_all(tests, CTL_COUNT(tests), 1) ? tl_done() : 0;
//   }
#ifndef CD_CUDA_TESTLIB_H
#define CD_CUDA_TESTLIB_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "tests/testlib.h"
#include "core/err.h"
#ifdef CD_CUDA
#include "core/half.h"
#include "kernels/kernels_cuda.h"
#endif

// 1 when the tests can run (a GPU or the emulation; show_device prints its name), else 0 and why.
static inline int ctl_have_gpu(char *why, size_t cap, int show_device) {
#ifdef CD_CUDA
    if (!cd_cuda_available(why, cap)) return 0;
    if (show_device) {
        char dev[256] = "?";
        cd_cuda_device_name(dev, sizeof dev);
        printf("  info: device %s\n", dev);
    }
    return 1;
#else
    snprintf(why, cap, "built without CUDA (CUDA=0)");
    return 0;
#endif
}

// main()'s test table, `static const ctl_test tests[] = {ALL_TESTS(CTL_ENTRY)}`: names only without CD_CUDA.
typedef struct { const char *name; void (*fn)(void); } ctl_test;
#ifdef CD_CUDA
#define CTL_ENTRY(t) {#t, t},
#else
#define CTL_ENTRY(t) {#t, NULL},
#endif
#define CTL_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

// Runs tests[n] and returns 1 when a GPU answers; else prints "SKIP name: why" for each and returns 0.
static inline int ctl_run_all(const ctl_test *tests, int n, int show_device) {
    char why[256];
    if (ctl_have_gpu(why, sizeof why, show_device)) {
        for (int i = 0; i < n; i++) tl_run(tests[i].name, tests[i].fn);   // (CD_TEST_ONLY: tl_run)
        return 1;
    }
    for (int i = 0; i < n; i++) printf("SKIP %s: %s\n", tests[i].name, why);
    return 0;
}

// n random values in [-amp, amp) (tl_rand from seed) in a cd_malloc'd array (caller frees).
static inline float *ctl_hrand(int64_t n, float amp, uint32_t seed) {
    float *x = cd_malloc(sizeof(float) * (n ? n : 1));
    tl_rand(x, n, seed);
    for (int64_t i = 0; i < n; i++) x[i] *= amp;
    return x;
}

#ifdef CD_CUDA
// A new device copy of `bytes` host bytes (NULL on failure).
static inline void *ctl_up(const void *h, size_t bytes) {
    void *d = cd_cuda_malloc(bytes);
    if (d && cd_cuda_memcpy_h2d(d, h, bytes, NULL)) { cd_cuda_free(d); return NULL; }
    return d;
}
// A new device copy of n host floats (NULL on failure).
static inline float *ctl_upf(const float *h, int64_t n) { return ctl_up(h, sizeof(float) * (size_t)n); }
// `bytes` device bytes to h after a full synchronisation: 0, or -1 on a CUDA error or a failed op (the sticky flag).
static inline int ctl_down(void *h, const void *d, size_t bytes) {
    if (cd_cuda_sync(NULL) || cd_cuda_memcpy_d2h(h, d, bytes, NULL)) return -1;
    return cd_cuda_status();
}
// x rounded on the host to the current 16-bit storage format (cd_cuda_get_fp16: fp16, else bf16).
static inline uint16_t ctl_to16(float x) { return cd_cuda_get_fp16() ? cd_f32_to_f16(x) : cd_f32_to_bf16(x); }
// A 16-bit pattern of the current storage format widened to fp32.
static inline float ctl_from16(uint16_t b) { return cd_cuda_get_fp16() ? cd_f16_to_f32(b) : cd_bf16_to_f32(b); }
// Rounds x[n] in place to the current 16-bit format; returns the 16-bit patterns (cd_malloc'd).
static inline uint16_t *ctl_round16(float *x, int64_t n) {
    uint16_t *b = cd_malloc(2 * (n ? n : 1));
    for (int64_t i = 0; i < n; i++) { b[i] = ctl_to16(x[i]); x[i] = ctl_from16(b[i]); }
    return b;
}
// ctl_hrand's values rounded to the current 16-bit format; *bits gets their 16-bit patterns.
static inline float *ctl_hrand16(int64_t n, float amp, uint32_t seed, uint16_t **bits) {
    float *x = ctl_hrand(n, amp, seed);
    *bits = ctl_round16(x, n);
    return x;
}
#endif
#endif
