// Minimal test harness. Each test binary runs its tests and prints one line per test:
//   PASS name | FAIL name: why | SKIP name: why
// tests/run.sh counts PASS and FAIL lines over all binaries and scripts.
//   TEST(parses_header) { CHECK(x == 1); CHECK_OK(cd_st_open(&f, path)); }
//   int main(void) { RUN(parses_header); return tl_done(); }
#ifndef CD_TESTLIB_H
#define CD_TESTLIB_H
#include <stdint.h>
#include <stdio.h>
#include "core/err.h"

extern int tl_failed_now;     // the running test has failed
extern char tl_why[1024];
void tl_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void tl_run(const char *name, void (*fn)(void));   // skipped silently when CD_TEST_ONLY names others
void tl_skip(const char *why);  // mark the running test skipped (prints SKIP)
int tl_done(void);            // exit code: 1 if any test failed

#define TEST(name) static void name(void)
#define RUN(name) tl_run(#name, name)
#define CHECK(c) do { if (!(c)) { tl_fail(__FILE__, __LINE__, "CHECK(%s)", #c); return; } } while (0)
#define CHECKF(c, ...) do { if (!(c)) { tl_fail(__FILE__, __LINE__, __VA_ARGS__); return; } } while (0)
#define CHECK_OK(call) do { cd_errclear(); if ((call) != 0) { tl_fail(__FILE__, __LINE__, "%s failed: %s", #call, cd_errmsg()); return; } } while (0)
// The call must fail and its message must contain `needle`.
#define CHECK_ERR(call, needle) do { cd_errclear(); if ((call) == 0) { tl_fail(__FILE__, __LINE__, "%s succeeded, expected an error", #call); return; } \
    if (!strstr(cd_errmsg(), (needle))) { tl_fail(__FILE__, __LINE__, "%s: error '%s' does not mention '%s'", #call, cd_errmsg(), (needle)); return; } } while (0)

// The golden folder (../shared/golden, or $CD_GOLDEN). When absent: returns NULL after
// marking the test skipped with the reason, or failed when CI=true.
const char *tl_golden(void);
// "<golden>/<rel>" in a static-per-call heap string (caller frees).
char *tl_golden_path(const char *rel);
// A fresh empty folder under $BUILD/tmp (or /tmp) for this test; caller frees the string.
char *tl_tmpdir(const char *tag);
// max|a-b| / max|b| (the golden README's measure); NaN anywhere gives +inf.
double tl_relerr(const float *a, const float *b, int64_t n);
// Fill with uniform random values in [-1,1) from a simple LCG (for shapes tests).
void tl_rand(float *x, int64_t n, uint32_t seed);
#endif
