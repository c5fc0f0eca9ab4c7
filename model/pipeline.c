// Loading a Stable Diffusion pipeline from a diffusers folder or a single-file checkpoint
// (see model/pipeline.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include "model/pipeline.h"
#include "model/names.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/fileio.h"

static int ends(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static const char *CONVERT_HINT =
    "convert it to .safetensors first, e.g. python3 -c \"import torch; from safetensors.torch import save_file; "
    "sd = torch.load('IN.ckpt', map_location='cpu'); sd = sd.get('state_dict', sd); "
    "save_file({k: v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}, 'OUT.safetensors')\"";

// A pickle (.ckpt/.pt/.bin) is refused with a hint on converting it.
static int refuse_pickle(const char *path) {
    int pk = ends(path, ".ckpt") || ends(path, ".pt") || ends(path, ".pth") || ends(path, ".bin");
    FILE *fp = fopen(path, "rb");
    if (fp) {
        unsigned char m[2] = {0};
        if (fread(m, 1, 2, fp) == 2 && ((m[0] == 'P' && m[1] == 'K') || m[0] == 0x80)) pk = 1;
        fclose(fp);
    }
    if (pk) return cd_err("%s: a pickle checkpoint (torch .ckpt) is not read (it can run code); %s", path, CONVERT_HINT);
    return 0;
}

static int load_json_in(const char *dir, const char *rel, cJSON **out) {
    char *p = cd_path_join(dir, rel);
    int rc = cd_json_load(p, out);
    free(p);
    return rc;
}

// ---- single-file config inference --------------------------------------------------------
static int64_t dim(cd_weights *ws, const char *name, int i) {
    for (int k = 0; k < ws->n; k++)
        if (!strcmp(ws->w[k].name, name)) return i < ws->w[k].ndim ? ws->w[k].shape[i] : -1;
    return -1;
}
static int64_t dimf(cd_weights *ws, int i, const char *fmt, int a, int b) {
    char n[256];
    snprintf(n, sizeof n, fmt, a, b);
    return dim(ws, n, i);
}

static int infer_unet(cd_weights *ws, int family, int L, cd_unet_config *c, const char *what) {
    memset(c, 0, sizeof *c);
    c->in_channels = dim(ws, "conv_in.weight", 1);
    c->out_channels = dim(ws, "conv_out.weight", 0);
    c->layers_per_block = L;
    while (c->nblocks < CD_UNET_MAX_BLOCKS && dimf(ws, 0, "down_blocks.%d.resnets.0.conv1.weight", c->nblocks, 0) > 0) {
        int i = c->nblocks++;
        c->block_out[i] = dimf(ws, 0, "down_blocks.%d.resnets.0.conv1.weight", i, 0);
        c->down_attn[i] = dimf(ws, 0, "down_blocks.%d.attentions.0.norm.weight", i, 0) > 0;
        c->up_attn[i] = dimf(ws, 0, "up_blocks.%d.attentions.0.norm.weight", i, 0) > 0;
        int t = 0;
        char pre[64];
        if (c->down_attn[i]) snprintf(pre, sizeof pre, "down_blocks.%d.attentions.0", i);
        else snprintf(pre, sizeof pre, "mid_block.attentions.0");
        for (;; t++) {
            char n[160];
            snprintf(n, sizeof n, "%s.transformer_blocks.%d.norm1.weight", pre, t);
            if (dim(ws, n, 0) < 0) break;
        }
        c->tlayers[i] = t ? t : 1;
    }
    if (c->in_channels < 1 || c->out_channels < 1 || c->nblocks < 1)
        return cd_err("%s: cannot infer the UNet architecture (conv_in/conv_out/down_blocks missing)", what);
    c->cross_dim = dim(ws, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", 1);
    c->linear_proj = dim(ws, "mid_block.attentions.0.proj_in.weight", 2) < 0;
    c->mid_attn = 1;
    c->groups = 32;
    c->eps = 1e-5f;
    c->flip_sin_to_cos = 1;
    c->time_embed_dim = 4 * c->block_out[0];
    c->sample_size = family == CD_FAMILY_SD2 ? 96 : 64;
    for (int i = 0; i < c->nblocks; i++)   // SD1: 8 heads; SD2: head dim 64
        c->heads[i] = family == CD_FAMILY_SD2 ? (c->block_out[i] >= 64 ? c->block_out[i] / 64 : 1) : 8;
    return 0;
}

static int infer_vae(cd_weights *ws, cd_vae_config *c, const char *what) {
    memset(c, 0, sizeof *c);
    while (c->nblocks < CD_VAE_MAX_BLOCKS && dimf(ws, 0, "encoder.down_blocks.%d.resnets.0.conv2.weight", c->nblocks, 0) > 0) {
        c->block_out[c->nblocks] = dimf(ws, 0, "encoder.down_blocks.%d.resnets.0.conv2.weight", c->nblocks, 0);
        c->nblocks++;
    }
    while (dimf(ws, 0, "decoder.up_blocks.0.resnets.%d.conv1.weight", 0, c->layers_per_block + 1) > 0) c->layers_per_block++;
    c->in_channels = dim(ws, "encoder.conv_in.weight", 1);
    c->out_channels = dim(ws, "decoder.conv_out.weight", 0);
    c->latent_channels = dim(ws, "post_quant_conv.weight", 0);
    c->groups = 32;
    c->scaling_factor = 0.18215f;
    c->sample_size = 512;
    if (c->nblocks < 1 || c->layers_per_block < 1 || c->out_channels < 1 || c->latent_channels < 1)
        return cd_err("%s: cannot infer the VAE architecture from first_stage_model.* tensors", what);
    return 0;
}

static cJSON *infer_text(cd_weights *ws, int family, const cd_sf_info *info) {
    cJSON *j = cJSON_CreateObject();
    int layers = 0;
    while (dimf(ws, 0, "text_model.encoder.layers.%d.layer_norm1.weight", layers, 0) > 0) layers++;
    if (info->openclip_native && layers > 1) layers--;   // SD2 conditions on the penultimate layer
    int hidden = dim(ws, "text_model.embeddings.token_embedding.weight", 1);
    cJSON_AddStringToObject(j, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(j, "vocab_size", dim(ws, "text_model.embeddings.token_embedding.weight", 0));
    cJSON_AddNumberToObject(j, "hidden_size", hidden);
    cJSON_AddNumberToObject(j, "intermediate_size", dim(ws, "text_model.encoder.layers.0.mlp.fc1.weight", 0));
    cJSON_AddNumberToObject(j, "num_hidden_layers", layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", hidden >= 64 ? hidden / 64 : 1);
    cJSON_AddNumberToObject(j, "max_position_embeddings", dim(ws, "text_model.embeddings.position_embedding.weight", 0));
    cJSON_AddStringToObject(j, "hidden_act", family == CD_FAMILY_SD2 ? "gelu" : "quick_gelu");
    cJSON_AddNumberToObject(j, "layer_norm_eps", 1e-5);
    cJSON_AddNumberToObject(j, "projection_dim", hidden);
    cJSON_AddNumberToObject(j, "bos_token_id", family == CD_FAMILY_SD2 ? 49406 : 0);
    cJSON_AddNumberToObject(j, "eos_token_id", family == CD_FAMILY_SD2 ? 49407 : 2);
    cJSON_AddNumberToObject(j, "pad_token_id", 1);
    return j;
}

static cJSON *default_scheduler(int family) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "_class_name", "PNDMScheduler");
    cJSON_AddNumberToObject(j, "num_train_timesteps", 1000);
    cJSON_AddNumberToObject(j, "beta_start", 0.00085);
    cJSON_AddNumberToObject(j, "beta_end", 0.012);
    cJSON_AddStringToObject(j, "beta_schedule", "scaled_linear");
    cJSON_AddBoolToObject(j, "clip_sample", 0);
    cJSON_AddBoolToObject(j, "set_alpha_to_one", 0);
    cJSON_AddNumberToObject(j, "steps_offset", 1);
    cJSON_AddBoolToObject(j, "skip_prk_steps", 1);
    cJSON_AddStringToObject(j, "prediction_type", family == CD_FAMILY_SD2 ? "v_prediction" : "epsilon");
    return j;
}

// ---- folder / single file ------------------------------------------------------------------
static int weights_file(const char *dir, const char *sub, const char *name, char **out) {
    char *d = cd_path_join(dir, sub);
    char *p = cd_path_join(d, name);
    if (!cd_path_exists(p)) {   // the fp16 variant diffusers writes with variant="fp16"
        size_t l = strlen(p) - strlen(".safetensors");
        char *v16 = cd_fmt("%.*s.fp16.safetensors", (int)l, p);
        if (cd_path_exists(v16)) { free(p); p = v16; }
        else free(v16);
    }
    if (!cd_path_exists(p)) {
        char *alt = cd_fmt("%s/%s", d, !strcmp(name, "model.safetensors") ? "pytorch_model.bin" : "diffusion_pytorch_model.bin");
        int has_bin = cd_path_exists(alt);
        int rc = has_bin ? refuse_pickle(alt) : cd_err("%s: missing (the %s component's weights)", p, sub);
        free(alt); free(d); free(p);
        return rc;
    }
    free(d);
    *out = p;
    return 0;
}

static int load_folder(cd_pipeline *p, const char *dir, unsigned what) {
    cJSON *idx = NULL, *j = NULL;
    char *wp = NULL, *ipath = cd_path_join(dir, "model_index.json");
    if (cd_path_exists(ipath)) {
        if (cd_json_load(ipath, &idx)) { free(ipath); return -1; }
        const char *cls = cd_json_str(idx, "_class_name", "");
        if (strstr(cls, "XL") || cJSON_GetObjectItemCaseSensitive(idx, "text_encoder_2")) {
            cd_err("%s: unsupported architecture: %s (SDXL); only SD v1.x/v2.x pipelines are supported", ipath, cls);
            cJSON_Delete(idx); free(ipath);
            return -1;
        }
        cJSON_Delete(idx);
    }
    free(ipath);
    if (what & CD_LOAD_UNET) {
        if (load_json_in(dir, "unet/config.json", &j)) return -1;
        char *w = cd_fmt("%s/unet/config.json", dir);
        int rc = cd_unet_config_parse(&p->unet_cfg, j, w);
        free(w); cJSON_Delete(j);
        CD_TRY(rc);
        CD_TRY(weights_file(dir, "unet", "diffusion_pytorch_model.safetensors", &wp));
        rc = cd_weights_load(&p->unet_w, wp, NULL, NULL, NULL);
        free(wp);
        CD_TRY(rc);
    }
    if (what & CD_LOAD_VAE) {
        if (load_json_in(dir, "vae/config.json", &j)) return -1;
        char *w = cd_fmt("%s/vae/config.json", dir);
        int rc = cd_vae_config_parse(&p->vae_cfg, j, w);
        free(w); cJSON_Delete(j);
        CD_TRY(rc);
        CD_TRY(weights_file(dir, "vae", "diffusion_pytorch_model.safetensors", &wp));
        rc = cd_weights_load(&p->vae_w, wp, NULL, NULL, NULL);
        free(wp);
        CD_TRY(rc);
    }
    if (what & CD_LOAD_TEXT) {
        if (load_json_in(dir, "text_encoder/config.json", &p->text_config)) return -1;
        CD_TRY(weights_file(dir, "text_encoder", "model.safetensors", &wp));
        int rc = cd_weights_load(&p->text_w, wp, NULL, NULL, NULL);
        free(wp);
        CD_TRY(rc);
    }
    char *sp = cd_path_join(dir, "scheduler/scheduler_config.json");
    int rc = cd_path_exists(sp) ? cd_json_load(sp, &p->scheduler_config) : 0;
    free(sp);
    CD_TRY(rc);
    // family: cross-attention / text width, else the text activation
    cJSON *tc = NULL;
    if (!p->text_config) load_json_in(dir, "text_encoder/config.json", &tc);
    const cJSON *t = p->text_config ? p->text_config : tc;
    int cdim = (what & CD_LOAD_UNET) ? p->unet_cfg.cross_dim : (t ? cd_json_int(t, "hidden_size", 0) : 0);
    const char *act = t ? cd_json_str(t, "hidden_act", "quick_gelu") : "quick_gelu";
    p->family = cdim == 1024 || !strcmp(act, "gelu") ? CD_FAMILY_SD2 : CD_FAMILY_SD1;
    cJSON_Delete(tc);
    cd_errclear();
    return 0;
}

// Config folder for a single file: config_dir, else TOKENIZER/.. when it holds unet/config.json.
static char *find_config_dir(const char *config_dir, const char *tok) {
    if (config_dir) return cd_strdup(config_dir);
    if (!tok) return NULL;
    char *t = cd_strdup(tok), *parent = cd_strdup(dirname(t));
    free(t);
    char *u = cd_path_join(parent, "unet/config.json");
    int ok = cd_path_exists(u);
    free(u);
    if (ok) return parent;
    free(parent);
    return NULL;
}

static int single_configs(cd_pipeline *p, const char *cfgdir, const cd_sf_info *info, unsigned what, const char *path) {
    cJSON *j = NULL;
    if (what & CD_LOAD_UNET) {
        if (cfgdir) {
            if (load_json_in(cfgdir, "unet/config.json", &j)) return -1;
            int rc = cd_unet_config_parse(&p->unet_cfg, j, "unet/config.json");
            cJSON_Delete(j);
            CD_TRY(rc);
        } else CD_TRY(infer_unet(&p->unet_w, p->family, info->layers_per_block, &p->unet_cfg, path));
    }
    if (what & CD_LOAD_VAE) {
        if (cfgdir) {
            if (load_json_in(cfgdir, "vae/config.json", &j)) return -1;
            int rc = cd_vae_config_parse(&p->vae_cfg, j, "vae/config.json");
            cJSON_Delete(j);
            CD_TRY(rc);
        } else CD_TRY(infer_vae(&p->vae_w, &p->vae_cfg, path));
    }
    if (what & CD_LOAD_TEXT) {
        char *tp = cfgdir ? cd_path_join(cfgdir, "text_encoder/config.json") : NULL;
        if (tp && cd_path_exists(tp)) { int rc = cd_json_load(tp, &p->text_config); free(tp); CD_TRY(rc); }
        else { free(tp); p->text_config = infer_text(&p->text_w, p->family, info); }
    }
    char *sp = cfgdir ? cd_path_join(cfgdir, "scheduler/scheduler_config.json") : NULL;
    if (sp && cd_path_exists(sp)) { int rc = cd_json_load(sp, &p->scheduler_config); free(sp); CD_TRY(rc); }
    else { free(sp); p->scheduler_config = default_scheduler(p->family); }
    return 0;
}

static int load_single(cd_pipeline *p, const char *path, const char *tok, const char *config_dir, unsigned what) {
    CD_TRY(refuse_pickle(path));
    if ((what & (CD_LOAD_TEXT | CD_LOAD_TOKENIZER)) && !tok)
        return cd_err("%s: a single-file checkpoint carries no tokenizer: give --tokenizer DIR (a folder with vocab.json and merges.txt, e.g. a diffusers model's tokenizer/)", path);
    cd_st_file f;
    CD_TRY(cd_st_open(&f, path));
    cd_sf_info info;
    int rc = cd_sf_inspect(&f, &info);
    // keys outside the model components (EMA copies, schedule buffers, ...) are unknown
    static const char *known[] = {CD_SF_UNET, CD_SF_VAE, CD_SF_TEXT_V1, CD_SF_TEXT_V2};
    for (int i = 0; !rc && i < f.n; i++) {
        int k = 0;
        while (k < 4 && strncmp(f.t[i].name, known[k], strlen(known[k]))) k++;
        if (k < 4) continue;
        p->unknown = cd_realloc(p->unknown, (p->nunknown + 1) * sizeof(char *));
        p->unknown[p->nunknown++] = cd_strdup(f.t[i].name);
    }
    cd_st_close(&f);
    CD_TRY(rc);
    p->family = info.family;
    if (what & CD_LOAD_UNET) CD_TRY(cd_weights_load(&p->unet_w, path, CD_SF_UNET, cd_sf_rename_unet, &info));
    if (what & CD_LOAD_VAE) {
        CD_TRY(cd_weights_load(&p->vae_w, path, CD_SF_VAE, cd_sf_rename_vae, &info));
        cd_sf_fix_vae(&p->vae_w);
    }
    if (what & CD_LOAD_TEXT) {
        if (info.family == CD_FAMILY_SD1) CD_TRY(cd_weights_load(&p->text_w, path, CD_SF_TEXT_V1, cd_sf_rename_text_v1, &info));
        else {
            CD_TRY(cd_weights_load(&p->text_w, path, CD_SF_TEXT_V2, cd_sf_rename_text_v2, &info));
            cd_sf_fix_text_v2(&p->text_w, &info);
        }
        if (p->text_w.n == 0) return cd_err("%s: no text encoder tensors (cond_stage_model.*)", path);
    }
    char *cfgdir = find_config_dir(config_dir, tok);
    rc = single_configs(p, cfgdir, &info, what, path);
    if (cfgdir && !rc) cd_info("%s: architecture from the configs in %s", path, cfgdir);
    free(cfgdir);
    return rc;
}

static void collect_unknown(cd_pipeline *p, unsigned what) {
    cd_weights *all[3] = {&p->unet_w, &p->vae_w, &p->text_w};
    for (int k = 0; k < 3; k++) {
        char **names = NULL;
        int n = 0;
        if (all[k]->n == 0 || cd_weights_unused(all[k], &names, &n)) continue;
        if (n == 0) { free(names); continue; }
        p->unknown = cd_realloc(p->unknown, (p->nunknown + n) * sizeof(char *));
        for (int i = 0; i < n; i++) {
            int enc = k == 1 && !(what & CD_LOAD_VAE_ENCODER) &&
                      (!strncmp(names[i], "encoder.", 8) || !strncmp(names[i], "quant_conv.", 11));
            if (enc) free(names[i]);   // not unknown: the encoder was not asked for
            else p->unknown[p->nunknown++] = names[i];
        }
        free(names);
    }
    if (p->nunknown)
        cd_warn("%s: %d unknown tensor%s not used by the model (first: %s)", p->model_path, p->nunknown,
                p->nunknown > 1 ? "s" : "", p->unknown[0]);
}

int cd_pipeline_load(cd_pipeline *p, const char *model, const char *tokenizer_dir,
                     const char *config_dir, unsigned what) {
    memset(p, 0, sizeof *p);
    p->model_path = cd_strdup(model);
    cd_weights_init(&p->unet_w, model);
    cd_weights_init(&p->vae_w, model);
    cd_weights_init(&p->text_w, model);
    int rc;
    if (cd_is_dir(model)) {
        rc = load_folder(p, model, what);
        if (!rc) p->tokenizer_dir = tokenizer_dir ? cd_strdup(tokenizer_dir) : cd_path_join(model, "tokenizer");
    } else if (!cd_path_exists(model)) {
        rc = cd_err("%s: no such model (a diffusers folder or a .safetensors single file)", model);
    } else {
        p->single_file = 1;
        rc = load_single(p, model, tokenizer_dir, config_dir, what);
        if (!rc && tokenizer_dir) p->tokenizer_dir = cd_strdup(tokenizer_dir);
    }
    if (!rc && !p->scheduler_config) p->scheduler_config = default_scheduler(p->family);
    if (!rc && !cJSON_GetObjectItemCaseSensitive(p->scheduler_config, "prediction_type"))
        cJSON_AddStringToObject(p->scheduler_config, "prediction_type", "epsilon");
    if (!rc && (what & CD_LOAD_UNET)) rc = cd_unet_new(&p->unet, &p->unet_cfg, &p->unet_w);
    if (!rc && (what & CD_LOAD_VAE))
        rc = cd_vae_new(&p->vae, &p->vae_cfg, &p->vae_w, (what & CD_LOAD_VAE_ENCODER) != 0);
    if (!rc && (what & CD_LOAD_TEXT)) {
        cd_clip_text_config tc;
        rc = cd_clip_text_config_parse(p->text_config, "text_encoder/config.json", &tc);
        if (!rc && cd_clip_text_bind(&p->text, &tc, &p->text_w)) rc = cd_errctx("text_encoder");
        if (!rc) p->has_text = 1;
    }
    if (!rc && (what & CD_LOAD_TOKENIZER)) rc = cd_tokenizer_load(&p->tok, p->tokenizer_dir);
    if (rc) {
        char *m = cd_strdup(cd_errmsg());
        cd_pipeline_free(p);
        cd_err("%s", m);
        free(m);
        return -1;
    }
    collect_unknown(p, what);
    return 0;
}

void cd_pipeline_free(cd_pipeline *p) {
    if (p->unet) cd_unet_free(p->unet);
    if (p->vae) cd_vae_free(p->vae);
    if (p->has_text) cd_clip_text_release(&p->text);
    if (p->tok) cd_tokenizer_free(p->tok);
    cd_weights_free(&p->unet_w);
    cd_weights_free(&p->vae_w);
    cd_weights_free(&p->text_w);
    cJSON_Delete(p->text_config);
    cJSON_Delete(p->scheduler_config);
    for (int i = 0; i < p->nunknown; i++) free(p->unknown[i]);
    free(p->unknown);
    free(p->model_path);
    free(p->tokenizer_dir);
    memset(p, 0, sizeof *p);
}

const char *cd_pipeline_prediction_type(const cd_pipeline *p) {
    return cd_json_str(p->scheduler_config, "prediction_type", "epsilon");
}
