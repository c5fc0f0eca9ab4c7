// AutoencoderKL encoder/decoder (diffusers 0.25): ResnetBlock2D without time embedding
// (eps 1e-6), a one-head self-attention in each mid block, asymmetric-pad strided-conv
// downsampling, nearest-2x + conv upsampling.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/vae_internal.h"
#include "model/tiny.h"
#include "kernels/kernels.h"
#include "core/err.h"
#include "core/json.h"

const cd_vae_config *cd_vae_cfg(const cd_vae *v) { return &v->cfg; }
int cd_vae_downscale(const cd_vae *v) { return 1 << (v->cfg.nblocks - 1); }

int cd_vae_config_parse(cd_vae_config *c, const cJSON *j, const char *what) {
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(j)) return cd_err("%s: not a JSON object", what);
    const char *cls = cd_json_str(j, "_class_name", "AutoencoderKL");
    if (strcmp(cls, "AutoencoderKL")) return cd_err("%s: unsupported VAE class '%s' (expected AutoencoderKL)", what, cls);
    CD_TRY(cd_json_int_array(j, "block_out_channels", what, c->block_out, CD_VAE_MAX_BLOCKS, &c->nblocks));
    if (c->nblocks < 1) return cd_err("%s: 'block_out_channels' is empty", what);
    const char *keys[2] = {"down_block_types", "up_block_types"}, *want[2] = {"DownEncoderBlock2D", "UpDecoderBlock2D"};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, keys[k]), *e;
        if (!a) continue;
        cJSON_ArrayForEach(e, a) if (!cJSON_IsString(e) || strcmp(e->valuestring, want[k]))
            return cd_err("%s: unsupported architecture: %s has '%s' (supported: %s)", what, keys[k],
                          cJSON_IsString(e) ? e->valuestring : "?", want[k]);
        if (cJSON_GetArraySize(a) != c->nblocks) return cd_err("%s: %s has %d entries, expected %d", what, keys[k], cJSON_GetArraySize(a), c->nblocks);
    }
    if (strcmp(cd_json_str(j, "act_fn", "silu"), "silu")) return cd_err("%s: unsupported act_fn '%s'", what, cd_json_str(j, "act_fn", ""));
    c->in_channels = cd_json_int(j, "in_channels", 3);
    c->out_channels = cd_json_int(j, "out_channels", 3);
    c->latent_channels = cd_json_int(j, "latent_channels", 4);
    c->layers_per_block = cd_json_int(j, "layers_per_block", 1);
    c->groups = cd_json_int(j, "norm_num_groups", 32);
    c->scaling_factor = (float)cd_json_num(j, "scaling_factor", 0.18215);
    c->sample_size = cd_json_int(j, "sample_size", 512);
    if (c->layers_per_block + 1 > VMAXL) return cd_err("%s: layers_per_block %d too large", what, c->layers_per_block);
    if (c->layers_per_block < 1) return cd_err("%s: layers_per_block %d must be >= 1", what, c->layers_per_block);
    if (c->groups < 1) return cd_err("%s: norm_num_groups %d must be >= 1", what, c->groups);
    if (c->in_channels < 1 || c->in_channels > 64 || c->out_channels < 1 || c->out_channels > 64 ||
        c->latent_channels < 1 || c->latent_channels > 64)
        return cd_err("%s: in_channels %d / out_channels %d / latent_channels %d must be 1..64", what,
                      c->in_channels, c->out_channels, c->latent_channels);
    for (int i = 0; i < c->nblocks; i++)
        if (c->block_out[i] < 1 || c->block_out[i] > 65536 || c->block_out[i] % c->groups)
            return cd_err("%s: block_out_channels[%d] is %d (must be 1..65536 and divisible by norm_num_groups %d)",
                          what, i, c->block_out[i], c->groups);
    return 0;
}

