// UNet forward on the GPU (see model/unet_cuda.h): model/unet.c's walk with the CUDA twins.
// Arena discipline: a layer's caller allocates its output; the layer takes a mark, allocates
// its temporaries and releases them to the mark on return (LIFO). The top-level walk keeps
// block outputs and skips until the forward ends; the arena is reset at the next forward.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "model/unet_cuda.h"
#include "model/unet_internal.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"

#define CHUNK_MIN ((size_t)256 << 20)

typedef struct { const float *h; int64_t n; float *d; } wmap;
typedef struct { char *base; size_t size, used; } dchunk;
typedef struct { int c; size_t used; } dmark;

struct cd_unet_cuda {
    cd_unet *u;
    void *st;
    char *wbuf;            // all weights, one allocation
    size_t wbytes;
    wmap *map;             // sorted by host pointer
    int nmap;
    dchunk *c;             // activation arena
    int nc, cur;
    int err;               // sticky: a weight not found or an allocation failed in this forward
    float *hact;           // host copy buffer for the act callback
    int64_t hact_n;
    cd_unet_act_fn acts;
    void *act_ctx;
};

// ---- weights -----------------------------------------------------------------------------
static int cmp_map(const void *a, const void *b) {
    const float *x = ((const wmap *)a)->h, *y = ((const wmap *)b)->h;
    return x < y ? -1 : x > y;
}

int cd_unet_cuda_upload(cd_unet_cuda *g) {
    cd_weights *ws = g->u->ws;
    size_t total = 0;
    for (int i = 0; i < ws->n; i++) total += ((size_t)ws->w[i].numel * sizeof(float) + 255) & ~(size_t)255;
    if (total > g->wbytes) {
        cd_cuda_free(g->wbuf);
        g->wbuf = cd_cuda_malloc(total ? total : 256);
        g->wbytes = g->wbuf ? total : 0;
        if (!g->wbuf) return cd_err("unet cuda: cannot allocate %.2f GiB for the weights", total / 1073741824.0);
    }
    free(g->map);
    g->map = cd_calloc(ws->n ? ws->n : 1, sizeof *g->map);
    g->nmap = 0;
    size_t off = 0;
    for (int i = 0; i < ws->n; i++) {
        cd_weight *w = &ws->w[i];
        if (!w->data) continue;
        float *d = (float *)(g->wbuf + off);
        if (cd_cuda_memcpy_h2d(d, w->data, (size_t)w->numel * sizeof(float), g->st))
            return cd_err("unet cuda: uploading '%s' failed", w->name);
        g->map[g->nmap++] = (wmap){w->data, w->numel, d};
        off += ((size_t)w->numel * sizeof(float) + 255) & ~(size_t)255;
    }
    qsort(g->map, g->nmap, sizeof *g->map, cmp_map);
    if (cd_cuda_sync(g->st) || cd_cuda_status()) return cd_err("unet cuda: weight upload failed");
    return 0;
}

// Device copy of a host weight pointer (NULL stays NULL); a pointer not inside any uploaded
// tensor sets g->err.
static const float *dw(cd_unet_cuda *g, const float *h) {
    if (!h) return NULL;
    int lo = 0, hi = g->nmap - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        const wmap *e = &g->map[m];
        if (h < e->h) hi = m - 1;
        else if (h >= e->h + e->n) lo = m + 1;
        else return e->d + (h - e->h);
    }
    if (!g->err) cd_err("unet cuda: a weight of the model is not among the uploaded tensors (rebound without cd_unet_cuda_upload?)");
    g->err = 1;
    return NULL;
}

