// UNet forward on the GPU (see model/unet_cuda.h): model/unet.c's walk with the CUDA twins;
// layers and the device arena in model/nn_cuda.c, bf16 mode's bf16-activation layers in
// model/nn16_cuda.c. The top-level walk keeps block outputs and skips until the forward ends;
// the arena is reset at the next forward.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "model/unet_cuda.h"
#include "model/unet_internal.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#include "model/nn_cuda.h"
#include "model/nn16_cuda.h"
#include "model/unet_cuda_internal.h"
#include "core/half.h"

// ---- the walk (model/unet.c: forward) ---------------------------------------------------------
// One walk for both storages: fp32 activations (fp32/TF32, and nn_cuda.c's layers) or, in bf16
// mode, bf16 activations through model/nn16_cuda.c's layers (U->b16). Activation pointers are
// void * here; the small dispatchers below pick the layer of the current storage.
static int64_t sz(int B, int C, int H, int W) { return (int64_t)B * C * H * W; }

static void *ua(cd_unet_cuda *U, int64_t n) {   // n activations of the current storage
    return U->b16 ? (void *)nn_da16(&U->d, n) : (void *)nn_da(&U->d, n);
}
static void u_conv(cd_unet_cuda *U, const nn_conv *c, void *y, const void *x, int B, int H, int W) {
    if (U->b16) nn16_conv(&U->d, c, y, x, B, H, W);
    else nn_dconv(&U->d, c, y, x, B, H, W);
}
static void u_resnet(cd_unet_cuda *U, const nn_resnet *r, void *y, const void *x, const void *emb, int B, int H, int W) {
    if (U->b16) nn16_resnet(&U->d, r, y, x, emb, B, H, W);
    else nn_dresnet(&U->d, r, y, x, emb, B, H, W);
}
static void u_tr(cd_unet_cuda *U, const nn_transformer *t, void *y, const void *x, const void *ctx, int B, int H,
                 int W, int M) {
    if (U->b16) nn16_transformer(&U->d, t, y, x, ctx, B, H, W, M);
    else nn_dtransformer(&U->d, t, y, x, ctx, B, H, W, M);
}

// The act callback gets fp32 host copies (bf16 activations widened exactly on the host).
static void emit(cd_unet_cuda *U, const char *name, const void *d, int B, int C, int H, int W, int b16) {
    if (!U->acts || U->d.err) return;
    int64_t n = H ? sz(B, C, H, W) : (int64_t)B * C;
    if (n > U->hact_n) { free(U->hact); U->hact = cd_malloc(n * sizeof(float)); U->hact_n = n; }
    if (cd_cuda_memcpy_d2h(U->hact, d, n * (b16 ? 2 : 4), U->d.st) || cd_cuda_sync(U->d.st)) { U->d.err = 1; return; }
    if (b16) {   // the bf16 values sit in the first half of hact: widen from the back
        const uint16_t *b = (const uint16_t *)U->hact;
        int f16 = cd_cuda_get_fp16();
        for (int64_t i = n - 1; i >= 0; i--) U->hact[i] = f16 ? cd_f16_to_f32(b[i]) : cd_bf16_to_f32(b[i]);
    }
    int64_t s4[4] = {B, C, H, W}, s2[2] = {B, C};
    U->acts(U->act_ctx, name, U->hact, H ? 4 : 2, H ? s4 : s2);
}

// emb [B,te] = silu(time_embedding(t)), fp32 in both storages (a few values per image).
static void time_embed(cd_unet_cuda *U, float *emb, const float *t, int B) {
    cd_unet *u = U->u;
    nn_dev *g = &U->d;
    nn_dmark m0 = nn_dmark_get(g);
    int c0 = u->cfg.block_out[0], te = u->cfg.time_embed_dim;
    float *tp = nn_da(g, (int64_t)B * c0), *e1 = nn_da(g, (int64_t)B * te);
    if (!e1) return;
    cd_cuda_timestep_embedding(tp, t, B, c0, u->cfg.flip_sin_to_cos, u->cfg.freq_shift, 10000.f, g->st);
    nn_dlin(g, &u->t1, e1, tp, B);
    cd_cuda_silu_fwd(e1, e1, (int64_t)B * te, g->st);
    nn_dlin(g, &u->t2, emb, e1, B);
    emit(U, "time_embedding", emb, B, te, 0, 0, 0);
    cd_cuda_silu_fwd(emb, emb, (int64_t)B * te, g->st);
    nn_drelease(g, m0);
}

