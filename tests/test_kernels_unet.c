// Convolution, GroupNorm(+SiLU), upsample, layout and concat kernels: forward against naive
// double-precision references, backward against double-precision finite differences of
// those references (L = sum(r * y)); layout ops by their adjoint identity.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/testlib.h"
#include "kernels/kernels.h"
#include "kernels/attention_gemm.h"

static double *dvec(const float *x, int64_t n) {
    double *d = malloc(n * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static double maxrel(const float *a, const double *b, int64_t n) {
    double m = 0, e = 0;
    for (int64_t i = 0; i < n; i++) { m = fmax(m, fabs(b[i])); e = fmax(e, fabs(a[i] - b[i])); }
    return m > 0 ? e / m : e;
}

// ---- conv reference ----
typedef struct { int n, cin, h, w, cout, k, s, p; } cshape;
static double conv_ref_loss(const cshape *c, const double *x, const double *W, const double *b,
                            const double *r, double *y) {
    int ho = (c->h + 2 * c->p - c->k) / c->s + 1, wo = (c->w + 2 * c->p - c->k) / c->s + 1;
    double L = 0;
    for (int i = 0; i < c->n; i++)
        for (int co = 0; co < c->cout; co++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    double acc = b ? b[co] : 0;
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ky = 0; ky < c->k; ky++)
                            for (int kx = 0; kx < c->k; kx++) {
                                int iy = oy * c->s - c->p + ky, ix = ox * c->s - c->p + kx;
                                if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
                                acc += x[((i * c->cin + ci) * c->h + iy) * c->w + ix] *
                                       W[((co * c->cin + ci) * c->k + ky) * c->k + kx];
                            }
                    int64_t o = ((int64_t)(i * c->cout + co) * ho + oy) * wo + ox;
                    if (y) y[o] = acc;
                    L += r[o] * acc;
                }
    return L;
}

// Central differences of the double reference: dL/dv[i] for every i.
static void fd(double *g, double *v, int64_t n, double (*L)(void *), void *ctx) {
    const double h = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        double s = v[i];
        v[i] = s + h; double a = L(ctx);
        v[i] = s - h; double b = L(ctx);
        v[i] = s;
        g[i] = (a - b) / (2 * h);
    }
}

typedef struct { const cshape *c; double *x, *W, *b, *r; } convctx;
static double conv_L(void *p) { convctx *q = p; return conv_ref_loss(q->c, q->x, q->W, q->b, q->r, NULL); }

static void check_conv(const cshape *c) {
    int ho = (c->h + 2 * c->p - c->k) / c->s + 1, wo = (c->w + 2 * c->p - c->k) / c->s + 1;
    int64_t nx = (int64_t)c->n * c->cin * c->h * c->w, nw = (int64_t)c->cout * c->cin * c->k * c->k;
    int64_t ny = (int64_t)c->n * c->cout * ho * wo;
    float *x = malloc(nx * 4), *W = malloc(nw * 4), *b = malloc(c->cout * 4), *r = malloc(ny * 4), *y = malloc(ny * 4);
    tl_rand(x, nx, 1); tl_rand(W, nw, 2); tl_rand(b, c->cout, 3); tl_rand(r, ny, 4);
    double *xd = dvec(x, nx), *Wd = dvec(W, nw), *bd = dvec(b, c->cout), *rd = dvec(r, ny), *yd = malloc(ny * 8);
    conv_ref_loss(c, xd, Wd, bd, rd, yd);
    cd_conv2d_fwd(y, x, W, b, c->n, c->cin, c->h, c->w, c->cout, c->k, c->s, c->p);
    double ef = maxrel(y, yd, ny);
    float *dx = malloc(nx * 4), *dW = calloc(nw, 4), *db = calloc(c->cout, 4);
    cd_conv2d_bwd(dx, dW, db, r, x, W, c->n, c->cin, c->h, c->w, c->cout, c->k, c->s, c->p);
    double *gx = malloc(nx * 8), *gW = malloc(nw * 8), *gb = malloc(c->cout * 8);
    convctx q = {c, xd, Wd, bd, rd};
    fd(gx, xd, nx, conv_L, &q); fd(gW, Wd, nw, conv_L, &q); fd(gb, bd, c->cout, conv_L, &q);
    double ex = maxrel(dx, gx, nx), eW = maxrel(dW, gW, nw), eb = maxrel(db, gb, c->cout);
    free(x); free(W); free(b); free(r); free(y); free(xd); free(Wd); free(bd); free(rd); free(yd);
    free(dx); free(dW); free(db); free(gx); free(gW); free(gb);
    CHECKF(ef < 1e-5, "conv k%d s%d p%d forward rel err %.2e", c->k, c->s, c->p, ef);
    CHECKF(ex < 1e-5 && eW < 1e-5 && eb < 1e-5, "conv k%d s%d p%d backward rel err dx %.2e dW %.2e db %.2e", c->k, c->s, c->p, ex, eW, eb);
}

