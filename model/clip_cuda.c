// CLIP text encoder and vision tower on the GPU (see model/clip_cuda.h): model/clip_text.c,
// clip_layer.c, clip_backward.c and clip_vision.c's math with the CUDA twins, on model/nn_cuda.c's
// device context (weights uploaded once from a host-pointer map, LIFO activation arena).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/clip_cuda.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#include "model/nn_cuda.h"
#include "model/clip_internal.h"

// ---- the tensors of a tower as a cd_weights list (pointers into the model, not owned) -------
static void wl_add(cd_weights *ws, const float *p, int64_t n, const char *name) {
    if (!p) return;
    if (ws->n == ws->cap) {
        ws->cap = ws->cap ? 2 * ws->cap : 64;
        ws->w = cd_realloc(ws->w, ws->cap * sizeof *ws->w);
    }
    cd_weight *w = &ws->w[ws->n++];
    memset(w, 0, sizeof *w);
    w->name = cd_strdup(name);
    w->ndim = 1;
    w->shape[0] = w->numel = n;
    w->data = (float *)p;
}

static void wl_layers(cd_weights *ws, const char *pre, const cd_clip_layer *L, int nl, int64_t C, int64_t I) {
    char nm[160];
    for (int i = 0; i < nl; i++) {
        const cd_clip_layer *l = &L[i];
        struct { const float *p; int64_t n; const char *s; } t[] = {
            {l->ln1_g, C, "layer_norm1.weight"}, {l->ln1_b, C, "layer_norm1.bias"},
            {l->q_w, C * C, "self_attn.q_proj.weight"}, {l->q_b, C, "self_attn.q_proj.bias"},
            {l->k_w, C * C, "self_attn.k_proj.weight"}, {l->k_b, C, "self_attn.k_proj.bias"},
            {l->v_w, C * C, "self_attn.v_proj.weight"}, {l->v_b, C, "self_attn.v_proj.bias"},
            {l->o_w, C * C, "self_attn.out_proj.weight"}, {l->o_b, C, "self_attn.out_proj.bias"},
            {l->ln2_g, C, "layer_norm2.weight"}, {l->ln2_b, C, "layer_norm2.bias"},
            {l->fc1_w, I * C, "mlp.fc1.weight"}, {l->fc1_b, I, "mlp.fc1.bias"},
            {l->fc2_w, C * I, "mlp.fc2.weight"}, {l->fc2_b, C, "mlp.fc2.bias"},
        };
        for (size_t j = 0; j < sizeof t / sizeof t[0]; j++) {
            snprintf(nm, sizeof nm, "%s.encoder.layers.%d.%s", pre, i, t[j].s);
            wl_add(ws, t[j].p, t[j].n, nm);
        }
    }
}

static void wl_free(cd_weights *ws) {
    for (int i = 0; i < ws->n; i++) free(ws->w[i].name);
    free(ws->w);
    memset(ws, 0, sizeof *ws);
}

// ---- a tower: device context, layers, dims ----------------------------------------------------
typedef struct {
    nn_dev d;
    cd_weights wl;
    const cd_clip_layer *L;
    int nl;
    clip_dims dm;          // B and L set per call
} tower;

// Activations of one layer kept for backward (device).
typedef struct {
    float *mean1, *rstd1, *q, *k, *v, *att, *lse, *xmid, *mean2, *rstd2, *h1;
} lsave;

static int have_gpu(const char *what) {
    char why[256] = "";
    return cd_cuda_available(why, sizeof why) ? 0 : cd_err("%s: no usable GPU: %s", what, why);
}

static int tower_init(tower *tw, const char *what, void *stream) {
    tw->d.st = stream;
    return nn_dev_upload(&tw->d, &tw->wl, what);
}

static void tower_free(tower *tw) {
    nn_dev_free(&tw->d);
    wl_free(&tw->wl);
}

static void dfail(nn_dev *g, const char *msg) {
    if (!g->err) cd_err("clip cuda: %s", msg);
    g->err = 1;
}

// bf16 copy of weight h (bf16 mode).
static const uint16_t *w16(nn_dev *g, const float *h) {
    int lo = 0, hi = g->nmap - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        const nn_dmap *e = &g->map[m];
        if (h < e->h) hi = m - 1;
        else if (h >= e->h + e->n) lo = m + 1;
        else return e->b ? e->b + (h - e->h) : NULL;
    }
    return NULL;
}

// An arena bf16 copy of x[n] in bf16 mode; NULL in fp32 mode (or on failure: g->err).
static uint16_t *to16(nn_dev *g, const float *x, int64_t n) {
    if (!g->bf16 || g->err) return NULL;
    uint16_t *b = (uint16_t *)nn_da(g, (n + 1) / 2);
    if (b) cd_cuda_f32_to_bf16(b, x, n, g->st);
    return b;
}

static float *zeros(nn_dev *g, int64_t n) {
    float *z = nn_da(g, n);
    if (z && cd_cuda_memset(z, 0, (size_t)n * sizeof(float), g->st)) g->err = 1;
    return g->err ? NULL : z;
}

// y[n,out] = x[n,in] W^T + b; x16: x's bf16 copy in bf16 mode.
static void lin(nn_dev *g, const float *W, const float *b, float *y, const float *x, const uint16_t *x16,
                int n, int in, int out) {
    if (g->err) return;
    g->flops += 2.0 * n * in * out;
    if (!g->bf16) { cd_cuda_linear_fwd(y, x, nn_dw(g, W), nn_dw(g, b), n, in, out, g->st); return; }
    const uint16_t *w = w16(g, W);
    if (!w || !x16) { dfail(g, "a weight has no bf16 copy"); return; }
    cd_cuda_linear_fwd_bf16(y, x16, w, nn_dw(g, b), n, in, out, g->st);
}