// ---- arena -------------------------------------------------------------------------------
static float *da(cd_unet_cuda *g, int64_t n) {
    size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 255) & ~(size_t)255;
    if (g->err) return NULL;
    for (;;) {
        int first_free = g->nc;
        if (g->cur < g->nc) {
            dchunk *c = &g->c[g->cur];
            if (c->size - c->used >= bytes) { float *p = (float *)(c->base + c->used); c->used += bytes; return p; }
            if (g->cur + 1 < g->nc && g->c[g->cur + 1].size >= bytes) { g->cur++; g->c[g->cur].used = 0; continue; }
            first_free = c->used == 0 ? g->cur : g->cur + 1;
        }
        // the chunks from first_free on hold nothing live: replace them by one that fits
        for (int j = first_free; j < g->nc; j++) cd_cuda_free(g->c[j].base);
        g->nc = first_free;
        g->c = cd_realloc(g->c, (g->nc + 1) * sizeof *g->c);
        size_t sz = bytes > CHUNK_MIN ? bytes : CHUNK_MIN;
        char *b = cd_cuda_malloc(sz);
        if (!b) { g->err = 1; cd_err("unet cuda: out of device memory (activations, %zu MiB more)", sz >> 20); return NULL; }
        g->c[g->nc++] = (dchunk){b, sz, 0};
        g->cur = g->nc - 1;
    }
}
static dmark mark(cd_unet_cuda *g) {
    return (dmark){g->cur, g->cur < g->nc ? g->c[g->cur].used : 0};
}
static void release(cd_unet_cuda *g, dmark m) {
    g->cur = m.c;
    if (m.c < g->nc) g->c[m.c].used = m.used;
    for (int j = m.c + 1; j < g->nc; j++) g->c[j].used = 0;
}
static void reset(cd_unet_cuda *g) { release(g, (dmark){0, 0}); }

#define DA(p, n) float *p = da(g, (n)); if (!p) { release(g, m0); return; }

// ---- layers ------------------------------------------------------------------------------
static void conv(cd_unet_cuda *g, const nn_conv *c, float *y, const float *x, int B, int H, int W) {
    cd_cuda_conv2d_fwd(y, x, dw(g, c->w), dw(g, c->b), B, c->cin, H, W, c->cout, c->k, c->s, c->p, g->st);
}
static void lin(cd_unet_cuda *g, const nn_lin *l, float *y, const float *x, int n) {
    cd_cuda_linear_fwd(y, x, dw(g, l->w), dw(g, l->b), n, l->in, l->out, g->st);
}
// GroupNorm (+ SiLU) of x [B, c, hw]; statistics in the arena.
static void gn(cd_unet_cuda *g, const nn_gn *n, float *y, const float *x, int B, int hw, int silu) {
    dmark m0 = mark(g);
    DA(mr, 2 * B * n->groups);
    cd_cuda_groupnorm_fwd(y, mr, mr + B * n->groups, x, dw(g, n->g), dw(g, n->b), B, n->c, hw,
                          n->groups, n->eps, silu, g->st);
    release(g, m0);
}
static void ln(cd_unet_cuda *g, const nn_ln *l, float *y, const float *x, int n) {
    dmark m0 = mark(g);
    DA(mr, 2 * (int64_t)n);
    cd_cuda_layernorm_fwd(y, mr, mr + n, x, dw(g, l->g), dw(g, l->b), n, l->c, l->eps, g->st);
    release(g, m0);
}

static void resnet(cd_unet_cuda *g, const nn_resnet *r, float *y, const float *x,
                   const float *emb, int B, int H, int W) {
    dmark m0 = mark(g);
    int hw = H * W;
    int64_t nout = (int64_t)B * r->cout * hw;
    DA(a, (int64_t)B * (r->cin > r->cout ? r->cin : r->cout) * hw);
    DA(h, nout);
    gn(g, &r->n1, a, x, B, hw, 1);
    conv(g, &r->c1, h, a, B, H, W);
    if (r->has_temb && emb) {
        DA(tb, (int64_t)B * r->cout);
        lin(g, &r->tp, tb, emb, B);
        cd_cuda_add_bias_nc(h, tb, B, r->cout, hw, g->st);
    }
    gn(g, &r->n2, a, h, B, hw, 1);
    conv(g, &r->c2, y, a, B, H, W);
    if (r->has_sc) {
        DA(s, nout);
        conv(g, &r->sc, s, x, B, H, W);
        cd_cuda_acc(y, s, nout, g->st);
    } else {
        cd_cuda_acc(y, x, nout, g->st);
    }
    release(g, m0);
}