static void *down_fwd(cd_unet_cuda *U, int i, void *h, const void *emb, const void *ctx,
                      int B, int *H, int *W, int M, void **skip, int *ns) {
    ublock *b = &U->u->down[i];
    nn_dev *g = &U->d;
    for (int l = 0; l < b->nl && !g->err; l++) {
        void *y = ua(U, sz(B, b->cout, *H, *W));
        if (!y) return NULL;
        u_resnet(U, &b->res[l], y, h, emb, B, *H, *W);
        if (b->attn) {
            void *z = ua(U, sz(B, b->cout, *H, *W));
            if (!z) return NULL;
            u_tr(U, &b->att[l], z, y, ctx, B, *H, *W, M);
            y = z;
        }
        skip[(*ns)++] = h = y;
    }
    if (b->sampler && !g->err) {
        void *y = ua(U, sz(B, b->cout, *H / 2, *W / 2));
        if (!y) return NULL;
        u_conv(U, &b->samp, y, h, B, *H, *W);
        *H /= 2; *W /= 2;
        skip[(*ns)++] = h = y;
    }
    return h;
}

static void *mid_fwd(cd_unet_cuda *U, void *h, const void *emb, const void *ctx, int B, int H, int W, int M) {
    cd_unet *u = U->u;
    int cm = u->cfg.block_out[u->cfg.nblocks - 1];
    void *y = ua(U, sz(B, cm, H, W)), *z = ua(U, sz(B, cm, H, W)), *o = ua(U, sz(B, cm, H, W));
    if (!o) return NULL;
    u_resnet(U, &u->mid_r[0], y, h, emb, B, H, W);
    u_tr(U, &u->mid_a, z, y, ctx, B, H, W, M);
    u_resnet(U, &u->mid_r[1], o, z, emb, B, H, W);
    return o;
}

static void *up_fwd(cd_unet_cuda *U, int i, void *h, int ch, const void *emb, const void *ctx,
                    int B, int *H, int *W, int M, void **skip, int *ns) {
    ublock *b = &U->u->up[i];
    nn_dev *g = &U->d;
    for (int l = 0; l < b->nl && !g->err; l++) {
        void *s = skip[--(*ns)];
        int cin = ch + b->skipc[l];
        void *cat = ua(U, sz(B, cin, *H, *W)), *y = ua(U, sz(B, b->cout, *H, *W));
        if (!y) return NULL;
        if (U->b16) cd_cuda_concat_c_bf16(cat, h, s, B, ch, b->skipc[l], *H * *W, g->st);
        else cd_cuda_concat_c(cat, h, s, B, ch, b->skipc[l], *H * *W, g->st);
        u_resnet(U, &b->res[l], y, cat, emb, B, *H, *W);
        h = y;
        ch = b->cout;
        if (b->attn) {
            void *z = ua(U, sz(B, ch, *H, *W));
            if (!z) return NULL;
            u_tr(U, &b->att[l], z, h, ctx, B, *H, *W, M);
            h = z;
        }
    }
    if (b->sampler && !g->err) {
        void *up = ua(U, sz(B, ch, 2 * *H, 2 * *W)), *y = ua(U, sz(B, ch, 2 * *H, 2 * *W));
        if (!y) return NULL;
        if (U->b16) cd_cuda_upsample2x_fwd_bf16(up, h, B, ch, *H, *W, g->st);
        else cd_cuda_upsample2x_fwd(up, h, B, ch, *H, *W, g->st);
        *H *= 2; *W *= 2;
        u_conv(U, &b->samp, y, up, B, *H, *W);
        h = y;
    }
    return h;
}

