// customdiff-verify's reporting functions (verify/main.c) for tests that run a verify case
// handler directly (#include "verify/case_x.c" and "verify/device.c" first): each comparison
// counts into the context and a failure becomes a test failure. Tolerances widen with the
// context's precision exactly as in customdiff-verify (cd_verify_tol).
#ifndef CD_TESTS_VERIFY_SHIM_H
#define CD_TESTS_VERIFY_SHIM_H
#include "tests/testlib.h"
#include "verify/device.h"

double cd_verify_relerr(const float *a, const float *b, int64_t n) { return tl_relerr(a, b, n); }
int cd_verify_result(cd_verify_ctx *v, const char *name, const char *tensor, const char *measure,
                     double err, double tol) {
    if (tol > 0) tol = cd_verify_tol(v, tol);
    int ok = err <= tol;
    if (ok) v->npass++;
    else {
        v->nfail++;
        tl_fail(__FILE__, __LINE__, "%s %s: %s %.3e > %.0e", name, tensor, measure, err, tol);
    }
    return ok;
}
int cd_verify_check(cd_verify_ctx *v, const char *name, const char *tensor, const float *got,
                    const float *ref, int64_t n, double tol) {
    return cd_verify_result(v, name, tensor, "max_rel_err", tl_relerr(got, ref, n), tol);
}
void cd_verify_fail(cd_verify_ctx *v, const char *name, const char *what, const char *why) {
    v->nfail++;
    tl_fail(__FILE__, __LINE__, "%s %s: %s", name, what, why);
}
#endif
