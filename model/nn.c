// Binding, arena, basic layers and ResnetBlock2D (see model/nn.h).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "model/nn.h"
#include "kernels/kernels.h"
#include "core/err.h"

// ---- binding ---------------------------------------------------------------------------
void nn_bind(nn_binder *b, float **out, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    *out = NULL;
    cd_weight *w = cd_weights_find(b->ws, name);
    if (!w && b->rng) {   // tiny-model creation: unit-variance/sqrt(fan_in) weights, small biases, norms ~1
        int64_t numel = 1;
        for (int i = 0; i < ndim; i++) numel *= shape[i];
        float *d = cd_malloc(numel * sizeof(float));
        // uniform with unit variance from a per-tensor xorshift stream (fast for 860M params)
        uint64_t st = ((uint64_t)cd_rng_u32(b->rng) << 32 | cd_rng_u32(b->rng)) | 1;
        for (int64_t i = 0; i < numel; i++) {
            st ^= st << 13; st ^= st >> 7; st ^= st << 17;
            d[i] = ((float)(st >> 40) * (1.f / 16777216.f) * 2.f - 1.f) * 1.7320508f;
        }
        int is_bias = strstr(name, ".bias") != NULL, norm = !is_bias && ndim == 1;
        float sc = ndim >= 2 ? 1.f / sqrtf((float)(numel / shape[0])) : 0.1f;
        for (int64_t i = 0; i < numel; i++) d[i] = (norm ? 1.f : 0.f) + sc * d[i];
        cd_weights_put(b->ws, name, ndim, shape, d);
        free(d);
        w = cd_weights_find(b->ws, name);
    }
    int ok = w != NULL && w->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = w->shape[i] == shape[i];
    if (ok) { *out = w->data; return; }
    char want[128] = "[", got[128] = "[";
    for (int i = 0; i < ndim; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)shape[i]);
    strcat(want, "]");
    if (w) {
        for (int i = 0; i < w->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)w->shape[i]);
        strcat(got, "]");
    }
    char *m = w ? cd_fmt("tensor '%s' has shape %s, expected %s", name, got, want)
                : cd_fmt("tensor '%s' %s missing", name, want);
    if (b->nerr < 6) {
        char *s = cd_fmt("%s%s%s", b->msg ? b->msg : "", b->msg ? "; " : "", m);
        free(b->msg);
        b->msg = s;
    }
    free(m);
    b->nerr++;
}

int nn_has(nn_binder *b, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < b->ws->n; i++)
        if (!strcmp(b->ws->w[i].name, name)) return 1;
    return 0;
}

int nn_bind_done(nn_binder *b, const char *what) {
    if (!b->nerr) { free(b->msg); b->msg = NULL; return 0; }
    cd_err("%s (%s): %d tensor%s missing or mis-shaped: %s%s", what,
           b->ws->what ? b->ws->what : "?", b->nerr, b->nerr > 1 ? "s" : "", b->msg,
           b->nerr > 6 ? "; ..." : "");
    free(b->msg);
    b->msg = NULL;
    return -1;
}

// ---- arena -----------------------------------------------------------------------------
#define CHUNK_MIN ((size_t)32 << 20)
float *nn_arena_alloc(nn_arena *a, int64_t nfloats) {
    size_t bytes = ((size_t)nfloats * sizeof(float) + 63) & ~(size_t)63;
    while (a->cur < a->nc) {
        struct nn_chunk *c = &a->c[a->cur];
        if (c->size - c->used >= bytes) { float *p = (float *)(c->base + c->used); c->used += bytes; return p; }
        if (c->used == 0) break;   // too small even empty: replace from here
        a->cur++;
    }
    // free chunks from cur on (their layout is from another shape) and add one that fits
    for (int i = a->cur; i < a->nc; i++) free(a->c[i].base);
    a->nc = a->cur;
    a->c = cd_realloc(a->c, (a->nc + 1) * sizeof *a->c);
    size_t sz = bytes > CHUNK_MIN ? bytes : CHUNK_MIN;
    struct nn_chunk *c = &a->c[a->nc++];
    c->base = aligned_alloc(64, sz);
    if (!c->base) { fprintf(stderr, "customdiff: out of memory (%zu bytes)\n", sz); abort(); }
    c->size = sz;
    c->used = bytes;
    return (float *)c->base;
}
void nn_arena_reset(nn_arena *a) {
    for (int i = 0; i < a->nc; i++) a->c[i].used = 0;
    a->cur = 0;
}
void nn_arena_free(nn_arena *a) {
    for (int i = 0; i < a->nc; i++) free(a->c[i].base);
    free(a->c);
    memset(a, 0, sizeof *a);
}
size_t nn_arena_bytes(const nn_arena *a) {
    size_t s = 0;
    for (int i = 0; i < a->nc; i++) s += a->c[i].size;
    return s;
}
float *nn_alloc(nn_arena *a, int64_t n) {
    return a ? nn_arena_alloc(a, n) : cd_malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
}
void nn_free(nn_arena *a, float *p) { if (!a) free(p); }

