// Attention, BasicTransformerBlock and Transformer2DModel (diffusers 0.25), forward and
// backward. Shapes: hidden [B,N,C] (N = H*W), context [B,M,cdim].
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/nn.h"
#include "kernels/kernels.h"
#include "kernels/attention_gemm.h"
#include "core/err.h"

// ---- Attention -------------------------------------------------------------------------
void nn_attn_bind(nn_binder *bd, nn_attn *a, const char *prefix, int c, int cdim, int heads,
                  int qkv_bias) {
    char p[400];
    memset(a, 0, sizeof *a);
    a->heads = heads; a->dim = c / heads; a->cdim = cdim;
    snprintf(p, sizeof p, "%s.to_q", prefix); nn_lin_bind(bd, &a->q, p, c, c, qkv_bias);
    snprintf(p, sizeof p, "%s.to_k", prefix); nn_lin_bind(bd, &a->k, p, cdim, c, qkv_bias);
    snprintf(p, sizeof p, "%s.to_v", prefix); nn_lin_bind(bd, &a->v, p, cdim, c, qkv_bias);
    snprintf(p, sizeof p, "%s.to_out.0", prefix); nn_lin_bind(bd, &a->o, p, c, c, 1);
}

void nn_attn_fwd(nn_attn *a, float *y, const float *x, const float *ctx, int B, int N, int M,
                 nn_arena *ar) {
    int C = a->heads * a->dim;
    if (!ctx) { ctx = x; M = N; }
    float *Q = nn_alloc(ar, (int64_t)B * N * C), *K = nn_alloc(ar, (int64_t)B * M * C);
    float *V = nn_alloc(ar, (int64_t)B * M * C), *O = nn_alloc(ar, (int64_t)B * N * C);
    float *lse = ar ? nn_alloc(ar, (int64_t)B * a->heads * N) : NULL;
    nn_lin_fwd(&a->q, Q, x, B * N);
    nn_lin_fwd(&a->k, K, ctx, B * M);
    nn_lin_fwd(&a->v, V, ctx, B * M);
    cd_attention_gemm_fwd(O, lse, Q, K, V, B, a->heads, N, M, a->dim, 1.f / sqrtf((float)a->dim));
    nn_lin_fwd(&a->o, y, O, B * N);
    if (ar) {
        a->xin = x; a->ctx = ctx; a->Q = Q; a->K = K; a->V = V; a->O = O; a->lse = lse;
        a->B = B; a->N = N; a->M = M;
    } else {
        free(Q); free(K); free(V); free(O);
    }
}

// dW[out,in] += dy[n,out]^T @ x[n,in]
static void wgrad(float *dW, const float *dy, const float *x, int n, int in, int out) {
    cd_gemm(1, 0, out, in, n, 1.f, dy, out, x, in, 1.f, dW, in);
}

void nn_attn_bwd(nn_attn *a, float *dx, float *dctx, const float *dy, int detach_k0) {
    int B = a->B, N = a->N, M = a->M, C = a->heads * a->dim, cd = a->cdim;
    int self = a->ctx == a->xin;
    float *dO = cd_malloc((size_t)B * N * C * sizeof(float));
    float *dQ = cd_malloc((size_t)B * N * C * sizeof(float));
    float *dK = cd_malloc((size_t)B * M * C * sizeof(float));
    float *dV = cd_malloc((size_t)B * M * C * sizeof(float));
    nn_lin_bwd_x(&a->o, dO, dy, B * N, 0);
    if (a->go) wgrad(a->go, dy, a->O, B * N, C, C);
    if (a->gob)
        for (int64_t i = 0; i < (int64_t)B * N; i++)
            for (int j = 0; j < C; j++) a->gob[j] += dy[i * C + j];
    cd_attention_gemm_bwd(dQ, dK, dV, dO, a->Q, a->K, a->V, a->O, a->lse, B, a->heads, N, M, a->dim,
                     1.f / sqrtf((float)a->dim), detach_k0);
    nn_lin_bwd_x(&a->q, dx, dQ, B * N, 0);
    if (a->gq) wgrad(a->gq, dQ, a->xin, B * N, C, C);
    if (self) {
        nn_lin_bwd_x(&a->k, dx, dK, B * N, 1);
        nn_lin_bwd_x(&a->v, dx, dV, B * N, 1);
    } else {
        if (a->gk) wgrad(a->gk, dK, a->ctx, B * M, cd, C);
        if (a->gv) wgrad(a->gv, dV, a->ctx, B * M, cd, C);
        if (dctx) {
            nn_lin_bwd_x(&a->k, dctx, dK, B * M, 1);
            nn_lin_bwd_x(&a->v, dctx, dV, B * M, 1);
        }
    }
    free(dO); free(dQ); free(dK); free(dV);
}

