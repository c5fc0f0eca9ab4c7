// Original single-file layout -> diffusers/transformers names (see model/names.h). Mapping
// rules as diffusers' convert_original_stable_diffusion_to_diffusers (0.25).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/names.h"
#include "model/pipeline.h"
#include "core/err.h"

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

int cd_sf_inspect(const cd_st_file *f, cd_sf_info *info) {
    memset(info, 0, sizeof *info);
    int has_unet = 0, max_in = -1, first_op = -1, maxres = -1;
    for (int i = 0; i < f->n; i++) {
        const char *k = f->t[i].name;
        if (starts(k, CD_SF_TEXT_V1)) info->family = CD_FAMILY_SD1;
        else if (starts(k, CD_SF_TEXT_V2)) {
            info->family = CD_FAMILY_SD2;
            const char *r = k + strlen(CD_SF_TEXT_V2);
            if (starts(r, "transformer.")) r += strlen("transformer.");
            int li;
            if (sscanf(r, "resblocks.%d.", &li) == 1 && li > maxres) maxres = li;
            if (starts(r, "ln_final.") || starts(r, "positional_embedding")) info->openclip_native = 1;
        }
        int lv;
        if (sscanf(k, CD_SF_VAE "decoder.up.%d.", &lv) == 1 && lv + 1 > info->vae_levels) info->vae_levels = lv + 1;
        if (starts(k, CD_SF_UNET)) {
            has_unet = 1;
            int bi;
            if (sscanf(k + strlen(CD_SF_UNET), "input_blocks.%d.", &bi) == 1) {
                if (bi > max_in) max_in = bi;
                if (strstr(k, ".0.op.") && (first_op < 0 || bi < first_op)) first_op = bi;
            }
        }
    }
    info->openclip_layers = maxres + 1;
    if (!has_unet) return cd_err("%s: no '%s*' tensors: not a Stable Diffusion single-file checkpoint", f->path, CD_SF_UNET);
    // input_blocks: 0 = conv_in, then per level L resnets and one downsampler (op)
    info->layers_per_block = first_op > 0 ? first_op - 1 : max_in;
    if (info->layers_per_block < 1) return cd_err("%s: cannot infer layers_per_block from input_blocks", f->path);
    if (!info->family) {   // no text encoder: tell by the cross-attention width
        const cd_st_tensor *t = cd_st_find(f, CD_SF_UNET "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight");
        if (t && t->shape[1] == 768) info->family = CD_FAMILY_SD1;
        else if (t && t->shape[1] == 1024) info->family = CD_FAMILY_SD2;
    }
    if (!info->family)
        return cd_err("%s: cannot tell the model family (no cond_stage_model.transformer.* (SD v1) or cond_stage_model.model.* (SD v2) tensors)", f->path);
    return 0;
}

typedef struct { const char *from, *to; } pair;
// head + rest with the first matching `from` prefix of rest replaced by `to` (heap string).
static char *sub(const char *head, const char *rest, const pair *map, int n) {
    for (int i = 0; i < n; i++)
        if (starts(rest, map[i].from)) return cd_fmt("%s%s%s", head, map[i].to, rest + strlen(map[i].from));
    return cd_fmt("%s%s", head, rest);
}

static const pair RESNET[] = {{"in_layers.0.", "norm1."}, {"in_layers.2.", "conv1."},
    {"emb_layers.1.", "time_emb_proj."}, {"out_layers.0.", "norm2."}, {"out_layers.3.", "conv2."},
    {"skip_connection.", "conv_shortcut."}};
#define NRES (int)(sizeof RESNET / sizeof *RESNET)