TEST(conv3x3_pad1) { cshape c = {2, 3, 5, 6, 4, 3, 1, 1}; check_conv(&c); }
TEST(conv3x3_stride2) { cshape c = {2, 3, 7, 6, 5, 3, 2, 1}; check_conv(&c); }
TEST(conv3x3_stride2_pad0) { cshape c = {1, 2, 7, 7, 3, 3, 2, 0}; check_conv(&c); }
TEST(conv1x1) { cshape c = {2, 5, 4, 3, 4, 1, 1, 0}; check_conv(&c); }

// ---- GroupNorm reference ----
typedef struct { int n, c, hw, G, silu; double eps; double *x, *g, *b, *r; } gnctx;
static double gn_ref(gnctx *q, double *y) {
    int cg = q->c / q->G;
    double L = 0;
    for (int i = 0; i < q->n; i++)
        for (int gi = 0; gi < q->G; gi++) {
            double s = 0, ss = 0, m = (double)cg * q->hw;
            const double *xs = q->x + ((int64_t)i * q->c + gi * cg) * q->hw;
            for (int j = 0; j < cg * q->hw; j++) s += xs[j];
            double mu = s / m;
            for (int j = 0; j < cg * q->hw; j++) ss += (xs[j] - mu) * (xs[j] - mu);
            double rs = 1 / sqrt(ss / m + q->eps);
            for (int cc = 0; cc < cg; cc++)
                for (int j = 0; j < q->hw; j++) {
                    int ch = gi * cg + cc;
                    int64_t o = ((int64_t)i * q->c + ch) * q->hw + j;
                    double z = (q->x[o] - mu) * rs * q->g[ch] + q->b[ch];
                    if (q->silu) z = z / (1 + exp(-z));
                    if (y) y[o] = z;
                    L += q->r[o] * z;
                }
        }
    return L;
}
static double gn_L(void *p) { return gn_ref(p, NULL); }

static void check_gn(int silu) {
    int n = 2, c = 6, hw = 5, G = 3;
    int64_t N = (int64_t)n * c * hw;
    float *x = malloc(N * 4), *g = malloc(c * 4), *b = malloc(c * 4), *r = malloc(N * 4), *y = malloc(N * 4);
    tl_rand(x, N, 11); tl_rand(g, c, 12); tl_rand(b, c, 13); tl_rand(r, N, 14);
    for (int i = 0; i < N; i++) x[i] = 2 * x[i] + 0.5f;
    gnctx q = {n, c, hw, G, silu, 1e-5, dvec(x, N), dvec(g, c), dvec(b, c), dvec(r, N)};
    double *yd = malloc(N * 8);
    gn_ref(&q, yd);
    float *mean = malloc(n * G * 4), *rstd = malloc(n * G * 4);
    cd_groupnorm_fwd(y, mean, rstd, x, g, b, n, c, hw, G, 1e-5f, silu);
    double ef = maxrel(y, yd, N);
    float *dx = malloc(N * 4), *dg = calloc(c, 4), *db = calloc(c, 4);
    cd_groupnorm_bwd(dx, dg, db, r, x, mean, rstd, g, b, n, c, hw, G, silu);
    double *gx = malloc(N * 8), *gg = malloc(c * 8), *gb = malloc(c * 8);
    fd(gx, q.x, N, gn_L, &q); fd(gg, q.g, c, gn_L, &q); fd(gb, q.b, c, gn_L, &q);
    double ex = maxrel(dx, gx, N), eg = maxrel(dg, gg, c), eb = maxrel(db, gb, c);
    free(x); free(g); free(b); free(r); free(y); free(yd); free(mean); free(rstd);
    free(dx); free(dg); free(db); free(gx); free(gg); free(gb);
    free(q.x); free(q.g); free(q.b); free(q.r);
    CHECKF(ef < 1e-5, "groupnorm silu=%d forward rel err %.2e", silu, ef);
    CHECKF(ex < 1e-4 && eg < 1e-4 && eb < 1e-4, "groupnorm silu=%d backward rel err dx %.2e dg %.2e db %.2e", silu, ex, eg, eb);
}
TEST(groupnorm) { check_gn(0); }
TEST(groupnorm_silu) { check_gn(1); }

// ---- linear layout ops: <A x, r> == <x, A^T r> with A^T the declared backward ----
static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