// ---- basic layers ----------------------------------------------------------------------
void nn_conv_bind(nn_binder *bd, nn_conv *c, const char *prefix, int cin, int cout, int k, int s, int p, int bias) {
    c->cin = cin; c->cout = cout; c->k = k; c->s = s; c->p = p;
    int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    nn_bind(bd, &c->w, 4, ws, "%s.weight", prefix);
    c->b = NULL;
    if (bias) nn_bind(bd, &c->b, 1, bs, "%s.bias", prefix);
}
void nn_gn_bind(nn_binder *bd, nn_gn *g, const char *prefix, int c, int groups, float eps) {
    g->c = c; g->groups = groups; g->eps = eps;
    int64_t s[1] = {c};
    nn_bind(bd, &g->g, 1, s, "%s.weight", prefix);
    nn_bind(bd, &g->b, 1, s, "%s.bias", prefix);
    if (c % groups) { bd->nerr++; if (!bd->msg) bd->msg = cd_fmt("%s: %d channels not divisible by %d groups", prefix, c, groups); }
}
void nn_lin_bind(nn_binder *bd, nn_lin *l, const char *prefix, int in, int out, int bias) {
    l->in = in; l->out = out;
    int64_t ws[2] = {out, in}, bs[1] = {out};
    nn_bind(bd, &l->w, 2, ws, "%s.weight", prefix);
    l->b = NULL;
    if (bias) nn_bind(bd, &l->b, 1, bs, "%s.bias", prefix);
}
void nn_ln_bind(nn_binder *bd, nn_ln *l, const char *prefix, int c, float eps) {
    l->c = c; l->eps = eps;
    int64_t s[1] = {c};
    nn_bind(bd, &l->g, 1, s, "%s.weight", prefix);
    nn_bind(bd, &l->b, 1, s, "%s.bias", prefix);
}

void nn_conv_fwd(const nn_conv *c, float *y, const float *x, int B, int H, int W) {
    cd_conv2d_fwd(y, x, c->w, c->b, B, c->cin, H, W, c->cout, c->k, c->s, c->p);
}
void nn_conv_bwd_x(const nn_conv *c, float *dx, const float *dy, int B, int H, int W) {
    cd_conv2d_bwd(dx, NULL, NULL, dy, NULL, c->w, B, c->cin, H, W, c->cout, c->k, c->s, c->p);
}
void nn_lin_fwd(const nn_lin *l, float *y, const float *x, int n) {
    cd_linear_fwd(y, x, l->w, l->b, n, l->in, l->out);
}
void nn_lin_bwd_x(const nn_lin *l, float *dx, const float *dy, int n, int acc) {
    // dx[n,in] (+)= dy[n,out] @ W[out,in]
    cd_gemm(0, 0, n, l->in, l->out, 1.f, dy, l->out, l->w, l->in, acc ? 1.f : 0.f, dx, l->in);
}

// ---- ResnetBlock2D ---------------------------------------------------------------------
void nn_resnet_bind(nn_binder *bd, nn_resnet *r, const char *prefix, int cin, int cout,
                    int temb_dim, int groups, float eps) {
    char p[400];
    r->cin = cin; r->cout = cout; r->has_temb = temb_dim > 0; r->has_sc = cin != cout;
    snprintf(p, sizeof p, "%s.norm1", prefix); nn_gn_bind(bd, &r->n1, p, cin, groups, eps);
    snprintf(p, sizeof p, "%s.conv1", prefix); nn_conv_bind(bd, &r->c1, p, cin, cout, 3, 1, 1, 1);
    if (r->has_temb) { snprintf(p, sizeof p, "%s.time_emb_proj", prefix); nn_lin_bind(bd, &r->tp, p, temb_dim, cout, 1); }
    snprintf(p, sizeof p, "%s.norm2", prefix); nn_gn_bind(bd, &r->n2, p, cout, groups, eps);
    snprintf(p, sizeof p, "%s.conv2", prefix); nn_conv_bind(bd, &r->c2, p, cout, cout, 3, 1, 1, 1);
    if (r->has_sc) { snprintf(p, sizeof p, "%s.conv_shortcut", prefix); nn_conv_bind(bd, &r->sc, p, cin, cout, 1, 1, 0, 1); }
}