// dx[n,in] = (acc ? dx : 0) + dy[n,out] W[out,in] (frozen W: no weight gradient).
static void lin_bwd(nn_dev *g, const float *W, float *dx, const float *dy, const uint16_t *dy16, int n, int in,
                    int out, int acc) {
    if (g->err) return;
    g->flops += 2.0 * n * in * out;
    float beta = acc ? 1.f : 0.f;
    if (!g->bf16) { cd_cuda_gemm(0, 0, n, in, out, 1.f, dy, out, nn_dw(g, W), in, beta, dx, in, g->st); return; }
    const uint16_t *w = w16(g, W);
    if (!w || !dy16) { dfail(g, "a weight has no bf16 copy"); return; }
    cd_cuda_gemm_bf16(0, 0, n, in, out, 1.f, dy16, out, w, in, beta, dx, in, 0, g->st);
}

static void ln_fwd(nn_dev *g, float *y, float *mean, float *rstd, const float *x, const float *gam,
                   const float *bet, int n, int c, float eps) {
    if (!g->err) cd_cuda_layernorm_fwd(y, mean, rstd, x, nn_dw(g, gam), nn_dw(g, bet), n, c, eps, g->st);
}

// ---- attention --------------------------------------------------------------------------------
// The fused kernels' head dims; others are zero-padded to the next one.
static int pad_dim(int D) { return D <= 40 ? 40 : D <= 64 ? 64 : D <= 80 ? 80 : D <= 160 ? 160 : -1; }

// x [rows, D] -> y [rows, Dp], zero lanes D..Dp (z: rows*(Dp-D) zeros).
static float *pad(nn_dev *g, const float *x, const float *z, int rows, int D, int Dp) {
    float *y = nn_da(g, (int64_t)rows * Dp);
    if (y) cd_cuda_concat_c(y, x, z, rows, D, Dp - D, 1, g->st);
    return y;
}

// o [B,N,H*Dp] (fp32), lse [B,H,N] from q, k, v [B,N,H*Dp] (Dp a fused kernel's head dim). bf16
// mode: the tensor-core kernels on 16-bit copies of q, k, v (the text model's causal one too).
static void attn_run(nn_dev *g, const clip_dims *d, float *o, float *lse, const float *q, const float *k,
                     const float *v, int Dp, float scale) {
    int B = d->B, H = d->H, L = d->L;
    if (g->bf16) {
        int64_t nq = (int64_t)B * L * H * Dp;
        uint16_t *q16 = to16(g, q, nq), *k16 = to16(g, k, nq), *v16 = to16(g, v, nq);
        if (!v16) return;
        if (d->causal) cd_cuda_attention_causal_fwd_bf16(o, 0, lse, q16, k16, v16, B, H, L, Dp, scale, g->st);
        else cd_cuda_attention_fwd_bf16(o, 0, lse, q16, k16, v16, B, H, L, L, Dp, scale, g->st);
    } else if (d->causal) {
        cd_cuda_attention_causal_fwd(o, lse, q, k, v, B, H, L, Dp, scale, g->st);
    } else {
        cd_cuda_attention_fwd(o, lse, q, k, v, B, H, L, L, Dp, scale, g->st);
    }
}

// o [B,N,H*D] (lse [B,H,N]) = self-attention of q, k, v [B,N,H*D]; causal as d says.
static void attn_fwd(nn_dev *g, const clip_dims *d, float *o, float *lse, const float *q, const float *k,
                     const float *v) {
    int D = d->C / d->H, Dp = pad_dim(D), rows = d->B * d->L * d->H;
    float scale = 1.f / sqrtf((float)D);
    if (g->err) return;
    if (Dp < 0) { dfail(g, "attention head dim above 160 is not supported"); return; }
    g->flops += (d->causal ? 2.0 : 4.0) * d->B * d->H * (double)d->L * d->L * D;
    nn_dmark m0 = nn_dmark_get(g);
    if (Dp == D) {
        attn_run(g, d, o, lse, q, k, v, D, scale);
    } else {
        float *z = zeros(g, (int64_t)rows * (Dp - D));
        float *qp = z ? pad(g, q, z, rows, D, Dp) : NULL, *kp = qp ? pad(g, k, z, rows, D, Dp) : NULL;
        float *vp = kp ? pad(g, v, z, rows, D, Dp) : NULL, *op = nn_da(g, (int64_t)rows * Dp);
        if (vp && op) {
            attn_run(g, d, op, lse, qp, kp, vp, Dp, scale);
            if (!g->err) cd_cuda_split_c(o, NULL, op, rows, D, Dp - D, 1, g->st);
        }
    }
    nn_drelease(g, m0);
}

