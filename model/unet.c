// UNet2DConditionModel: binding, forward (inference and training), backward.
// Skips: conv_in's output and every down resnet(+attention) and downsampler output are
// pushed (s_0..s_K); up resnets pop them last-first and concatenate [h, skip] on channels.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/unet.h"
#include "model/unet_internal.h"
#include "model/tiny.h"
#include "kernels/kernels.h"
#include "core/err.h"

const cd_unet_config *cd_unet_cfg(const cd_unet *u) { return &u->cfg; }

static void free_blocks(cd_unet *u) {
    for (int i = 0; i < CD_UNET_MAX_BLOCKS; i++)
        for (int l = 0; l < MAXL; l++) {
            nn_transformer_free(&u->down[i].att[l]);
            nn_transformer_free(&u->up[i].att[l]);
        }
    nn_transformer_free(&u->mid_a);
}

static int bind_all(cd_unet *u, cd_rng *rng) {
    const cd_unet_config *c = &u->cfg;
    nn_binder bd = {.ws = u->ws, .rng = rng};
    char p[256];
    int n = c->nblocks, L = c->layers_per_block, c0 = c->block_out[0], G = c->groups, te = c->time_embed_dim;
    free_blocks(u);
    memset(u->down, 0, sizeof u->down);
    memset(u->up, 0, sizeof u->up);
    memset(&u->mid_a, 0, sizeof u->mid_a);
    if (L + 1 > MAXL || n > CD_UNET_MAX_BLOCKS) return cd_err("unet: layers_per_block %d too large", L);
    nn_lin_bind(&bd, &u->t1, "time_embedding.linear_1", c0, te, 1);
    nn_lin_bind(&bd, &u->t2, "time_embedding.linear_2", te, te, 1);
    nn_conv_bind(&bd, &u->conv_in, "conv_in", c->in_channels, c0, 3, 1, 1, 1);
    int ch = c0;
    for (int i = 0; i < n; i++) {
        ublock *b = &u->down[i];
        b->nl = L; b->attn = c->down_attn[i]; b->sampler = i < n - 1; b->cout = c->block_out[i];
        for (int l = 0; l < L; l++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, l);
            nn_resnet_bind(&bd, &b->res[l], p, l == 0 ? ch : b->cout, b->cout, te, G, c->eps);
            if (b->attn) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, l);
                nn_transformer_bind(&bd, &b->att[l], p, b->cout, c->heads[i], c->cross_dim, c->tlayers[i], c->linear_proj, G);
            }
        }
        if (b->sampler) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            nn_conv_bind(&bd, &b->samp, p, b->cout, b->cout, 3, 2, 1, 1);
        }
        ch = b->cout;
    }
    int cm = c->block_out[n - 1];
    nn_resnet_bind(&bd, &u->mid_r[0], "mid_block.resnets.0", cm, cm, te, G, c->eps);
    nn_transformer_bind(&bd, &u->mid_a, "mid_block.attentions.0", cm, c->heads[n - 1], c->cross_dim, c->tlayers[n - 1], c->linear_proj, G);
    nn_resnet_bind(&bd, &u->mid_r[1], "mid_block.resnets.1", cm, cm, te, G, c->eps);
    int prev = cm, K = n * L + (n - 1), k = K;   // K: index of the last skip
    for (int i = 0; i < n; i++) {
        ublock *b = &u->up[i];
        int ri = n - 1 - i;   // reversed block index
        int outc = c->block_out[ri], inc = c->block_out[ri - 1 >= 0 ? ri - 1 : 0];
        b->nl = L + 1; b->attn = c->up_attn[i]; b->sampler = i < n - 1; b->cout = outc;
        for (int l = 0; l <= L; l++) {
            int skipc = l == L ? inc : outc, rin = l == 0 ? prev : outc;
            b->skipc[l] = skipc; b->skipi[l] = k--;
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, l);
            nn_resnet_bind(&bd, &b->res[l], p, rin + skipc, outc, te, G, c->eps);
            if (b->attn) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, l);
                nn_transformer_bind(&bd, &b->att[l], p, outc, c->heads[ri], c->cross_dim, c->tlayers[ri], c->linear_proj, G);
            }
        }
        if (b->sampler) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            nn_conv_bind(&bd, &b->samp, p, outc, outc, 3, 1, 1, 1);
        }
        prev = outc;
    }
    u->nskip = K + 1;
    free(u->skips);
    u->skips = cd_calloc(u->nskip, sizeof *u->skips);
    nn_gn_bind(&bd, &u->norm_out, "conv_norm_out", c0, G, c->eps);
    nn_conv_bind(&bd, &u->conv_out, "conv_out", c0, c->out_channels, 3, 1, 1, 1);
    return nn_bind_done(&bd, "unet");
}

