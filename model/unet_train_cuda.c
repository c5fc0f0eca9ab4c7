// UNet training step on the device (see the training section of model/unet_cuda.h):
// model/unet.c's training forward and model/unet_bwd.c's backward, walk for walk, with the
// device layers of model/nn_train_cuda.c. Saved activations live in per-layer tapes of this
// file's state; all device activations come from one heap planned by a dry pass per shape.
//
// The state hangs on the handle (model/unet_cuda_internal.h: cd_unet_cuda_train_setup creates
// it, cd_unet_cuda_train_free drops it; cd_unet_cuda_free calls the latter).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/unet_cuda.h"
#include "model/unet_internal.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#include "model/nn_cuda.h"
#include "model/unet_cuda_internal.h"

typedef struct cd_unet_cuda unet_head;
#define NSKIP (CD_UNET_MAX_BLOCKS * (MAXL + 1) + 1)

typedef struct { nn_tres res[MAXL]; nn_ttr att[MAXL]; int H, W; } tblk;

typedef struct cd_unet_train_state {
    const cd_unet_cuda *key;
    void *st;                        // the handle's stream (kept: the handle may be gone at free)
    int owns_device;                 // 0 for the planning-only state (no device memory)
    nn_dev *d;
    cd_unet *u;
    nn_tctx T;
    tblk down[CD_UNET_MAX_BLOCKS], up[CD_UNET_MAX_BLOCKS];
    nn_tres mid_r[2];
    nn_ttr mid_a;
    int np;
    float *gbuf, **gd;               // device gradients (one allocation), per-param pointers
    int64_t gtotal;
    int pkey[7];                     // B, H, W, M, bf16, ckpt, mode of the planned heap
    int trained, B, H, W, M, ckpt;
    const float *emb, *ctx, *hlast, *ost, *mid_in;
    const float *skips[NSKIP], *down_in[CD_UNET_MAX_BLOCKS], *up_in[CD_UNET_MAX_BLOCKS];
} tstate;

static tstate *find_state(const cd_unet_cuda *g) { return g ? g->train : NULL; }
static tstate *need(const cd_unet_cuda *g) {
    tstate *s = find_state(g);
    if (!s) cd_err("unet cuda: training call without cd_unet_cuda_train_setup");
    return s;
}

// ---- tapes ---------------------------------------------------------------------------------
typedef void (*tr_visit)(tstate *S, const nn_transformer *t, nn_ttr *s, const char *prefix, void *ctx);
// Every Transformer2DModel in model/unet.c's visit_attn2 order (down, mid, up).
static void visit_tr(tstate *S, tr_visit fn, void *ctx) {
    cd_unet *u = S->u;
    char p[128];
    for (int i = 0; i < u->cfg.nblocks; i++)
        for (int l = 0; l < u->down[i].nl; l++)
            if (u->down[i].attn) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, l);
                fn(S, &u->down[i].att[l], &S->down[i].att[l], p, ctx);
            }
    fn(S, &u->mid_a, &S->mid_a, "mid_block.attentions.0", ctx);
    for (int i = 0; i < u->cfg.nblocks; i++)
        for (int l = 0; l < u->up[i].nl; l++)
            if (u->up[i].attn) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, l);
                fn(S, &u->up[i].att[l], &S->up[i].att[l], p, ctx);
            }
}
static void tr_init(tstate *S, const nn_transformer *t, nn_ttr *s, const char *p, void *c) { nn_ttr_init(s, t); }
static void tr_free(tstate *S, const nn_transformer *t, nn_ttr *s, const char *p, void *c) { nn_ttr_free(s); }