cJSON *cd_vae_config_to_json(const cd_vae_config *c) {
    cJSON *j = cJSON_CreateObject(), *bo = cJSON_CreateArray(), *d = cJSON_CreateArray(), *u = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "_class_name", "AutoencoderKL");
    cJSON_AddStringToObject(j, "_diffusers_version", "0.25.1");
    cJSON_AddStringToObject(j, "act_fn", "silu");
    for (int i = 0; i < c->nblocks; i++) {
        cJSON_AddItemToArray(bo, cJSON_CreateNumber(c->block_out[i]));
        cJSON_AddItemToArray(d, cJSON_CreateString("DownEncoderBlock2D"));
        cJSON_AddItemToArray(u, cJSON_CreateString("UpDecoderBlock2D"));
    }
    cJSON_AddItemToObject(j, "block_out_channels", bo);
    cJSON_AddItemToObject(j, "down_block_types", d);
    cJSON_AddItemToObject(j, "up_block_types", u);
    cJSON_AddNumberToObject(j, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(j, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(j, "latent_channels", c->latent_channels);
    cJSON_AddNumberToObject(j, "layers_per_block", c->layers_per_block);
    cJSON_AddNumberToObject(j, "norm_num_groups", c->groups);
    cJSON_AddNumberToObject(j, "sample_size", c->sample_size);
    cJSON_AddNumberToObject(j, "scaling_factor", c->scaling_factor);
    return j;
}

static void vattn_bind(nn_binder *bd, vae_attn *a, const char *prefix, int c, int groups) {
    char p[300];
    a->c = c;
    snprintf(p, sizeof p, "%s.group_norm", prefix); nn_gn_bind(bd, &a->gn, p, c, groups, VEPS);
    nn_attn_bind(bd, &a->at, prefix, c, c, 1, 1);
}

// y = x + attn(GN(x)) on [B,C,H,W]
static void vattn_fwd(vae_attn *a, float *y, const float *x, int B, int H, int W) {
    int C = a->c, N = H * W;
    int64_t n = (int64_t)B * C * N;
    float *g = cd_malloc(n * sizeof(float)), *t = cd_malloc(n * sizeof(float));
    cd_groupnorm_fwd(g, NULL, NULL, x, a->gn.g, a->gn.b, B, C, N, a->gn.groups, a->gn.eps, 0);
    cd_nchw_to_nhwc(t, g, B, C, N);
    nn_attn_fwd(&a->at, g, t, NULL, B, N, N, NULL);
    cd_nhwc_to_nchw(t, g, B, C, N);
    cd_add(y, t, x, n);
    free(g); free(t);
}

static void mid_bind(nn_binder *bd, vae_coder *k, const char *pre, int c, int groups) {
    char p[300];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", pre); nn_resnet_bind(bd, &k->mid[0], p, c, c, 0, groups, VEPS);
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", pre); vattn_bind(bd, &k->ma, p, c, groups);
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", pre); nn_resnet_bind(bd, &k->mid[1], p, c, c, 0, groups, VEPS);
}

static void bind_encoder(nn_binder *bd, cd_vae *v) {
    const cd_vae_config *c = &v->cfg;
    vae_coder *e = &v->e;
    char p[300];
    int n = c->nblocks, G = c->groups, ch = c->block_out[0];
    nn_conv_bind(bd, &e->cin, "encoder.conv_in", c->in_channels, ch, 3, 1, 1, 1);
    for (int i = 0; i < n; i++) {
        int co = c->block_out[i];
        for (int l = 0; l < c->layers_per_block; l++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, l);
            nn_resnet_bind(bd, &e->res[i][l], p, l ? co : ch, co, 0, G, VEPS);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            nn_conv_bind(bd, &e->samp[i], p, co, co, 3, 2, 0, 1);
        }
        ch = co;
    }
    mid_bind(bd, e, "encoder", ch, G);
    nn_gn_bind(bd, &e->norm, "encoder.conv_norm_out", ch, G, VEPS);
    nn_conv_bind(bd, &e->cout, "encoder.conv_out", ch, 2 * c->latent_channels, 3, 1, 1, 1);
    nn_conv_bind(bd, &v->quant, "quant_conv", 2 * c->latent_channels, 2 * c->latent_channels, 1, 1, 0, 1);
}