// gq, gk, gv [B,N,H*Dp] (overwritten) from dy and the forward's q, k, v, o [B,N,H*Dp] and lse.
// bf16 mode: the tensor-core backward on 16-bit copies, the ones attn_run's forward rounded
// (the same q, k, v bits its lse came from; o rounded as a 16-bit forward output would be).
static void attn_bwd_run(nn_dev *g, const clip_dims *d, float *gq, float *gk, float *gv, const float *dy,
                         const float *q, const float *k, const float *v, const float *o, const float *lse, int Dp,
                         float scale) {
    int B = d->B, H = d->H, L = d->L;
    if (g->bf16) {
        int64_t nq = (int64_t)B * L * H * Dp;
        uint16_t *q16 = to16(g, q, nq), *k16 = to16(g, k, nq), *v16 = to16(g, v, nq);
        uint16_t *o16 = to16(g, o, nq), *dy16 = to16(g, dy, nq);
        if (!dy16) return;
        if (d->causal)
            cd_cuda_attention_causal_bwd_bf16(gq, gk, gv, dy16, q16, k16, v16, o16, lse, B, H, L, Dp, scale, g->st);
        else
            cd_cuda_attention_bwd_bf16(gq, gk, gv, dy16, q16, k16, v16, o16, lse, B, H, L, L, Dp, scale, 0, g->st);
    } else if (d->causal) {
        cd_cuda_attention_causal_bwd(gq, gk, gv, dy, q, k, v, o, lse, B, H, L, Dp, scale, g->st);
    } else {
        cd_cuda_attention_bwd(gq, gk, gv, dy, q, k, v, o, lse, B, H, L, L, Dp, scale, 0, g->st);
    }
}

// dq, dk, dv [B,N,H*D] (overwritten) from dout and the saved q, k, v, att, lse.
static void attn_bwd(nn_dev *g, const clip_dims *d, float *dq, float *dk, float *dv, const float *dout,
                     const lsave *s) {
    int D = d->C / d->H, Dp = pad_dim(D), rows = d->B * d->L * d->H;
    float scale = 1.f / sqrtf((float)D);
    if (g->err) return;
    if (Dp < 0) { dfail(g, "attention head dim above 160 is not supported"); return; }
    g->flops += 2.5 * (d->causal ? 2.0 : 4.0) * d->B * d->H * (double)d->L * d->L * D;
    nn_dmark m0 = nn_dmark_get(g);
    const float *q = s->q, *k = s->k, *v = s->v, *o = s->att, *dy = dout;
    float *gq = dq, *gk = dk, *gv = dv;
    if (Dp != D) {
        float *z = zeros(g, (int64_t)rows * (Dp - D));
        if (!z) { nn_drelease(g, m0); return; }
        q = pad(g, q, z, rows, D, Dp); k = pad(g, k, z, rows, D, Dp); v = pad(g, v, z, rows, D, Dp);
        o = pad(g, o, z, rows, D, Dp); dy = pad(g, dy, z, rows, D, Dp);
        gq = nn_da(g, (int64_t)rows * Dp); gk = nn_da(g, (int64_t)rows * Dp); gv = nn_da(g, (int64_t)rows * Dp);
        if (!gv) { nn_drelease(g, m0); return; }
    }
    attn_bwd_run(g, d, gq, gk, gv, dy, q, k, v, o, s->lse, Dp, scale);
    if (Dp != D && !g->err) {
        cd_cuda_split_c(dq, NULL, gq, rows, D, Dp - D, 1, g->st);
        cd_cuda_split_c(dk, NULL, gk, rows, D, Dp - D, 1, g->st);
        cd_cuda_split_c(dv, NULL, gv, rows, D, Dp - D, 1, g->st);
    }
    nn_drelease(g, m0);
}

// ---- one encoder layer ------------------------------------------------------------------------
static int lsave_alloc(nn_dev *g, lsave *s, const clip_dims *d) {
    int64_t n = (int64_t)d->B * d->L, C = d->C;
    s->mean1 = nn_da(g, n); s->rstd1 = nn_da(g, n);
    s->q = nn_da(g, n * C); s->k = nn_da(g, n * C); s->v = nn_da(g, n * C); s->att = nn_da(g, n * C);
    s->lse = nn_da(g, n * d->H);
    s->xmid = nn_da(g, n * C);
    s->mean2 = nn_da(g, n); s->rstd2 = nn_da(g, n);
    s->h1 = nn_da(g, n * d->I);
    return g->err ? -1 : 0;
}

static void act_fwd(nn_dev *g, cd_clip_act a, float *y, const float *x, int64_t n) {
    if (g->err) return;
    if (a == CD_ACT_GELU) cd_cuda_gelu_fwd(y, x, n, g->st);
    else cd_cuda_quick_gelu_fwd(y, x, n, g->st);
}

