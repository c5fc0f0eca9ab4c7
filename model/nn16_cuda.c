// bf16-storage GPU layers (see model/nn16_cuda.h): model/nn.c and model/transformer.c's
// forward math with the bf16 CUDA twins, bf16 activations in and out of every layer.
#include <math.h>
#include "model/nn16_cuda.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"

uint16_t *nn_da16(nn_dev *g, int64_t n) { return (uint16_t *)nn_da(g, (n + 1) / 2); }

uint16_t *nn16_from_f32(nn_dev *g, const float *x, int64_t n) {
    uint16_t *b = nn_da16(g, n);
    if (b) cd_cuda_f32_to_bf16(b, x, n, g->st);
    return b;
}

// bf16 copy of a weight; a missing one (not uploaded, or bf16 mode off) fails the forward.
static const uint16_t *w16(nn_dev *g, const float *h) {
    if (!h) return NULL;
    const nn_dmap *e = NULL;
    for (int lo = 0, hi = g->nmap - 1; lo <= hi && !e;) {   // g->map is sorted by host pointer
        int m = (lo + hi) / 2;
        if (h < g->map[m].h) hi = m - 1;
        else if (h >= g->map[m].h + g->map[m].n) lo = m + 1;
        else e = &g->map[m];
    }
    const uint16_t *d = e && e->b ? e->b + (h - e->h) : NULL;
    if (!d && !g->err) {
        if (!e) cd_err("cuda: a weight of the model is not among the uploaded tensors (rebound without uploading again?)");
        else cd_err("cuda: bf16 forward without the weights' bf16 copies (nn_dev_set_bf16 not called)");
        g->err = 1;
    }
    return d;
}

#define DA16(p, n) uint16_t *p = nn_da16(g, (n)); if (!p) { nn_drelease(g, m0); return; }
#define DA32(p, n) float *p = nn_da(g, (n)); if (!p) { nn_drelease(g, m0); return; }

// ---- plain layers ----------------------------------------------------------------------------
void nn16_conv(nn_dev *g, const nn_conv *c, uint16_t *y, const uint16_t *x, int B, int H, int W) {
    int ho = (H + 2 * c->p - c->k) / c->s + 1, wo = (W + 2 * c->p - c->k) / c->s + 1;
    g->flops += 2.0 * B * c->cout * ho * wo * c->cin * c->k * c->k;
    const uint16_t *w = w16(g, c->w);
    if (g->err) return;
    cd_cuda_conv2d_fwd_bf16(y, x, w, nn_dw(g, c->b), B, c->cin, H, W, c->cout, c->k, c->s, c->p, g->st);
}

// y = x W^T + bias (bias may be NULL: ff.net.0.proj's bias goes into the GEGLU).
static void lin_w(nn_dev *g, const nn_lin *l, uint16_t *y, const uint16_t *x, int n, const float *bias) {
    g->flops += 2.0 * n * l->in * l->out;
    const uint16_t *w = w16(g, l->w);
    if (g->err) return;
    cd_cuda_linear_fwd_bf16_out(y, x, w, nn_dw(g, bias), n, l->in, l->out, g->st);
}
void nn16_lin(nn_dev *g, const nn_lin *l, uint16_t *y, const uint16_t *x, int n) { lin_w(g, l, y, x, n, l->b); }

// The same with an fp32 y (the attention fallback's q/k/v, the time projection).
static void lin32(nn_dev *g, const nn_lin *l, float *y, const uint16_t *x, int n) {
    g->flops += 2.0 * n * l->in * l->out;
    const uint16_t *w = w16(g, l->w);
    if (g->err) return;
    cd_cuda_linear_fwd_bf16(y, x, w, nn_dw(g, l->b), n, l->in, l->out, g->st);
}