// Binds the gradient pointers of each attn2 in u->params order; counts mismatches in *bad.
static void tr_grads(tstate *S, const nn_transformer *t, nn_ttr *s, const char *prefix, void *ctx) {
    int *k = ctx;   // k[0]: next param, k[1]: mismatches
    static const char *kv[] = {"to_k.weight", "to_v.weight", "to_q.weight", "to_out.0.weight", "to_out.0.bias"};
    int n = S->u->mode == CD_TRAIN_CROSSATTN ? 5 : S->u->mode == CD_TRAIN_CROSSATTN_KV ? 2 : 0;
    for (int b = 0; b < t->ntb; b++) {
        nn_tattn *a = &s->tb[b].a2;
        float **gp[5] = {&a->gk, &a->gv, &a->gq, &a->go, &a->gob};
        for (int j = 0; j < 5; j++) *gp[j] = NULL;
        for (int j = 0; j < n; j++) {
            char name[256];
            snprintf(name, sizeof name, "%s.transformer_blocks.%d.attn2.%s", prefix, b, kv[j]);
            if (k[0] >= S->np || strcmp(S->u->params[k[0]].name, name)) { k[1]++; continue; }
            *gp[j] = S->gd[k[0]++];
        }
    }
}

// ---- blocks (model/unet.c's down_fwd / mid_fwd / up_fwd) ------------------------------------
static int64_t sz(int B, int C, int H, int W) { return (int64_t)B * C * H * W; }
#define TT (&S->T)
// keep: tag of block outputs and skips (1 step, 2 one recomputed block); sv: layers save.
static float *AL(tstate *S, int tag, int64_t n) { return nn_talloc(TT, n, tag); }

static float *down_fwd(tstate *S, int i, const float *h, int B, int *H, int *W, int keep, int sv,
                       const float **skip, int *ns) {
    ublock *b = &S->u->down[i];
    tblk *t = &S->down[i];
    int st = sv ? S->T.save_tag : 0;
    t->H = *H; t->W = *W;
    float *y = NULL;
    for (int l = 0; l < b->nl && !S->T.err; l++) {
        y = AL(S, b->attn ? st : keep, sz(B, b->cout, *H, *W));
        nn_tresnet_fwd(TT, &b->res[l], sv ? &t->res[l] : NULL, y, h, S->emb, B, *H, *W);
        if (b->attn) {
            float *z = AL(S, keep, sz(B, b->cout, *H, *W));
            nn_ttransformer_fwd(TT, &b->att[l], sv ? &t->att[l] : NULL, z, y, S->ctx, B, *H, *W, S->M);
            if (!sv) nn_tfree(TT, y);
            y = z;
        }
        skip[(*ns)++] = h = y;
    }
    if (b->sampler && !S->T.err) {
        y = AL(S, keep, sz(B, b->cout, *H / 2, *W / 2));
        nn_tconv(TT, &b->samp, y, h, B, *H, *W);
        *H /= 2; *W /= 2;
        skip[(*ns)++] = h = y;
    }
    return (float *)h;
}

static float *mid_fwd(tstate *S, const float *h, int B, int H, int W, int keep, int sv) {
    cd_unet *u = S->u;
    int cm = u->cfg.block_out[u->cfg.nblocks - 1], st = sv ? S->T.save_tag : 0;
    float *z = AL(S, st, sz(B, cm, H, W)), *y = AL(S, st, sz(B, cm, H, W));
    nn_tresnet_fwd(TT, &u->mid_r[0], sv ? &S->mid_r[0] : NULL, y, h, S->emb, B, H, W);
    nn_ttransformer_fwd(TT, &u->mid_a, sv ? &S->mid_a : NULL, z, y, S->ctx, B, H, W, S->M);
    if (!sv) nn_tfree(TT, y);
    float *o = AL(S, keep, sz(B, cm, H, W));
    nn_tresnet_fwd(TT, &u->mid_r[1], sv ? &S->mid_r[1] : NULL, o, z, S->emb, B, H, W);
    if (!sv) nn_tfree(TT, z);
    return o;
}