// xo [n,C] = x + o_proj(attn(ln1(x))) then + fc2(act(fc1(ln2(.)))) (clip_layer_fwd); xo != x.
// sv: where backward's activations go (NULL: arena temporaries).
static void layer_fwd(tower *tw, const cd_clip_layer *l, float *xo, const float *x, const lsave *sv) {
    nn_dev *g = &tw->d;
    const clip_dims *d = &tw->dm;
    int n = d->B * d->L, C = d->C, I = d->I;
    nn_dmark m0 = nn_dmark_get(g);
    lsave t;
    if (sv) t = *sv;
    else if (lsave_alloc(g, &t, d)) { nn_drelease(g, m0); return; }
    float *h = nn_da(g, (int64_t)n * C), *a = nn_da(g, (int64_t)n * I);
    if (!a) { nn_drelease(g, m0); return; }
    ln_fwd(g, h, t.mean1, t.rstd1, x, l->ln1_g, l->ln1_b, n, C, d->eps);
    uint16_t *h16 = to16(g, h, (int64_t)n * C);
    lin(g, l->q_w, l->q_b, t.q, h, h16, n, C, C);
    lin(g, l->k_w, l->k_b, t.k, h, h16, n, C, C);
    lin(g, l->v_w, l->v_b, t.v, h, h16, n, C, C);
    attn_fwd(g, d, t.att, t.lse, t.q, t.k, t.v);
    uint16_t *a16 = to16(g, t.att, (int64_t)n * C);
    lin(g, l->o_w, l->o_b, h, t.att, a16, n, C, C);
    if (!g->err) cd_cuda_add(t.xmid, x, h, (int64_t)n * C, g->st);
    ln_fwd(g, h, t.mean2, t.rstd2, t.xmid, l->ln2_g, l->ln2_b, n, C, d->eps);
    h16 = to16(g, h, (int64_t)n * C);
    lin(g, l->fc1_w, l->fc1_b, t.h1, h, h16, n, C, I);
    act_fwd(g, d->act, a, t.h1, (int64_t)n * I);
    a16 = to16(g, a, (int64_t)n * I);
    lin(g, l->fc2_w, l->fc2_b, h, a, a16, n, I, C);
    if (!g->err) cd_cuda_add(xo, t.xmid, h, (int64_t)n * C, g->st);
    nn_drelease(g, m0);
}

// dx [n,C]: d(layer output) in, d(layer input) out (clip_layer_bwd); xin: the layer's input.
static void layer_bwd(tower *tw, const cd_clip_layer *l, float *dx, const float *xin, const lsave *s) {
    nn_dev *g = &tw->d;
    const clip_dims *d = &tw->dm;
    int n = d->B * d->L, C = d->C, I = d->I;
    int64_t nc = (int64_t)n * C;
    nn_dmark m0 = nn_dmark_get(g);
    float *dg = nn_da(g, (int64_t)n * I), *t = nn_da(g, nc), *t2 = nn_da(g, nc);
    float *dq = nn_da(g, nc), *dk = nn_da(g, nc), *dv = nn_da(g, nc);
    if (!dv) { nn_drelease(g, m0); return; }
    // MLP branch: out = xmid + fc2(act(fc1(ln2(xmid))))
    lin_bwd(g, l->fc2_w, dg, dx, to16(g, dx, nc), n, I, C, 0);
    if (!g->err) {
        if (d->act == CD_ACT_GELU) cd_cuda_gelu_bwd(dg, dg, s->h1, (int64_t)n * I, g->st);
        else cd_cuda_quick_gelu_bwd(dg, dg, s->h1, (int64_t)n * I, g->st);
    }
    lin_bwd(g, l->fc1_w, t, dg, to16(g, dg, (int64_t)n * I), n, C, I, 0);
    if (g->err) { nn_drelease(g, m0); return; }
    cd_cuda_layernorm_bwd(t2, NULL, NULL, t, s->xmid, s->mean2, s->rstd2, nn_dw(g, l->ln2_g), n, C, g->st);
    cd_cuda_acc(dx, t2, nc, g->st);                      // dx = d(xmid)
    // attention branch: xmid = xin + o_proj(attn(q, k, v)), q/k/v = proj(ln1(xin))
    lin_bwd(g, l->o_w, t, dx, to16(g, dx, nc), n, C, C, 0);
    attn_bwd(g, d, dq, dk, dv, t, s);
    lin_bwd(g, l->q_w, t, dq, to16(g, dq, nc), n, C, C, 0);   // d(ln1 output)
    lin_bwd(g, l->k_w, t, dk, to16(g, dk, nc), n, C, C, 1);
    lin_bwd(g, l->v_w, t, dv, to16(g, dv, nc), n, C, C, 1);
    if (!g->err) {
        cd_cuda_layernorm_bwd(t2, NULL, NULL, t, xin, s->mean1, s->rstd1, nn_dw(g, l->ln1_g), n, C, g->st);
        cd_cuda_acc(dx, t2, nc, g->st);
    }
    nn_drelease(g, m0);
}

// ---- text encoder -------------------------------------------------------------------------------
struct cd_clip_text_cuda {
    tower tw;
    cd_clip_text *t;
    int n_tok, C;
    float *tok;            // device token table [n_tok, C] (own allocation, fp32)
    // the last forward
    int B, L, saved;
    int32_t *ids;          // host [B*L]
    float *xs;             // train: residual stream entering each layer and the last [(nl+1), n, C]
    lsave *sv;             // [nl]
    float *meanf, *rstdf;  // final layer norm statistics [n]
};

int cd_clip_text_cuda_new(cd_clip_text_cuda **out, cd_clip_text *t, void *stream) {
    *out = NULL;
    CD_TRY(have_gpu("clip text cuda"));
    const cd_clip_text_config *c = &t->cfg;
    cd_clip_text_cuda *g = cd_calloc(1, sizeof *g);
    int64_t C = c->hidden, I = c->intermediate;
    g->t = t;
    g->n_tok = t->n_tok;
    g->C = c->hidden;
    g->tw.L = t->L;
    g->tw.nl = c->layers;
    g->tw.dm = (clip_dims){1, 1, c->hidden, c->heads, c->intermediate, c->eps, c->act, 1};
    g->sv = cd_calloc(c->layers > 0 ? c->layers : 1, sizeof *g->sv);
    wl_add(&g->tw.wl, t->pos_emb, (int64_t)c->max_pos * C, "text_model.embeddings.position_embedding.weight");
    wl_add(&g->tw.wl, t->lnf_g, C, "text_model.final_layer_norm.weight");
    wl_add(&g->tw.wl, t->lnf_b, C, "text_model.final_layer_norm.bias");
    wl_layers(&g->tw.wl, "text_model", t->L, c->layers, C, I);
    size_t tb = (size_t)t->n_tok * C * sizeof(float);
    int rc = tower_init(&g->tw, "clip text cuda", stream);
    if (!rc && !(g->tok = cd_cuda_malloc(tb)))
        rc = cd_err("clip text cuda: cannot allocate %.1f MiB for the token table", tb / 1048576.0);
    if (!rc) rc = cd_cuda_memcpy_h2d(g->tok, t->tok_emb, tb, stream);
    if (rc) {
        cd_errctx("clip text cuda: uploading the text encoder");
        cd_clip_text_cuda_free(g);
        return -1;
    }
    *out = g;
    return 0;
}

