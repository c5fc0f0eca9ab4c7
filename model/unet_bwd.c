// UNet backward (activation gradients through the frozen UNet, weight gradients of the
// trainable cross-attention tensors, d(context)) and the analytic MAC count.
// Backward stops at the first cross-attention of the down path: nothing before it has a
// trainable tensor or reads the context.
#include <stdlib.h>
#include <string.h>
#include "model/unet_internal.h"
#include "kernels/kernels.h"
#include "core/err.h"

static float *fa(int64_t n) { return cd_malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

// Up path, output to mid: dh [B,c0,H,W] in, returns the gradient at the mid-block output.
static float *up_bwd(cd_unet *u, float *dh, float **dskip, float *dctx) {
    int B = u->B, n = u->cfg.nblocks, ch = u->cfg.block_out[0];
    for (int i = n - 1; i >= 0; i--) {
        ublock *b = &u->up[i];
        int H = b->H, W = b->W, hw = H * W;
        cd_unet_recompute(u, 2, i);
        if (b->sampler) {
            float *dup = fa((int64_t)B * ch * 4 * hw), *d = fa((int64_t)B * ch * hw);
            nn_conv_bwd_x(&b->samp, dup, dh, B, 2 * H, 2 * W);
            cd_upsample2x_bwd(d, dup, B, ch, H, W);
            free(dup); free(dh);
            dh = d;
        }
        for (int l = b->nl - 1; l >= 0; l--) {
            if (b->attn) {
                float *d = fa((int64_t)B * ch * hw);
                nn_transformer_bwd(&b->att[l], d, dctx, dh);
                free(dh);
                dh = d;
            }
            int cin = b->res[l].cin, cs = b->skipc[l], cp = cin - cs;
            float *dcat = fa((int64_t)B * cin * hw);
            nn_resnet_bwd(&b->res[l], dcat, dh);
            free(dh);
            dh = fa((int64_t)B * cp * hw);
            dskip[b->skipi[l]] = fa((int64_t)B * cs * hw);
            cd_split_c(dh, dskip[b->skipi[l]], dcat, B, cp, cs, hw);
            free(dcat);
            ch = cp;
        }
    }
    return dh;
}

static void add_skip(float *dh, float **dskip, int k, int64_t n) {
    if (k >= 0 && dskip[k]) { cd_acc(dh, dskip[k], n); free(dskip[k]); dskip[k] = NULL; }
}

int cd_unet_backward(cd_unet *u, float *dctx, const float *dout) {
    if (!u->trained) return cd_err("unet: backward without a preceding training forward");
    const cd_unet_config *c = &u->cfg;
    int B = u->B, H = u->H, W = u->W, n = c->nblocks, c0 = c->block_out[0];
    if (dctx) memset(dctx, 0, (size_t)B * u->M * c->cross_dim * sizeof(float));
    float *dg = fa((int64_t)B * c0 * H * W), *dh = fa((int64_t)B * c0 * H * W);
    nn_conv_bwd_x(&u->conv_out, dg, dout, B, H, W);
    cd_groupnorm_bwd(dh, NULL, NULL, dg, u->hlast, u->om, u->orr, u->norm_out.g, u->norm_out.b,
                     B, c0, H * W, c->groups, 1);
    free(dg);
    float **dskip = cd_calloc(u->nskip, sizeof *dskip);
    dh = up_bwd(u, dh, dskip, dctx);
    // mid block
    int cm = c->block_out[n - 1], Hm = u->up[0].H, Wm = u->up[0].W;
    int64_t nm = (int64_t)B * cm * Hm * Wm;
    float *d = fa(nm);
    cd_unet_recompute(u, 1, 0);
    nn_resnet_bwd(&u->mid_r[1], d, dh);
    nn_transformer_bwd(&u->mid_a, dh, dctx, d);
    int any_down_attn = 0;
    for (int i = 0; i < n; i++) any_down_attn |= u->down[i].attn;
    int k = u->nskip - 1;
    if (any_down_attn) {
        nn_resnet_bwd(&u->mid_r[0], d, dh);
        float *t = dh; dh = d; d = t;
        add_skip(dh, dskip, k, nm);
    }
    free(d);
    // down path, last module first; stop once no attention lies before the current one
    for (int i = n - 1; i >= 0 && any_down_attn; i--) {
        ublock *b = &u->down[i];
        cd_unet_recompute(u, 0, i);
        int before = 0;
        for (int j = 0; j < i; j++) before |= u->down[j].attn;
        int64_t nb = (int64_t)B * b->cout * b->H * b->W;
        if (b->sampler) {
            if (!before && !b->attn) break;
            float *dx = fa(nb);
            nn_conv_bwd_x(&b->samp, dx, dh, B, b->H, b->W);
            free(dh);
            dh = dx;
            add_skip(dh, dskip, --k, nb);
        }
        int stop = 0;
        for (int l = b->nl - 1; l >= 0; l--) {
            if (b->attn) {
                float *dx = fa(nb);
                nn_transformer_bwd(&b->att[l], dx, dctx, dh);
                free(dh);
                dh = dx;
            }
            if (!before && !(b->attn && l > 0)) { stop = 1; break; }
            float *dx = fa((int64_t)B * b->res[l].cin * b->H * b->W);
            nn_resnet_bwd(&b->res[l], dx, dh);
            free(dh);
            dh = dx;
            add_skip(dh, dskip, --k, (int64_t)B * b->res[l].cin * b->H * b->W);
        }
        if (stop) break;
    }
    free(dh);
    for (int i = 0; i < u->nskip; i++) free(dskip[i]);
    free(dskip);
    return 0;
}

// ---- MAC count -------------------------------------------------------------------------
static double conv_macs(int B, int cin, int cout, int k, int Ho, int Wo) {
    return (double)B * cout * cin * k * k * Ho * Wo;
}
static double resnet_macs(int B, int cin, int cout, int te, int H, int W) {
    double m = conv_macs(B, cin, cout, 3, H, W) + conv_macs(B, cout, cout, 3, H, W) + (double)B * te * cout;
    if (cin != cout) m += conv_macs(B, cin, cout, 1, H, W);
    return m;
}
static double transformer_macs(int B, int C, int layers, int N, int M, int cd) {
    double m = 2.0 * B * N * C * C;   // proj_in + proj_out
    for (int i = 0; i < layers; i++) {
        m += 4.0 * B * N * C * C + 2.0 * B * N * N * C;                 // self-attention
        m += 2.0 * B * N * C * C + 2.0 * B * M * cd * C + 2.0 * B * N * M * C;   // cross
        m += 12.0 * B * N * C * C;                                      // GEGLU FF
    }
    return m;
}

double cd_unet_forward_macs(const cd_unet_config *c, int B, int H, int W, int M) {
    int n = c->nblocks, L = c->layers_per_block, te = c->time_embed_dim, c0 = c->block_out[0];
    double m = conv_macs(B, c->in_channels, c0, 3, H, W) + (double)B * (c0 * te + te * te);
    int ch = c0, skips[64], ns = 0;
    skips[ns++] = c0;
    for (int i = 0; i < n; i++) {
        int co = c->block_out[i];
        for (int l = 0; l < L; l++) {
            m += resnet_macs(B, ch, co, te, H, W);
            if (c->down_attn[i]) m += transformer_macs(B, co, c->tlayers[i], H * W, M, c->cross_dim);
            ch = co;
            skips[ns++] = co;
        }
        if (i < n - 1) { H /= 2; W /= 2; m += conv_macs(B, co, co, 3, H, W); skips[ns++] = co; }
    }
    m += 2 * resnet_macs(B, ch, ch, te, H, W) + transformer_macs(B, ch, c->tlayers[n - 1], H * W, M, c->cross_dim);
    for (int i = 0; i < n; i++) {
        int ri = n - 1 - i, co = c->block_out[ri];
        for (int l = 0; l <= L; l++) {
            int s = skips[--ns];
            m += resnet_macs(B, ch + s, co, te, H, W);
            if (c->up_attn[i]) m += transformer_macs(B, co, c->tlayers[ri], H * W, M, c->cross_dim);
            ch = co;
        }
        if (i < n - 1) { H *= 2; W *= 2; m += conv_macs(B, co, co, 3, H, W); }
    }
    m += conv_macs(B, c0, c->out_channels, 3, H, W);
    return m;
}