// conv_out and norm_out: out (fp32) from h [B,c0,H,W]; bf16 storage rounds conv_out's y to
// bf16 (as the bf16 convolution writes it) and widens it into out.
static void out_fwd(cd_unet_cuda *U, float *out, const void *h, int B, int H, int W) {
    cd_unet *u = U->u;
    nn_dev *g = &U->d;
    int c0 = u->cfg.block_out[0], co = u->cfg.out_channels;
    void *a = ua(U, sz(B, c0, H, W));
    if (!a || g->err) return;
    if (!U->b16) {
        nn_dgn(g, &u->norm_out, a, h, B, H * W, 1);
        nn_dconv(g, &u->conv_out, out, a, B, H, W);
        return;
    }
    uint16_t *o = nn_da16(g, sz(B, co, H, W));
    if (!o) return;
    nn16_gn(g, &u->norm_out, a, h, B, H * W, 1);
    nn16_conv(g, &u->conv_out, o, a, B, H, W);
    if (!g->err) cd_cuda_bf16_to_f32(out, o, sz(B, co, H, W), g->st);
}

static void forward(cd_unet_cuda *U, float *out, const float *x, const float *t, const float *ctx,
                    int B, int H, int W, int M) {
    cd_unet *u = U->u;
    nn_dev *g = &U->d;
    const cd_unet_config *c = &u->cfg;
    int n = c->nblocks, c0 = c->block_out[0], ns = 0, ch;
    void *skip[CD_UNET_MAX_BLOCKS * (MAXL + 1) + 1];
    char name[64];
    U->b16 = g->bf16;
    float *emb = nn_da(g, (int64_t)B * c->time_embed_dim);
    void *h = ua(U, sz(B, c0, H, W));
    if (!h) return;
    time_embed(U, emb, t, B);
    const void *xe = x, *ee = emb, *ce = ctx;   // inputs of the walk in the current storage
    if (U->b16) {   // x, the time embedding and the context rounded to bf16 once
        xe = nn16_from_f32(g, x, sz(B, c->in_channels, H, W));
        ee = nn16_from_f32(g, emb, (int64_t)B * c->time_embed_dim);
        ce = nn16_from_f32(g, ctx, (int64_t)B * M * c->cross_dim);
        if (!ce) return;
    }
    u_conv(U, &u->conv_in, h, xe, B, H, W);
    emit(U, "conv_in", h, B, c0, H, W, U->b16);
    skip[ns++] = h;
    for (int i = 0; i < n && h && !g->err; i++) {
        h = down_fwd(U, i, h, ee, ce, B, &H, &W, M, skip, &ns);
        snprintf(name, sizeof name, "down_blocks.%d", i);
        if (h) emit(U, name, h, B, u->down[i].cout, H, W, U->b16);
    }
    if (h && !g->err) h = mid_fwd(U, h, ee, ce, B, H, W, M);
    if (h) emit(U, "mid_block", h, B, c->block_out[n - 1], H, W, U->b16);
    ch = c->block_out[n - 1];
    for (int i = 0; i < n && h && !g->err; i++) {
        h = up_fwd(U, i, h, ch, ee, ce, B, &H, &W, M, skip, &ns);
        ch = u->up[i].cout;
        snprintf(name, sizeof name, "up_blocks.%d", i);
        if (h) emit(U, name, h, B, ch, H, W, U->b16);
    }
    if (h && !g->err) out_fwd(U, out, h, B, H, W);
}

// ---- API -----------------------------------------------------------------------------------
// The trainable tensors keep their fp32 masters in bf16 mode (nn_dev_drop_f32).
static int is_trainable(void *ctx, const float *h) {
    const cd_unet *u = ctx;
    for (int i = 0; i < u->nparams; i++)
        if (h >= u->params[i].w && h < u->params[i].w + u->params[i].numel) return 1;
    return 0;
}
// bf16 mode: the frozen weights are bf16 only on the device (their fp32 copies freed).
static int drop_frozen(cd_unet_cuda *U) { return nn_dev_drop_f32(&U->d, is_trainable, U->u); }

int cd_unet_cuda_upload(cd_unet_cuda *U) {
    CD_TRY(nn_dev_upload(&U->d, U->u->ws, "unet"));
    return U->d.bf16 ? drop_frozen(U) : 0;
}
int cd_unet_cuda_set_bf16(cd_unet_cuda *U, int on) {
    CD_TRY(nn_dev_set_bf16(&U->d, on));
    return on ? drop_frozen(U) : 0;
}