void cd_clip_text_cuda_free(cd_clip_text_cuda *g) {
    if (!g) return;
    tower_free(&g->tw);
    cd_cuda_free(g->tok);
    free(g->ids);
    free(g->sv);
    free(g);
}

int cd_clip_text_cuda_set_bf16(cd_clip_text_cuda *g, int on) {
    g->saved = 0;
    return nn_dev_set_bf16(&g->tw.d, on);
}

static int check_ids(const cd_clip_text_cuda *g, const int32_t *ids, int B, int L) {
    const cd_clip_text *t = g->t;
    if (t->n_tok != g->n_tok)
        return cd_err("clip text cuda: the token table has %d rows, %d when uploaded (grow it before cd_clip_text_cuda_new)",
                      t->n_tok, g->n_tok);
    if (B <= 0) return cd_err("clip text: batch %d", B);
    if (L <= 0 || L > t->cfg.max_pos) return cd_err("clip text: %d tokens, the model takes 1..%d", L, t->cfg.max_pos);
    for (int64_t i = 0; i < (int64_t)B * L; i++)
        if (ids[i] < 0 || ids[i] >= g->n_tok)
            return cd_err("clip text: token id %d at position %lld is outside the embedding (%d rows)",
                          ids[i], (long long)(i % L), g->n_tok);
    return 0;
}

// x [n,C] = token_embedding[ids] + position_embedding[r % L] on the device.
static void text_embed(cd_clip_text_cuda *g, float *x, const int32_t *ids, int B, int L) {
    nn_dev *d = &g->tw.d;
    int64_t n = (int64_t)B * L;
    nn_dmark m0 = nn_dmark_get(d);
    int32_t *hid = cd_malloc(sizeof(int32_t) * 2 * n);
    memcpy(hid, ids, sizeof(int32_t) * n);
    for (int64_t r = 0; r < n; r++) hid[n + r] = (int32_t)(r % L);
    int32_t *did = (int32_t *)nn_da(d, 2 * n);
    float *p = nn_da(d, n * g->C);
    if (p && cd_cuda_memcpy_h2d(did, hid, sizeof(int32_t) * 2 * n, d->st)) dfail(d, "uploading the token ids failed");
    if (!d->err) {
        cd_cuda_embedding_fwd(x, did, g->tok, (int)n, g->C, d->st);
        cd_cuda_embedding_fwd(p, did + n, nn_dw(d, g->t->pos_emb), (int)n, g->C, d->st);
        cd_cuda_acc(x, p, n * g->C, d->st);
    }
    free(hid);
    nn_drelease(d, m0);
}

int cd_clip_text_cuda_forward(cd_clip_text_cuda *g, float *d_out, const int32_t *ids, int B, int L, int train) {
    cd_clip_text *t = g->t;
    nn_dev *d = &g->tw.d;
    int C = g->C, nl = t->cfg.layers;
    g->saved = 0;
    CD_TRY(check_ids(g, ids, B, L));
    int64_t n = (int64_t)B * L, nc = n * C;
    cd_cuda_status();   // clear a failure left by earlier work
    nn_dev_begin(d);
    g->tw.dm.B = B;
    g->tw.dm.L = L;
    g->ids = cd_realloc(g->ids, sizeof(int32_t) * n);
    memcpy(g->ids, ids, sizeof(int32_t) * n);
    float *xs = nn_da(d, (train ? nl + 1 : 2) * nc);
    float *mf = nn_da(d, n), *rf = nn_da(d, n);
    for (int i = 0; train && i < nl && !d->err; i++) lsave_alloc(d, &g->sv[i], &g->tw.dm);
    if (!d->err) text_embed(g, xs, ids, B, L);
    float *x = xs;
    for (int i = 0; i < nl && !d->err; i++) {
        float *xo = train ? xs + (i + 1) * nc : xs + ((i + 1) % 2) * nc;
        layer_fwd(&g->tw, &t->L[i], xo, x, train ? &g->sv[i] : NULL);
        x = xo;
    }
    ln_fwd(d, d_out, mf, rf, x, t->lnf_g, t->lnf_b, (int)n, C, t->cfg.eps);
    int rc = d->err ? -1 : 0;
    if (cd_cuda_status()) rc = -1;
    if (rc) return cd_errctx("clip text cuda: forward (batch %d, %d tokens)", B, L);
    if (train) {
        g->saved = 1;
        g->B = B; g->L = L;
        g->xs = xs; g->meanf = mf; g->rstdf = rf;
    }
    return 0;
}