int cd_unet_new(cd_unet **out, const cd_unet_config *cfg, cd_weights *ws) {
    cd_unet *u = cd_calloc(1, sizeof *u);
    u->cfg = *cfg;
    u->ws = ws;
    if (bind_all(u, NULL)) { cd_unet_free(u); return -1; }
    *out = u;
    return 0;
}

int cd_unet_new_random(cd_unet **out, const cd_unet_config *cfg, cd_weights *ws, uint64_t seed) {
    cd_unet *u = cd_calloc(1, sizeof *u);
    u->cfg = *cfg;
    u->ws = ws;
    cd_rng r;
    cd_rng_seed(&r, seed);
    if (bind_all(u, &r) || bind_all(u, NULL)) { cd_unet_free(u); return -1; }
    *out = u;
    return 0;
}

void cd_unet_free(cd_unet *u) {
    if (!u) return;
    free_blocks(u);
    nn_arena_free(&u->ar);
    nn_arena_free(&u->ar2);
    free(u->skips);
    for (int i = 0; i < u->nparams; i++) free(u->params[i].g);
    free(u->params);
    free(u);
}

static void apply_train_mode(cd_unet *u);

int cd_unet_rebind(cd_unet *u) {
    CD_TRY(bind_all(u, NULL));
    apply_train_mode(u);
    return 0;
}

// ---- forward ---------------------------------------------------------------------------
typedef struct { cd_unet_act_fn fn; void *ctx; } actcb;
static void emit(actcb *a, const char *name, const float *d, int B, int C, int H, int W) {
    if (!a->fn) return;
    int64_t s4[4] = {B, C, H, W}, s2[2] = {B, C};
    a->fn(a->ctx, name, d, H ? 4 : 2, H ? s4 : s2);
}

// emb_act [B,te] = silu(time_embedding(t)); also emits time_embedding.
static void time_embed(cd_unet *u, float *emb_act, const float *t, int B, actcb *a) {
    int c0 = u->cfg.block_out[0], te = u->cfg.time_embed_dim;
    float *tp = cd_malloc((size_t)B * c0 * sizeof(float)), *e1 = cd_malloc((size_t)B * te * sizeof(float));
    cd_timestep_embedding(tp, t, B, c0, u->cfg.flip_sin_to_cos, u->cfg.freq_shift, 10000.f);
    nn_lin_fwd(&u->t1, e1, tp, B);
    cd_silu_fwd(e1, e1, (int64_t)B * te);
    nn_lin_fwd(&u->t2, emb_act, e1, B);
    emit(a, "time_embedding", emb_act, B, te, 0, 0);
    cd_silu_fwd(emb_act, emb_act, (int64_t)B * te);
    free(tp); free(e1);
}

static int64_t sz(int B, int C, int H, int W) { return (int64_t)B * C * H * W; }

// Block forwards. keep: where block outputs and skips go (NULL: heap, freed by the
// consumer); save: where layers keep what backward needs (NULL: nothing kept).
static float *down_fwd(cd_unet *u, int i, float *h, const float *emb, const float *ctx, int B,
                       int *H, int *W, int M, nn_arena *keep, nn_arena *save, float **skip, int *ns) {
    ublock *b = &u->down[i];
    b->H = *H; b->W = *W;
    for (int l = 0; l < b->nl; l++) {
        // a resnet output that feeds a transformer is needed only by backward: `save`
        float *y = nn_alloc(b->attn ? save : keep, sz(B, b->cout, *H, *W));
        nn_resnet_fwd(&b->res[l], y, h, emb, B, *H, *W, save);
        if (b->attn) {
            float *z = nn_alloc(keep, sz(B, b->cout, *H, *W));
            nn_transformer_fwd(&b->att[l], z, y, ctx, B, *H, *W, M, save);
            nn_free(save, y);
            y = z;
        }
        skip[(*ns)++] = h = y;
    }
    if (b->sampler) {
        float *y = nn_alloc(keep, sz(B, b->cout, *H / 2, *W / 2));
        nn_conv_fwd(&b->samp, y, h, B, *H, *W);
        *H /= 2; *W /= 2;
        skip[(*ns)++] = h = y;
    }
    return h;
}