char *cd_sf_rename_unet(const char *key, void *ctx) {
    const cd_sf_info *in = ctx;
    int L = in->layers_per_block, i, j, n;
    char head[128];
    if (starts(key, "time_embed.0.")) return cd_fmt("time_embedding.linear_1.%s", key + 13);
    if (starts(key, "time_embed.2.")) return cd_fmt("time_embedding.linear_2.%s", key + 13);
    if (starts(key, "input_blocks.0.0.")) return cd_fmt("conv_in.%s", key + 17);
    if (starts(key, "out.0.")) return cd_fmt("conv_norm_out.%s", key + 6);
    if (starts(key, "out.2.")) return cd_fmt("conv_out.%s", key + 6);
    if (sscanf(key, "input_blocks.%d.%d.%n", &i, &j, &n) == 2 && n > 0) {
        int b = (i - 1) / (L + 1), l = (i - 1) % (L + 1);
        const char *rest = key + n;
        if (l == L) {
            if (starts(rest, "op.")) return cd_fmt("down_blocks.%d.downsamplers.0.conv.%s", b, rest + 3);
            return cd_fmt("down_blocks.%d.downsamplers.0.%s", b, rest);
        }
        if (j == 0) { snprintf(head, sizeof head, "down_blocks.%d.resnets.%d.", b, l); return sub(head, rest, RESNET, NRES); }
        return cd_fmt("down_blocks.%d.attentions.%d.%s", b, l, rest);
    }
    if (sscanf(key, "middle_block.%d.%n", &j, &n) == 1 && n > 0) {
        const char *rest = key + n;
        if (j == 1) return cd_fmt("mid_block.attentions.0.%s", rest);
        snprintf(head, sizeof head, "mid_block.resnets.%d.", j / 2);
        return sub(head, rest, RESNET, NRES);
    }
    if (sscanf(key, "output_blocks.%d.%d.%n", &i, &j, &n) == 2 && n > 0) {
        int b = i / (L + 1), l = i % (L + 1);
        const char *rest = key + n;
        if (j == 0) { snprintf(head, sizeof head, "up_blocks.%d.resnets.%d.", b, l); return sub(head, rest, RESNET, NRES); }
        if (starts(rest, "conv.")) return cd_fmt("up_blocks.%d.upsamplers.0.%s", b, rest);
        return cd_fmt("up_blocks.%d.attentions.%d.%s", b, l, rest);
    }
    return cd_fmt("unknown.%s", key);   // kept so that it is listed as unknown
}

static const pair VRES[] = {{"nin_shortcut.", "conv_shortcut."}};
static const pair VATT[] = {{"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."},
                            {"proj_out.", "to_out.0."}};

static char *vae_coder(const char *coder, const char *rest, int nlev) {
    int i, j, n;
    char head[128];
    if (starts(rest, "norm_out.")) return cd_fmt("%s.conv_norm_out.%s", coder, rest + 9);
    if (starts(rest, "mid.attn_1.")) {
        snprintf(head, sizeof head, "%s.mid_block.attentions.0.", coder);
        return sub(head, rest + 11, VATT, 5);
    }
    if (sscanf(rest, "mid.block_%d.%n", &i, &n) == 1 && n > 0) {
        snprintf(head, sizeof head, "%s.mid_block.resnets.%d.", coder, i - 1);
        return sub(head, rest + n, VRES, 1);
    }
    const char *lev = !strcmp(coder, "encoder") ? "down" : "up";
    char fmt1[64], fmt2[64];
    snprintf(fmt1, sizeof fmt1, "%s.%%d.block.%%d.%%n", lev);
    snprintf(fmt2, sizeof fmt2, "%s.%%d.%%n", lev);
    int blk = !strcmp(coder, "encoder") ? 0 : 1;
    if (sscanf(rest, fmt1, &i, &j, &n) == 2 && n > 0) {
        int b = blk ? nlev - 1 - i : i;
        snprintf(head, sizeof head, "%s.%s_blocks.%d.resnets.%d.", coder, lev, b, j);
        return sub(head, rest + n, VRES, 1);
    }
    if (sscanf(rest, fmt2, &i, &n) == 1 && n > 0) {
        int b = blk ? nlev - 1 - i : i;
        const char *r = rest + n;
        if (starts(r, "downsample.")) return cd_fmt("%s.down_blocks.%d.downsamplers.0.%s", coder, b, r + 11);
        if (starts(r, "upsample.")) return cd_fmt("%s.up_blocks.%d.upsamplers.0.%s", coder, b, r + 9);
    }
    return cd_fmt("%s.%s", coder, rest);
}

