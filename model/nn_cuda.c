// GPU layers and device context (see model/nn_cuda.h): model/nn.c and model/transformer.c's
// forward math with the CUDA twins.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "model/nn_cuda.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"

#define CHUNK_MIN ((size_t)256 << 20)
#define ALIGN(b) (((size_t)(b) + 255) & ~(size_t)255)

// ---- weights -----------------------------------------------------------------------------
static int cmp_map(const void *a, const void *b) {
    const float *x = ((const nn_dmap *)a)->h, *y = ((const nn_dmap *)b)->h;
    return x < y ? -1 : x > y;
}

int nn_dev_upload(nn_dev *g, cd_weights *ws, const char *what) {
    g->dropped = 0;
    size_t total = 0;
    for (int i = 0; i < ws->n; i++) total += ALIGN(ws->w[i].numel * sizeof(float));
    if (total > g->wbytes) {
        cd_cuda_free(g->wbuf);
        g->gen++;
        g->wbuf = cd_cuda_malloc(total ? total : 256);
        g->wbytes = g->wbuf ? total : 0;
        if (!g->wbuf) return cd_err("%s cuda: cannot allocate %.2f GiB for the weights", what, total / 1073741824.0);
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
            return cd_err("%s cuda: uploading '%s' failed", what, w->name);
        g->map[g->nmap++] = (nn_dmap){w->data, w->numel, d, NULL, w->ndim};
        off += ALIGN(w->numel * sizeof(float));
    }
    qsort(g->map, g->nmap, sizeof *g->map, cmp_map);
    if (cd_cuda_sync(g->st) || cd_cuda_status()) return cd_err("%s cuda: weight upload failed", what);
    if (g->bf16) { g->bf16 = 0; return nn_dev_set_bf16(g, 1); }   // fresh bf16 copies
    return 0;
}

// Every fp32 copy back from the host weights (after nn_dev_drop_f32), into one allocation.
static int restore_f32(nn_dev *g) {
    size_t total = 0;
    for (int i = 0; i < g->nmap; i++) total += ALIGN(g->map[i].n * sizeof(float));
    char *buf = cd_cuda_malloc(total ? total : 256);
    if (!buf) return cd_err("cuda: cannot allocate %.2f GiB for the fp32 weights", total / 1073741824.0);
    size_t off = 0;
    for (int i = 0; i < g->nmap; i++) {
        nn_dmap *e = &g->map[i];
        float *d = (float *)(buf + off);
        if (cd_cuda_memcpy_h2d(d, e->h, (size_t)e->n * sizeof(float), g->st)) { cd_cuda_free(buf); return -1; }
        e->d = d;
        off += ALIGN(e->n * sizeof(float));
    }
    if (cd_cuda_sync(g->st) || cd_cuda_status()) { cd_cuda_free(buf); return cd_err("cuda: restoring the fp32 weights failed"); }
    cd_cuda_free(g->wbuf);
    g->gen++;
    g->wbuf = buf;
    g->wbytes = total;
    g->dropped = 0;
    return 0;
}

// Kept in fp32: vectors (biases, norm parameters: fp32 inputs of the bf16 kernels) and what keep claims.
static int keeps_f32(const nn_dmap *e, int (*keep)(void *, const float *), void *ctx) {
    return e->ndim < 2 || (keep && keep(ctx, e->h));
}

int nn_dev_drop_f32(nn_dev *g, int (*keep)(void *ctx, const float *h), void *ctx) {
    if (!g->bf16 || g->dropped) return 0;
    size_t total = 0;
    for (int i = 0; i < g->nmap; i++)
        if (keeps_f32(&g->map[i], keep, ctx)) total += ALIGN(g->map[i].n * sizeof(float));
    char *buf = cd_cuda_malloc(total ? total : 256);
    if (!buf) return cd_err("cuda: cannot allocate %.2f GiB for the kept fp32 weights", total / 1073741824.0);
    size_t off = 0;
    for (int i = 0; i < g->nmap; i++) {
        nn_dmap *e = &g->map[i];
        if (keeps_f32(e, keep, ctx)) {
            float *d = (float *)(buf + off);
            if (cd_cuda_memcpy_d2d(d, e->d, (size_t)e->n * sizeof(float), g->st)) { cd_cuda_free(buf); return -1; }
            e->d = d;
            off += ALIGN(e->n * sizeof(float));
        } else {
            e->d = NULL;
        }
    }
    if (cd_cuda_sync(g->st) || cd_cuda_status()) { cd_cuda_free(buf); return cd_err("cuda: dropping the fp32 weights failed"); }
    cd_cuda_free(g->wbuf);
    g->gen++;
    g->wbuf = buf;
    g->wbytes = total;
    g->dropped = 1;
    return 0;
}

