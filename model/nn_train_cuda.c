// Device training layers (see the training section of model/nn_cuda.h): the planned heap, and
// the forward-with-tape / backward of ResnetBlock2D, Attention, BasicTransformerBlock and
// Transformer2DModel, mirroring model/nn.c and model/transformer.c op for op.
// Precision (g->bf16): GEMMs, convolutions and fused attention take bf16 inputs (weights: the
// bf16 copies of nn_dev) with fp32 accumulation; activations, activation gradients between
// layers, norm statistics, softmax statistics (lse) and weight gradients stay fp32.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "model/nn_cuda.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"

#define HALIGN(b) (((size_t)(b) + 255) & ~(size_t)255)
#define FAKE_BASE ((char *)(uintptr_t)0x100000)   // planning: offsets from here, never touched

// ---- planned heap ------------------------------------------------------------------------
void *nn_dheap_alloc(nn_dheap *h, size_t bytes, int tag) {
    bytes = HALIGN(bytes ? bytes : 1);
    size_t off = 0;
    int at = 0;
    for (; at < h->nblk; at++) {   // first fit between live blocks
        if (h->blk[at].off - off >= bytes) break;
        off = h->blk[at].off + h->blk[at].size;
    }
    if (!h->dry && off + bytes > h->cap) { h->over = 1; return NULL; }
    if (h->nblk == h->capblk) {
        h->capblk = h->capblk ? 2 * h->capblk : 256;
        h->blk = cd_realloc(h->blk, h->capblk * sizeof *h->blk);
    }
    memmove(h->blk + at + 1, h->blk + at, (h->nblk - at) * sizeof *h->blk);
    h->blk[at] = (nn_dblk){off, bytes, tag};
    h->nblk++;
    if (off + bytes > h->end) h->end = off + bytes;
    h->live += bytes;
    if (h->live > h->peak) h->peak = h->live;
    return (h->dry ? FAKE_BASE : h->base) + off;
}

static void drop(nn_dheap *h, int i) {
    h->live -= h->blk[i].size;
    memmove(h->blk + i, h->blk + i + 1, (h->nblk - i - 1) * sizeof *h->blk);
    h->nblk--;
}

void nn_dheap_free(nn_dheap *h, const void *p) {
    if (!p) return;
    size_t off = (size_t)((const char *)p - (h->dry ? FAKE_BASE : h->base));
    int lo = 0, hi = h->nblk - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (h->blk[m].off == off) { drop(h, m); return; }
        if (h->blk[m].off < off) lo = m + 1; else hi = m - 1;
    }
}

void nn_dheap_free_tag(nn_dheap *h, int tag) {
    int j = 0;
    for (int i = 0; i < h->nblk; i++) {
        if (h->blk[i].tag == tag) h->live -= h->blk[i].size;
        else h->blk[j++] = h->blk[i];
    }
    h->nblk = j;
}

void nn_dheap_release(nn_dheap *h) {
    if (!h->dry && h->base) cd_cuda_free(h->base);
    free(h->blk);
    memset(h, 0, sizeof *h);
}

float *nn_talloc(nn_tctx *T, int64_t n, int tag) {
    if (T->err) return NULL;
    float *p = nn_dheap_alloc(&T->h, (size_t)(n > 0 ? n : 1) * sizeof(float), tag);
    if (!p) { T->err = 1; cd_err("cuda training: activation heap exceeded its plan (%zu bytes)", T->h.cap); }
    return p;
}
uint16_t *nn_talloc16(nn_tctx *T, int64_t n, int tag) { return (uint16_t *)nn_talloc(T, (n + 1) / 2, tag); }
void nn_tfree(nn_tctx *T, const void *p) { nn_dheap_free(&T->h, p); }

uint16_t *nn_tto16(nn_tctx *T, const float *x, int64_t n, int tag) {
    uint16_t *b = nn_talloc16(T, n, tag);
    if (b) NN_T_RUN(T) cd_cuda_f32_to_bf16(b, x, n, T->g->st);
    return b;
}