void nn16_gn(nn_dev *g, const nn_gn *n, uint16_t *y, const uint16_t *x, int B, int hw, int silu) {
    if (g->err) return;   // statistics are not kept: no mean/rstd buffers
    cd_cuda_groupnorm_fwd_bf16(y, NULL, NULL, x, nn_dw(g, n->g), nn_dw(g, n->b), B, n->c, hw, n->groups, n->eps,
                               silu, g->st);
}
void nn16_ln(nn_dev *g, const nn_ln *l, uint16_t *y, const uint16_t *x, int n) {
    if (g->err) return;
    cd_cuda_layernorm_fwd_bf16(y, NULL, NULL, x, nn_dw(g, l->g), nn_dw(g, l->b), n, l->c, l->eps, g->st);
}

// ---- resnet ------------------------------------------------------------------------------------
// y = c2(silu(GN2(c1(silu(GN1(x))) + tp(emb)))) + (sc(x) or x).
void nn16_resnet(nn_dev *g, const nn_resnet *r, uint16_t *y, const uint16_t *x, const uint16_t *emb,
                 int B, int H, int W) {
    nn_dmark m0 = nn_dmark_get(g);
    int hw = H * W;
    int64_t nout = (int64_t)B * r->cout * hw;
    DA16(a, (int64_t)B * (r->cin > r->cout ? r->cin : r->cout) * hw);
    DA16(h, nout);
    nn16_gn(g, &r->n1, a, x, B, hw, 1);
    nn16_conv(g, &r->c1, h, a, B, H, W);
    if (r->has_temb && emb) {
        DA32(tb, (int64_t)B * r->cout);
        lin32(g, &r->tp, tb, emb, B);
        if (!g->err) cd_cuda_add_bias_nc_bf16(h, tb, B, r->cout, hw, g->st);
    }
    nn16_gn(g, &r->n2, a, h, B, hw, 1);
    nn16_conv(g, &r->c2, y, a, B, H, W);
    if (r->has_sc) nn16_conv(g, &r->sc, h, x, B, H, W);   // h is dead after GN2
    if (!g->err) cd_cuda_add_bf16(y, y, r->has_sc ? h : x, nout, g->st);
    nn_drelease(g, m0);
}

// ---- attention ----------------------------------------------------------------------------------
static int fused_dim(int d) { return d == 40 || d == 64 || d == 80 || d == 160; }

// Head dims without the fused kernel (tiny models, the VAE's one wide head): fp32 q/k/v from the
// bf16 inputs, the unfused fp32 attention, its output rounded to bf16 for the out-projection.
static void attn_unfused(nn_dev *g, const nn_attn *a, uint16_t *y, const uint16_t *x, const uint16_t *ctx, int B,
                         int N, int M) {
    nn_dmark m0 = nn_dmark_get(g);
    int C = a->heads * a->dim;
    int64_t nq = (int64_t)B * N * C, nk = (int64_t)B * M * C;
    DA32(Q, nq); DA32(K, nk); DA32(V, nk); DA32(O, nq);
    DA16(O16, nq);
    lin32(g, &a->q, Q, x, B * N);
    lin32(g, &a->k, K, ctx, B * M);
    lin32(g, &a->v, V, ctx, B * M);
    g->flops += 4.0 * B * a->heads * N * M * a->dim;
    if (!g->err &&
        cd_cuda_attention_naive_fwd(O, NULL, Q, K, V, B, a->heads, N, M, a->dim, 1.f / sqrtf((float)a->dim), g->st))
        g->err = 1;
    if (!g->err) cd_cuda_f32_to_bf16(O16, O, nq, g->st);
    nn16_lin(g, &a->o, y, O16, B * N);
    nn_drelease(g, m0);
}

void nn16_attn(nn_dev *g, const nn_attn *a, uint16_t *y, const uint16_t *x, const uint16_t *ctx, int B, int N,
               int M) {
    if (!ctx) { ctx = x; M = N; }
    if (!fused_dim(a->dim)) { attn_unfused(g, a, y, x, ctx, B, N, M); return; }
    nn_dmark m0 = nn_dmark_get(g);
    int C = a->heads * a->dim;
    int64_t nq = (int64_t)B * N * C, nk = (int64_t)B * M * C;
    DA16(Q, nq); DA16(K, nk); DA16(V, nk); DA16(O, nq);
    nn16_lin(g, &a->q, Q, x, B * N);
    nn16_lin(g, &a->k, K, ctx, B * M);
    nn16_lin(g, &a->v, V, ctx, B * M);
    g->flops += 4.0 * B * a->heads * N * M * a->dim;
    if (!g->err)
        cd_cuda_attention_fwd_bf16(O, 1, NULL, Q, K, V, B, a->heads, N, M, a->dim, 1.f / sqrtf((float)a->dim), g->st);
    nn16_lin(g, &a->o, y, O, B * N);
    nn_drelease(g, m0);
}