// Host ids -> index k of row_ids (nrows when none); returns how many positions matched.
static int64_t map_rows(const int32_t *ids, int64_t n, int nrows, const int32_t *row_ids, int32_t *map) {
    int64_t any = 0;
    for (int64_t i = 0; i < n; i++) {
        map[i] = nrows;
        for (int k = 0; k < nrows; k++)
            if (ids[i] == row_ids[k]) { map[i] = k; any++; break; }
    }
    return any;
}

int cd_clip_text_cuda_backward_rows(cd_clip_text_cuda *g, const float *d_dout, int nrows,
                                    const int32_t *row_ids, float *d_rowgrad) {
    cd_clip_text *t = g->t;
    nn_dev *d = &g->tw.d;
    if (!g->saved) return cd_err("clip text cuda: backward_rows needs a training forward (train = 1) before it");
    if (nrows <= 0) return 0;
    for (int k = 0; k < nrows; k++)
        if (row_ids[k] < 0 || row_ids[k] >= g->n_tok)
            return cd_err("clip text cuda: row id %d outside the token table (%d rows)", row_ids[k], g->n_tok);
    int C = g->C, nl = t->cfg.layers;
    int64_t n = (int64_t)g->B * g->L, nc = n * C;
    int32_t *map = cd_malloc(sizeof(int32_t) * n);
    if (!map_rows(g->ids, n, nrows, row_ids, map)) { free(map); return 0; }
    cd_cuda_status();
    nn_dmark m0 = nn_dmark_get(d);
    int32_t *dmap = (int32_t *)nn_da(d, n);
    // row nrows stands for every other id; the row mask leaves it out of the embedding backward
    uint8_t *dkeep = (uint8_t *)nn_da(d, (nrows + 1 + 3) / 4), *keep = cd_malloc((size_t)nrows + 1);
    memset(keep, 1, (size_t)nrows);
    keep[nrows] = 0;
    float *dx = nn_da(d, nc), *rg = zeros(d, (int64_t)(nrows + 1) * C);
    if (rg && (cd_cuda_memcpy_h2d(dmap, map, sizeof(int32_t) * n, d->st) ||
               cd_cuda_memcpy_h2d(dkeep, keep, (size_t)nrows + 1, d->st)))
        dfail(d, "uploading the row map failed");
    free(map);
    free(keep);
    if (!d->err)
        cd_cuda_layernorm_bwd(dx, NULL, NULL, d_dout, g->xs + nl * nc, g->meanf, g->rstdf, nn_dw(d, t->lnf_g),
                              (int)n, C, d->st);
    for (int i = nl - 1; i >= 0 && !d->err; i--) layer_bwd(&g->tw, &t->L[i], dx, g->xs + i * nc, &g->sv[i]);
    if (!d->err) {
        cd_cuda_embedding_bwd(rg, dx, dmap, (int)n, C, dkeep, d->st);
        cd_cuda_acc(d_rowgrad, rg, (int64_t)nrows * C, d->st);
    }
    int rc = d->err ? -1 : 0;
    if (cd_cuda_status()) rc = -1;
    d->err = 0;
    nn_drelease(d, m0);
    if (rc) cd_errctx("clip text cuda: backward (batch %d, %d tokens, %d rows)", g->B, g->L, nrows);
    return rc;
}

float *cd_clip_text_cuda_row_dev(cd_clip_text_cuda *g, int id) {
    if (id < 0 || id >= g->n_tok) return NULL;
    return g->tok + (int64_t)id * g->C;
}

int cd_clip_text_cuda_rows_changed(cd_clip_text_cuda *g) {
    (void)g;
    return cd_cuda_status() ? cd_errctx("clip text cuda: a device op failed before the rows changed") : 0;
}

// Copy rows between the device table and t's host table (dir 0: to host, 1: to device).
static int rows_copy(cd_clip_text_cuda *g, int nrows, const int32_t *row_ids, int dir) {
    cd_clip_text *t = g->t;
    size_t rb = sizeof(float) * g->C;
    if (t->n_tok != g->n_tok)
        return cd_err("clip text cuda: the host token table has %d rows, the device %d", t->n_tok, g->n_tok);
    if (dir == 0 && !t->tok_own) CD_TRY(cd_clip_text_resize_tokens(t, t->n_tok));   // writable host table
    for (int k = 0; k < nrows; k++) {
        int id = row_ids[k];
        if (id < 0 || id >= g->n_tok) return cd_err("clip text cuda: row id %d outside the token table (%d rows)", id, g->n_tok);
        float *hr = t->tok_emb + (int64_t)id * g->C, *dr = g->tok + (int64_t)id * g->C;
        int rc = dir == 0 ? cd_cuda_memcpy_d2h(hr, dr, rb, g->tw.d.st) : cd_cuda_memcpy_h2d(dr, hr, rb, g->tw.d.st);
        if (rc) return cd_errctx("clip text cuda: copying token row %d", id);
    }
    return 0;
}
int cd_clip_text_cuda_rows_to_host(cd_clip_text_cuda *g, int nrows, const int32_t *row_ids) {
    return rows_copy(g, nrows, row_ids, 0);
}
int cd_clip_text_cuda_rows_from_host(cd_clip_text_cuda *g, int nrows, const int32_t *row_ids) {
    return rows_copy(g, nrows, row_ids, 1);
}

int64_t cd_clip_text_cuda_arena_bytes(const cd_clip_text_cuda *g) { return nn_dev_arena_bytes(&g->tw.d); }
int64_t cd_clip_text_cuda_weight_bytes(const cd_clip_text_cuda *g) {
    return (int64_t)g->tw.d.wbytes + (int64_t)(g->tw.d.bf16 ? g->tw.d.wbytes16 : 0) + (int64_t)g->n_tok * g->C * 4;
}
double cd_clip_text_cuda_flops(const cd_clip_text_cuda *g) { return g->tw.d.flops; }