static float *mid_fwd(cd_unet *u, float *h, const float *emb, const float *ctx, int B, int H,
                      int W, int M, nn_arena *keep, nn_arena *save) {
    int cm = u->cfg.block_out[u->cfg.nblocks - 1];
    float *y = nn_alloc(save, sz(B, cm, H, W)), *z = nn_alloc(save, sz(B, cm, H, W));
    nn_resnet_fwd(&u->mid_r[0], y, h, emb, B, H, W, save);
    nn_transformer_fwd(&u->mid_a, z, y, ctx, B, H, W, M, save);
    nn_free(save, y);
    float *o = nn_alloc(keep, sz(B, cm, H, W));
    nn_resnet_fwd(&u->mid_r[1], o, z, emb, B, H, W, save);
    nn_free(save, z);
    return o;
}

// h: input with ch channels (freed when keep == NULL); pops skips from skip[*ns - 1] down.
static float *up_fwd(cd_unet *u, int i, float *h, int ch, const float *emb, const float *ctx,
                     int B, int *H, int *W, int M, nn_arena *keep, nn_arena *save, float **skip, int *ns) {
    ublock *b = &u->up[i];
    b->H = *H; b->W = *W;
    for (int l = 0; l < b->nl; l++) {
        float *s = skip[--(*ns)];
        int cin = ch + b->skipc[l];
        float *cat = nn_alloc(save, sz(B, cin, *H, *W));
        cd_concat_c(cat, h, s, B, ch, b->skipc[l], *H * *W);
        nn_free(keep, h);
        nn_free(keep, s);
        h = nn_alloc(b->attn ? save : keep, sz(B, b->cout, *H, *W));
        nn_resnet_fwd(&b->res[l], h, cat, emb, B, *H, *W, save);
        nn_free(save, cat);
        ch = b->cout;
        if (b->attn) {
            float *z2 = nn_alloc(keep, sz(B, ch, *H, *W));
            nn_transformer_fwd(&b->att[l], z2, h, ctx, B, *H, *W, M, save);
            nn_free(save, h);
            h = z2;
        }
    }
    if (b->sampler) {
        float *up = cd_malloc(sz(B, ch, 2 * *H, 2 * *W) * sizeof(float));
        cd_upsample2x_fwd(up, h, B, ch, *H, *W);
        nn_free(keep, h);
        *H *= 2; *W *= 2;
        h = nn_alloc(keep, sz(B, ch, *H, *W));
        nn_conv_fwd(&b->samp, h, up, B, *H, *W);
        free(up);
    }
    return h;
}

// The whole forward. keep/save as above: inference (NULL, NULL), training (ar, ar),
// training with checkpointing (ar, NULL): block inputs and skips are kept in u for
// cd_unet_recompute.
static void forward(cd_unet *u, float *out, const float *x, const float *t, const float *ctx,
                    int B, int H, int W, int M, nn_arena *keep, nn_arena *save, actcb *a) {
    const cd_unet_config *c = &u->cfg;
    int n = c->nblocks, c0 = c->block_out[0], ns = 0, ch;
    float *emb = keep ? nn_alloc(keep, (int64_t)B * c->time_embed_dim) : cd_malloc((size_t)B * c->time_embed_dim * sizeof(float));
    time_embed(u, emb, t, B, a);
    float **skip = keep ? u->skips : cd_calloc(u->nskip, sizeof *skip);
    float *h = nn_alloc(keep, sz(B, c0, H, W));
    nn_conv_fwd(&u->conv_in, h, x, B, H, W);
    emit(a, "conv_in", h, B, c0, H, W);
    skip[ns++] = h;
    char name[64];
    for (int i = 0; i < n; i++) {
        u->down_in[i] = h;
        h = down_fwd(u, i, h, emb, ctx, B, &H, &W, M, keep, save, skip, &ns);
        snprintf(name, sizeof name, "down_blocks.%d", i);
        emit(a, name, h, B, u->down[i].cout, H, W);
    }
    u->mid_in = h;
    h = mid_fwd(u, h, emb, ctx, B, H, W, M, keep, save);
    emit(a, "mid_block", h, B, c->block_out[n - 1], H, W);
    ch = c->block_out[n - 1];
    for (int i = 0; i < n; i++) {
        u->up_in[i] = h;
        h = up_fwd(u, i, h, ch, emb, ctx, B, &H, &W, M, keep, save, skip, &ns);
        ch = u->up[i].cout;
        snprintf(name, sizeof name, "up_blocks.%d", i);
        emit(a, name, h, B, ch, H, W);
    }
    float *om = nn_alloc(keep, B * c->groups), *orr = nn_alloc(keep, B * c->groups);
    float *g = cd_malloc(sz(B, c0, H, W) * sizeof(float));
    cd_groupnorm_fwd(g, om, orr, h, u->norm_out.g, u->norm_out.b, B, c0, H * W, c->groups, c->eps, 1);
    nn_conv_fwd(&u->conv_out, out, g, B, H, W);
    free(g);
    if (keep) { u->hlast = h; u->om = om; u->orr = orr; u->emb = emb; u->ctx = ctx; }
    else { free(h); free(om); free(orr); free(emb); free(skip); }
}