char *cd_sf_rename_vae(const char *key, void *ctx) {
    int lv = ((const cd_sf_info *)ctx)->vae_levels;
    if (starts(key, "encoder.")) return vae_coder("encoder", key + 8, lv);
    if (starts(key, "decoder.")) return vae_coder("decoder", key + 8, lv);
    return cd_strdup(key);   // quant_conv, post_quant_conv
}

char *cd_sf_rename_text_v1(const char *key, void *ctx) {
    (void)ctx;
    if (strstr(key, "position_ids")) return NULL;
    if (starts(key, "text_model.")) return cd_strdup(key);
    return cd_fmt("text_model.%s", key);
}

static const pair OCLIP[] = {{"ln_1.", "layer_norm1."}, {"ln_2.", "layer_norm2."},
    {"mlp.c_fc.", "mlp.fc1."}, {"mlp.c_proj.", "mlp.fc2."}, {"attn.out_proj.", "self_attn.out_proj."},
    {"attn.in_proj_weight", "self_attn.in_proj_weight"}, {"attn.in_proj_bias", "self_attn.in_proj_bias"}};

char *cd_sf_rename_text_v2(const char *key, void *ctx) {
    (void)ctx;
    if (strstr(key, "position_ids")) return NULL;
    if (starts(key, "text_model.")) return cd_strdup(key);   // already converted (diffusers' script)
    if (starts(key, "transformer.")) key += strlen("transformer.");
    int i, n;
    if (sscanf(key, "resblocks.%d.%n", &i, &n) == 1 && n > 0) {
        char head[96];
        snprintf(head, sizeof head, "text_model.encoder.layers.%d.", i);
        return sub(head, key + n, OCLIP, 7);
    }
    if (!strcmp(key, "token_embedding.weight")) return cd_strdup("text_model.embeddings.token_embedding.weight");
    if (!strcmp(key, "positional_embedding")) return cd_strdup("text_model.embeddings.position_embedding.weight");
    if (starts(key, "ln_final.")) return cd_fmt("text_model.final_layer_norm.%s", key + 9);
    if (!strcmp(key, "text_projection") || !strcmp(key, "logit_scale")) return NULL;   // not in CLIPTextModel
    return cd_fmt("unknown.%s", key);
}

void cd_sf_fix_vae(cd_weights *ws) {
    for (int i = 0; i < ws->n; i++) {
        cd_weight *w = &ws->w[i];
        if (strstr(w->name, "mid_block.attentions.0.") && strstr(w->name, ".weight") && w->ndim == 4 &&
            w->shape[2] == 1 && w->shape[3] == 1)
            w->ndim = 2;
    }
}

void cd_sf_fix_text_v2(cd_weights *ws, const cd_sf_info *info) {
    static const char *qkv[3] = {"q_proj", "k_proj", "v_proj"};
    for (int l = 0; l < info->openclip_layers; l++) {
        for (int isb = 0; isb < 2; isb++) {
            char *name = cd_fmt("text_model.encoder.layers.%d.self_attn.in_proj_%s", l, isb ? "bias" : "weight");
            cd_weight *w = cd_weights_find(ws, name);
            free(name);
            if (!w || w->shape[0] % 3) continue;
            int64_t C = w->shape[0] / 3, per = w->numel / 3;
            int ndim = w->ndim;
            int64_t shape[2] = {C, ndim == 2 ? w->shape[1] : 0};
            float *src = w->data;
            float *copy = cd_malloc(w->numel * sizeof(float));
            memcpy(copy, src, w->numel * sizeof(float));
            for (int k = 0; k < 3; k++) {
                char *nn = cd_fmt("text_model.encoder.layers.%d.self_attn.%s.%s", l, qkv[k], isb ? "bias" : "weight");
                cd_weights_put(ws, nn, ndim, shape, copy + k * per);
                free(nn);
            }
            free(copy);
        }
    }
    // mark the split sources (and, for native OpenCLIP, the unused last layer) as used
    char *last = cd_fmt("text_model.encoder.layers.%d.", info->openclip_layers - 1);
    for (int i = 0; i < ws->n; i++) {
        cd_weight *w = &ws->w[i];
        if (strstr(w->name, ".self_attn.in_proj_")) w->used = 1;
        if (info->openclip_native && starts(w->name, last)) w->used = 1;
    }
    free(last);
}