static int fused_dim(int d) { return d == 40 || d == 64 || d == 80 || d == 160; }

// y [B,N,C] = attention(x [B,N,C], ctx [B,M,cdim] or x when ctx == NULL).
static void attn(cd_unet_cuda *g, const nn_attn *a, float *y, const float *x, const float *ctx,
                 int B, int N, int M) {
    dmark m0 = mark(g);
    int C = a->heads * a->dim;
    if (!ctx) { ctx = x; M = N; }
    DA(Q, (int64_t)B * N * C);
    DA(K, (int64_t)B * M * C);
    DA(V, (int64_t)B * M * C);
    DA(O, (int64_t)B * N * C);
    lin(g, &a->q, Q, x, B * N);
    lin(g, &a->k, K, ctx, B * M);
    lin(g, &a->v, V, ctx, B * M);
    float scale = 1.f / sqrtf((float)a->dim);
    if (fused_dim(a->dim)) cd_cuda_attention_fwd(O, NULL, Q, K, V, B, a->heads, N, M, a->dim, scale, g->st);
    else if (cd_cuda_attention_naive_fwd(O, NULL, Q, K, V, B, a->heads, N, M, a->dim, scale, g->st)) g->err = 1;
    lin(g, &a->o, y, O, B * N);
    release(g, m0);
}

// BasicTransformerBlock: out [B,N,C] from h0 [B,N,C].
static void tblock(cd_unet_cuda *g, const nn_tblock *t, float *out, const float *h0,
                   const float *ctx, int B, int N, int M) {
    dmark m0 = mark(g);
    int C = t->n1.c;
    int64_t n = (int64_t)B * N, nc = n * C;
    DA(h1, nc); DA(h2, nc); DA(l, nc); DA(a, nc);
    DA(f, n * 8 * C);
    DA(gg, n * 4 * C);
    ln(g, &t->n1, l, h0, (int)n);
    attn(g, &t->a1, a, l, NULL, B, N, N);
    cd_cuda_add(h1, h0, a, nc, g->st);
    ln(g, &t->n2, l, h1, (int)n);
    attn(g, &t->a2, a, l, ctx, B, N, M);
    cd_cuda_add(h2, h1, a, nc, g->st);
    ln(g, &t->n3, l, h2, (int)n);
    cd_cuda_linear_fwd(f, l, dw(g, t->ff1.w), NULL, (int)n, t->ff1.in, t->ff1.out, g->st);
    cd_cuda_bias_geglu_fwd(gg, f, dw(g, t->ff1.b), n, 4 * C, g->st);
    lin(g, &t->ff2, a, gg, (int)n);
    cd_cuda_add(out, h2, a, nc, g->st);
    release(g, m0);
}

// Transformer2DModel: y [B,C,H,W] = x + proj_out(blocks(proj_in(GN(x)))).
static void transformer(cd_unet_cuda *g, const nn_transformer *t, float *y, const float *x,
                        const float *ctx, int B, int H, int W, int M) {
    dmark m0 = mark(g);
    int C = t->c, N = H * W;
    int64_t nc = (int64_t)B * N * C;
    DA(a, nc); DA(b, nc); DA(h, nc); DA(o, nc);
    gn(g, &t->norm, a, x, B, N, 0);
    if (t->linear) {
        cd_cuda_nchw_to_nhwc(b, a, B, C, N, g->st);
        lin(g, &t->pin_l, h, b, B * N);
    } else {
        conv(g, &t->pin_c, b, a, B, H, W);
        cd_cuda_nchw_to_nhwc(h, b, B, C, N, g->st);
    }
    for (int i = 0; i < t->ntb; i++) {
        tblock(g, &t->tb[i], o, h, ctx, B, N, M);
        float *s = h; h = o; o = s;
    }
    if (t->linear) {
        lin(g, &t->pout_l, a, h, B * N);
        cd_cuda_nhwc_to_nchw(y, a, B, C, N, g->st);
    } else {
        cd_cuda_nhwc_to_nchw(a, h, B, C, N, g->st);
        conv(g, &t->pout_c, y, a, B, H, W);
    }
    cd_cuda_acc(y, x, nc, g->st);
    release(g, m0);
}