// Checkpointing: re-run one top-level block with its layers saving into u->ar2.
// kind 0: down block i, 1: mid block, 2: up block i.
void cd_unet_recompute(cd_unet *u, int kind, int i) {
    if (!u->ckpt) return;
    nn_arena_reset(&u->ar2);
    int B = u->B, M = u->M, ns;
    if (kind == 0) {
        int H = u->down[i].H, W = u->down[i].W;
        float *tmp[2 * MAXL];
        ns = 0;
        down_fwd(u, i, u->down_in[i], u->emb, u->ctx, B, &H, &W, M, &u->ar2, &u->ar2, tmp, &ns);
    } else if (kind == 1) {
        mid_fwd(u, u->mid_in, u->emb, u->ctx, B, u->up[0].H, u->up[0].W, M, &u->ar2, &u->ar2);
    } else {
        ublock *b = &u->up[i];
        int H = b->H, W = b->W, ch = i ? u->up[i - 1].cout : u->cfg.block_out[u->cfg.nblocks - 1];
        ns = b->skipi[0] + 1;
        up_fwd(u, i, u->up_in[i], ch, u->emb, u->ctx, B, &H, &W, M, &u->ar2, &u->ar2, u->skips, &ns);
    }
}

static int check_shape(const cd_unet *u, int B, int H, int W, int M) {
    int f = 1 << (u->cfg.nblocks - 1);
    if (B < 1 || M < 1 || H < f || W < f || H % f || W % f)
        return cd_err("unet: input %dx%d (batch %d, %d context tokens) must be a positive multiple of %d", H, W, B, M, f);
    return 0;
}

int cd_unet_forward(cd_unet *u, float *out, const float *x, const float *t, const float *ctx,
                    int B, int H, int W, int Nctx, cd_unet_act_fn acts, void *act_ctx) {
    CD_TRY(check_shape(u, B, H, W, Nctx));
    actcb a = {acts, act_ctx};
    forward(u, out, x, t, ctx, B, H, W, Nctx, NULL, NULL, &a);
    return 0;
}

// ---- training --------------------------------------------------------------------------
static void add_param(cd_unet *u, const char *prefix, const char *suffix, float **wp, float **gp,
                      int ndim, int64_t d0, int64_t d1) {
    cd_param *p = &u->params[u->nparams++];
    snprintf(p->name, sizeof p->name, "%s.%s", prefix, suffix);
    cd_weight *w = cd_weights_find(u->ws, p->name);
    p->w = w ? cd_weights_own(w) : *wp;
    *wp = p->w;
    p->ndim = ndim; p->shape[0] = d0; p->shape[1] = d1; p->numel = ndim == 1 ? d0 : d0 * d1;
    if (!p->g) p->g = cd_calloc(p->numel, sizeof(float));
    *gp = p->g;
}