int cd_unet_cuda_new(cd_unet_cuda **out, cd_unet *u, void *stream) {
    char why[256] = "";
    *out = NULL;
    if (!cd_cuda_available(why, sizeof why)) return cd_err("unet cuda: no usable GPU: %s", why);
    cd_unet_cuda *U = cd_calloc(1, sizeof *U);
    U->u = u;
    U->d.st = stream;
    if (cd_unet_cuda_upload(U)) { cd_unet_cuda_free(U); return -1; }
    *out = U;
    return 0;
}

void cd_unet_cuda_free(cd_unet_cuda *U) {
    if (!U) return;
    cd_unet_cuda_train_free(U);
    cd_cuda_graph_destroy(U->gexec);
    nn_dev_free(&U->d);
    free(U->hact);
    free(U);
}

static int check_shape(const cd_unet *u, int B, int H, int W, int M) {
    int f = 1 << (u->cfg.nblocks - 1);
    if (B < 1 || M < 1 || H < f || W < f || H % f || W % f)
        return cd_err("unet cuda: input %dx%d (batch %d, %d context tokens) must be a positive multiple of %d", H, W, B, M, f);
    return 0;
}

int cd_unet_cuda_forward_dev(cd_unet_cuda *U, float *d_out, const float *d_x, const float *d_t,
                             const float *d_ctx, int B, int H, int W, int Nctx) {
    CD_TRY(check_shape(U->u, B, H, W, Nctx));
    nn_dev_begin(&U->d);
    forward(U, d_out, d_x, d_t, d_ctx, B, H, W, Nctx);
    return U->d.err ? -1 : 0;
}

int cd_unet_cuda_forward(cd_unet_cuda *U, float *out, const float *x, const float *t,
                         const float *ctx, int B, int H, int W, int Nctx, cd_unet_act_fn acts,
                         void *act_ctx) {
    const cd_unet_config *c = &U->u->cfg;
    nn_dev *g = &U->d;
    CD_TRY(check_shape(U->u, B, H, W, Nctx));
    cd_errclear();
    cd_cuda_status();   // clear a failure left by earlier work
    nn_dev_begin(g);
    U->acts = acts; U->act_ctx = act_ctx;
    int64_t nx = sz(B, c->in_channels, H, W), no = sz(B, c->out_channels, H, W);
    int64_t nc = (int64_t)B * Nctx * c->cross_dim;
    // inputs and output live at the bottom of the arena, below the forward's buffers
    float *dx = nn_da(g, nx), *dt = nn_da(g, B), *dc = nn_da(g, nc), *dout = nn_da(g, no);
    int rc = -1;
    if (dout && !cd_cuda_memcpy_h2d(dx, x, nx * sizeof(float), g->st) &&
        !cd_cuda_memcpy_h2d(dt, t, B * sizeof(float), g->st) &&
        !cd_cuda_memcpy_h2d(dc, ctx, nc * sizeof(float), g->st)) {
        forward(U, dout, dx, dt, dc, B, H, W, Nctx);
        if (!g->err && !cd_cuda_memcpy_d2h(out, dout, no * sizeof(float), g->st) && !cd_cuda_sync(g->st)) rc = 0;
    }
    U->acts = NULL;
    if (cd_cuda_status()) rc = -1;
    if (rc) cd_errctx("unet cuda: forward (batch %d, %dx%d)", B, H, W);
    return rc;
}