static float *up_fwd(tstate *S, int i, const float *h, int ch, int B, int *H, int *W, int keep,
                     int sv, int *ns) {
    ublock *b = &S->u->up[i];
    tblk *t = &S->up[i];
    int st = sv ? S->T.save_tag : 0;
    t->H = *H; t->W = *W;
    for (int l = 0; l < b->nl && !S->T.err; l++) {
        const float *s = S->skips[--(*ns)];
        int cin = ch + b->skipc[l];
        float *cat = AL(S, st, sz(B, cin, *H, *W));
        NN_T_RUN(TT) cd_cuda_concat_c(cat, h, s, B, ch, b->skipc[l], *H * *W, S->d->st);
        float *y = AL(S, b->attn ? st : keep, sz(B, b->cout, *H, *W));
        nn_tresnet_fwd(TT, &b->res[l], sv ? &t->res[l] : NULL, y, cat, S->emb, B, *H, *W);
        if (!sv) nn_tfree(TT, cat);
        ch = b->cout;
        h = y;
        if (b->attn) {
            float *z = AL(S, keep, sz(B, ch, *H, *W));
            nn_ttransformer_fwd(TT, &b->att[l], sv ? &t->att[l] : NULL, z, y, S->ctx, B, *H, *W, S->M);
            if (!sv) nn_tfree(TT, y);
            h = z;
        }
    }
    if (b->sampler && !S->T.err) {
        float *up = AL(S, 0, sz(B, ch, 2 * *H, 2 * *W));
        NN_T_RUN(TT) cd_cuda_upsample2x_fwd(up, h, B, ch, *H, *W, S->d->st);
        *H *= 2; *W *= 2;
        float *y = AL(S, keep, sz(B, ch, *H, *W));
        nn_tconv(TT, &b->samp, y, up, B, *H, *W);
        nn_tfree(TT, up);
        h = y;
    }
    return (float *)h;
}

// emb [B,te] = silu(time_embedding(t)).
static void time_embed(tstate *S, float *emb, const float *t, int B) {
    cd_unet *u = S->u;
    int c0 = u->cfg.block_out[0], te = u->cfg.time_embed_dim;
    float *tp = AL(S, 0, (int64_t)B * c0), *e1 = AL(S, 0, (int64_t)B * te);
    NN_T_RUN(TT) cd_cuda_timestep_embedding(tp, t, B, c0, u->cfg.flip_sin_to_cos, u->cfg.freq_shift, 10000.f, S->d->st);
    nn_tlin(TT, &u->t1, e1, tp, B);
    NN_T_RUN(TT) cd_cuda_silu_fwd(e1, e1, (int64_t)B * te, S->d->st);
    nn_tlin(TT, &u->t2, emb, e1, B);
    NN_T_RUN(TT) cd_cuda_silu_fwd(emb, emb, (int64_t)B * te, S->d->st);
    nn_tfree(TT, e1); nn_tfree(TT, tp);
}

// The training forward: everything kept with tag 1; layers save (tag 1) unless checkpointing.
static void forward(tstate *S, float *out, const float *x, const float *t, const float *ctx) {
    cd_unet *u = S->u;
    const cd_unet_config *c = &u->cfg;
    int B = S->B, H = S->H, W = S->W, n = c->nblocks, c0 = c->block_out[0], ns = 0, sv = !S->ckpt;
    void *st = S->d->st;
    int64_t nctx = (int64_t)B * S->M * c->cross_dim;
    float *cx = AL(S, 1, nctx), *emb = AL(S, 1, (int64_t)B * c->time_embed_dim);
    NN_T_RUN(TT) cd_cuda_memcpy_d2d(cx, ctx, nctx * sizeof(float), st);
    S->ctx = cx; S->emb = emb;
    S->T.ctx16 = S->d->bf16 ? nn_tto16(TT, cx, nctx, 1) : NULL;
    S->T.save_tag = 1;
    time_embed(S, emb, t, B);
    float *h = AL(S, 1, sz(B, c0, H, W));
    nn_tconv(TT, &u->conv_in, h, x, B, H, W);
    S->skips[ns++] = h;
    for (int i = 0; i < n && !S->T.err; i++) {
        S->down_in[i] = h;
        h = down_fwd(S, i, h, B, &H, &W, 1, sv, S->skips, &ns);
    }
    S->mid_in = h;
    if (!S->T.err) h = mid_fwd(S, h, B, H, W, 1, sv);
    int ch = c->block_out[n - 1];
    for (int i = 0; i < n && !S->T.err; i++) {
        S->up_in[i] = h;
        h = up_fwd(S, i, h, ch, B, &H, &W, 1, sv, &ns);
        ch = u->up[i].cout;
    }
    float *ost = AL(S, 1, 2 * B * c->groups), *g = AL(S, 0, sz(B, c0, H, W));
    nn_tgn(TT, &u->norm_out, g, ost, h, B, H * W, 1);
    nn_tconv(TT, &u->conv_out, out, g, B, H, W);
    nn_tfree(TT, g);
    S->hlast = h; S->ost = ost;
}