// ---- transformer ---------------------------------------------------------------------------------
// BasicTransformerBlock: out [B,N,C] from h0 [B,N,C] (out != h0).
static void tblock(nn_dev *g, const nn_tblock *t, uint16_t *out, const uint16_t *h0, const uint16_t *ctx, int B,
                   int N, int M) {
    nn_dmark m0 = nn_dmark_get(g);
    int C = t->n1.c;
    int64_t n = (int64_t)B * N, nc = n * C;
    DA16(h1, nc); DA16(h2, nc); DA16(l, nc); DA16(a, nc);
    DA16(f, n * 8 * C);
    DA16(gg, n * 4 * C);
    nn16_ln(g, &t->n1, l, h0, (int)n);
    nn16_attn(g, &t->a1, a, l, NULL, B, N, N);
    if (!g->err) cd_cuda_add_bf16(h1, h0, a, nc, g->st);
    nn16_ln(g, &t->n2, l, h1, (int)n);
    nn16_attn(g, &t->a2, a, l, ctx, B, N, M);
    if (!g->err) cd_cuda_add_bf16(h2, h1, a, nc, g->st);
    nn16_ln(g, &t->n3, l, h2, (int)n);
    lin_w(g, &t->ff1, f, l, (int)n, NULL);   // ff.net.0.proj's bias is folded into the GEGLU
    if (!g->err) cd_cuda_bias_geglu_fwd_bf16(gg, f, nn_dw(g, t->ff1.b), n, 4 * C, g->st);
    nn16_lin(g, &t->ff2, a, gg, (int)n);
    if (!g->err) cd_cuda_add_bf16(out, h2, a, nc, g->st);
    nn_drelease(g, m0);
}

void nn16_transformer(nn_dev *g, const nn_transformer *t, uint16_t *y, const uint16_t *x, const uint16_t *ctx,
                      int B, int H, int W, int M) {
    nn_dmark m0 = nn_dmark_get(g);
    int C = t->c, N = H * W;
    int64_t nc = (int64_t)B * N * C;
    DA16(a, nc); DA16(b, nc); DA16(h, nc); DA16(o, nc);
    nn16_gn(g, &t->norm, a, x, B, N, 0);
    if (t->linear) {
        if (!g->err) cd_cuda_nchw_to_nhwc_bf16(b, a, B, C, N, g->st);
        nn16_lin(g, &t->pin_l, h, b, B * N);
    } else {
        nn16_conv(g, &t->pin_c, b, a, B, H, W);
        if (!g->err) cd_cuda_nchw_to_nhwc_bf16(h, b, B, C, N, g->st);
    }
    for (int i = 0; i < t->ntb; i++) {
        tblock(g, &t->tb[i], o, h, ctx, B, N, M);
        uint16_t *s = h; h = o; o = s;
    }
    if (t->linear) {
        nn16_lin(g, &t->pout_l, a, h, B * N);
        if (!g->err) cd_cuda_nhwc_to_nchw_bf16(y, a, B, C, N, g->st);
    } else {
        if (!g->err) cd_cuda_nhwc_to_nchw_bf16(a, h, B, C, N, g->st);
        nn16_conv(g, &t->pout_c, y, a, B, H, W);
    }
    if (!g->err) cd_cuda_add_bf16(y, y, x, nc, g->st);
    nn_drelease(g, m0);
}
#else
typedef int nn16_cuda_empty;   // built without CUDA: nothing here (ISO C wants a declaration)
#endif