static void bind_decoder(nn_binder *bd, cd_vae *v) {
    const cd_vae_config *c = &v->cfg;
    vae_coder *d = &v->d;
    char p[300];
    int n = c->nblocks, G = c->groups, ch = c->block_out[n - 1];
    nn_conv_bind(bd, &v->post, "post_quant_conv", c->latent_channels, c->latent_channels, 1, 1, 0, 1);
    nn_conv_bind(bd, &d->cin, "decoder.conv_in", c->latent_channels, ch, 3, 1, 1, 1);
    mid_bind(bd, d, "decoder", ch, G);
    for (int i = 0; i < n; i++) {
        int co = c->block_out[n - 1 - i];
        for (int l = 0; l <= c->layers_per_block; l++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, l);
            nn_resnet_bind(bd, &d->res[i][l], p, l ? co : ch, co, 0, G, VEPS);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            nn_conv_bind(bd, &d->samp[i], p, co, co, 3, 1, 1, 1);
        }
        ch = co;
    }
    nn_gn_bind(bd, &d->norm, "decoder.conv_norm_out", ch, G, VEPS);
    nn_conv_bind(bd, &d->cout, "decoder.conv_out", ch, c->out_channels, 3, 1, 1, 1);
}

int cd_vae_bind(cd_vae *v, const cd_vae_config *cfg, cd_weights *ws, int need_encoder, cd_rng *rng,
                const char *what) {
    memset(v, 0, sizeof *v);
    v->cfg = *cfg;
    v->ws = ws;
    if (cfg->nblocks < 1 || cfg->nblocks > CD_VAE_MAX_BLOCKS || cfg->layers_per_block < 1 ||
        cfg->layers_per_block + 1 > VMAXL)
        return cd_err("%s: %d blocks of %d layers (supported: 1..%d blocks, 1..%d layers)", what, cfg->nblocks,
                      cfg->layers_per_block, CD_VAE_MAX_BLOCKS, VMAXL - 1);
    nn_binder bd = {.ws = ws, .rng = rng};
    if (need_encoder < 0) need_encoder = nn_has(&bd, "encoder.conv_in.weight") && nn_has(&bd, "quant_conv.weight");
    v->enc = need_encoder;
    if (need_encoder) bind_encoder(&bd, v);
    bind_decoder(&bd, v);
    return nn_bind_done(&bd, what);
}

int cd_vae_new(cd_vae **out, const cd_vae_config *cfg, cd_weights *ws, int need_encoder) {
    cd_vae *v = cd_malloc(sizeof *v);
    if (cd_vae_bind(v, cfg, ws, need_encoder != 0, NULL, "vae")) { free(v); return -1; }
    *out = v;
    return 0;
}

int cd_vae_new_random(cd_vae **out, const cd_vae_config *cfg, cd_weights *ws, uint64_t seed) {
    cd_rng r;
    cd_rng_seed(&r, seed);
    cd_vae *v = cd_malloc(sizeof *v);
    // create the missing tensors, then rebind: creation moved earlier tensors
    if (cd_vae_bind(v, cfg, ws, 1, &r, "vae") || cd_vae_bind(v, cfg, ws, 1, NULL, "vae")) { free(v); return -1; }
    *out = v;
    return 0;
}

void cd_vae_free(cd_vae *v) { free(v); }

// h (freed) -> resnet -> new buffer
static float *res_step(nn_resnet *r, float *h, int B, int H, int W) {
    float *y = cd_malloc((size_t)B * r->cout * H * W * sizeof(float));
    nn_resnet_fwd(r, y, h, NULL, B, H, W, NULL);
    free(h);
    return y;
}

static float *mid_fwd(vae_coder *k, float *h, int B, int H, int W) {
    h = res_step(&k->mid[0], h, B, H, W);
    float *y = cd_malloc((size_t)B * k->ma.c * H * W * sizeof(float));
    vattn_fwd(&k->ma, y, h, B, H, W);
    free(h);
    return res_step(&k->mid[1], y, B, H, W);
}

// GN+SiLU then conv_out; frees h.
static void out_fwd(vae_coder *k, float *y, float *h, int B, int C, int H, int W) {
    cd_groupnorm_fwd(h, NULL, NULL, h, k->norm.g, k->norm.b, B, C, H * W, k->norm.groups, k->norm.eps, 1);
    nn_conv_fwd(&k->cout, y, h, B, H, W);
    free(h);
}