// ---- the walk (model/unet.c: forward) ---------------------------------------------------------
static int64_t sz(int B, int C, int H, int W) { return (int64_t)B * C * H * W; }

static void emit(cd_unet_cuda *g, const char *name, const float *d, int B, int C, int H, int W) {
    if (!g->acts || g->err) return;
    int64_t n = H ? sz(B, C, H, W) : (int64_t)B * C;
    if (n > g->hact_n) { free(g->hact); g->hact = cd_malloc(n * sizeof(float)); g->hact_n = n; }
    if (cd_cuda_memcpy_d2h(g->hact, d, n * sizeof(float), g->st) || cd_cuda_sync(g->st)) { g->err = 1; return; }
    int64_t s4[4] = {B, C, H, W}, s2[2] = {B, C};
    g->acts(g->act_ctx, name, g->hact, H ? 4 : 2, H ? s4 : s2);
}

// emb [B,te] = silu(time_embedding(t)).
static void time_embed(cd_unet_cuda *g, float *emb, const float *t, int B) {
    cd_unet *u = g->u;
    dmark m0 = mark(g);
    int c0 = u->cfg.block_out[0], te = u->cfg.time_embed_dim;
    DA(tp, (int64_t)B * c0);
    DA(e1, (int64_t)B * te);
    cd_cuda_timestep_embedding(tp, t, B, c0, u->cfg.flip_sin_to_cos, u->cfg.freq_shift, 10000.f, g->st);
    lin(g, &u->t1, e1, tp, B);
    cd_cuda_silu_fwd(e1, e1, (int64_t)B * te, g->st);
    lin(g, &u->t2, emb, e1, B);
    emit(g, "time_embedding", emb, B, te, 0, 0);
    cd_cuda_silu_fwd(emb, emb, (int64_t)B * te, g->st);
    release(g, m0);
}

static float *down_fwd(cd_unet_cuda *g, int i, float *h, const float *emb, const float *ctx,
                       int B, int *H, int *W, int M, float **skip, int *ns) {
    ublock *b = &g->u->down[i];
    for (int l = 0; l < b->nl && !g->err; l++) {
        float *y = da(g, sz(B, b->cout, *H, *W));
        if (!y) return NULL;
        resnet(g, &b->res[l], y, h, emb, B, *H, *W);
        if (b->attn) {
            float *z = da(g, sz(B, b->cout, *H, *W));
            if (!z) return NULL;
            transformer(g, &b->att[l], z, y, ctx, B, *H, *W, M);
            y = z;
        }
        skip[(*ns)++] = h = y;
    }
    if (b->sampler && !g->err) {
        float *y = da(g, sz(B, b->cout, *H / 2, *W / 2));
        if (!y) return NULL;
        conv(g, &b->samp, y, h, B, *H, *W);
        *H /= 2; *W /= 2;
        skip[(*ns)++] = h = y;
    }
    return h;
}

static float *mid_fwd(cd_unet_cuda *g, float *h, const float *emb, const float *ctx, int B,
                      int H, int W, int M) {
    cd_unet *u = g->u;
    int cm = u->cfg.block_out[u->cfg.nblocks - 1];
    float *y = da(g, sz(B, cm, H, W)), *z = da(g, sz(B, cm, H, W)), *o = da(g, sz(B, cm, H, W));
    if (!o) return NULL;
    resnet(g, &u->mid_r[0], y, h, emb, B, H, W);
    transformer(g, &u->mid_a, z, y, ctx, B, H, W, M);
    resnet(g, &u->mid_r[1], o, z, emb, B, H, W);
    return o;
}