// Capture one forward at this shape and these buffers into a graph (after a warm-up forward
// that plans the arena and the libraries' algorithms, so that the captured one allocates nothing).
static int capture(cd_unet_cuda *U, float *d_out, const float *d_x, const float *d_t,
                   const float *d_ctx, int B, int H, int W, int M) {
    void *st = U->d.st;
    cd_cuda_graph_destroy(U->gexec);
    U->gexec = NULL;
    CD_TRY(cd_unet_cuda_forward_dev(U, d_out, d_x, d_t, d_ctx, B, H, W, M));
    if (cd_cuda_sync(st) || cd_cuda_status()) return cd_errctx("unet cuda: warm-up before capture");
    if (cd_cuda_graph_begin(st)) return cd_errctx("unet cuda: the forward could not be captured as a CUDA graph");
    int rc = cd_unet_cuda_forward_dev(U, d_out, d_x, d_t, d_ctx, B, H, W, M);
    void *ex = NULL;
    int ge = cd_cuda_graph_end(st, &ex);   // ends the capture in any case; instantiates it
    int failed_op = cd_cuda_status();       // an op refused during capture (also clears the flag)
    if (rc || failed_op || ge) {
        cd_cuda_graph_destroy(ex);
        if (ge) return cd_errctx("unet cuda: the forward could not be captured as a CUDA graph");
        return cd_err("unet cuda: the forward could not be captured as a CUDA graph (an op failed during capture)");
    }
    U->gexec = ex;
    const void *key[4] = {d_out, d_x, d_t, d_ctx};
    int shape[4] = {B, H, W, M};
    memcpy(U->gkey, key, sizeof key);
    memcpy(U->gshape, shape, sizeof shape);
    U->gbf = U->d.bf16 ? 1 + U->d.fp16 : 0;
    U->gtf = cd_cuda_get_tf32();
    U->ggen = U->d.gen;
    return 0;
}

int cd_unet_cuda_forward_graph(cd_unet_cuda *U, float *d_out, const float *d_x, const float *d_t,
                               const float *d_ctx, int B, int H, int W, int Nctx) {
    if (!U->d.st) return cd_err("unet cuda: a CUDA graph needs the handle made with a stream of its own (cd_cuda_stream_create)");
    CD_TRY(check_shape(U->u, B, H, W, Nctx));
    const void *key[4] = {d_out, d_x, d_t, d_ctx};
    int shape[4] = {B, H, W, Nctx};
    if (!U->gexec || memcmp(key, U->gkey, sizeof key) || memcmp(shape, U->gshape, sizeof shape) ||
        U->gbf != (U->d.bf16 ? 1 + U->d.fp16 : 0) || U->gtf != cd_cuda_get_tf32() || U->ggen != U->d.gen)
        CD_TRY(capture(U, d_out, d_x, d_t, d_ctx, B, H, W, Nctx));
    if (cd_cuda_graph_launch(U->gexec, U->d.st)) return cd_errctx("unet cuda");
    return 0;
}

int64_t cd_unet_cuda_weight_bytes(const cd_unet_cuda *U) { return (int64_t)U->d.wbytes + (U->d.bf16 ? (int64_t)U->d.wbytes16 : 0); }
int64_t cd_unet_cuda_arena_bytes(const cd_unet_cuda *U) { return nn_dev_arena_bytes(&U->d); }
void *cd_unet_cuda_stream(const cd_unet_cuda *U) { return U->d.st; }
double cd_unet_cuda_flops(const cd_unet_cuda *U) { return U->d.flops; }

#else  // built without CUDA: every entry point fails with a clear message

struct cd_unet_cuda { int unused; };
#define NOCUDA cd_err("unet cuda: customdiff was built without CUDA (CUDA=0); rebuild with CUDA=1 on a machine with nvcc")
int cd_unet_cuda_new(cd_unet_cuda **out, cd_unet *u, void *stream) { *out = NULL; return NOCUDA; }
void cd_unet_cuda_free(cd_unet_cuda *g) { (void)g; }
int cd_unet_cuda_upload(cd_unet_cuda *g) { return NOCUDA; }
int cd_unet_cuda_set_bf16(cd_unet_cuda *g, int on) { return NOCUDA; }
int cd_unet_cuda_forward(cd_unet_cuda *g, float *out, const float *x, const float *t,
                         const float *ctx, int B, int H, int W, int Nctx, cd_unet_act_fn acts,
                         void *act_ctx) { return NOCUDA; }
int cd_unet_cuda_forward_dev(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                             const float *d_ctx, int B, int H, int W, int Nctx) { return NOCUDA; }
int cd_unet_cuda_forward_graph(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                               const float *d_ctx, int B, int H, int W, int Nctx) { return NOCUDA; }
int64_t cd_unet_cuda_weight_bytes(const cd_unet_cuda *g) { return 0; }
int64_t cd_unet_cuda_arena_bytes(const cd_unet_cuda *g) { return 0; }
void *cd_unet_cuda_stream(const cd_unet_cuda *g) { return NULL; }
double cd_unet_cuda_flops(const cd_unet_cuda *g) { return 0; }
#endif