// bf16 copies of every uploaded tensor, converted on the device.
int nn_dev_set_bf16(nn_dev *g, int on) {
    if (!on && g->dropped) CD_TRY(restore_f32(g));
    if (!on || g->bf16) { g->bf16 = on; return 0; }
    size_t total = 0;
    for (int i = 0; i < g->nmap; i++) total += ALIGN(g->map[i].n * sizeof(uint16_t));
    if (total > g->wbytes16) {
        cd_cuda_free(g->wbuf16);
        g->gen++;
        g->wbuf16 = cd_cuda_malloc(total ? total : 256);
        g->wbytes16 = g->wbuf16 ? total : 0;
        if (!g->wbuf16) return cd_err("cuda: cannot allocate %.2f GiB for bf16 weights", total / 1073741824.0);
    }
    size_t off = 0;
    for (int i = 0; i < g->nmap; i++) {
        g->map[i].b = (uint16_t *)(g->wbuf16 + off);
        cd_cuda_f32_to_bf16(g->map[i].b, g->map[i].d, g->map[i].n, g->st);
        off += ALIGN(g->map[i].n * sizeof(uint16_t));
    }
    if (cd_cuda_sync(g->st) || cd_cuda_status()) return cd_err("cuda: bf16 weight conversion failed");
    g->bf16 = 1;
    g->fp16 = cd_cuda_get_fp16();
    return 0;
}

void nn_dev_free(nn_dev *g) {
    cd_cuda_sync(g->st);
    for (int j = 0; j < g->nc; j++) cd_cuda_free(g->c[j].base);
    free(g->c);
    cd_cuda_free(g->wbuf);
    cd_cuda_free(g->wbuf16);
    free(g->map);
    memset(g, 0, sizeof *g);
}

static const nn_dmap *find(nn_dev *g, const float *h) {
    int lo = 0, hi = g->nmap - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        const nn_dmap *e = &g->map[m];
        if (h < e->h) hi = m - 1;
        else if (h >= e->h + e->n) lo = m + 1;
        else return e;
    }
    if (!g->err) cd_err("cuda: a weight of the model is not among the uploaded tensors (rebound without uploading again?)");
    g->err = 1;
    return NULL;
}
const float *nn_dw(nn_dev *g, const float *h) {
    const nn_dmap *e = h ? find(g, h) : NULL;
    if (e && !e->d) {   // nn_dev_drop_f32 freed it: an fp32 op on a bf16-only weight
        if (!g->err) cd_err("cuda: an fp32 op needs a weight whose fp32 copy was dropped (bf16 mode keeps only bf16 copies of frozen weights)");
        g->err = 1;
        return NULL;
    }
    return e ? e->d + (h - e->h) : NULL;
}
// bf16 copy of a weight (bf16 mode only).
static const uint16_t *dw16(nn_dev *g, const float *h) {
    const nn_dmap *e = h ? find(g, h) : NULL;
    return e && e->b ? e->b + (h - e->h) : NULL;
}

