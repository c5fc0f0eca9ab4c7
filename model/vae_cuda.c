// VAE decoder on the GPU (see model/vae_cuda.h): the binding and walk of model/vae.c's
// decoder with model/nn_cuda.c's layers.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/vae_cuda.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#include "model/nn_cuda.h"

#define VMAXL 8
#define VEPS 1e-6f

struct cd_vae_cuda {
    nn_dev d;
    cd_vae_config cfg;
    nn_conv post, cin, cout;
    nn_resnet res[CD_VAE_MAX_BLOCKS][VMAXL];
    nn_conv samp[CD_VAE_MAX_BLOCKS];
    nn_resnet mid[2];
    nn_gn agn;             // mid-block attention: GroupNorm + one-head self-attention
    nn_attn at;
    nn_gn norm;
};

// As model/vae.c's bind_decoder.
static int bind(cd_vae_cuda *v, cd_weights *ws) {
    const cd_vae_config *c = &v->cfg;
    nn_binder bd = {.ws = ws};
    char p[300];
    int n = c->nblocks, G = c->groups, ch = c->block_out[n - 1];
    if (n > CD_VAE_MAX_BLOCKS || c->layers_per_block + 1 > VMAXL) return cd_err("vae cuda: too many blocks or layers");
    nn_conv_bind(&bd, &v->post, "post_quant_conv", c->latent_channels, c->latent_channels, 1, 1, 0, 1);
    nn_conv_bind(&bd, &v->cin, "decoder.conv_in", c->latent_channels, ch, 3, 1, 1, 1);
    nn_resnet_bind(&bd, &v->mid[0], "decoder.mid_block.resnets.0", ch, ch, 0, G, VEPS);
    nn_gn_bind(&bd, &v->agn, "decoder.mid_block.attentions.0.group_norm", ch, G, VEPS);
    nn_attn_bind(&bd, &v->at, "decoder.mid_block.attentions.0", ch, ch, 1, 1);
    nn_resnet_bind(&bd, &v->mid[1], "decoder.mid_block.resnets.1", ch, ch, 0, G, VEPS);
    for (int i = 0; i < n; i++) {
        int co = c->block_out[n - 1 - i];
        for (int l = 0; l <= c->layers_per_block; l++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, l);
            nn_resnet_bind(&bd, &v->res[i][l], p, l ? co : ch, co, 0, G, VEPS);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            nn_conv_bind(&bd, &v->samp[i], p, co, co, 3, 1, 1, 1);
        }
        ch = co;
    }
    nn_gn_bind(&bd, &v->norm, "decoder.conv_norm_out", ch, G, VEPS);
    nn_conv_bind(&bd, &v->cout, "decoder.conv_out", ch, c->out_channels, 3, 1, 1, 1);
    return nn_bind_done(&bd, "vae decoder (cuda)");
}

int cd_vae_cuda_new(cd_vae_cuda **out, const cd_vae_config *cfg, cd_weights *ws, void *stream) {
    char why[256] = "";
    *out = NULL;
    if (!cd_cuda_available(why, sizeof why)) return cd_err("vae cuda: no usable GPU: %s", why);
    cd_vae_cuda *v = cd_calloc(1, sizeof *v);
    v->cfg = *cfg;
    v->d.st = stream;
    if (bind(v, ws) || nn_dev_upload(&v->d, ws, "vae")) { cd_vae_cuda_free(v); return -1; }
    *out = v;
    return 0;
}

void cd_vae_cuda_free(cd_vae_cuda *v) {
    if (!v) return;
    nn_dev_free(&v->d);
    free(v);
}

// y = x + attn(GN(x)) on [B,C,H,W] (model/vae.c's vattn_fwd).
static void vattn(cd_vae_cuda *v, float *y, const float *x, int B, int H, int W) {
    nn_dev *g = &v->d;
    nn_dmark m0 = nn_dmark_get(g);
    int C = v->agn.c, N = H * W;
    int64_t n = (int64_t)B * C * N;
    float *a = nn_da(g, n), *t = nn_da(g, n);
    if (!t) { nn_drelease(g, m0); return; }
    nn_dgn(g, &v->agn, a, x, B, N, 0);
    cd_cuda_nchw_to_nhwc(t, a, B, C, N, g->st);
    nn_dattn(g, &v->at, a, t, NULL, B, N, N);
    cd_cuda_nhwc_to_nchw(t, a, B, C, N, g->st);
    cd_cuda_add(y, t, x, n, g->st);
    nn_drelease(g, m0);
}