// Checkpointing: re-run one top-level block (0 down i, 1 mid, 2 up i) saving with tag 2.
static void recompute(tstate *S, int kind, int i) {
    if (!S->ckpt || S->T.err) return;
    nn_dheap_free_tag(&S->T.h, 2);
    S->T.save_tag = 2;
    int B = S->B, ns;
    if (kind == 0) {
        int H = S->down[i].H, W = S->down[i].W;
        const float *tmp[2 * MAXL + 2];
        ns = 0;
        down_fwd(S, i, S->down_in[i], B, &H, &W, 2, 1, tmp, &ns);
    } else if (kind == 1) {
        mid_fwd(S, S->mid_in, B, S->up[0].H, S->up[0].W, 2, 1);
    } else {
        int H = S->up[i].H, W = S->up[i].W;
        int ch = i ? S->u->up[i - 1].cout : S->u->cfg.block_out[S->u->cfg.nblocks - 1];
        ns = S->u->up[i].skipi[0] + 1;
        up_fwd(S, i, S->up_in[i], ch, B, &H, &W, 2, 1, &ns);
    }
}

// ---- backward (model/unet_bwd.c) ------------------------------------------------------------
static void add_skip(tstate *S, float *dh, float **dskip, int k, int64_t n) {
    if (k < 0 || !dskip[k]) return;
    NN_T_RUN(TT) cd_cuda_acc(dh, dskip[k], n, S->d->st);
    nn_tfree(TT, dskip[k]);
    dskip[k] = NULL;
}

static float *up_bwd(tstate *S, float *dh, float **dskip, float *dctx) {
    cd_unet *u = S->u;
    int B = S->B, n = u->cfg.nblocks, ch = u->cfg.block_out[0];
    for (int i = n - 1; i >= 0 && !S->T.err; i--) {
        ublock *b = &u->up[i];
        int H = S->up[i].H, W = S->up[i].W, hw = H * W;
        recompute(S, 2, i);
        if (b->sampler) {
            float *dup = AL(S, 0, (int64_t)B * ch * 4 * hw), *d = AL(S, 0, (int64_t)B * ch * hw);
            nn_tconv_bx(TT, &b->samp, dup, dh, B, 2 * H, 2 * W);
            NN_T_RUN(TT) cd_cuda_upsample2x_bwd(d, dup, B, ch, H, W, S->d->st);
            nn_tfree(TT, dup); nn_tfree(TT, dh);
            dh = d;
        }
        for (int l = b->nl - 1; l >= 0 && !S->T.err; l--) {
            if (b->attn) {
                float *d = AL(S, 0, (int64_t)B * ch * hw);
                nn_ttransformer_bwd(TT, &b->att[l], &S->up[i].att[l], d, dctx, dh);
                nn_tfree(TT, dh);
                dh = d;
            }
            int cin = b->res[l].cin, cs = b->skipc[l], cp = cin - cs;
            float *dcat = AL(S, 0, (int64_t)B * cin * hw);
            nn_tresnet_bwd(TT, &b->res[l], &S->up[i].res[l], dcat, dh);
            nn_tfree(TT, dh);
            dh = AL(S, 0, (int64_t)B * cp * hw);
            dskip[b->skipi[l]] = AL(S, 0, (int64_t)B * cs * hw);
            NN_T_RUN(TT) cd_cuda_split_c(dh, dskip[b->skipi[l]], dcat, B, cp, cs, hw, S->d->st);
            nn_tfree(TT, dcat);
            ch = cp;
        }
    }
    return dh;
}