// Walk every cross-attention in a fixed order (down, mid, up) and call fn.
typedef void (*attn_visit)(cd_unet *u, nn_attn *a, const char *prefix, void *ctx);
static void visit_attn2(cd_unet *u, attn_visit fn, void *ctx) {
    char p[256];
    for (int i = 0; i < u->cfg.nblocks; i++)
        for (int l = 0; l < u->down[i].nl; l++)
            if (u->down[i].attn)
                for (int k = 0; k < u->down[i].att[l].ntb; k++) {
                    snprintf(p, sizeof p, "down_blocks.%d.attentions.%d.transformer_blocks.%d.attn2", i, l, k);
                    fn(u, &u->down[i].att[l].tb[k].a2, p, ctx);
                }
    for (int k = 0; k < u->mid_a.ntb; k++) {
        snprintf(p, sizeof p, "mid_block.attentions.0.transformer_blocks.%d.attn2", k);
        fn(u, &u->mid_a.tb[k].a2, p, ctx);
    }
    for (int i = 0; i < u->cfg.nblocks; i++)
        for (int l = 0; l < u->up[i].nl; l++)
            if (u->up[i].attn)
                for (int k = 0; k < u->up[i].att[l].ntb; k++) {
                    snprintf(p, sizeof p, "up_blocks.%d.attentions.%d.transformer_blocks.%d.attn2", i, l, k);
                    fn(u, &u->up[i].att[l].tb[k].a2, p, ctx);
                }
}

static void count_attn(cd_unet *u, nn_attn *a, const char *prefix, void *ctx) { (*(int *)ctx)++; }

static void setup_attn(cd_unet *u, nn_attn *a, const char *prefix, void *ctx) {
    a->gq = a->gk = a->gv = a->go = a->gob = NULL;
    if (u->mode == CD_TRAIN_NONE) return;
    int C = a->heads * a->dim;
    add_param(u, prefix, "to_k.weight", &a->k.w, &a->gk, 2, C, a->cdim);
    add_param(u, prefix, "to_v.weight", &a->v.w, &a->gv, 2, C, a->cdim);
    if (u->mode == CD_TRAIN_CROSSATTN) {
        add_param(u, prefix, "to_q.weight", &a->q.w, &a->gq, 2, C, C);
        add_param(u, prefix, "to_out.0.weight", &a->o.w, &a->go, 2, C, C);
        add_param(u, prefix, "to_out.0.bias", &a->o.b, &a->gob, 1, C, 0);
    }
}

static void apply_train_mode(cd_unet *u) {
    u->nparams = 0;   // re-walk in the same order, reusing gradient buffers
    visit_attn2(u, setup_attn, NULL);
}

int cd_unet_set_train(cd_unet *u, int mode, cd_param **params, int *nparams) {
    if (mode < CD_TRAIN_NONE || mode > CD_TRAIN_CROSSATTN) return cd_err("unet: unknown training mode %d", mode);
    int na = 0;
    visit_attn2(u, count_attn, &na);
    for (int i = 0; i < u->nparams; i++) free(u->params[i].g);
    free(u->params);
    u->params = cd_calloc(na * 5 + 1, sizeof *u->params);
    u->nparams = 0;
    u->mode = mode;
    apply_train_mode(u);
    if (params) *params = u->params;
    if (nparams) *nparams = u->nparams;
    return 0;
}

void cd_unet_set_checkpointing(cd_unet *u, int on) { u->ckpt = on; }

void cd_unet_zero_grad(cd_unet *u) {
    for (int i = 0; i < u->nparams; i++) memset(u->params[i].g, 0, u->params[i].numel * sizeof(float));
}

int64_t cd_unet_arena_bytes(const cd_unet *u) { return (int64_t)(nn_arena_bytes(&u->ar) + nn_arena_bytes(&u->ar2)); }

int cd_unet_forward_train(cd_unet *u, float *out, const float *x, const float *t,
                          const float *ctx, int B, int H, int W, int Nctx) {
    CD_TRY(check_shape(u, B, H, W, Nctx));
    nn_arena_reset(&u->ar);
    actcb a = {0};
    // the context must outlive backward: keep a copy in the arena
    float *cx = nn_arena_alloc(&u->ar, (int64_t)B * Nctx * u->cfg.cross_dim);
    memcpy(cx, ctx, (size_t)B * Nctx * u->cfg.cross_dim * sizeof(float));
    u->B = B; u->H = H; u->W = W; u->M = Nctx;
    forward(u, out, x, t, cx, B, H, W, Nctx, &u->ar, u->ckpt ? NULL : &u->ar, &a);
    u->B = B; u->H = H; u->W = W; u->M = Nctx;
    u->trained = 1;
    return 0;
}