// ---- vision tower -------------------------------------------------------------------------------
struct cd_clip_vision_cuda {
    tower tw;
    const cd_clip_vision *v;
};

int cd_clip_vision_cuda_new(cd_clip_vision_cuda **out, const cd_clip_vision *v, void *stream) {
    *out = NULL;
    CD_TRY(have_gpu("clip vision cuda"));
    const cd_clip_vision_config *c = &v->cfg;
    cd_clip_vision_cuda *g = cd_calloc(1, sizeof *g);
    int64_t C = c->hidden, p = c->patch_size, gs = c->image_size / c->patch_size;
    g->v = v;
    g->tw.L = v->L;
    g->tw.nl = c->layers;
    g->tw.dm = (clip_dims){1, 1, c->hidden, c->heads, c->intermediate, c->eps, c->act, 0};
    cd_weights *w = &g->tw.wl;
    wl_add(w, v->patch_w, C * 3 * p * p, "vision_model.embeddings.patch_embedding.weight");
    wl_add(w, v->cls, C, "vision_model.embeddings.class_embedding");
    wl_add(w, v->pos_emb, (gs * gs + 1) * C, "vision_model.embeddings.position_embedding.weight");
    wl_add(w, v->pre_g, C, "vision_model.pre_layrnorm.weight");
    wl_add(w, v->pre_b, C, "vision_model.pre_layrnorm.bias");
    wl_add(w, v->post_g, C, "vision_model.post_layernorm.weight");
    wl_add(w, v->post_b, C, "vision_model.post_layernorm.bias");
    wl_add(w, v->proj, (int64_t)c->projection_dim * C, "visual_projection.weight");
    wl_layers(w, "vision_model", v->L, c->layers, C, c->intermediate);
    if (tower_init(&g->tw, "clip vision cuda", stream)) {
        cd_clip_vision_cuda_free(g);
        return -1;
    }
    *out = g;
    return 0;
}

void cd_clip_vision_cuda_free(cd_clip_vision_cuda *g) {
    if (!g) return;
    tower_free(&g->tw);
    free(g);
}

int cd_clip_vision_cuda_set_bf16(cd_clip_vision_cuda *g, int on) { return nn_dev_set_bf16(&g->tw.d, on); }

// pixels [B,3,S,S] (device) -> x [B,T,C]: class embedding then patches (conv stride p, no
// bias), plus position embeddings (clip_vision.c's vision_embed). gi: device int32 [B*T + 2B]
// = position ids, zeros (class rows), b*T (class-token gather).
static void vision_embed(cd_clip_vision_cuda *g, float *x, const float *pix, const int32_t *gi, int B) {
    nn_dev *d = &g->tw.d;
    const cd_clip_vision *v = g->v;
    int C = v->cfg.hidden, p = v->cfg.patch_size, S = v->cfg.image_size, np = (S / p) * (S / p), T = np + 1;
    nn_dmark m0 = nn_dmark_get(d);
    float *pe = nn_da(d, (int64_t)B * np * C), *pt = nn_da(d, (int64_t)B * np * C);
    float *cl = nn_da(d, (int64_t)B * C), *pos = nn_da(d, (int64_t)B * T * C);
    nn_conv pc = {v->patch_w, NULL, 3, C, p, p, 0};
    if (pos) nn_dconv(d, &pc, pe, pix, B, S, S);
    if (!d->err) {
        cd_cuda_nchw_to_nhwc(pt, pe, B, C, np, d->st);
        cd_cuda_embedding_fwd(cl, gi + B * T, nn_dw(d, v->cls), B, C, d->st);
        cd_cuda_concat_c(x, cl, pt, B, C, np * C, 1, d->st);
        cd_cuda_embedding_fwd(pos, gi, nn_dw(d, v->pos_emb), B * T, C, d->st);
        cd_cuda_acc(x, pos, (int64_t)B * T * C, d->st);
    }
    nn_drelease(d, m0);
}

// The walk on device buffers: pix -> pooled [B,C] and emb [B,P] (device).
static void vision_walk(cd_clip_vision_cuda *g, float *pl, float *em, const float *pix, const int32_t *gi, int B) {
    nn_dev *d = &g->tw.d;
    const cd_clip_vision *v = g->v;
    int C = v->cfg.hidden, gs = v->cfg.image_size / v->cfg.patch_size, T = gs * gs + 1;
    int64_t nc = (int64_t)B * T * C;
    float *x = nn_da(d, nc), *y = nn_da(d, nc), *cl = nn_da(d, (int64_t)B * C), *st = nn_da(d, 2 * (int64_t)nc / C);
    if (!st) return;
    g->tw.dm.B = B;
    g->tw.dm.L = T;
    vision_embed(g, x, pix, gi, B);
    ln_fwd(d, y, st, st + B * T, x, v->pre_g, v->pre_b, B * T, C, v->cfg.eps);
    for (int i = 0; i < v->cfg.layers && !d->err; i++) {
        layer_fwd(&g->tw, &v->L[i], x, y, NULL);
        float *s = x; x = y; y = s;
    }
    if (d->err) return;
    cd_cuda_embedding_fwd(cl, gi + B * T + B, y, B, C, d->st);   // class-token rows
    ln_fwd(d, pl, st, st + B, cl, v->post_g, v->post_b, B, C, v->cfg.eps);
    uint16_t *p16 = to16(d, pl, (int64_t)B * C);
    lin(d, v->proj, NULL, em, pl, p16, B, C, v->cfg.projection_dim);
}