// Down path, last module first; stops once no attention lies before the current one.
static float *down_bwd(tstate *S, float *dh, float **dskip, float *dctx, int k) {
    cd_unet *u = S->u;
    int B = S->B, n = u->cfg.nblocks;
    for (int i = n - 1; i >= 0 && !S->T.err; i--) {
        ublock *b = &u->down[i];
        tblk *t = &S->down[i];
        recompute(S, 0, i);
        int before = 0;
        for (int j = 0; j < i; j++) before |= u->down[j].attn;
        int64_t nb = (int64_t)B * b->cout * t->H * t->W;
        if (b->sampler) {
            if (!before && !b->attn) break;
            float *dx = AL(S, 0, nb);
            nn_tconv_bx(TT, &b->samp, dx, dh, B, t->H, t->W);
            nn_tfree(TT, dh);
            dh = dx;
            add_skip(S, dh, dskip, --k, nb);
        }
        for (int l = b->nl - 1; l >= 0; l--) {
            if (b->attn) {
                float *dx = AL(S, 0, nb);
                nn_ttransformer_bwd(TT, &b->att[l], &t->att[l], dx, dctx, dh);
                nn_tfree(TT, dh);
                dh = dx;
            }
            if (!before && !(b->attn && l > 0)) return dh;
            int64_t ni = (int64_t)B * b->res[l].cin * t->H * t->W;
            float *dx = AL(S, 0, ni);
            nn_tresnet_bwd(TT, &b->res[l], &t->res[l], dx, dh);
            nn_tfree(TT, dh);
            dh = dx;
            add_skip(S, dh, dskip, --k, ni);
        }
    }
    return dh;
}

static void backward(tstate *S, float *dctx, const float *dout) {
    cd_unet *u = S->u;
    const cd_unet_config *c = &u->cfg;
    int B = S->B, H = S->H, W = S->W, n = c->nblocks, c0 = c->block_out[0];
    void *st = S->d->st;
    if (dctx) NN_T_RUN(TT) cd_cuda_memset(dctx, 0, (size_t)B * S->M * c->cross_dim * sizeof(float), st);
    float *dg = AL(S, 0, sz(B, c0, H, W)), *dh = AL(S, 0, sz(B, c0, H, W));
    nn_tconv_bx(TT, &u->conv_out, dg, dout, B, H, W);
    nn_tgn_bwd(TT, &u->norm_out, dh, dg, S->hlast, S->ost, B, H * W, 1);
    nn_tfree(TT, dg);
    float *dskip[NSKIP] = {0};
    dh = up_bwd(S, dh, dskip, dctx);
    int cm = c->block_out[n - 1], Hm = S->up[0].H, Wm = S->up[0].W;
    int64_t nm = sz(B, cm, Hm, Wm);
    float *d = AL(S, 0, nm);
    recompute(S, 1, 0);
    nn_tresnet_bwd(TT, &u->mid_r[1], &S->mid_r[1], d, dh);
    nn_ttransformer_bwd(TT, &u->mid_a, &S->mid_a, dh, dctx, d);
    int any_down_attn = 0;
    for (int i = 0; i < n; i++) any_down_attn |= u->down[i].attn;
    int k = u->nskip - 1;
    if (any_down_attn) {
        nn_tresnet_bwd(TT, &u->mid_r[0], &S->mid_r[0], d, dh);
        float *t = dh; dh = d; d = t;
        add_skip(S, dh, dskip, k, nm);
    }
    nn_tfree(TT, d);
    if (any_down_attn) dh = down_bwd(S, dh, dskip, dctx, k);
    nn_tfree(TT, dh);
    for (int i = 0; i < NSKIP; i++) nn_tfree(TT, dskip[i]);
    nn_dheap_free_tag(&S->T.h, 2);
}

// ---- planning --------------------------------------------------------------------------------
// Dry forward + backward at the state's shape: heap bytes (the high-water offset) and FLOPs.
static size_t plan(tstate *S, double *flops) {
    nn_dheap real = S->T.h;
    memset(&S->T.h, 0, sizeof S->T.h);
    S->T.h.dry = 1;
    S->T.dry = 1;
    S->T.err = 0;
    S->T.flops = 0;
    forward(S, NULL, NULL, NULL, NULL);
    backward(S, NULL, NULL);
    size_t end = S->T.h.end;
    if (flops) *flops = S->T.flops;
    nn_dheap_release(&S->T.h);
    S->T.h = real;
    S->T.dry = 0;
    S->T.err = 0;
    S->T.flops = 0;
    return end;
}