// ---- weights -----------------------------------------------------------------------------
const uint16_t *nn_dw16(nn_dev *g, const float *h) {
    if (!h) return NULL;
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
// fp32 / bf16 device copies of a weight; planning looks nothing up.
static const float *W32(nn_tctx *T, const float *h) {
    if (T->dry || !h) return NULL;
    const float *d = nn_dw(T->g, h);
    if (!d) T->err = 1;
    return d;
}
static const uint16_t *W16(nn_tctx *T, const float *h) {
    if (T->dry || !h) return NULL;
    const uint16_t *d = nn_dw16(T->g, h);
    if (!d) { T->err = 1; cd_err("cuda training: a weight has no bf16 copy (nn_dev_set_bf16 not called?)"); }
    return d;
}
#define ST (T->g->st)
#define BF (T->g->bf16)

// ---- plain ops ---------------------------------------------------------------------------
void nn_tconv(nn_tctx *T, const nn_conv *c, float *y, const float *x, int B, int H, int W) {
    int ho = (H + 2 * c->p - c->k) / c->s + 1, wo = (W + 2 * c->p - c->k) / c->s + 1;
    int64_t ny = (int64_t)B * c->cout * ho * wo;
    T->flops += 2.0 * ny * c->cin * c->k * c->k;
    if (!BF) {
        NN_T_RUN(T) cd_cuda_conv2d_fwd(y, x, W32(T, c->w), W32(T, c->b), B, c->cin, H, W, c->cout, c->k, c->s, c->p, ST);
        return;
    }
    uint16_t *xb = nn_tto16(T, x, (int64_t)B * c->cin * H * W, 0), *yb = nn_talloc16(T, ny, 0);
    const uint16_t *w16 = W16(T, c->w);
    NN_T_RUN(T) {
        cd_cuda_conv2d_fwd_bf16(yb, xb, w16, W32(T, c->b), B, c->cin, H, W, c->cout, c->k, c->s, c->p, ST);
        cd_cuda_bf16_to_f32(y, yb, ny, ST);
    }
    nn_tfree(T, yb); nn_tfree(T, xb);
}

// dx [B,cin,H,W] (overwritten) of a frozen conv from dy [B,cout,Ho,Wo].
void nn_tconv_bx(nn_tctx *T, const nn_conv *c, float *dx, const float *dy, int B, int H, int W) {
    int ho = (H + 2 * c->p - c->k) / c->s + 1, wo = (W + 2 * c->p - c->k) / c->s + 1;
    int64_t ny = (int64_t)B * c->cout * ho * wo, nx = (int64_t)B * c->cin * H * W;
    T->flops += 2.0 * ny * c->cin * c->k * c->k;
    if (!BF) {
        NN_T_RUN(T) cd_cuda_conv2d_bwd(dx, NULL, NULL, dy, NULL, W32(T, c->w), B, c->cin, H, W, c->cout, c->k, c->s, c->p, ST);
        return;
    }
    uint16_t *yb = nn_tto16(T, dy, ny, 0), *xb = nn_talloc16(T, nx, 0);
    const uint16_t *w16 = W16(T, c->w);
    NN_T_RUN(T) {
        cd_cuda_conv2d_bwd_data_bf16(xb, yb, w16, B, c->cin, H, W, c->cout, c->k, c->s, c->p, ST);
        cd_cuda_bf16_to_f32(dx, xb, nx, ST);
    }
    nn_tfree(T, xb); nn_tfree(T, yb);
}

// y = x W^T + bias (bias may differ from l->b: NULL when folded into the GEGLU).
static void lin_b(nn_tctx *T, const nn_lin *l, float *y, const float *x, int n, const float *bias) {
    T->flops += 2.0 * n * l->in * l->out;
    if (!BF) {
        NN_T_RUN(T) cd_cuda_linear_fwd(y, x, W32(T, l->w), W32(T, bias), n, l->in, l->out, ST);
        return;
    }
    uint16_t *xb = nn_tto16(T, x, (int64_t)n * l->in, 0);
    const uint16_t *w16 = W16(T, l->w);
    NN_T_RUN(T) cd_cuda_linear_fwd_bf16(y, xb, w16, W32(T, bias), n, l->in, l->out, ST);
    nn_tfree(T, xb);
}
void nn_tlin(nn_tctx *T, const nn_lin *l, float *y, const float *x, int n) { lin_b(T, l, y, x, n, l->b); }

// dx[n,in] (+)= dy[n,out] @ W[out,in]; dy16: dy's bf16 copy when at hand (bf16 mode).
static void lin_bx(nn_tctx *T, const nn_lin *l, float *dx, const float *dy, const uint16_t *dy16,
                   int n, int acc) {
    T->flops += 2.0 * n * l->in * l->out;
    if (!BF) {
        NN_T_RUN(T) cd_cuda_gemm(0, 0, n, l->in, l->out, 1.f, dy, l->out, W32(T, l->w), l->in, acc ? 1.f : 0.f, dx, l->in, ST);
        return;
    }
    uint16_t *own = dy16 ? NULL : nn_tto16(T, dy, (int64_t)n * l->out, 0);
    const uint16_t *w16 = W16(T, l->w);
    NN_T_RUN(T) cd_cuda_gemm_bf16(0, 0, n, l->in, l->out, 1.f, dy16 ? dy16 : own, l->out, w16, l->in,
                                  acc ? 1.f : 0.f, dx, l->in, 0, ST);
    nn_tfree(T, own);
}

// dW[out,in] += dy[n,out]^T @ x[n,in] (fp32 dW); bf16 copies used or made in bf16 mode.
static void wgrad(nn_tctx *T, float *dW, const float *dy, const uint16_t *dy16, const float *x,
                  const uint16_t *x16, int n, int in, int out) {
    T->flops += 2.0 * n * in * out;
    if (!BF) {
        NN_T_RUN(T) cd_cuda_gemm(1, 0, out, in, n, 1.f, dy, out, x, in, 1.f, dW, in, ST);
        return;
    }
    uint16_t *oy = dy16 ? NULL : nn_tto16(T, dy, (int64_t)n * out, 0);
    uint16_t *ox = x16 ? NULL : nn_tto16(T, x, (int64_t)n * in, 0);
    NN_T_RUN(T) cd_cuda_gemm_bf16(1, 0, out, in, n, 1.f, dy16 ? dy16 : oy, out, x16 ? x16 : ox, in, 1.f, dW, in, 0, ST);
    nn_tfree(T, ox); nn_tfree(T, oy);
}

// GroupNorm(+SiLU): st [2*B*groups] = mean, rstd.
void nn_tgn(nn_tctx *T, const nn_gn *n, float *y, float *st, const float *x, int B, int hw, int silu) {
    NN_T_RUN(T) cd_cuda_groupnorm_fwd(y, st, st + B * n->groups, x, W32(T, n->g), W32(T, n->b), B, n->c, hw,
                                      n->groups, n->eps, silu, ST);
}
void nn_tgn_bwd(nn_tctx *T, const nn_gn *n, float *dx, const float *dy, const float *x,
                const float *st, int B, int hw, int silu) {
    NN_T_RUN(T) cd_cuda_groupnorm_bwd(dx, NULL, NULL, dy, x, st, st + B * n->groups, W32(T, n->g),
                                      W32(T, n->b), B, n->c, hw, n->groups, silu, ST);
}
static void ln_fwd(nn_tctx *T, const nn_ln *l, float *y, float *st, const float *x, int n) {
    NN_T_RUN(T) cd_cuda_layernorm_fwd(y, st, st + n, x, W32(T, l->g), W32(T, l->b), n, l->c, l->eps, ST);
}
static void ln_bwd(nn_tctx *T, const nn_ln *l, float *dx, const float *dy, const float *x,
                   const float *st, int n) {
    NN_T_RUN(T) cd_cuda_layernorm_bwd(dx, NULL, NULL, dy, x, st, st + n, W32(T, l->g), n, l->c, ST);
}
static float *A(nn_tctx *T, int64_t n, int save) { return nn_talloc(T, n, save ? T->save_tag : 0); }
static void F(nn_tctx *T, const void *p, int save) { if (!save) nn_tfree(T, p); }

// ---- ResnetBlock2D -----------------------------------------------------------------------
void nn_tresnet_fwd(nn_tctx *T, const nn_resnet *r, nn_tres *s, float *y, const float *x,
                    const float *emb, int B, int H, int W) {
    int hw = H * W, sv = s != NULL;
    int64_t nout = (int64_t)B * r->cout * hw;
    float *h = A(T, nout, sv), *st = A(T, 2 * B * (r->n1.groups + r->n2.groups), sv);
    float *a = nn_talloc(T, (int64_t)B * (r->cin > r->cout ? r->cin : r->cout) * hw, 0);
    if (T->err) return;
    float *st2 = st + 2 * B * r->n1.groups;
    nn_tgn(T, &r->n1, a, st, x, B, hw, 1);
    nn_tconv(T, &r->c1, h, a, B, H, W);
    if (r->has_temb && emb) {
        float *tb = nn_talloc(T, (int64_t)B * r->cout, 0);
        nn_tlin(T, &r->tp, tb, emb, B);
        NN_T_RUN(T) cd_cuda_add_bias_nc(h, tb, B, r->cout, hw, ST);
        nn_tfree(T, tb);
    }
    nn_tgn(T, &r->n2, a, st2, h, B, hw, 1);
    nn_tconv(T, &r->c2, y, a, B, H, W);
    nn_tfree(T, a);
    if (r->has_sc) {
        float *sc = nn_talloc(T, nout, 0);
        nn_tconv(T, &r->sc, sc, x, B, H, W);
        NN_T_RUN(T) cd_cuda_acc(y, sc, nout, ST);
        nn_tfree(T, sc);
    } else {
        NN_T_RUN(T) cd_cuda_acc(y, x, nout, ST);
    }
    if (sv) { s->x = x; s->h = h; s->st = st; s->B = B; s->H = H; s->W = W; }
    else { nn_tfree(T, st); nn_tfree(T, h); }
}

void nn_tresnet_bwd(nn_tctx *T, const nn_resnet *r, nn_tres *s, float *dx, const float *dy) {
    int B = s->B, H = s->H, W = s->W, hw = H * W;
    int64_t nout = (int64_t)B * r->cout * hw, nin = (int64_t)B * r->cin * hw;
    float *da = nn_talloc(T, nout > nin ? nout : nin, 0), *dh = nn_talloc(T, nout, 0);
    if (T->err) return;
    float *st2 = s->st + 2 * B * r->n1.groups;
    nn_tconv_bx(T, &r->c2, da, dy, B, H, W);
    nn_tgn_bwd(T, &r->n2, dh, da, s->h, st2, B, hw, 1);
    nn_tconv_bx(T, &r->c1, da, dh, B, H, W);
    nn_tgn_bwd(T, &r->n1, dx, da, s->x, s->st, B, hw, 1);
    if (r->has_sc) {
        nn_tconv_bx(T, &r->sc, da, dy, B, H, W);
        NN_T_RUN(T) cd_cuda_acc(dx, da, nin, ST);
    } else {
        NN_T_RUN(T) cd_cuda_acc(dx, dy, nin, ST);
    }
    nn_tfree(T, dh); nn_tfree(T, da);
}

// ---- Attention ---------------------------------------------------------------------------
static int fused_dim(int d) { return d == 40 || d == 64 || d == 80 || d == 160; }

// bf16 tensor-core path (fused head dims): Q, K, V, O stored in bf16, lse fp32.
static void attn_fwd16(nn_tctx *T, const nn_attn *a, nn_tattn *s, float *y, const float *x,
                       const float *ctx, int B, int N, int M) {
    int C = a->heads * a->dim, sv = s != NULL, self = ctx == x;
    int64_t nq = (int64_t)B * N * C, nk = (int64_t)B * M * C;
    int tg = sv ? T->save_tag : 0;
    uint16_t *xb = nn_tto16(T, x, (int64_t)B * N * a->q.in, 0), *cb = NULL;
    if (!self) cb = T->ctx16 ? NULL : nn_tto16(T, ctx, (int64_t)B * M * a->k.in, 0);
    const uint16_t *c16 = self ? xb : cb ? cb : T->ctx16;
    uint16_t *Q = nn_talloc16(T, nq, tg), *K = nn_talloc16(T, nk, tg), *V = nn_talloc16(T, nk, tg);
    uint16_t *O = nn_talloc16(T, nq, tg);
    float *lse = sv ? nn_talloc(T, (int64_t)B * a->heads * N, tg) : NULL;
    T->flops += 2.0 * (B * N) * a->q.in * C + 4.0 * (B * M) * a->k.in * C + 4.0 * B * a->heads * N * M * a->dim
              + 2.0 * (B * N) * C * a->o.out;
    NN_T_RUN(T) {
        cd_cuda_linear_fwd_bf16_out(Q, xb, W16(T, a->q.w), W32(T, a->q.b), B * N, a->q.in, C, ST);
        cd_cuda_linear_fwd_bf16_out(K, c16, W16(T, a->k.w), W32(T, a->k.b), B * M, a->k.in, C, ST);
        cd_cuda_linear_fwd_bf16_out(V, c16, W16(T, a->v.w), W32(T, a->v.b), B * M, a->v.in, C, ST);
        cd_cuda_attention_fwd_bf16(O, 1, lse, Q, K, V, B, a->heads, N, M, a->dim, 1.f / sqrtf((float)a->dim), ST);
        cd_cuda_linear_fwd_bf16(y, O, W16(T, a->o.w), W32(T, a->o.b), B * N, C, a->o.out, ST);
    }
    if (sv) { s->Q = Q; s->K = K; s->V = V; s->O = O; s->lse = lse; s->b16 = 1; }
    else { nn_tfree(T, O); nn_tfree(T, V); nn_tfree(T, K); nn_tfree(T, Q); }
    nn_tfree(T, cb); nn_tfree(T, xb);
}

void nn_tattn_fwd(nn_tctx *T, const nn_attn *a, nn_tattn *s, float *y, const float *x,
                  const float *ctx, int B, int N, int M) {
    if (!ctx) { ctx = x; M = N; }
    if (s) { s->x = x; s->ctx = ctx; s->B = B; s->N = N; s->M = M; s->self = ctx == x; s->b16 = 0; s->lse = NULL; }
    if (BF && fused_dim(a->dim)) { attn_fwd16(T, a, s, y, x, ctx, B, N, M); return; }
    int C = a->heads * a->dim, sv = s != NULL, fused = fused_dim(a->dim);
    float *Q = A(T, (int64_t)B * N * C, sv), *K = A(T, (int64_t)B * M * C, sv);
    float *V = A(T, (int64_t)B * M * C, sv), *O = A(T, (int64_t)B * N * C, sv);
    float *lse = sv && fused ? A(T, (int64_t)B * a->heads * N, 1) : NULL;
    nn_tlin(T, &a->q, Q, x, B * N);
    nn_tlin(T, &a->k, K, ctx, B * M);
    nn_tlin(T, &a->v, V, ctx, B * M);
    float scale = 1.f / sqrtf((float)a->dim);
    T->flops += 4.0 * B * a->heads * N * M * a->dim;
    NN_T_RUN(T) {
        if (fused) cd_cuda_attention_fwd(O, lse, Q, K, V, B, a->heads, N, M, a->dim, scale, ST);
        else if (cd_cuda_attention_naive_fwd(O, NULL, Q, K, V, B, a->heads, N, M, a->dim, scale, ST)) T->err = 1;
    }
    nn_tlin(T, &a->o, y, O, B * N);
    if (sv) { s->Q = Q; s->K = K; s->V = V; s->O = O; s->lse = lse; }
    else { nn_tfree(T, O); nn_tfree(T, V); nn_tfree(T, K); nn_tfree(T, Q); }
}

// dQ, dK, dV (fp32, overwritten) from dO of the saved attention core.
static void attn_core_bwd(nn_tctx *T, const nn_attn *a, nn_tattn *s, float *dQ, float *dK,
                          float *dV, const float *dO, const uint16_t *dO16, int detach) {
    int B = s->B, N = s->N, M = s->M;
    float scale = 1.f / sqrtf((float)a->dim);
    T->flops += 8.0 * B * a->heads * N * M * a->dim;
    NN_T_RUN(T) {
        if (s->b16)
            cd_cuda_attention_bwd_bf16(dQ, dK, dV, dO16, s->Q, s->K, s->V, s->O, s->lse, B, a->heads, N, M,
                                       a->dim, scale, detach, ST);
        else if (fused_dim(a->dim))
            cd_cuda_attention_bwd(dQ, dK, dV, dO, s->Q, s->K, s->V, s->O, s->lse, B, a->heads, N, M, a->dim,
                                  scale, detach, ST);
        else if (cd_cuda_attention_naive_bwd(dQ, dK, dV, dO, s->Q, s->K, s->V, B, a->heads, N, M, a->dim,
                                             scale, detach, ST))
            T->err = 1;
    }
}

void nn_tattn_bwd(nn_tctx *T, const nn_attn *a, nn_tattn *s, float *dx, float *dctx,
                  const float *dy, int detach_k0) {
    int B = s->B, N = s->N, M = s->M, C = a->heads * a->dim, cd = a->cdim;
    int64_t nq = (int64_t)B * N * C, nk = (int64_t)B * M * C;
    float *dQ = nn_talloc(T, nq, 0), *dK = nn_talloc(T, nk, 0), *dV = nn_talloc(T, nk, 0);
    float *dO = s->b16 ? NULL : nn_talloc(T, nq, 0);
    uint16_t *dy16 = BF ? nn_tto16(T, dy, nq, 0) : NULL, *dO16 = s->b16 ? nn_talloc16(T, nq, 0) : NULL;
    if (T->err) return;
    // to_out.0: dO = dy Wo (bf16 path: straight to bf16 for the attention backward)
    if (s->b16) {
        T->flops += 2.0 * B * N * C * a->o.out;
        NN_T_RUN(T) cd_cuda_gemm_bf16(0, 0, B * N, C, a->o.out, 1.f, dy16, a->o.out, W16(T, a->o.w), C, 0.f, dO16, C, 1, ST);
    } else {
        lin_bx(T, &a->o, dO, dy, dy16, B * N, 0);
    }
    if (s->go) {
        if (s->b16) wgrad(T, s->go, dy, dy16, NULL, s->O, B * N, C, a->o.out);
        else wgrad(T, s->go, dy, dy16, s->O, NULL, B * N, C, a->o.out);
    }
    if (s->gob) NN_T_RUN(T) cd_cuda_linear_bwd(NULL, NULL, s->gob, dy, NULL, NULL, B * N, C, a->o.out, ST);
    attn_core_bwd(T, a, s, dQ, dK, dV, dO, dO16, detach_k0);
    nn_tfree(T, dO16); nn_tfree(T, dy16); nn_tfree(T, dO);
    uint16_t *q16 = BF ? nn_tto16(T, dQ, nq, 0) : NULL;
    lin_bx(T, &a->q, dx, dQ, q16, B * N, 0);
    if (s->gq) wgrad(T, s->gq, dQ, q16, s->x, NULL, B * N, a->q.in, C);
    nn_tfree(T, q16);
    uint16_t *k16 = BF ? nn_tto16(T, dK, nk, 0) : NULL, *v16 = BF ? nn_tto16(T, dV, nk, 0) : NULL;
    if (s->self) {
        lin_bx(T, &a->k, dx, dK, k16, B * N, 1);
        lin_bx(T, &a->v, dx, dV, v16, B * N, 1);
    } else {
        const uint16_t *c16 = BF ? T->ctx16 : NULL;
        if (s->gk) wgrad(T, s->gk, dK, k16, s->ctx, c16, B * M, cd, C);
        if (s->gv) wgrad(T, s->gv, dV, v16, s->ctx, c16, B * M, cd, C);
        if (dctx) {
            lin_bx(T, &a->k, dctx, dK, k16, B * M, 1);
            lin_bx(T, &a->v, dctx, dV, v16, B * M, 1);
        }
    }
    nn_tfree(T, v16); nn_tfree(T, k16);
    nn_tfree(T, dV); nn_tfree(T, dK); nn_tfree(T, dQ);
}

// ---- BasicTransformerBlock ---------------------------------------------------------------
// out [B,N,C] from h0 [B,N,C] (h0 must stay valid until backward when saving).
static void tblock_fwd(nn_tctx *T, const nn_tblock *t, nn_ttb *s, float *out, const float *h0,
                       const float *ctx, int B, int N, int M) {
    int C = t->n1.c, sv = s != NULL, keep_l2 = sv && s->a2.gq;
    int64_t n = (int64_t)B * N, nc = n * C;
    float *h1 = A(T, nc, sv), *h2 = A(T, nc, sv), *st = A(T, 6 * n, sv), *f = A(T, n * 8 * C, sv);
    float *l2 = A(T, nc, keep_l2);
    float *l = nn_talloc(T, nc, 0), *a = nn_talloc(T, nc, 0), *g = nn_talloc(T, n * 4 * C, 0);
    if (T->err) return;
    ln_fwd(T, &t->n1, l, st, h0, (int)n);
    nn_tattn_fwd(T, &t->a1, sv ? &s->a1 : NULL, a, l, NULL, B, N, N);
    NN_T_RUN(T) cd_cuda_add(h1, h0, a, nc, ST);
    ln_fwd(T, &t->n2, l2, st + 2 * n, h1, (int)n);
    nn_tattn_fwd(T, &t->a2, sv ? &s->a2 : NULL, a, l2, ctx, B, N, M);
    NN_T_RUN(T) cd_cuda_add(h2, h1, a, nc, ST);
    ln_fwd(T, &t->n3, l, st + 4 * n, h2, (int)n);
    lin_b(T, &t->ff1, f, l, (int)n, NULL);   // ff.net.0.proj's bias is folded into the GEGLU
    NN_T_RUN(T) cd_cuda_bias_geglu_fwd(g, f, W32(T, t->ff1.b), n, 4 * C, ST);
    nn_tlin(T, &t->ff2, a, g, (int)n);
    NN_T_RUN(T) cd_cuda_add(out, h2, a, nc, ST);
    nn_tfree(T, g); nn_tfree(T, a); nn_tfree(T, l);
    if (!keep_l2) nn_tfree(T, l2);
    if (sv) { s->h0 = h0; s->h1 = h1; s->h2 = h2; s->st = st; s->ffh = f; s->l2 = keep_l2 ? l2 : NULL; }
    else { nn_tfree(T, f); nn_tfree(T, st); nn_tfree(T, h2); nn_tfree(T, h1); }
}

// dh [B,N,C]: gradient at the block output on entry, at its input on return.
static void tblock_bwd(nn_tctx *T, const nn_tblock *t, nn_ttb *s, float *dh, float *dctx, int B, int N) {
    int C = t->n1.c;
    int64_t n = (int64_t)B * N, nc = n * C;
    float *dl = nn_talloc(T, nc, 0), *dt = nn_talloc(T, nc, 0);
    float *dg = nn_talloc(T, n * 4 * C, 0), *df = nn_talloc(T, n * 8 * C, 0);
    if (T->err) return;
    lin_bx(T, &t->ff2, dg, dh, NULL, (int)n, 0);
    NN_T_RUN(T) cd_cuda_bias_geglu_bwd(df, dg, s->ffh, W32(T, t->ff1.b), n, 4 * C, ST);
    lin_bx(T, &t->ff1, dl, df, NULL, (int)n, 0);
    ln_bwd(T, &t->n3, dt, dl, s->h2, s->st + 4 * n, (int)n);
    NN_T_RUN(T) cd_cuda_acc(dh, dt, nc, ST);
    nn_tfree(T, df); nn_tfree(T, dg);
    s->a2.x = s->l2;
    nn_tattn_bwd(T, &t->a2, &s->a2, dl, dctx, dh, 1);
    ln_bwd(T, &t->n2, dt, dl, s->h1, s->st + 2 * n, (int)n);
    NN_T_RUN(T) cd_cuda_acc(dh, dt, nc, ST);
    nn_tattn_bwd(T, &t->a1, &s->a1, dl, NULL, dh, 0);
    ln_bwd(T, &t->n1, dt, dl, s->h0, s->st, (int)n);
    NN_T_RUN(T) cd_cuda_acc(dh, dt, nc, ST);
    nn_tfree(T, dt); nn_tfree(T, dl);
}

// ---- Transformer2DModel ------------------------------------------------------------------
void nn_ttr_init(nn_ttr *s, const nn_transformer *t) {
    memset(s, 0, sizeof *s);
    s->ntb = t->ntb;
    s->tb = cd_calloc(t->ntb ? t->ntb : 1, sizeof *s->tb);
}
void nn_ttr_free(nn_ttr *s) { free(s->tb); memset(s, 0, sizeof *s); }

void nn_ttransformer_fwd(nn_tctx *T, const nn_transformer *t, nn_ttr *s, float *y,
                         const float *x, const float *ctx, int B, int H, int W, int M) {
    int C = t->c, N = H * W, G = t->norm.groups, sv = s != NULL;
    int64_t nc = (int64_t)B * N * C;
    float *gst = A(T, 2 * B * G, sv), *h = A(T, nc, sv);
    float *a = nn_talloc(T, nc, 0), *b = nn_talloc(T, nc, 0);
    if (T->err) return;
    nn_tgn(T, &t->norm, a, gst, x, B, N, 0);
    if (t->linear) {
        NN_T_RUN(T) cd_cuda_nchw_to_nhwc(b, a, B, C, N, ST);
        nn_tlin(T, &t->pin_l, h, b, B * N);
    } else {
        nn_tconv(T, &t->pin_c, b, a, B, H, W);
        NN_T_RUN(T) cd_cuda_nchw_to_nhwc(h, b, B, C, N, ST);
    }
    for (int i = 0; i < t->ntb && !T->err; i++) {
        float *o = A(T, nc, sv && i < t->ntb - 1);   // the last output is not needed by backward
        tblock_fwd(T, &t->tb[i], sv ? &s->tb[i] : NULL, o, h, ctx, B, N, M);
        F(T, h, sv);
        h = o;
    }
    if (t->linear) {
        nn_tlin(T, &t->pout_l, a, h, B * N);
        NN_T_RUN(T) cd_cuda_nhwc_to_nchw(y, a, B, C, N, ST);
    } else {
        NN_T_RUN(T) cd_cuda_nhwc_to_nchw(a, h, B, C, N, ST);
        nn_tconv(T, &t->pout_c, y, a, B, H, W);
    }
    NN_T_RUN(T) cd_cuda_acc(y, x, nc, ST);
    nn_tfree(T, h);   // the last block's output is a temporary either way
    nn_tfree(T, b); nn_tfree(T, a);
    if (sv) { s->x = x; s->gst = gst; s->B = B; s->H = H; s->W = W; s->M = M; }
    else nn_tfree(T, gst);
}

void nn_ttransformer_bwd(nn_tctx *T, const nn_transformer *t, nn_ttr *s, float *dx,
                         float *dctx, const float *dy) {
    int B = s->B, H = s->H, W = s->W, C = t->c, N = H * W;
    int64_t nc = (int64_t)B * N * C;
    float *dh = nn_talloc(T, nc, 0), *a = nn_talloc(T, nc, 0);
    if (T->err) return;
    if (t->linear) {
        NN_T_RUN(T) cd_cuda_nchw_to_nhwc(a, dy, B, C, N, ST);
        lin_bx(T, &t->pout_l, dh, a, NULL, B * N, 0);
    } else {
        nn_tconv_bx(T, &t->pout_c, a, dy, B, H, W);
        NN_T_RUN(T) cd_cuda_nchw_to_nhwc(dh, a, B, C, N, ST);
    }
    for (int i = t->ntb - 1; i >= 0; i--) tblock_bwd(T, &t->tb[i], &s->tb[i], dh, dctx, B, N);
    if (t->linear) {
        lin_bx(T, &t->pin_l, a, dh, NULL, B * N, 0);
        NN_T_RUN(T) cd_cuda_nhwc_to_nchw(dh, a, B, C, N, ST);
    } else {
        NN_T_RUN(T) cd_cuda_nhwc_to_nchw(a, dh, B, C, N, ST);
        nn_tconv_bx(T, &t->pin_c, dh, a, B, H, W);
    }
    nn_tgn_bwd(T, &t->norm, dx, dh, s->x, s->gst, B, N, 0);
    NN_T_RUN(T) cd_cuda_acc(dx, dy, nc, ST);
    nn_tfree(T, a); nn_tfree(T, dh);
}
#else
typedef int nn_cuda_train_empty;   // built without CUDA: nothing here
#endif
