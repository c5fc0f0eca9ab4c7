// One CLIP encoder layer (pre-LN), forward and backward, on [B,L,C] tokens.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "kernels/kernels.h"
#include "model/clip_internal.h"

void clip_act_fwd(cd_clip_act a, float *y, const float *x, int64_t n) {
    if (a == CD_ACT_GELU) cd_gelu_fwd(y, x, n);
    else cd_quick_gelu_fwd(y, x, n);
}

static void attn(const clip_dims *d, float *o, float *lse, const float *q, const float *k, const float *v) {
    int D = d->C / d->H;
    float scale = 1.f / sqrtf((float)D);
    if (d->causal) cd_attention_causal_fwd(o, lse, q, k, v, d->B, d->H, d->L, D, scale);
    else cd_attention_fwd(o, lse, q, k, v, d->B, d->H, d->L, d->L, D, scale);
}

void clip_layer_fwd(const cd_clip_layer *l, const clip_dims *d, float *x, const clip_layer_save *sv) {
    int64_t n = (int64_t)d->B * d->L, C = d->C, I = d->I;
    int save = sv != NULL;
    float *h = save ? sv->ln1 : cd_malloc(sizeof(float) * n * C);
    float *q = save ? sv->q : cd_malloc(sizeof(float) * n * C);
    float *k = save ? sv->k : cd_malloc(sizeof(float) * n * C);
    float *v = save ? sv->v : cd_malloc(sizeof(float) * n * C);
    float *a = save ? sv->att : cd_malloc(sizeof(float) * n * C);
    float *t = cd_malloc(sizeof(float) * n * C);
    float *f = save ? sv->h1 : cd_malloc(sizeof(float) * n * I);
    float *g = cd_malloc(sizeof(float) * n * I);
    cd_layernorm_fwd(h, save ? sv->mean1 : NULL, save ? sv->rstd1 : NULL, x, l->ln1_g, l->ln1_b, (int)n, (int)C, d->eps);
    cd_linear_fwd(q, h, l->q_w, l->q_b, (int)n, (int)C, (int)C);
    cd_linear_fwd(k, h, l->k_w, l->k_b, (int)n, (int)C, (int)C);
    cd_linear_fwd(v, h, l->v_w, l->v_b, (int)n, (int)C, (int)C);
    attn(d, a, save ? sv->lse : NULL, q, k, v);
    cd_linear_fwd(t, a, l->o_w, l->o_b, (int)n, (int)C, (int)C);
    cd_acc(x, t, n * C);
    if (save) memcpy(sv->xmid, x, sizeof(float) * n * C);
    float *h2 = save ? sv->ln2 : h;
    cd_layernorm_fwd(h2, save ? sv->mean2 : NULL, save ? sv->rstd2 : NULL, x, l->ln2_g, l->ln2_b, (int)n, (int)C, d->eps);
    cd_linear_fwd(f, h2, l->fc1_w, l->fc1_b, (int)n, (int)C, (int)I);
    clip_act_fwd(d->act, g, f, n * I);
    cd_linear_fwd(t, g, l->fc2_w, l->fc2_b, (int)n, (int)I, (int)C);
    cd_acc(x, t, n * C);
    if (!save) { free(h); free(q); free(k); free(v); free(a); free(f); }
    free(t); free(g);
}

// dx holds d(layer output); on return d(layer input). Weights are frozen (no dW).
void clip_layer_bwd(const cd_clip_layer *l, const clip_dims *d, float *dx, const float *xin,
                    const clip_layer_save *sv) {
    int64_t n = (int64_t)d->B * d->L, C = d->C, I = d->I;
    int D = (int)(C / d->H);
    float scale = 1.f / sqrtf((float)D);
    float *dg = cd_malloc(sizeof(float) * n * I);
    float *t = cd_malloc(sizeof(float) * n * C), *t2 = cd_malloc(sizeof(float) * n * C);
    // MLP branch: out = xmid + fc2(act(fc1(ln2(xmid))))
    cd_linear_bwd(dg, NULL, NULL, dx, NULL, l->fc2_w, (int)n, (int)I, (int)C);
    if (d->act == CD_ACT_GELU) cd_gelu_bwd(dg, dg, sv->h1, n * I);
    else cd_quick_gelu_bwd(dg, dg, sv->h1, n * I);
    cd_linear_bwd(t, NULL, NULL, dg, NULL, l->fc1_w, (int)n, (int)C, (int)I);
    cd_layernorm_bwd(t2, NULL, NULL, t, sv->xmid, sv->mean2, sv->rstd2, l->ln2_g, (int)n, (int)C);
    cd_acc(dx, t2, n * C);                       // dx = d(xmid)
    // attention branch: xmid = xin + o_proj(attn(q, k, v)), q/k/v = proj(ln1(xin))
    float *da = t, *dq = t2;
    float *dk = cd_malloc(sizeof(float) * n * C), *dv = cd_malloc(sizeof(float) * n * C);
    cd_linear_bwd(da, NULL, NULL, dx, NULL, l->o_w, (int)n, (int)C, (int)C);
    if (d->causal) cd_attention_causal_bwd(dq, dk, dv, da, sv->q, sv->k, sv->v, sv->att, sv->lse, d->B, d->H, d->L, D, scale);
    else cd_attention_bwd(dq, dk, dv, da, sv->q, sv->k, sv->v, sv->att, sv->lse, d->B, d->H, d->L, d->L, D, scale, 0);
    float *dh = da;   // d(ln1 output) = dq Wq + dk Wk + dv Wv
    cd_linear_bwd(dh, NULL, NULL, dq, NULL, l->q_w, (int)n, (int)C, (int)C);
    cd_linear_bwd(dq, NULL, NULL, dk, NULL, l->k_w, (int)n, (int)C, (int)C);
    cd_acc(dh, dq, n * C);
    cd_linear_bwd(dq, NULL, NULL, dv, NULL, l->v_w, (int)n, (int)C, (int)C);
    cd_acc(dh, dq, n * C);
    cd_layernorm_bwd(dq, NULL, NULL, dh, xin, sv->mean1, sv->rstd1, l->ln1_g, (int)n, (int)C);
    cd_acc(dx, dq, n * C);
    free(dg); free(t); free(t2); free(dk); free(dv);
}