static float *up_fwd(cd_unet_cuda *g, int i, float *h, int ch, const float *emb, const float *ctx,
                     int B, int *H, int *W, int M, float **skip, int *ns) {
    ublock *b = &g->u->up[i];
    for (int l = 0; l < b->nl && !g->err; l++) {
        float *s = skip[--(*ns)];
        int cin = ch + b->skipc[l];
        float *cat = da(g, sz(B, cin, *H, *W)), *y = da(g, sz(B, b->cout, *H, *W));
        if (!y) return NULL;
        cd_cuda_concat_c(cat, h, s, B, ch, b->skipc[l], *H * *W, g->st);
        resnet(g, &b->res[l], y, cat, emb, B, *H, *W);
        h = y;
        ch = b->cout;
        if (b->attn) {
            float *z = da(g, sz(B, ch, *H, *W));
            if (!z) return NULL;
            transformer(g, &b->att[l], z, h, ctx, B, *H, *W, M);
            h = z;
        }
    }
    if (b->sampler && !g->err) {
        float *up = da(g, sz(B, ch, 2 * *H, 2 * *W)), *y = da(g, sz(B, ch, 2 * *H, 2 * *W));
        if (!y) return NULL;
        cd_cuda_upsample2x_fwd(up, h, B, ch, *H, *W, g->st);
        *H *= 2; *W *= 2;
        conv(g, &b->samp, y, up, B, *H, *W);
        h = y;
    }
    return h;
}

static void forward(cd_unet_cuda *g, float *out, const float *x, const float *t, const float *ctx,
                    int B, int H, int W, int M) {
    cd_unet *u = g->u;
    const cd_unet_config *c = &u->cfg;
    int n = c->nblocks, c0 = c->block_out[0], ns = 0, ch;
    float *skip[CD_UNET_MAX_BLOCKS * (MAXL + 1) + 1];
    char name[64];
    float *emb = da(g, (int64_t)B * c->time_embed_dim), *h = da(g, sz(B, c0, H, W));
    if (!h) return;
    time_embed(g, emb, t, B);
    conv(g, &u->conv_in, h, x, B, H, W);
    emit(g, "conv_in", h, B, c0, H, W);
    skip[ns++] = h;
    for (int i = 0; i < n && h && !g->err; i++) {
        h = down_fwd(g, i, h, emb, ctx, B, &H, &W, M, skip, &ns);
        snprintf(name, sizeof name, "down_blocks.%d", i);
        if (h) emit(g, name, h, B, u->down[i].cout, H, W);
    }
    if (h && !g->err) h = mid_fwd(g, h, emb, ctx, B, H, W, M);
    if (h) emit(g, "mid_block", h, B, c->block_out[n - 1], H, W);
    ch = c->block_out[n - 1];
    for (int i = 0; i < n && h && !g->err; i++) {
        h = up_fwd(g, i, h, ch, emb, ctx, B, &H, &W, M, skip, &ns);
        ch = u->up[i].cout;
        snprintf(name, sizeof name, "up_blocks.%d", i);
        if (h) emit(g, name, h, B, ch, H, W);
    }
    float *a = da(g, sz(B, c0, H, W));
    if (!h || !a || g->err) return;
    gn(g, &u->norm_out, a, h, B, H * W, 1);
    conv(g, &u->conv_out, out, a, B, H, W);
}

// ---- API -----------------------------------------------------------------------------------
int cd_unet_cuda_new(cd_unet_cuda **out, cd_unet *u, void *stream) {
    char why[256] = "";
    *out = NULL;
    if (!cd_cuda_available(why, sizeof why)) return cd_err("unet cuda: no usable GPU: %s", why);
    cd_unet_cuda *g = cd_calloc(1, sizeof *g);
    g->u = u;
    g->st = stream;
    if (cd_unet_cuda_upload(g)) { cd_unet_cuda_free(g); return -1; }
    *out = g;
    return 0;
}

void cd_unet_cuda_free(cd_unet_cuda *g) {
    if (!g) return;
    cd_cuda_sync(g->st);
    for (int j = 0; j < g->nc; j++) cd_cuda_free(g->c[j].base);
    free(g->c);
    cd_cuda_free(g->wbuf);
    free(g->map);
    free(g->hact);
    free(g);
}

