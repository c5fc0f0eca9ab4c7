// UNet2DConditionModel config.json <-> cd_unet_config, with every unsupported option of the
// diffusers config rejected by name (SDXL and other architectures).
#include <stdio.h>
#include <math.h>
#include <string.h>
#include "model/unet.h"
#include "core/err.h"
#include "core/json.h"

static int is_null_or_absent(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return !v || cJSON_IsNull(v);
}

// int or per-block list -> vals[n]
static int int_or_list(const cJSON *j, const char *k, const char *what, int n, int *vals, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!v || cJSON_IsNull(v)) { for (int i = 0; i < n; i++) vals[i] = def; return 0; }
    if (cJSON_IsNumber(v)) { for (int i = 0; i < n; i++) vals[i] = v->valueint; return 0; }
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) != n)
            return cd_err("%s: '%s' has %d entries, expected %d (one per block)", what, k, cJSON_GetArraySize(v), n);
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e)) return cd_err("%s: '%s'[%d] is not a number", what, k, i);
            vals[i] = e->valueint;
        }
        return 0;
    }
    return cd_err("%s: '%s' must be an integer or a list", what, k);
}

static int check_unsupported(const cJSON *j, const char *what) {
    static const char *must_be_null[] = {"addition_embed_type", "class_embed_type", "num_class_embeds",
        "encoder_hid_dim_type", "encoder_hid_dim", "time_cond_proj_dim", "cross_attention_norm",
        "reverse_transformer_layers_per_block", "timestep_post_act", "time_embedding_act_fn",
        "time_embedding_dim", "projection_class_embeddings_input_dim", "addition_time_embed_dim"};
    for (size_t i = 0; i < sizeof must_be_null / sizeof *must_be_null; i++)
        if (!is_null_or_absent(j, must_be_null[i])) {
            const char *hint = !strcmp(must_be_null[i], "addition_embed_type") ||
                               !strcmp(must_be_null[i], "addition_time_embed_dim")
                                   ? " (an SDXL-style UNet; only SD v1.x/v2.x are supported)" : "";
            return cd_err("%s: unsupported architecture: '%s' is set%s", what, must_be_null[i], hint);
        }
    static const char *must_be_false[] = {"dual_cross_attention", "center_input_sample",
                                           "class_embeddings_concat", "resnet_skip_time_act"};
    for (size_t i = 0; i < sizeof must_be_false / sizeof *must_be_false; i++)
        if (cd_json_bool(j, must_be_false[i], 0))
            return cd_err("%s: unsupported architecture: '%s' is true", what, must_be_false[i]);
    const cJSON *oca = cJSON_GetObjectItemCaseSensitive(j, "only_cross_attention");
    if (oca && (cJSON_IsTrue(oca) || cJSON_IsArray(oca))) {
        if (cJSON_IsTrue(oca)) return cd_err("%s: unsupported architecture: 'only_cross_attention' is true", what);
        const cJSON *e;
        cJSON_ArrayForEach(e, oca) if (cJSON_IsTrue(e))
            return cd_err("%s: unsupported architecture: 'only_cross_attention' has true entries", what);
    }
    struct { const char *k, *v; } strs[] = {{"act_fn", "silu"}, {"resnet_time_scale_shift", "default"},
        {"time_embedding_type", "positional"}, {"attention_type", "default"},
        {"mid_block_type", "UNetMidBlock2DCrossAttn"}};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        const char *s = cd_json_str(j, strs[i].k, strs[i].v);
        if (strcmp(s, strs[i].v))
            return cd_err("%s: unsupported architecture: '%s' is '%s' (supported: '%s')", what, strs[i].k, s, strs[i].v);
    }
    if (cd_json_int(j, "conv_in_kernel", 3) != 3 || cd_json_int(j, "conv_out_kernel", 3) != 3)
        return cd_err("%s: unsupported architecture: conv_in_kernel/conv_out_kernel other than 3", what);
    if (cd_json_num(j, "mid_block_scale_factor", 1) != 1 || cd_json_num(j, "resnet_out_scale_factor", 1) != 1)
        return cd_err("%s: unsupported architecture: mid_block_scale_factor/resnet_out_scale_factor other than 1", what);
    if (cd_json_int(j, "downsample_padding", 1) != 1)
        return cd_err("%s: unsupported architecture: downsample_padding other than 1", what);
    const cJSON *cad = cJSON_GetObjectItemCaseSensitive(j, "cross_attention_dim");
    if (!cJSON_IsNumber(cad))
        return cd_err("%s: 'cross_attention_dim' must be one integer (per-block values are not supported)", what);
    return 0;
}