static void reset_heap(nn_dheap *h) { h->nblk = 0; h->live = 0; }

static int ensure_plan(tstate *S) {
    int key[7] = {S->B, S->H, S->W, S->M, S->d->bf16, S->ckpt, S->u->mode};
    if (!memcmp(key, S->pkey, sizeof key) && S->T.h.base) return 0;
    size_t need_b = plan(S, NULL);
    if (need_b > S->T.h.cap) {
        cd_cuda_sync(S->d->st);
        cd_cuda_free(S->T.h.base);
        S->T.h.base = cd_cuda_malloc(need_b);
        S->T.h.cap = S->T.h.base ? need_b : 0;
        if (!S->T.h.base) {
            memset(S->pkey, 0, sizeof S->pkey);
            return cd_err("unet cuda: cannot allocate %.2f GiB for the training activations", need_b / 1073741824.0);
        }
    }
    memcpy(S->pkey, key, sizeof key);
    return 0;
}

// ---- API -------------------------------------------------------------------------------------
static void state_free(tstate *S) {
    if (!S) return;
    visit_tr(S, tr_free, NULL);
    if (S->owns_device) cd_cuda_sync(S->st);
    nn_dheap_release(&S->T.h);
    if (S->gbuf) cd_cuda_free(S->gbuf);
    free(S->gd);
    free(S);
}

void cd_unet_cuda_train_free(cd_unet_cuda *g) {
    if (!g || !g->train) return;
    tstate *s = g->train;
    g->train = NULL;
    state_free(s);
}

// A weight's map entry (no error when absent).
static const nn_dmap *map_find(const nn_dev *d, const float *h) {
    int lo = 0, hi = d->nmap - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        const nn_dmap *e = &d->map[m];
        if (h < e->h) hi = m - 1;
        else if (h >= e->h + e->n) lo = m + 1;
        else return e;
    }
    return NULL;
}

int cd_unet_cuda_train_setup(cd_unet_cuda *g) {
    unet_head *hd = (unet_head *)g;
    cd_unet *u = hd->u;
    cd_unet_cuda_train_free(g);
    // the trainable tensors were made writable by cd_unet_set_train (maybe moved out of the
    // file map after the upload): upload again when the map does not know one of them
    for (int i = 0; i < u->nparams; i++)
        if (!map_find(&hd->d, u->params[i].w)) { CD_TRY(cd_unet_cuda_upload(g)); break; }
    tstate *S = cd_calloc(1, sizeof *S);
    S->key = g; S->d = &hd->d; S->u = u; S->st = hd->d.st; S->owns_device = 1;
    S->T.g = &hd->d;
    S->np = u->nparams;
    visit_tr(S, tr_init, NULL);
    S->gd = cd_calloc(S->np ? S->np : 1, sizeof *S->gd);
    int64_t off = 0;
    for (int i = 0; i < S->np; i++) off += (u->params[i].numel + 63) & ~(int64_t)63;
    S->gtotal = off;
    S->gbuf = cd_cuda_malloc((size_t)(off ? off : 64) * sizeof(float));
    if (!S->gbuf) { state_free(S); return cd_errctx("unet cuda: gradient buffers (%lld floats)", (long long)off); }
    off = 0;
    for (int i = 0; i < S->np; i++) { S->gd[i] = S->gbuf + off; off += (u->params[i].numel + 63) & ~(int64_t)63; }
    int k[2] = {0, 0};
    visit_tr(S, tr_grads, k);
    if (k[1] || k[0] != S->np) {
        state_free(S);
        return cd_err("unet cuda: the model's trainable parameters (%d) do not match its cross-attentions (mode %d)", u->nparams, u->mode);
    }
    g->train = S;
    cd_unet_cuda_zero_grad(g);
    if (cd_cuda_sync(hd->d.st) || cd_cuda_status()) return cd_errctx("unet cuda: training setup");
    return 0;
}