static int check_shape(const cd_unet *u, int B, int H, int W, int M) {
    int f = 1 << (u->cfg.nblocks - 1);
    if (B < 1 || M < 1 || H < f || W < f || H % f || W % f)
        return cd_err("unet cuda: input %dx%d (batch %d, %d context tokens) must be a positive multiple of %d", H, W, B, M, f);
    return 0;
}

int cd_unet_cuda_forward_dev(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                             const float *d_ctx, int B, int H, int W, int Nctx) {
    CD_TRY(check_shape(g->u, B, H, W, Nctx));
    reset(g);
    g->err = 0;
    forward(g, d_out, d_x, d_t, d_ctx, B, H, W, Nctx);
    return g->err ? -1 : 0;
}

int cd_unet_cuda_forward(cd_unet_cuda *g, float *out, const float *x, const float *t,
                         const float *ctx, int B, int H, int W, int Nctx, cd_unet_act_fn acts,
                         void *act_ctx) {
    const cd_unet_config *c = &g->u->cfg;
    CD_TRY(check_shape(g->u, B, H, W, Nctx));
    cd_errclear();
    cd_cuda_status();   // clear a failure left by earlier work
    reset(g);
    g->err = 0;
    g->acts = acts; g->act_ctx = act_ctx;
    int64_t nx = sz(B, c->in_channels, H, W), no = sz(B, c->out_channels, H, W);
    int64_t nc = (int64_t)B * Nctx * c->cross_dim;
    // inputs and output live at the bottom of the arena, below the forward's buffers
    float *dx = da(g, nx), *dt = da(g, B), *dc = da(g, nc), *dout = da(g, no);
    int rc = -1;
    if (dout && !cd_cuda_memcpy_h2d(dx, x, nx * sizeof(float), g->st) &&
        !cd_cuda_memcpy_h2d(dt, t, B * sizeof(float), g->st) &&
        !cd_cuda_memcpy_h2d(dc, ctx, nc * sizeof(float), g->st)) {
        forward(g, dout, dx, dt, dc, B, H, W, Nctx);
        if (!g->err && !cd_cuda_memcpy_d2h(out, dout, no * sizeof(float), g->st) && !cd_cuda_sync(g->st)) rc = 0;
    }
    g->acts = NULL;
    if (cd_cuda_status()) rc = -1;
    if (rc) cd_errctx("unet cuda: forward (batch %d, %dx%d)", B, H, W);
    return rc;
}

int64_t cd_unet_cuda_weight_bytes(const cd_unet_cuda *g) { return (int64_t)g->wbytes; }
int64_t cd_unet_cuda_arena_bytes(const cd_unet_cuda *g) {
    int64_t s = 0;
    for (int j = 0; j < g->nc; j++) s += (int64_t)g->c[j].size;
    return s;
}
void *cd_unet_cuda_stream(const cd_unet_cuda *g) { return g->st; }

#else  // built without CUDA: every entry point fails with a clear message

struct cd_unet_cuda { int unused; };
#define NOCUDA cd_err("unet cuda: customdiff was built without CUDA (CUDA=0); rebuild with CUDA=1 on a machine with nvcc")
int cd_unet_cuda_new(cd_unet_cuda **out, cd_unet *u, void *stream) { *out = NULL; return NOCUDA; }
void cd_unet_cuda_free(cd_unet_cuda *g) { (void)g; }
int cd_unet_cuda_upload(cd_unet_cuda *g) { return NOCUDA; }
int cd_unet_cuda_forward(cd_unet_cuda *g, float *out, const float *x, const float *t,
                         const float *ctx, int B, int H, int W, int Nctx, cd_unet_act_fn acts,
                         void *act_ctx) { return NOCUDA; }
int cd_unet_cuda_forward_dev(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                             const float *d_ctx, int B, int H, int W, int Nctx) { return NOCUDA; }
int64_t cd_unet_cuda_weight_bytes(const cd_unet_cuda *g) { return 0; }
int64_t cd_unet_cuda_arena_bytes(const cd_unet_cuda *g) { return 0; }
void *cd_unet_cuda_stream(const cd_unet_cuda *g) { return NULL; }
#endif