// ---- BasicTransformerBlock -------------------------------------------------------------
static void tblock_bind(nn_binder *bd, nn_tblock *t, const char *prefix, int c, int heads, int cdim) {
    char p[400];
    snprintf(p, sizeof p, "%s.norm1", prefix); nn_ln_bind(bd, &t->n1, p, c, 1e-5f);
    snprintf(p, sizeof p, "%s.attn1", prefix); nn_attn_bind(bd, &t->a1, p, c, c, heads, 0);
    snprintf(p, sizeof p, "%s.norm2", prefix); nn_ln_bind(bd, &t->n2, p, c, 1e-5f);
    snprintf(p, sizeof p, "%s.attn2", prefix); nn_attn_bind(bd, &t->a2, p, c, cdim, heads, 0);
    t->a2.cross = 1;
    snprintf(p, sizeof p, "%s.norm3", prefix); nn_ln_bind(bd, &t->n3, p, c, 1e-5f);
    snprintf(p, sizeof p, "%s.ff.net.0.proj", prefix); nn_lin_bind(bd, &t->ff1, p, c, 8 * c, 1);
    snprintf(p, sizeof p, "%s.ff.net.2", prefix); nn_lin_bind(bd, &t->ff2, p, 4 * c, c, 1);
}

static void ln_fwd(const nn_ln *l, float *y, float *m, float *r, const float *x, int n) {
    cd_layernorm_fwd(y, m, r, x, l->g, l->b, n, l->c, l->eps);
}

// out [B,N,C] from h0 [B,N,C] (h0 kept when training).
static void tblock_fwd(nn_tblock *t, float *out, float *h0, const float *ctx, int B, int N,
                       int M, nn_arena *ar) {
    int C = t->n1.c;
    int64_t n = (int64_t)B * N, nc = n * C;
    float *h1 = nn_alloc(ar, nc), *h2 = nn_alloc(ar, nc);
    float *m1 = nn_alloc(ar, n), *r1 = nn_alloc(ar, n), *m2 = nn_alloc(ar, n), *r2 = nn_alloc(ar, n);
    float *m3 = nn_alloc(ar, n), *r3 = nn_alloc(ar, n);
    int keep_l2 = ar && t->a2.gq;
    float *l1 = cd_malloc(nc * sizeof(float)), *l2 = keep_l2 ? nn_alloc(ar, nc) : cd_malloc(nc * sizeof(float));
    float *a = cd_malloc(nc * sizeof(float));
    float *f = nn_alloc(ar, n * 8 * C), *g = cd_malloc(n * 4 * C * sizeof(float));
    ln_fwd(&t->n1, l1, m1, r1, h0, B * N);
    nn_attn_fwd(&t->a1, a, l1, NULL, B, N, N, ar);
    cd_add(h1, h0, a, nc);
    ln_fwd(&t->n2, l2, m2, r2, h1, B * N);
    nn_attn_fwd(&t->a2, a, l2, ctx, B, N, M, ar);
    cd_add(h2, h1, a, nc);
    ln_fwd(&t->n3, l1, m3, r3, h2, B * N);
    nn_lin_fwd(&t->ff1, f, l1, B * N);
    cd_geglu_fwd(g, f, n, 4 * C);
    nn_lin_fwd(&t->ff2, a, g, B * N);
    cd_add(out, h2, a, nc);
    free(l1); free(a); free(g);
    if (!keep_l2) free(l2);
    if (ar) {
        t->h0 = h0; t->h1 = h1; t->h2 = h2; t->ffh = f; t->l2 = keep_l2 ? l2 : NULL;
        t->m1 = m1; t->r1 = r1; t->m2 = m2; t->r2 = r2; t->m3 = m3; t->r3 = r3;
    } else {
        free(h1); free(h2); free(m1); free(r1); free(m2); free(r2); free(m3); free(r3); free(f);
    }
}

// dh [B,N,C]: gradient at the block output on entry, at its input on return.
static void tblock_bwd(nn_tblock *t, float *dh, float *dctx, int B, int N) {
    int C = t->n1.c;
    int64_t n = (int64_t)B * N, nc = n * C;
    float *dl = cd_malloc(nc * sizeof(float)), *dt = cd_malloc(nc * sizeof(float));
    float *dg = cd_malloc(n * 4 * C * sizeof(float)), *df = cd_malloc(n * 8 * C * sizeof(float));
    // FF: h3 = h2 + ff2(geglu(ff1(ln3(h2))))
    nn_lin_bwd_x(&t->ff2, dg, dh, B * N, 0);
    cd_geglu_bwd(df, dg, t->ffh, n, 4 * C);
    nn_lin_bwd_x(&t->ff1, dl, df, B * N, 0);
    cd_layernorm_bwd(dt, NULL, NULL, dl, t->h2, t->m3, t->r3, t->n3.g, B * N, C);
    cd_acc(dh, dt, nc);
    // cross-attention: h2 = h1 + attn2(ln2(h1), ctx); token-0 K/V detached
    t->a2.xin = t->l2;
    nn_attn_bwd(&t->a2, dl, dctx, dh, 1);
    cd_layernorm_bwd(dt, NULL, NULL, dl, t->h1, t->m2, t->r2, t->n2.g, B * N, C);
    cd_acc(dh, dt, nc);
    // self-attention: h1 = h0 + attn1(ln1(h0))
    nn_attn_bwd(&t->a1, dl, NULL, dh, 0);
    cd_layernorm_bwd(dt, NULL, NULL, dl, t->h0, t->m1, t->r1, t->n1.g, B * N, C);
    cd_acc(dh, dt, nc);
    free(dl); free(dt); free(dg); free(df);
}