static int block_types(const cJSON *j, const char *key, const char *what, int n, int *attn,
                       const char *cross_name, const char *plain_name) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return cd_err("%s: '%s' missing or not a list of %d block types", what, key, n);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        const char *s = cJSON_IsString(e) ? e->valuestring : "";
        if (!strcmp(s, cross_name)) attn[i] = 1;
        else if (!strcmp(s, plain_name)) attn[i] = 0;
        else return cd_err("%s: unsupported architecture: %s[%d] is '%s' (supported: %s, %s)", what, key, i, s, cross_name, plain_name);
    }
    return 0;
}

int cd_unet_config_parse(cd_unet_config *c, const cJSON *j, const char *what) {
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(j)) return cd_err("%s: not a JSON object", what);
    const char *cls = cd_json_str(j, "_class_name", "UNet2DConditionModel");
    if (strcmp(cls, "UNet2DConditionModel"))
        return cd_err("%s: unsupported model class '%s' (expected UNet2DConditionModel)", what, cls);
    CD_TRY(check_unsupported(j, what));
    CD_TRY(cd_json_int_array(j, "block_out_channels", what, c->block_out, CD_UNET_MAX_BLOCKS, &c->nblocks));
    if (c->nblocks < 1) return cd_err("%s: 'block_out_channels' is empty", what);
    int n = c->nblocks;
    c->in_channels = cd_json_int(j, "in_channels", 4);
    c->out_channels = cd_json_int(j, "out_channels", 4);
    c->layers_per_block = cd_json_int(j, "layers_per_block", 2);
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "layers_per_block")))
        return cd_err("%s: per-block 'layers_per_block' is not supported", what);
    CD_TRY(block_types(j, "down_block_types", what, n, c->down_attn, "CrossAttnDownBlock2D", "DownBlock2D"));
    CD_TRY(block_types(j, "up_block_types", what, n, c->up_attn, "CrossAttnUpBlock2D", "UpBlock2D"));
    c->mid_attn = 1;
    // heads: num_attention_heads, else attention_head_dim in its legacy meaning (head count)
    const char *hk = is_null_or_absent(j, "num_attention_heads") ? "attention_head_dim" : "num_attention_heads";
    CD_TRY(int_or_list(j, hk, what, n, c->heads, 8));
    CD_TRY(int_or_list(j, "transformer_layers_per_block", what, n, c->tlayers, 1));
    c->cross_dim = cd_json_int(j, "cross_attention_dim", 768);
    c->groups = cd_json_int(j, "norm_num_groups", 32);
    c->eps = (float)cd_json_num(j, "norm_eps", 1e-5);
    c->linear_proj = cd_json_bool(j, "use_linear_projection", 0);
    c->upcast_attention = cd_json_bool(j, "upcast_attention", 0);
    c->sample_size = cd_json_int(j, "sample_size", 64);
    c->flip_sin_to_cos = cd_json_bool(j, "flip_sin_to_cos", 1);
    c->freq_shift = (float)cd_json_num(j, "freq_shift", 0);
    if (c->groups < 1) return cd_err("%s: norm_num_groups %d must be >= 1", what, c->groups);
    if (c->in_channels < 1 || c->in_channels > 64 || c->out_channels < 1 || c->out_channels > 64)
        return cd_err("%s: in_channels %d / out_channels %d must be 1..64", what, c->in_channels, c->out_channels);
    if (c->cross_dim < 1 || c->cross_dim > 65536) return cd_err("%s: cross_attention_dim %d must be 1..65536", what, c->cross_dim);
    if (c->layers_per_block < 1) return cd_err("%s: layers_per_block %d must be >= 1", what, c->layers_per_block);
    if (c->sample_size < 1 || c->sample_size > 4096) return cd_err("%s: sample_size %d must be 1..4096", what, c->sample_size);
    if (!(c->eps > 0) || !isfinite(c->eps)) return cd_err("%s: norm_eps must be a positive number", what);
    for (int i = 0; i < n; i++) {
        if (c->block_out[i] < 1 || c->block_out[i] > 65536)
            return cd_err("%s: block_out_channels[%d] is %d (must be 1..65536)", what, i, c->block_out[i]);
        if (c->heads[i] < 1 || c->block_out[i] % c->heads[i])
            return cd_err("%s: block %d: %d channels not divisible by %d heads", what, i, c->block_out[i], c->heads[i]);
        if (c->block_out[i] % c->groups)
            return cd_err("%s: block %d: %d channels not divisible by norm_num_groups %d", what, i, c->block_out[i], c->groups);
        if (c->tlayers[i] < 1) return cd_err("%s: transformer_layers_per_block[%d] < 1", what, i);
    }
    c->time_embed_dim = 4 * c->block_out[0];
    return 0;
}

