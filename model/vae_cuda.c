// The VAE on the GPU (see model/vae_cuda.h): model/vae.c's layers (bound by cd_vae_bind,
// model/vae_internal.h) walked with model/nn_cuda.c's and model/nn16_cuda.c's layers.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/vae_cuda.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#include "model/nn_cuda.h"
#include "model/nn16_cuda.h"
#include "model/vae_internal.h"

struct cd_vae_cuda {
    nn_dev d;
    cd_vae m;      // the layers: host pointers into ws, mapped to device copies by nn_dev
};

int cd_vae_cuda_new(cd_vae_cuda **out, const cd_vae_config *cfg, cd_weights *ws, void *stream) {
    char why[256] = "";
    *out = NULL;
    if (!cd_cuda_available(why, sizeof why)) return cd_err("vae cuda: no usable GPU: %s", why);
    cd_vae_cuda *v = cd_calloc(1, sizeof *v);
    v->d.st = stream;
    // the encoder when ws has it (a sampler loads the decoder only)
    if (cd_vae_bind(&v->m, cfg, ws, -1, NULL, "vae (cuda)") || nn_dev_upload(&v->d, ws, "vae")) {
        cd_vae_cuda_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

void cd_vae_cuda_free(cd_vae_cuda *v) {
    if (!v) return;
    nn_dev_free(&v->d);
    free(v);
}

// y = x + attn(GN(x)) on [B,C,H,W] (model/vae.c's vattn_fwd).
static void vattn(cd_vae_cuda *v, const vae_attn *at, float *y, const float *x, int B, int H, int W) {
    nn_dev *g = &v->d;
    nn_dmark m0 = nn_dmark_get(g);
    int C = at->c, N = H * W;
    int64_t n = (int64_t)B * C * N;
    float *a = nn_da(g, n), *t = nn_da(g, n);
    if (!t) { nn_drelease(g, m0); return; }
    nn_dgn(g, &at->gn, a, x, B, N, 0);
    cd_cuda_nchw_to_nhwc(t, a, B, C, N, g->st);
    nn_dattn(g, &at->at, a, t, NULL, B, N, N);
    cd_cuda_nhwc_to_nchw(t, a, B, C, N, g->st);
    cd_cuda_add(y, t, x, n, g->st);
    nn_drelease(g, m0);
}

// y = x + attn(GN(x)) on bf16 [B,C,H,W] (bf16 mode's decoder).
static void vattn16(cd_vae_cuda *v, const vae_attn *at, uint16_t *y, const uint16_t *x, int B, int H, int W) {
    nn_dev *g = &v->d;
    nn_dmark m0 = nn_dmark_get(g);
    int C = at->c, N = H * W;
    int64_t n = (int64_t)B * C * N;
    uint16_t *a = nn_da16(g, n), *t = nn_da16(g, n);
    if (!t) { nn_drelease(g, m0); return; }
    nn16_gn(g, &at->gn, a, x, B, N, 0);
    if (!g->err) cd_cuda_nchw_to_nhwc_bf16(t, a, B, C, N, g->st);
    nn16_attn(g, &at->at, a, t, NULL, B, N, N);
    if (!g->err) cd_cuda_nhwc_to_nchw_bf16(t, a, B, C, N, g->st);
    if (!g->err) cd_cuda_add_bf16(y, t, x, n, g->st);
    nn_drelease(g, m0);
}

// Decoder layers in the current storage: fp32 activations (nn_cuda.c), or bf16 activations
// (nn16_cuda.c) in bf16 mode; activation pointers are void * in the walk.
static void *va(nn_dev *g, int64_t n) { return g->bf16 ? (void *)nn_da16(g, n) : (void *)nn_da(g, n); }
static void v_conv(nn_dev *g, const nn_conv *c, void *y, const void *x, int B, int H, int W) {
    if (g->bf16) nn16_conv(g, c, y, x, B, H, W);
    else nn_dconv(g, c, y, x, B, H, W);
}
static void v_res(nn_dev *g, const nn_resnet *r, void *y, const void *x, int B, int H, int W) {
    if (g->bf16) nn16_resnet(g, r, y, x, NULL, B, H, W);
    else nn_dresnet(g, r, y, x, NULL, B, H, W);
}

// The decoder walk on device buffers: z [B,L,h,w] (fp32) -> img (fp32). In bf16 mode z is
// rounded to bf16 once and conv_out's bf16 output widened into img.
static void decode(cd_vae_cuda *v, float *img, const float *z, int B, int H, int W) {
    const cd_vae_config *c = &v->m.cfg;
    const vae_coder *k = &v->m.d;
    nn_dev *g = &v->d;
    int n = c->nblocks, ch = c->block_out[n - 1], b16 = g->bf16;
    int64_t nz = (int64_t)B * c->latent_channels * H * W;
    const void *ze = b16 ? (const void *)nn16_from_f32(g, z, nz) : (const void *)z;
    void *pz = va(g, nz), *x = va(g, (int64_t)B * ch * H * W), *y = va(g, (int64_t)B * ch * H * W);
    if (!y || !ze) return;
    v_conv(g, &v->m.post, pz, ze, B, H, W);
    v_conv(g, &k->cin, x, pz, B, H, W);
    v_res(g, &k->mid[0], y, x, B, H, W);
    if (b16) vattn16(v, &k->ma, x, y, B, H, W);
    else vattn(v, &k->ma, x, y, B, H, W);
    v_res(g, &k->mid[1], y, x, B, H, W);
    x = y;
    for (int i = 0; i < n && !g->err; i++) {
        for (int l = 0; l <= c->layers_per_block; l++) {
            const nn_resnet *r = &k->res[i][l];
            void *o = va(g, (int64_t)B * r->cout * H * W);
            if (!o) return;
            v_res(g, r, o, x, B, H, W);
            x = o;
        }
        ch = c->block_out[n - 1 - i];
        if (i < n - 1) {
            void *up = va(g, (int64_t)B * ch * 4 * H * W), *o = va(g, (int64_t)B * ch * 4 * H * W);
            if (!o) return;
            if (b16) cd_cuda_upsample2x_fwd_bf16(up, x, B, ch, H, W, g->st);
            else cd_cuda_upsample2x_fwd(up, x, B, ch, H, W, g->st);
            H *= 2; W *= 2;
            v_conv(g, &k->samp[i], o, up, B, H, W);
            x = o;
        }
    }
    void *a = va(g, (int64_t)B * ch * H * W);
    if (!a || g->err) return;
    if (!b16) {
        nn_dgn(g, &k->norm, a, x, B, H * W, 1);
        nn_dconv(g, &k->cout, img, a, B, H, W);
        return;
    }
    int64_t ni = (int64_t)B * c->out_channels * H * W;
    uint16_t *o = nn_da16(g, ni);
    if (!o) return;
    nn16_gn(g, &k->norm, a, x, B, H * W, 1);
    nn16_conv(g, &k->cout, o, a, B, H, W);
    if (!g->err) cd_cuda_bf16_to_f32(img, o, ni, g->st);
}

static int check_latent(int B, int h, int w) {
    return B < 1 || h < 1 || w < 1 ? cd_err("vae cuda: bad latent shape %dx%d (batch %d)", h, w, B) : 0;
}

// After a walk: 0, or -1 with the context when a layer or the device failed.
static int walk_status(nn_dev *g, int rc) {
    if (g->err) rc = -1;
    if (cd_cuda_status()) rc = -1;
    return rc;
}

int cd_vae_cuda_decode_dev(cd_vae_cuda *v, float *d_img, const float *d_z, int B, int h, int w) {
    nn_dev *g = &v->d;
    CD_TRY(check_latent(B, h, w));
    cd_cuda_status();   // clear a failure left by earlier work
    nn_dev_begin(g);
    decode(v, d_img, d_z, B, h, w);
    if (walk_status(g, 0)) return cd_errctx("vae cuda: decode (batch %d, latents %dx%d)", B, h, w);
    return 0;
}

int cd_vae_cuda_decode(cd_vae_cuda *v, float *img, const float *z, int B, int h, int w) {
    const cd_vae_config *c = &v->m.cfg;
    nn_dev *g = &v->d;
    CD_TRY(check_latent(B, h, w));
    int f = 1 << (c->nblocks - 1);
    int64_t nz = (int64_t)B * c->latent_channels * h * w, ni = (int64_t)B * c->out_channels * h * f * w * f;
    cd_cuda_status();
    nn_dev_begin(g);
    float *dz = nn_da(g, nz), *di = nn_da(g, ni);
    int rc = -1;
    if (di && !cd_cuda_memcpy_h2d(dz, z, nz * sizeof(float), g->st)) {
        decode(v, di, dz, B, h, w);
        if (!g->err && !cd_cuda_memcpy_d2h(img, di, ni * sizeof(float), g->st) && !cd_cuda_sync(g->st)) rc = 0;
    }
    if (walk_status(g, rc)) return cd_errctx("vae cuda: decode (batch %d, latents %dx%d)", B, h, w);
    return 0;
}

// ---- encoder -------------------------------------------------------------------------------
// F.pad(x, (0,1,0,1)): x [BC,H,W] -> y [BC,H+1,W+1] with a zero last column and row, as two
// concatenations; t: scratch of BC*H*(W+1); z: >= max(BC*H, BC*(W+1)) zeros.
static void pad01(nn_dev *g, float *y, float *t, const float *x, const float *z, int BC, int H, int W) {
    cd_cuda_concat_c(t, x, z, BC * H, W, 1, 1, g->st);
    cd_cuda_concat_c(y, t, z, BC, H * (W + 1), W + 1, 1, g->st);
}

// Sizes of the encoder's ping-pong buffers (sz), padded input (szp) and zeros (szz), floats.
static void enc_sizes(const cd_vae_config *c, int B, int H, int W, int64_t *sz, int64_t *szp, int64_t *szz) {
    int prev = c->block_out[0];
    *sz = *szp = *szz = 0;
    for (int i = 0; i < c->nblocks; i++) {
        int co = c->block_out[i], cm = co > prev ? co : prev;
        int64_t s = (int64_t)B * cm * H * (W + 1);
        if (s > *sz) *sz = s;
        if (i < c->nblocks - 1) {
            int64_t p = (int64_t)B * co * (H + 1) * (W + 1), z = (int64_t)B * co * (H > W + 1 ? H : W + 1);
            if (p > *szp) *szp = p;
            if (z > *szz) *szz = z;
            H /= 2; W /= 2;
        }
        prev = co;
    }
    int64_t s = (int64_t)B * 2 * c->latent_channels * H * W;
    if (s > *sz) *sz = s;
}

// model/vae.c's cd_vae_encode walk: img [B,in,H,W] -> q [B, 2*latent, H/f, W/f] (quant_conv out).
static void encode(cd_vae_cuda *v, float *q, const float *img, int B, int H, int W) {
    const cd_vae_config *c = &v->m.cfg;
    const vae_coder *e = &v->m.e;
    nn_dev *g = &v->d;
    nn_dmark m0 = nn_dmark_get(g);
    int64_t sz, szp, szz;
    enc_sizes(c, B, H, W, &sz, &szp, &szz);
    float *x = nn_da(g, sz), *y = nn_da(g, sz), *pb = nn_da(g, szp), *z = nn_da(g, szz);
    if (!z || cd_cuda_memset(z, 0, szz * sizeof(float), g->st)) { g->err = 1; nn_drelease(g, m0); return; }
    nn_dconv(g, &e->cin, x, img, B, H, W);
    for (int i = 0; i < c->nblocks && !g->err; i++) {
        for (int l = 0; l < c->layers_per_block; l++) {
            nn_dresnet(g, &e->res[i][l], y, x, NULL, B, H, W);
            float *s = x; x = y; y = s;
        }
        if (i < c->nblocks - 1) {   // F.pad(x, (0,1,0,1)) then conv k3 s2 p0
            pad01(g, pb, y, x, z, B * c->block_out[i], H, W);
            nn_dconv(g, &e->samp[i], x, pb, B, H + 1, W + 1);
            H /= 2; W /= 2;
        }
    }
    nn_dresnet(g, &e->mid[0], y, x, NULL, B, H, W);
    vattn(v, &e->ma, x, y, B, H, W);
    nn_dresnet(g, &e->mid[1], y, x, NULL, B, H, W);
    nn_dgn(g, &e->norm, x, y, B, H * W, 1);
    nn_dconv(g, &e->cout, y, x, B, H, W);
    nn_dconv(g, &v->m.quant, q, y, B, H, W);
    nn_drelease(g, m0);
}

static int check_image(const cd_vae_cuda *v, int B, int H, int W) {
    int f = 1 << (v->m.cfg.nblocks - 1);
    if (!v->m.enc) return cd_err("vae cuda: the encoder is not loaded (no encoder.* / quant_conv tensors)");
    if (B < 1 || H < f || W < f || H % f || W % f)
        return cd_err("vae cuda: image %dx%d must be a positive multiple of %d", H, W, f);
    return 0;
}

// The encoder into d_mean, d_logvar (device); the arena must be begun.
static int encode_run(cd_vae_cuda *v, float *d_mean, float *d_logvar, const float *d_pixels, int B, int H, int W) {
    nn_dev *g = &v->d;
    int f = 1 << (v->m.cfg.nblocks - 1), L = v->m.cfg.latent_channels, hw = (H / f) * (W / f);
    int64_t nl = (int64_t)B * L * hw;
    int64_t ppi = (int64_t)v->m.cfg.in_channels * H * W, qpi = 2LL * L * hw;
    float *q = nn_da(g, 2 * nl);
    // one image at a time: the activations of a 512x512 image take ~0.7 GB, a batch would take B times that
    for (int b = 0; b < B && q && !g->err; b++) encode(v, q + b * qpi, d_pixels + b * ppi, 1, H, W);
    if (g->err) return -1;
    cd_cuda_split_c(d_mean, d_logvar, q, B, L, L, hw, g->st);
    // logvar clamped to [-30, 20] (DiagonalGaussianDistribution), on the device (no sync)
    cd_cuda_clamp(d_logvar, -30.f, 20.f, nl, g->st);
    return 0;
}

int cd_vae_cuda_encode_dev(cd_vae_cuda *v, float *d_mean, float *d_logvar, const float *d_pixels, int B, int H,
                           int W) {
    CD_TRY(check_image(v, B, H, W));
    cd_cuda_status();
    nn_dev_begin(&v->d);
    int rc = encode_run(v, d_mean, d_logvar, d_pixels, B, H, W);
    if (walk_status(&v->d, rc)) return cd_errctx("vae cuda: encode (batch %d, image %dx%d)", B, H, W);
    return 0;
}

int cd_vae_cuda_encode(cd_vae_cuda *v, float *mean, float *logvar, const float *pixels, int B, int H, int W) {
    nn_dev *g = &v->d;
    CD_TRY(check_image(v, B, H, W));
    int f = 1 << (v->m.cfg.nblocks - 1);
    int64_t np = (int64_t)B * v->m.cfg.in_channels * H * W, nl = (int64_t)B * v->m.cfg.latent_channels * (H / f) * (W / f);
    cd_cuda_status();
    nn_dev_begin(g);
    float *dp = nn_da(g, np), *dm = nn_da(g, nl), *dl = nn_da(g, nl);
    int rc = dl ? cd_cuda_memcpy_h2d(dp, pixels, np * sizeof(float), g->st) : -1;
    if (!rc) rc = encode_run(v, dm, dl, dp, B, H, W);
    if (!rc) rc = cd_cuda_memcpy_d2h(mean, dm, nl * sizeof(float), g->st);
    if (!rc) rc = cd_cuda_memcpy_d2h(logvar, dl, nl * sizeof(float), g->st);
    if (walk_status(g, rc)) return cd_errctx("vae cuda: encode (batch %d, image %dx%d)", B, H, W);
    return 0;
}

int cd_vae_cuda_set_bf16(cd_vae_cuda *v, int on) { return nn_dev_set_bf16(&v->d, on); }
int cd_vae_cuda_has_encoder(const cd_vae_cuda *v) { return v->m.enc; }
int64_t cd_vae_cuda_arena_bytes(const cd_vae_cuda *v) { return nn_dev_arena_bytes(&v->d); }

#else  // built without CUDA
#define NOCUDA cd_err("vae cuda: customdiff was built without CUDA (CUDA=0)")
struct cd_vae_cuda { int unused; };
int cd_vae_cuda_new(cd_vae_cuda **out, const cd_vae_config *cfg, cd_weights *ws, void *stream) {
    *out = NULL;
    return NOCUDA;
}
void cd_vae_cuda_free(cd_vae_cuda *v) { (void)v; }
int cd_vae_cuda_decode(cd_vae_cuda *v, float *img, const float *z, int B, int h, int w) { return NOCUDA; }
int cd_vae_cuda_decode_dev(cd_vae_cuda *v, float *d_img, const float *d_z, int B, int h, int w) { return NOCUDA; }
int cd_vae_cuda_encode_dev(cd_vae_cuda *v, float *d_mean, float *d_logvar, const float *d_pixels, int B, int H,
                           int W) {
    return NOCUDA;
}
int cd_vae_cuda_encode(cd_vae_cuda *v, float *mean, float *logvar, const float *pixels, int B, int H, int W) {
    return NOCUDA;
}
int cd_vae_cuda_set_bf16(cd_vae_cuda *v, int on) { return NOCUDA; }
int cd_vae_cuda_has_encoder(const cd_vae_cuda *v) { return 0; }
int64_t cd_vae_cuda_arena_bytes(const cd_vae_cuda *v) { return 0; }
#endif