int cd_vae_encode(cd_vae *v, float *mean, float *logvar, const float *img, int B, int H, int W) {
    const cd_vae_config *c = &v->cfg;
    int f = cd_vae_downscale(v), n = c->nblocks, L = c->latent_channels;
    if (!v->enc) return cd_err("vae: encoder not loaded");
    if (B < 1 || H < f || W < f || H % f || W % f) return cd_err("vae: image %dx%d must be a positive multiple of %d", H, W, f);
    vae_coder *e = &v->e;
    int ch = c->block_out[0];
    float *h = cd_malloc((size_t)B * ch * H * W * sizeof(float));
    nn_conv_fwd(&e->cin, h, img, B, H, W);
    for (int i = 0; i < n; i++) {
        for (int l = 0; l < c->layers_per_block; l++) h = res_step(&e->res[i][l], h, B, H, W);
        ch = c->block_out[i];
        if (i < n - 1) {   // F.pad(x, (0,1,0,1)) then conv k3 s2 p0
            int Hp = H + 1, Wp = W + 1;
            float *pd = cd_calloc((size_t)B * ch * Hp * Wp, sizeof(float));
            for (int64_t pc = 0; pc < (int64_t)B * ch; pc++)
                for (int y = 0; y < H; y++)
                    memcpy(pd + (pc * Hp + y) * Wp, h + (pc * H + y) * W, W * sizeof(float));
            free(h);
            H /= 2; W /= 2;
            h = cd_malloc((size_t)B * ch * H * W * sizeof(float));
            nn_conv_fwd(&e->samp[i], h, pd, B, Hp, Wp);
            free(pd);
        }
    }
    h = mid_fwd(e, h, B, H, W);
    int64_t nl = (int64_t)B * 2 * L * H * W;
    float *m = cd_malloc(nl * sizeof(float)), *q = cd_malloc(nl * sizeof(float));
    out_fwd(e, m, h, B, ch, H, W);
    nn_conv_fwd(&v->quant, q, m, B, H, W);
    int64_t hw = (int64_t)H * W;
    for (int b = 0; b < B; b++) {
        memcpy(mean + (int64_t)b * L * hw, q + (int64_t)b * 2 * L * hw, L * hw * sizeof(float));
        float *lv = logvar + (int64_t)b * L * hw;
        const float *src = q + ((int64_t)b * 2 * L + L) * hw;
        for (int64_t i = 0; i < L * hw; i++) lv[i] = fminf(fmaxf(src[i], -30.f), 20.f);
    }
    free(m); free(q);
    return 0;
}

void cd_vae_sample(float *z, const float *mean, const float *logvar, const float *noise, int64_t n) {
    for (int64_t i = 0; i < n; i++) z[i] = mean[i] + expf(0.5f * logvar[i]) * noise[i];
}

int cd_vae_decode(cd_vae *v, float *img, const float *z, int B, int h, int w) {
    const cd_vae_config *c = &v->cfg;
    int n = c->nblocks, L = c->latent_channels, H = h, W = w;
    if (B < 1 || h < 1 || w < 1) return cd_err("vae: bad latent shape %dx%d", h, w);
    vae_coder *d = &v->d;
    float *pz = cd_malloc((size_t)B * L * H * W * sizeof(float));
    nn_conv_fwd(&v->post, pz, z, B, H, W);
    int ch = c->block_out[n - 1];
    float *x = cd_malloc((size_t)B * ch * H * W * sizeof(float));
    nn_conv_fwd(&d->cin, x, pz, B, H, W);
    free(pz);
    x = mid_fwd(d, x, B, H, W);
    for (int i = 0; i < n; i++) {
        for (int l = 0; l <= c->layers_per_block; l++) x = res_step(&d->res[i][l], x, B, H, W);
        ch = c->block_out[n - 1 - i];
        if (i < n - 1) {
            float *up = cd_malloc((size_t)B * ch * 4 * H * W * sizeof(float));
            cd_upsample2x_fwd(up, x, B, ch, H, W);
            free(x);
            H *= 2; W *= 2;
            x = cd_malloc((size_t)B * ch * H * W * sizeof(float));
            nn_conv_fwd(&d->samp[i], x, up, B, H, W);
            free(up);
        }
    }
    out_fwd(d, img, x, B, ch, H, W);
    return 0;
}