static cJSON *int_list(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

cJSON *cd_unet_config_to_json(const cd_unet_config *c) {
    cJSON *j = cJSON_CreateObject();
    int n = c->nblocks;
    cJSON_AddStringToObject(j, "_class_name", "UNet2DConditionModel");
    cJSON_AddStringToObject(j, "_diffusers_version", "0.25.1");
    cJSON_AddStringToObject(j, "act_fn", "silu");
    int same = 1;
    for (int i = 1; i < n; i++) same &= c->heads[i] == c->heads[0];
    cJSON_AddItemToObject(j, "attention_head_dim", same ? cJSON_CreateNumber(c->heads[0]) : int_list(c->heads, n));
    cJSON_AddItemToObject(j, "block_out_channels", int_list(c->block_out, n));
    cJSON_AddNumberToObject(j, "cross_attention_dim", c->cross_dim);
    cJSON *d = cJSON_CreateArray(), *u = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(d, cJSON_CreateString(c->down_attn[i] ? "CrossAttnDownBlock2D" : "DownBlock2D"));
        cJSON_AddItemToArray(u, cJSON_CreateString(c->up_attn[i] ? "CrossAttnUpBlock2D" : "UpBlock2D"));
    }
    cJSON_AddItemToObject(j, "down_block_types", d);
    cJSON_AddItemToObject(j, "up_block_types", u);
    cJSON_AddStringToObject(j, "mid_block_type", "UNetMidBlock2DCrossAttn");
    cJSON_AddNumberToObject(j, "downsample_padding", 1);
    cJSON_AddBoolToObject(j, "flip_sin_to_cos", c->flip_sin_to_cos);
    cJSON_AddNumberToObject(j, "freq_shift", c->freq_shift);
    cJSON_AddNumberToObject(j, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(j, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(j, "layers_per_block", c->layers_per_block);
    cJSON_AddNumberToObject(j, "norm_eps", c->eps);
    cJSON_AddNumberToObject(j, "norm_num_groups", c->groups);
    cJSON_AddNumberToObject(j, "sample_size", c->sample_size);
    same = 1;
    for (int i = 1; i < n; i++) same &= c->tlayers[i] == c->tlayers[0];
    cJSON_AddItemToObject(j, "transformer_layers_per_block", same ? cJSON_CreateNumber(c->tlayers[0]) : int_list(c->tlayers, n));
    cJSON_AddBoolToObject(j, "upcast_attention", c->upcast_attention);
    cJSON_AddBoolToObject(j, "use_linear_projection", c->linear_proj);
    return j;
}