// ---- Transformer2DModel ----------------------------------------------------------------
void nn_transformer_bind(nn_binder *bd, nn_transformer *t, const char *prefix, int c,
                         int heads, int cdim, int layers, int linear, int groups) {
    char p[400];
    t->c = c; t->heads = heads; t->ntb = layers; t->linear = linear;
    snprintf(p, sizeof p, "%s.norm", prefix); nn_gn_bind(bd, &t->norm, p, c, groups, 1e-6f);
    if (linear) {
        snprintf(p, sizeof p, "%s.proj_in", prefix); nn_lin_bind(bd, &t->pin_l, p, c, c, 1);
        snprintf(p, sizeof p, "%s.proj_out", prefix); nn_lin_bind(bd, &t->pout_l, p, c, c, 1);
    } else {
        snprintf(p, sizeof p, "%s.proj_in", prefix); nn_conv_bind(bd, &t->pin_c, p, c, c, 1, 1, 0, 1);
        snprintf(p, sizeof p, "%s.proj_out", prefix); nn_conv_bind(bd, &t->pout_c, p, c, c, 1, 1, 0, 1);
    }
    t->tb = cd_calloc(layers, sizeof *t->tb);
    for (int i = 0; i < layers; i++) {
        snprintf(p, sizeof p, "%s.transformer_blocks.%d", prefix, i);
        tblock_bind(bd, &t->tb[i], p, c, heads, cdim);
    }
}

void nn_transformer_free(nn_transformer *t) { free(t->tb); t->tb = NULL; }

void nn_transformer_fwd(nn_transformer *t, float *y, const float *x, const float *ctx,
                        int B, int H, int W, int M, nn_arena *ar) {
    int C = t->c, N = H * W, G = t->norm.groups;
    int64_t nc = (int64_t)B * N * C;
    float *gm = nn_alloc(ar, B * G), *gr = nn_alloc(ar, B * G);
    float *a = cd_malloc(nc * sizeof(float)), *b = cd_malloc(nc * sizeof(float));
    cd_groupnorm_fwd(a, gm, gr, x, t->norm.g, t->norm.b, B, C, N, G, t->norm.eps, 0);
    float *h = nn_alloc(ar, nc);
    if (t->linear) {
        cd_nchw_to_nhwc(b, a, B, C, N);
        nn_lin_fwd(&t->pin_l, h, b, B * N);
    } else {
        nn_conv_fwd(&t->pin_c, b, a, B, H, W);
        cd_nchw_to_nhwc(h, b, B, C, N);
    }
    for (int i = 0; i < t->ntb; i++) {
        float *o = nn_alloc(ar, nc);
        tblock_fwd(&t->tb[i], o, h, ctx, B, N, M, ar);
        nn_free(ar, h);
        h = o;
    }
    if (t->linear) {
        nn_lin_fwd(&t->pout_l, a, h, B * N);
        cd_nhwc_to_nchw(y, a, B, C, N);
    } else {
        cd_nhwc_to_nchw(a, h, B, C, N);
        nn_conv_fwd(&t->pout_c, y, a, B, H, W);
    }
    cd_acc(y, x, nc);
    nn_free(ar, h);
    free(a); free(b);
    if (ar) { t->x = x; t->gm = gm; t->gr = gr; t->B = B; t->H = H; t->W = W; t->M = M; }
    else { free(gm); free(gr); }
}

void nn_transformer_bwd(nn_transformer *t, float *dx, float *dctx, const float *dy) {
    int B = t->B, H = t->H, W = t->W, C = t->c, N = H * W;
    int64_t nc = (int64_t)B * N * C;
    float *dh = cd_malloc(nc * sizeof(float)), *a = cd_malloc(nc * sizeof(float));
    if (t->linear) {
        cd_nchw_to_nhwc(a, dy, B, C, N);
        nn_lin_bwd_x(&t->pout_l, dh, a, B * N, 0);
    } else {
        nn_conv_bwd_x(&t->pout_c, a, dy, B, H, W);
        cd_nchw_to_nhwc(dh, a, B, C, N);
    }
    for (int i = t->ntb - 1; i >= 0; i--) tblock_bwd(&t->tb[i], dh, dctx, B, N);
    if (t->linear) {
        nn_lin_bwd_x(&t->pin_l, a, dh, B * N, 0);
        cd_nhwc_to_nchw(dh, a, B, C, N);
    } else {
        cd_nhwc_to_nchw(a, dh, B, C, N);
        nn_conv_bwd_x(&t->pin_c, dh, a, B, H, W);
    }
    cd_groupnorm_bwd(dx, NULL, NULL, dh, t->x, t->gm, t->gr, t->norm.g, t->norm.b, B, C, N,
                     t->norm.groups, 0);
    cd_acc(dx, dy, nc);
    free(dh); free(a);
}