int cd_unet_cuda_nparams(const cd_unet_cuda *g) { tstate *S = find_state(g); return S ? S->np : 0; }

float *cd_unet_cuda_param_dev(cd_unet_cuda *g, int i) {
    tstate *S = need(g);
    if (!S || i < 0 || i >= S->np) return NULL;
    const nn_dmap *e = map_find(S->d, S->u->params[i].w);
    return e ? e->d + (S->u->params[i].w - e->h) : NULL;
}
float *cd_unet_cuda_grad_dev(cd_unet_cuda *g, int i) {
    tstate *S = need(g);
    return S && i >= 0 && i < S->np ? S->gd[i] : NULL;
}
float *cd_unet_cuda_grad_all(cd_unet_cuda *g, int64_t *n) {
    tstate *S = need(g);
    *n = S ? S->gtotal : 0;
    return S ? S->gbuf : NULL;
}

void cd_unet_cuda_zero_grad(cd_unet_cuda *g) {
    tstate *S = need(g);
    if (S) cd_cuda_memset(S->gbuf, 0, (size_t)(S->gtotal ? S->gtotal : 1) * sizeof(float), S->d->st);
}

int cd_unet_cuda_params_changed(cd_unet_cuda *g) {
    tstate *S = need(g);
    if (!S) return -1;
    if (!S->d->bf16) return 0;
    for (int i = 0; i < S->np; i++) {
        const cd_param *p = &S->u->params[i];
        const nn_dmap *e = map_find(S->d, p->w);
        if (!e || !e->b) return cd_err("unet cuda: parameter '%s' has no device copy", p->name);
        cd_cuda_f32_to_bf16(e->b + (p->w - e->h), e->d + (p->w - e->h), p->numel, S->d->st);
    }
    return cd_cuda_status();
}

int cd_unet_cuda_params_to_host(cd_unet_cuda *g) {
    tstate *S = need(g);
    if (!S) return -1;
    for (int i = 0; i < S->np; i++) {
        cd_param *p = &S->u->params[i];
        const float *d = cd_unet_cuda_param_dev(g, i);
        if (!d || cd_cuda_memcpy_d2h(p->w, d, p->numel * sizeof(float), S->d->st))
            return cd_err("unet cuda: copying '%s' to the host failed", p->name);
    }
    if (cd_cuda_sync(S->d->st) || cd_cuda_status()) return cd_errctx("unet cuda: params to host");
    return 0;
}

int cd_unet_cuda_params_from_host(cd_unet_cuda *g) {
    tstate *S = need(g);
    if (!S) return -1;
    for (int i = 0; i < S->np; i++) {
        cd_param *p = &S->u->params[i];
        float *d = cd_unet_cuda_param_dev(g, i);
        if (!d || cd_cuda_memcpy_h2d(d, p->w, p->numel * sizeof(float), S->d->st))
            return cd_err("unet cuda: copying '%s' to the device failed", p->name);
    }
    CD_TRY(cd_unet_cuda_params_changed(g));
    if (cd_cuda_sync(S->d->st) || cd_cuda_status()) return cd_errctx("unet cuda: params from host");
    return 0;
}

static int check_shape(const cd_unet *u, int B, int H, int W, int M) {
    int f = 1 << (u->cfg.nblocks - 1);
    if (B < 1 || M < 1 || H < f || W < f || H % f || W % f)
        return cd_err("unet cuda: input %dx%d (batch %d, %d context tokens) must be a positive multiple of %d", H, W, B, M, f);
    return 0;
}

int cd_unet_cuda_forward_train(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                               const float *d_ctx, int B, int H, int W, int Nctx) {
    tstate *S = need(g);
    if (!S) return -1;
    CD_TRY(check_shape(S->u, B, H, W, Nctx));
    CD_TRY(nn_dev_format_ok(S->d));
    S->trained = 0;
    S->B = B; S->H = H; S->W = W; S->M = Nctx; S->ckpt = S->u->ckpt;
    CD_TRY(ensure_plan(S));
    reset_heap(&S->T.h);
    S->T.err = 0; S->T.flops = 0; S->d->err = 0;
    forward(S, d_out, d_x, d_t, d_ctx);
    if (S->T.err || S->d->err) return cd_errctx("unet cuda: training forward (batch %d, %dx%d)", B, H, W);
    S->trained = 1;
    return 0;
}