TEST(upsample2x) {
    int n = 2, c = 3, h = 3, w = 4;
    int64_t nx = n * c * h * w, ny = 4 * nx;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *r = malloc(ny * 4), *dx = malloc(nx * 4);
    tl_rand(x, nx, 5); tl_rand(r, ny, 6);
    cd_upsample2x_fwd(y, x, n, c, h, w);
    int ok = y[0] == x[0] && y[1] == x[0] && y[2 * w] == x[0] && y[2 * w + 1] == x[0] && y[2] == x[1];
    cd_upsample2x_bwd(dx, r, n, c, h, w);
    double a = dot(y, r, ny), b = dot(x, dx, nx);
    free(x); free(y); free(r); free(dx);
    CHECK(ok);
    CHECKF(fabs(a - b) < 1e-9 * (1 + fabs(a)) + 1e-5, "adjoint %.9g vs %.9g", a, b);
}

TEST(layout_and_concat) {
    int n = 2, c = 5, hw = 37, ca = 3, cb = 4;
    int64_t N = (int64_t)n * c * hw;
    float *x = malloc(N * 4), *y = malloc(N * 4), *z = malloc(N * 4);
    tl_rand(x, N, 7);
    cd_nchw_to_nhwc(y, x, n, c, hw);
    CHECK(y[(1 * hw + 2) * c + 3] == x[(1 * c + 3) * hw + 2]);
    cd_nhwc_to_nchw(z, y, n, c, hw);
    CHECK(!memcmp(z, x, N * 4));
    int64_t na = (int64_t)n * ca * hw, nb = (int64_t)n * cb * hw;
    float *a = malloc(na * 4), *b = malloc(nb * 4), *cat = malloc((na + nb) * 4), *a2 = malloc(na * 4), *b2 = malloc(nb * 4);
    tl_rand(a, na, 8); tl_rand(b, nb, 9);
    cd_concat_c(cat, a, b, n, ca, cb, hw);
    CHECK(cat[(1 * (ca + cb) + ca + 1) * hw + 4] == b[(1 * cb + 1) * hw + 4]);
    cd_split_c(a2, b2, cat, n, ca, cb, hw);
    CHECK(!memcmp(a, a2, na * 4) && !memcmp(b, b2, nb * 4));
    free(x); free(y); free(z); free(a); free(b); free(cat); free(a2); free(b2);
}

// Blocked GEMM attention equals the reference kernel (forward, lse, and backward with the
// token-0 detach), across a query-block boundary.
static void check_attn(int Nq, int Nk, int detach) {
    int B = 2, H = 3, D = 8, C = H * D;
    int64_t nq = (int64_t)B * Nq * C, nk = (int64_t)B * Nk * C, nl = (int64_t)B * H * Nq;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *g = malloc(nq * 4);
    float *o1 = malloc(nq * 4), *o2 = malloc(nq * 4), *l1 = malloc(nl * 4), *l2 = malloc(nl * 4);
    float *dq1 = malloc(nq * 4), *dq2 = malloc(nq * 4), *dk1 = malloc(nk * 4), *dk2 = malloc(nk * 4);
    float *dv1 = malloc(nk * 4), *dv2 = malloc(nk * 4);
    tl_rand(q, nq, 21); tl_rand(k, nk, 22); tl_rand(v, nk, 23); tl_rand(g, nq, 24);
    for (int64_t i = 0; i < nq; i++) q[i] *= 3;
    float sc = 1.f / sqrtf((float)D);
    cd_attention_fwd(o1, l1, q, k, v, B, H, Nq, Nk, D, sc);
    cd_attention_gemm_fwd(o2, l2, q, k, v, B, H, Nq, Nk, D, sc);
    cd_attention_bwd(dq1, dk1, dv1, g, q, k, v, o1, l1, B, H, Nq, Nk, D, sc, detach);
    cd_attention_gemm_bwd(dq2, dk2, dv2, g, q, k, v, o2, l2, B, H, Nq, Nk, D, sc, detach);
    double e[6] = {tl_relerr(o2, o1, nq), tl_relerr(l2, l1, nl), tl_relerr(dq2, dq1, nq),
                   tl_relerr(dk2, dk1, nk), tl_relerr(dv2, dv1, nk), 0};
    free(q); free(k); free(v); free(g); free(o1); free(o2); free(l1); free(l2);
    free(dq1); free(dq2); free(dk1); free(dk2); free(dv1); free(dv2);
    for (int i = 0; i < 5; i++) CHECKF(e[i] < 1e-5, "attention gemm vs reference: check %d rel err %.2e", i, e[i]);
}
TEST(attention_gemm_cross) { check_attn(300, 77, 1); }
TEST(attention_gemm_self) { check_attn(270, 270, 0); }

int main(void) {
    RUN(attention_gemm_cross);
    RUN(attention_gemm_self);
    RUN(conv3x3_pad1);
    RUN(conv3x3_stride2);
    RUN(conv3x3_stride2_pad0);
    RUN(conv1x1);
    RUN(groupnorm);
    RUN(groupnorm_silu);
    RUN(upsample2x);
    RUN(layout_and_concat);
    return tl_done();
}