static void gn_fwd(const nn_gn *g, float *y, float *m, float *r, const float *x, int B, int hw, int silu) {
    cd_groupnorm_fwd(y, m, r, x, g->g, g->b, B, g->c, hw, g->groups, g->eps, silu);
}

void nn_resnet_fwd(nn_resnet *r, float *y, const float *x, const float *temb_act,
                   int B, int H, int W, nn_arena *ar) {
    int hw = H * W, G1 = r->n1.groups, G2 = r->n2.groups;
    float *m1 = nn_alloc(ar, B * G1), *r1 = nn_alloc(ar, B * G1);
    float *m2 = nn_alloc(ar, B * G2), *r2 = nn_alloc(ar, B * G2);
    float *h = nn_alloc(ar, (int64_t)B * r->cout * hw);
    int64_t na = (int64_t)B * (r->cin > r->cout ? r->cin : r->cout) * hw;
    float *a = cd_malloc(na * sizeof(float));
    gn_fwd(&r->n1, a, m1, r1, x, B, hw, 1);
    nn_conv_fwd(&r->c1, h, a, B, H, W);
    if (r->has_temb && temb_act) {
        float *tb = cd_malloc((size_t)B * r->cout * sizeof(float));
        nn_lin_fwd(&r->tp, tb, temb_act, B);
        cd_add_bias_nc(h, tb, B, r->cout, hw);
        free(tb);
    }
    gn_fwd(&r->n2, a, m2, r2, h, B, hw, 1);
    nn_conv_fwd(&r->c2, y, a, B, H, W);
    free(a);   // before the shortcut: the VAE decoder's peak at 512 px is this block
    if (r->has_sc) {   // inference: h is dead now, the shortcut output reuses it
        float *s = ar ? cd_malloc((size_t)B * r->cout * hw * sizeof(float)) : h;
        nn_conv_fwd(&r->sc, s, x, B, H, W);
        cd_acc(y, s, (int64_t)B * r->cout * hw);
        if (ar) free(s);
    } else {
        cd_acc(y, x, (int64_t)B * r->cout * hw);
    }
    if (ar) {
        r->x = x; r->h = h; r->m1 = m1; r->r1 = r1; r->m2 = m2; r->r2 = r2;
        r->B = B; r->H = H; r->W = W;
    } else {
        free(m1); free(r1); free(m2); free(r2); free(h);
    }
}

void nn_resnet_bwd(nn_resnet *r, float *dx, const float *dy) {
    int B = r->B, H = r->H, W = r->W, hw = H * W;
    int64_t nout = (int64_t)B * r->cout * hw, nin = (int64_t)B * r->cin * hw;
    int64_t nmax = nout > nin ? nout : nin;
    float *a = cd_malloc(nmax * sizeof(float)), *da = cd_malloc(nmax * sizeof(float));
    float *dh = cd_malloc(nout * sizeof(float));
    // conv2 <- dy; a2 = silu(gn2(h)) not needed for dx of a frozen conv
    nn_conv_bwd_x(&r->c2, da, dy, B, H, W);
    cd_groupnorm_bwd(dh, NULL, NULL, da, r->h, r->m2, r->r2, r->n2.g, r->n2.b, B, r->cout, hw,
                     r->n2.groups, 1);
    nn_conv_bwd_x(&r->c1, da, dh, B, H, W);
    cd_groupnorm_bwd(dx, NULL, NULL, da, r->x, r->m1, r->r1, r->n1.g, r->n1.b, B, r->cin, hw,
                     r->n1.groups, 1);
    if (r->has_sc) {
        nn_conv_bwd_x(&r->sc, a, dy, B, H, W);
        cd_acc(dx, a, nin);
    } else {
        cd_acc(dx, dy, nin);
    }
    free(a); free(da); free(dh);
}