int cd_unet_cuda_backward(cd_unet_cuda *g, float *d_dctx, const float *d_dout) {
    tstate *S = need(g);
    if (!S) return -1;
    if (!S->trained) return cd_err("unet cuda: backward without a preceding training forward");
    backward(S, d_dctx, d_dout);
    if (S->T.err || S->d->err) return cd_errctx("unet cuda: backward (batch %d, %dx%d)", S->B, S->H, S->W);
    return 0;
}

int64_t cd_unet_cuda_train_arena_bytes(const cd_unet_cuda *g) {
    tstate *S = find_state(g);
    return S ? (int64_t)S->T.h.cap : 0;
}
double cd_unet_cuda_train_flops(const cd_unet_cuda *g) {
    tstate *S = find_state(g);
    return S ? S->T.flops : 0;
}

int64_t cd_unet_cuda_train_plan(cd_unet *u, int bf16, int B, int H, int W, int Nctx, double *flops) {
    if (check_shape(u, B, H, W, Nctx)) return -1;
    nn_dev d;
    memset(&d, 0, sizeof d);
    d.bf16 = bf16;
    tstate *S = cd_calloc(1, sizeof *S);
    S->d = &d; S->u = u; S->T.g = &d;
    S->B = B; S->H = H; S->W = W; S->M = Nctx; S->ckpt = u->ckpt;
    visit_tr(S, tr_init, NULL);
    S->np = u->nparams;
    S->gd = cd_calloc(S->np ? S->np : 1, sizeof *S->gd);
    // stand-in gradient pointers (never touched while planning) so that the trainable layers
    // plan what they keep and compute for their gradients
    for (int i = 0; i < S->np; i++) S->gd[i] = (float *)(uintptr_t)256;
    int k[2] = {0, 0};
    visit_tr(S, tr_grads, k);
    size_t bytes = plan(S, flops);
    state_free(S);
    return (int64_t)bytes;
}

#else  // built without CUDA

#define NOCUDA cd_err("unet cuda: customdiff was built without CUDA (CUDA=0); rebuild with CUDA=1 on a machine with nvcc")
int cd_unet_cuda_train_setup(cd_unet_cuda *g) { return NOCUDA; }
void cd_unet_cuda_train_free(cd_unet_cuda *g) { (void)g; }
int cd_unet_cuda_nparams(const cd_unet_cuda *g) { return 0; }
float *cd_unet_cuda_param_dev(cd_unet_cuda *g, int i) { return NULL; }
float *cd_unet_cuda_grad_dev(cd_unet_cuda *g, int i) { return NULL; }
void cd_unet_cuda_zero_grad(cd_unet_cuda *g) { (void)g; }
float *cd_unet_cuda_grad_all(cd_unet_cuda *g, int64_t *n) { *n = 0; return NULL; }
int cd_unet_cuda_params_changed(cd_unet_cuda *g) { return NOCUDA; }
int cd_unet_cuda_params_to_host(cd_unet_cuda *g) { return NOCUDA; }
int cd_unet_cuda_params_from_host(cd_unet_cuda *g) { return NOCUDA; }
int cd_unet_cuda_forward_train(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                               const float *d_ctx, int B, int H, int W, int Nctx) { return NOCUDA; }
int cd_unet_cuda_backward(cd_unet_cuda *g, float *d_dctx, const float *d_dout) { return NOCUDA; }
int64_t cd_unet_cuda_train_arena_bytes(const cd_unet_cuda *g) { return 0; }
double cd_unet_cuda_train_flops(const cd_unet_cuda *g) { return 0; }
int64_t cd_unet_cuda_train_plan(cd_unet *u, int bf16, int B, int H, int W, int Nctx, double *flops) { return NOCUDA; }
#endif
