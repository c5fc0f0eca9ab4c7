#include "tests/testlib.h"
#include "core/fileio.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tl_failed_now;
static int tl_skipped_now, tl_nfail, tl_npass;
char tl_why[1024];

void tl_fail(const char *file, int line, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!tl_failed_now) snprintf(tl_why, sizeof tl_why, "%s:%d: %s", file, line, msg);
    tl_failed_now = 1;
}

void tl_skip(const char *why) {
    tl_skipped_now = 1;
    snprintf(tl_why, sizeof tl_why, "%s", why);
}

// CD_TEST_ONLY="name1,name2": only those tests run (compute-sanitizer runs, the CPU simulation's
// subset in tests/run.sh); unset or empty: all.
static int selected(const char *name) {
    const char *only = getenv("CD_TEST_ONLY");
    if (!only || !*only) return 1;
    size_t n = strlen(name);
    for (const char *p = strstr(only, name); p; p = strstr(p + 1, name))
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

void tl_run(const char *name, void (*fn)(void)) {
    if (!selected(name)) return;
    tl_failed_now = 0;
    tl_skipped_now = 0;
    tl_why[0] = 0;
    cd_errclear();
    fn();
    if (tl_failed_now) { printf("FAIL %s: %s\n", name, tl_why); tl_nfail++; }
    else if (tl_skipped_now) printf("SKIP %s: %s\n", name, tl_why);
    else { printf("PASS %s\n", name); tl_npass++; }
    fflush(stdout);
}

int tl_done(void) { return tl_nfail ? 1 : 0; }

const char *tl_golden(void) {
    const char *g = getenv("CD_GOLDEN");
    if (!g) g = "../shared/golden";
    char *readme = cd_path_join(g, "README.md");
    int ok = cd_path_exists(readme);
    free(readme);
    if (ok) return g;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0)
        tl_fail(__FILE__, __LINE__, "golden data %s is missing and CI=true: golden tests must run in CI", g);
    else {
        char why[512];
        snprintf(why, sizeof why, "golden data %s not found (set CD_GOLDEN); golden tests run in CI", g);
        tl_skip(why);
    }
    return NULL;
}

char *tl_golden_path(const char *rel) {
    const char *g = getenv("CD_GOLDEN");
    return cd_path_join(g ? g : "../shared/golden", rel);
}

char *tl_tmpdir(const char *tag) {
    const char *b = getenv("BUILD");
    char *base = cd_fmt("%s/tmp", b ? b : "build");
    if (cd_mkdirs(base) != 0) { free(base); base = cd_strdup("/tmp"); }
    char *tmpl = cd_fmt("%s/%s-XXXXXX", base, tag);
    free(base);
    if (!mkdtemp(tmpl)) { free(tmpl); return cd_strdup("/tmp"); }
    return tmpl;
}

double tl_relerr(const float *a, const float *b, int64_t n) {
    double maxd = 0, maxb = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = fabs((double)a[i] - b[i]);
        if (d > maxd) maxd = d;
        if (fabs(b[i]) > maxb) maxb = fabs(b[i]);
    }
    return maxb > 0 ? maxd / maxb : maxd;
}

void tl_rand(float *x, int64_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}