// The decoder walk on device buffers: z [B,L,h,w] -> img.
static void decode(cd_vae_cuda *v, float *img, const float *z, int B, int H, int W) {
    const cd_vae_config *c = &v->cfg;
    nn_dev *g = &v->d;
    int n = c->nblocks, ch = c->block_out[n - 1];
    float *pz = nn_da(g, (int64_t)B * c->latent_channels * H * W);
    float *x = nn_da(g, (int64_t)B * ch * H * W), *y = nn_da(g, (int64_t)B * ch * H * W);
    if (!y) return;
    nn_dconv(g, &v->post, pz, z, B, H, W);
    nn_dconv(g, &v->cin, x, pz, B, H, W);
    nn_dresnet(g, &v->mid[0], y, x, NULL, B, H, W);
    vattn(v, x, y, B, H, W);
    nn_dresnet(g, &v->mid[1], y, x, NULL, B, H, W);
    x = y;
    for (int i = 0; i < n && !g->err; i++) {
        for (int l = 0; l <= c->layers_per_block; l++) {
            nn_resnet *r = &v->res[i][l];
            float *o = nn_da(g, (int64_t)B * r->cout * H * W);
            if (!o) return;
            nn_dresnet(g, r, o, x, NULL, B, H, W);
            x = o;
        }
        ch = c->block_out[n - 1 - i];
        if (i < n - 1) {
            float *up = nn_da(g, (int64_t)B * ch * 4 * H * W), *o = nn_da(g, (int64_t)B * ch * 4 * H * W);
            if (!o) return;
            cd_cuda_upsample2x_fwd(up, x, B, ch, H, W, g->st);
            H *= 2; W *= 2;
            nn_dconv(g, &v->samp[i], o, up, B, H, W);
            x = o;
        }
    }
    float *a = nn_da(g, (int64_t)B * ch * H * W);
    if (!a) return;
    nn_dgn(g, &v->norm, a, x, B, H * W, 1);
    nn_dconv(g, &v->cout, img, a, B, H, W);
}

int cd_vae_cuda_decode(cd_vae_cuda *v, float *img, const float *z, int B, int h, int w) {
    const cd_vae_config *c = &v->cfg;
    nn_dev *g = &v->d;
    if (B < 1 || h < 1 || w < 1) return cd_err("vae cuda: bad latent shape %dx%d", h, w);
    int f = 1 << (c->nblocks - 1);
    int64_t nz = (int64_t)B * c->latent_channels * h * w, ni = (int64_t)B * c->out_channels * h * f * w * f;
    cd_errclear();
    cd_cuda_status();   // clear a failure left by earlier work
    nn_dev_begin(g);
    float *dz = nn_da(g, nz), *di = nn_da(g, ni);
    int rc = -1;
    if (di && !cd_cuda_memcpy_h2d(dz, z, nz * sizeof(float), g->st)) {
        decode(v, di, dz, B, h, w);
        if (!g->err && !cd_cuda_memcpy_d2h(img, di, ni * sizeof(float), g->st) && !cd_cuda_sync(g->st)) rc = 0;
    }
    if (cd_cuda_status()) rc = -1;
    if (rc) cd_errctx("vae cuda: decode (batch %d, latents %dx%d)", B, h, w);
    return rc;
}

#else  // built without CUDA
struct cd_vae_cuda { int unused; };
int cd_vae_cuda_new(cd_vae_cuda **out, const cd_vae_config *cfg, cd_weights *ws, void *stream) {
    *out = NULL;
    return cd_err("vae cuda: customdiff was built without CUDA (CUDA=0)");
}
void cd_vae_cuda_free(cd_vae_cuda *v) { (void)v; }
int cd_vae_cuda_decode(cd_vae_cuda *v, float *img, const float *z, int B, int h, int w) {
    return cd_err("vae cuda: customdiff was built without CUDA (CUDA=0)");
}
#endif