// ---- arena -------------------------------------------------------------------------------
float *nn_da(nn_dev *g, int64_t n) {
    size_t bytes = ALIGN((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (g->err) return NULL;
    for (;;) {
        int first_free = g->nc;
        if (g->cur < g->nc) {
            nn_dchunk *c = &g->c[g->cur];
            if (c->size - c->used >= bytes) { float *p = (float *)(c->base + c->used); c->used += bytes; return p; }
            if (g->cur + 1 < g->nc && g->c[g->cur + 1].size >= bytes) { g->cur++; g->c[g->cur].used = 0; continue; }
            first_free = c->used == 0 ? g->cur : g->cur + 1;
        }
        // the chunks from first_free on hold nothing live: replace them by one that fits
        for (int j = first_free; j < g->nc; j++) cd_cuda_free(g->c[j].base);
        g->gen++;   // chunks freed or added: graphs captured over the old ones are stale
        g->nc = first_free;
        g->c = cd_realloc(g->c, (g->nc + 1) * sizeof *g->c);
        size_t sz = bytes > CHUNK_MIN ? bytes : CHUNK_MIN;
        char *b = cd_cuda_malloc(sz);
        if (!b) { g->err = 1; cd_err("cuda: out of device memory (activations, %zu MiB more)", sz >> 20); return NULL; }
        g->c[g->nc++] = (nn_dchunk){b, sz, 0};
        g->cur = g->nc - 1;
    }
}
nn_dmark nn_dmark_get(nn_dev *g) { return (nn_dmark){g->cur, g->cur < g->nc ? g->c[g->cur].used : 0}; }
void nn_drelease(nn_dev *g, nn_dmark m) {
    g->cur = m.c;
    if (m.c < g->nc) g->c[m.c].used = m.used;
    for (int j = m.c + 1; j < g->nc; j++) g->c[j].used = 0;
}
int nn_dev_format_ok(const nn_dev *g) {
    if (!g->bf16 || g->fp16 == cd_cuda_get_fp16()) return 0;
    return cd_err("cuda: the 16-bit weights were made as %s but the process now computes in %s "
                  "(cd_precision_apply after the upload)", g->fp16 ? "fp16" : "bf16", g->fp16 ? "bf16" : "fp16");
}

void nn_dev_begin(nn_dev *g) {
    nn_drelease(g, (nn_dmark){0, 0});
    g->err = 0;
    g->flops = 0;
    if (nn_dev_format_ok(g)) g->err = 1;
}
int64_t nn_dev_arena_bytes(const nn_dev *g) {
    int64_t s = 0;
    for (int j = 0; j < g->nc; j++) s += (int64_t)g->c[j].size;
    return s;
}

#define DA(p, n) float *p = nn_da(g, (n)); if (!p) { nn_drelease(g, m0); return; }

// ---- layers ------------------------------------------------------------------------------
// n fp32 values -> a bf16 arena copy (NULL on failure)
static uint16_t *to_bf16(nn_dev *g, const float *x, int64_t n) {
    uint16_t *b = (uint16_t *)nn_da(g, (n + 1) / 2);
    if (b) cd_cuda_f32_to_bf16(b, x, n, g->st);
    return b;
}

void nn_dconv(nn_dev *g, const nn_conv *c, float *y, const float *x, int B, int H, int W) {
    int ho = (H + 2 * c->p - c->k) / c->s + 1, wo = (W + 2 * c->p - c->k) / c->s + 1;
    g->flops += 2.0 * B * c->cout * ho * wo * c->cin * c->k * c->k;
    if (!g->bf16) {
        cd_cuda_conv2d_fwd(y, x, nn_dw(g, c->w), nn_dw(g, c->b), B, c->cin, H, W, c->cout, c->k, c->s, c->p, g->st);
        return;
    }
    nn_dmark m0 = nn_dmark_get(g);
    int64_t ny = (int64_t)B * c->cout * ho * wo;
    uint16_t *xb = to_bf16(g, x, (int64_t)B * c->cin * H * W), *yb = (uint16_t *)nn_da(g, (ny + 1) / 2);
    if (yb) {
        cd_cuda_conv2d_fwd_bf16(yb, xb, dw16(g, c->w), nn_dw(g, c->b), B, c->cin, H, W, c->cout, c->k, c->s, c->p, g->st);
        cd_cuda_bf16_to_f32(y, yb, ny, g->st);
    }
    nn_drelease(g, m0);
}
// y = x W^T (+ bias): fp32, or bf16 inputs with fp32 y.
static void lin_w(nn_dev *g, const nn_lin *l, float *y, const float *x, int n, const float *bias) {
    g->flops += 2.0 * n * l->in * l->out;
    if (!g->bf16) {
        cd_cuda_linear_fwd(y, x, nn_dw(g, l->w), nn_dw(g, bias), n, l->in, l->out, g->st);
        return;
    }
    nn_dmark m0 = nn_dmark_get(g);
    uint16_t *xb = to_bf16(g, x, (int64_t)n * l->in);
    if (xb) cd_cuda_linear_fwd_bf16(y, xb, dw16(g, l->w), nn_dw(g, bias), n, l->in, l->out, g->st);
    nn_drelease(g, m0);
}
void nn_dlin(nn_dev *g, const nn_lin *l, float *y, const float *x, int n) { lin_w(g, l, y, x, n, l->b); }
void nn_dgn(nn_dev *g, const nn_gn *n, float *y, const float *x, int B, int hw, int silu) {
    nn_dmark m0 = nn_dmark_get(g);
    DA(mr, 2 * B * n->groups);
    cd_cuda_groupnorm_fwd(y, mr, mr + B * n->groups, x, nn_dw(g, n->g), nn_dw(g, n->b), B, n->c, hw,
                          n->groups, n->eps, silu, g->st);
    nn_drelease(g, m0);
}
void nn_dln(nn_dev *g, const nn_ln *l, float *y, const float *x, int n) {
    nn_dmark m0 = nn_dmark_get(g);
    DA(mr, 2 * (int64_t)n);
    cd_cuda_layernorm_fwd(y, mr, mr + n, x, nn_dw(g, l->g), nn_dw(g, l->b), n, l->c, l->eps, g->st);
    nn_drelease(g, m0);
}

void nn_dresnet(nn_dev *g, const nn_resnet *r, float *y, const float *x, const float *emb,
                int B, int H, int W) {
    nn_dmark m0 = nn_dmark_get(g);
    int hw = H * W;
    int64_t nout = (int64_t)B * r->cout * hw;
    DA(a, (int64_t)B * (r->cin > r->cout ? r->cin : r->cout) * hw);
    DA(h, nout);
    nn_dgn(g, &r->n1, a, x, B, hw, 1);
    nn_dconv(g, &r->c1, h, a, B, H, W);
    if (r->has_temb && emb) {
        DA(tb, (int64_t)B * r->cout);
        nn_dlin(g, &r->tp, tb, emb, B);
        cd_cuda_add_bias_nc(h, tb, B, r->cout, hw, g->st);
    }
    nn_dgn(g, &r->n2, a, h, B, hw, 1);
    nn_dconv(g, &r->c2, y, a, B, H, W);
    if (r->has_sc) {
        DA(s, nout);
        nn_dconv(g, &r->sc, s, x, B, H, W);
        cd_cuda_acc(y, s, nout, g->st);
    } else {
        cd_cuda_acc(y, x, nout, g->st);
    }
    nn_drelease(g, m0);
}

static int fused_dim(int d) { return d == 40 || d == 64 || d == 80 || d == 160; }

// bf16 attention: q, k, v projections straight to bf16, the tensor-core kernel, bf16 out.
static void attn_bf16(nn_dev *g, const nn_attn *a, float *y, const float *x, const float *ctx,
                      int B, int N, int M) {
    nn_dmark m0 = nn_dmark_get(g);
    int C = a->heads * a->dim;
    int64_t nq = (int64_t)B * N * C, nk = (int64_t)B * M * C;
    uint16_t *xb = to_bf16(g, x, (int64_t)B * N * a->q.in);
    uint16_t *cb = ctx == x ? xb : to_bf16(g, ctx, (int64_t)B * M * a->k.in);
    uint16_t *Q = (uint16_t *)nn_da(g, (nq + 1) / 2), *K = (uint16_t *)nn_da(g, (nk + 1) / 2);
    uint16_t *V = (uint16_t *)nn_da(g, (nk + 1) / 2), *O = (uint16_t *)nn_da(g, (nq + 1) / 2);
    if (!O || !cb) { nn_drelease(g, m0); return; }
    g->flops += 2.0 * (B * N) * a->q.in * C + 4.0 * (B * M) * a->k.in * C + 4.0 * B * a->heads * N * M * a->dim;
    cd_cuda_linear_fwd_bf16_out(Q, xb, dw16(g, a->q.w), nn_dw(g, a->q.b), B * N, a->q.in, C, g->st);
    cd_cuda_linear_fwd_bf16_out(K, cb, dw16(g, a->k.w), nn_dw(g, a->k.b), B * M, a->k.in, C, g->st);
    cd_cuda_linear_fwd_bf16_out(V, cb, dw16(g, a->v.w), nn_dw(g, a->v.b), B * M, a->v.in, C, g->st);
    cd_cuda_attention_fwd_bf16(O, 1, NULL, Q, K, V, B, a->heads, N, M, a->dim, 1.f / sqrtf((float)a->dim), g->st);
    g->flops += 2.0 * (B * N) * C * a->o.out;
    cd_cuda_linear_fwd_bf16(y, O, dw16(g, a->o.w), nn_dw(g, a->o.b), B * N, C, a->o.out, g->st);
    nn_drelease(g, m0);
}

void nn_dattn(nn_dev *g, const nn_attn *a, float *y, const float *x, const float *ctx, int B,
              int N, int M) {
    if (!ctx) { ctx = x; M = N; }
    if (g->bf16 && fused_dim(a->dim)) { attn_bf16(g, a, y, x, ctx, B, N, M); return; }
    nn_dmark m0 = nn_dmark_get(g);
    int C = a->heads * a->dim;
    DA(Q, (int64_t)B * N * C);
    DA(K, (int64_t)B * M * C);
    DA(V, (int64_t)B * M * C);
    DA(O, (int64_t)B * N * C);
    nn_dlin(g, &a->q, Q, x, B * N);
    nn_dlin(g, &a->k, K, ctx, B * M);
    nn_dlin(g, &a->v, V, ctx, B * M);
    float scale = 1.f / sqrtf((float)a->dim);
    g->flops += 4.0 * B * a->heads * N * M * a->dim;
    // the fused kernel's head dims; others (tiny models, the VAE's one 512-wide head) unfused
    if (fused_dim(a->dim)) cd_cuda_attention_fwd(O, NULL, Q, K, V, B, a->heads, N, M, a->dim, scale, g->st);
    else if (cd_cuda_attention_naive_fwd(O, NULL, Q, K, V, B, a->heads, N, M, a->dim, scale, g->st)) g->err = 1;
    nn_dlin(g, &a->o, y, O, B * N);
    nn_drelease(g, m0);
}

// BasicTransformerBlock: out [B,N,C] from h0 [B,N,C].
static void tblock(nn_dev *g, const nn_tblock *t, float *out, const float *h0, const float *ctx,
                   int B, int N, int M) {
    nn_dmark m0 = nn_dmark_get(g);
    int C = t->n1.c;
    int64_t n = (int64_t)B * N, nc = n * C;
    DA(h1, nc); DA(h2, nc); DA(l, nc); DA(a, nc);
    DA(f, n * 8 * C);
    DA(gg, n * 4 * C);
    nn_dln(g, &t->n1, l, h0, (int)n);
    nn_dattn(g, &t->a1, a, l, NULL, B, N, N);
    cd_cuda_add(h1, h0, a, nc, g->st);
    nn_dln(g, &t->n2, l, h1, (int)n);
    nn_dattn(g, &t->a2, a, l, ctx, B, N, M);
    cd_cuda_add(h2, h1, a, nc, g->st);
    nn_dln(g, &t->n3, l, h2, (int)n);
    lin_w(g, &t->ff1, f, l, (int)n, NULL);   // ff.net.0.proj's bias is folded into the GEGLU
    cd_cuda_bias_geglu_fwd(gg, f, nn_dw(g, t->ff1.b), n, 4 * C, g->st);
    nn_dlin(g, &t->ff2, a, gg, (int)n);
    cd_cuda_add(out, h2, a, nc, g->st);
    nn_drelease(g, m0);
}

// Transformer2DModel: y [B,C,H,W] = x + proj_out(blocks(proj_in(GN(x)))).
void nn_dtransformer(nn_dev *g, const nn_transformer *t, float *y, const float *x,
                     const float *ctx, int B, int H, int W, int M) {
    nn_dmark m0 = nn_dmark_get(g);
    int C = t->c, N = H * W;
    int64_t nc = (int64_t)B * N * C;
    DA(a, nc); DA(b, nc); DA(h, nc); DA(o, nc);
    nn_dgn(g, &t->norm, a, x, B, N, 0);
    if (t->linear) {
        cd_cuda_nchw_to_nhwc(b, a, B, C, N, g->st);
        nn_dlin(g, &t->pin_l, h, b, B * N);
    } else {
        nn_dconv(g, &t->pin_c, b, a, B, H, W);
        cd_cuda_nchw_to_nhwc(h, b, B, C, N, g->st);
    }
    for (int i = 0; i < t->ntb; i++) {
        tblock(g, &t->tb[i], o, h, ctx, B, N, M);
        float *s = h; h = o; o = s;
    }
    if (t->linear) {
        nn_dlin(g, &t->pout_l, a, h, B * N);
        cd_cuda_nhwc_to_nchw(y, a, B, C, N, g->st);
    } else {
        cd_cuda_nhwc_to_nchw(a, h, B, C, N, g->st);
        nn_dconv(g, &t->pout_c, y, a, B, H, W);
    }
    cd_cuda_acc(y, x, nc, g->st);
    nn_drelease(g, m0);
}
#else
typedef int nn_cuda_empty;   // built without CUDA: nothing here (ISO C wants a declaration)
#endif