int cd_clip_vision_cuda_forward(cd_clip_vision_cuda *g, float *pooled, float *emb, int normalize,
                                const float *pixels, int B) {
    nn_dev *d = &g->tw.d;
    const cd_clip_vision_config *c = &g->v->cfg;
    if (B <= 0) return cd_err("clip vision: batch %d", B);
    int C = c->hidden, S = c->image_size, P = c->projection_dim, gs = S / c->patch_size, T = gs * gs + 1;
    int64_t npix = (int64_t)B * 3 * S * S, ni = (int64_t)B * T + 2 * B;
    cd_cuda_status();
    nn_dev_begin(d);
    int32_t *hi = cd_malloc(sizeof(int32_t) * ni);
    for (int64_t r = 0; r < (int64_t)B * T; r++) hi[r] = (int32_t)(r % T);
    for (int b = 0; b < B; b++) { hi[(int64_t)B * T + b] = 0; hi[(int64_t)B * T + B + b] = b * T; }
    float *dp = nn_da(d, npix), *pl = nn_da(d, (int64_t)B * C), *em = nn_da(d, (int64_t)B * P);
    int32_t *gi = (int32_t *)nn_da(d, ni);
    if (gi && (cd_cuda_memcpy_h2d(dp, pixels, npix * sizeof(float), d->st) ||
               cd_cuda_memcpy_h2d(gi, hi, ni * sizeof(int32_t), d->st)))
        dfail(d, "uploading the pixels failed");
    free(hi);
    if (!d->err) vision_walk(g, pl, em, dp, gi, B);
    int rc = d->err ? -1 : 0;
    if (!rc && pooled && cd_cuda_memcpy_d2h(pooled, pl, sizeof(float) * B * C, d->st)) rc = -1;
    if (!rc && emb && cd_cuda_memcpy_d2h(emb, em, sizeof(float) * B * P, d->st)) rc = -1;
    if (cd_cuda_status()) rc = -1;
    if (rc) return cd_errctx("clip vision cuda: forward (batch %d)", B);
    if (emb && normalize) cd_l2_normalize(emb, B, P);
    return 0;
}

#else  // built without CUDA
#define NOCUDA cd_err("clip cuda: customdiff was built without CUDA (CUDA=0)")
struct cd_clip_text_cuda { int unused; };
struct cd_clip_vision_cuda { int unused; };
int cd_clip_text_cuda_new(cd_clip_text_cuda **out, cd_clip_text *t, void *stream) {
    (void)t; (void)stream;
    *out = NULL;
    return NOCUDA;
}
void cd_clip_text_cuda_free(cd_clip_text_cuda *g) { (void)g; }
int cd_clip_text_cuda_set_bf16(cd_clip_text_cuda *g, int on) { (void)g; (void)on; return NOCUDA; }
int cd_clip_text_cuda_forward(cd_clip_text_cuda *g, float *d_out, const int32_t *ids, int B, int L, int train) {
    (void)g; (void)d_out; (void)ids; (void)B; (void)L; (void)train;
    return NOCUDA;
}
int cd_clip_text_cuda_backward_rows(cd_clip_text_cuda *g, const float *d_dout, int nrows, const int32_t *row_ids,
                                    float *d_rowgrad) {
    (void)g; (void)d_dout; (void)nrows; (void)row_ids; (void)d_rowgrad;
    return NOCUDA;
}
float *cd_clip_text_cuda_row_dev(cd_clip_text_cuda *g, int id) { (void)g; (void)id; return NULL; }
int cd_clip_text_cuda_rows_changed(cd_clip_text_cuda *g) { (void)g; return NOCUDA; }
int cd_clip_text_cuda_rows_to_host(cd_clip_text_cuda *g, int nrows, const int32_t *row_ids) {
    (void)g; (void)nrows; (void)row_ids;
    return NOCUDA;
}
int cd_clip_text_cuda_rows_from_host(cd_clip_text_cuda *g, int nrows, const int32_t *row_ids) {
    (void)g; (void)nrows; (void)row_ids;
    return NOCUDA;
}
int64_t cd_clip_text_cuda_arena_bytes(const cd_clip_text_cuda *g) { (void)g; return 0; }
int64_t cd_clip_text_cuda_weight_bytes(const cd_clip_text_cuda *g) { (void)g; return 0; }
double cd_clip_text_cuda_flops(const cd_clip_text_cuda *g) { (void)g; return 0; }
int cd_clip_vision_cuda_new(cd_clip_vision_cuda **out, const cd_clip_vision *v, void *stream) {
    (void)v; (void)stream;
    *out = NULL;
    return NOCUDA;
}
void cd_clip_vision_cuda_free(cd_clip_vision_cuda *g) { (void)g; }
int cd_clip_vision_cuda_set_bf16(cd_clip_vision_cuda *g, int on) { (void)g; (void)on; return NOCUDA; }
int cd_clip_vision_cuda_forward(cd_clip_vision_cuda *g, float *pooled, float *emb, int normalize,
                                const float *pixels, int B) {
    (void)g; (void)pooled; (void)emb; (void)normalize; (void)pixels; (void)B;
    return NOCUDA;
}
#endif
