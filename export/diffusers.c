// A delta into a complete diffusers pipeline folder (see export/main.c).
#include "export/export.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/log.h"
#include "core/safetensors.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOK_EMB "text_model.embeddings.token_embedding.weight"

// Write every tensor of ws in its on-disk dtype (F32 for replaced ones); the tensor named
// `over` is replaced by over_data [over_rows, over_cols].
static int write_weights(cd_weights *ws, const char *path, const char *over, const float *over_data,
                         int64_t over_rows, int64_t over_cols) {
    cd_st_writer *w = cd_st_writer_new();
    for (int i = 0; i < ws->n; i++) {
        const cd_weight *t = &ws->w[i];
        cd_dtype dt = t->disk_dtype == CD_F16 || t->disk_dtype == CD_BF16 ? t->disk_dtype : CD_F32;
        if (over && strcmp(t->name, over) == 0) {
            int64_t sh[2] = {over_rows, over_cols};
            cd_st_writer_add_f32(w, t->name, dt, 2, sh, over_data);
        } else cd_st_writer_add_f32(w, t->name, dt, t->ndim, t->shape, t->data);
    }
    cd_st_writer_meta(w, "format", "pt");
    int rc = cd_st_writer_save(w, path);
    cd_st_writer_free(w);
    return rc;
}

// Copy a file (hard link when possible: outputs are always replaced by rename, never edited).
static int copy_file(const char *src, const char *dst) {
    unlink(dst);
    if (link(src, dst) == 0) return 0;
    char *buf;
    size_t len;
    CD_TRY(cd_read_file(src, &buf, &len, 0));
    int rc = cd_write_file_atomic(dst, buf, len);
    free(buf);
    return rc;
}

static int copy_tree(const char *src, const char *dst) {
    CD_TRY(cd_mkdirs(dst));
    DIR *d = opendir(src);
    if (!d) return cd_errno("%s", src);
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *s = cd_path_join(src, e->d_name), *t = cd_path_join(dst, e->d_name);
        rc = cd_is_dir(s) ? copy_tree(s, t) : copy_file(s, t);
        free(s);
        free(t);
    }
    closedir(d);
    return rc;
}

// dir/sub/name from the model folder when it exists, else the generated JSON.
static int put_json(const cd_pipeline *p, const char *out, const char *rel, cJSON *gen) {
    char *dst = cd_path_join(out, rel);
    int rc;
    char *src = p->single_file ? NULL : cd_path_join(p->model_path, rel);
    if (src && cd_path_exists(src)) rc = copy_file(src, dst);
    else rc = gen ? cd_json_save(dst, gen) : cd_err("%s: nothing to write", dst);
    free(src);
    free(dst);
    return rc;
}

static cJSON *model_index(const cd_pipeline *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "StableDiffusionPipeline");
    cJSON_AddStringToObject(o, "_diffusers_version", "0.25.1");
    const char *sched = cd_json_str(p->scheduler_config, "_class_name", "PNDMScheduler");
    const char *comp[][3] = {{"text_encoder", "transformers", "CLIPTextModel"}, {"tokenizer", "transformers", "CLIPTokenizer"},
                             {"unet", "diffusers", "UNet2DConditionModel"}, {"vae", "diffusers", "AutoencoderKL"},
                             {"scheduler", "diffusers", sched}};
    for (int i = 0; i < 5; i++) {
        cJSON *a = cJSON_AddArrayToObject(o, comp[i][0]);
        cJSON_AddItemToArray(a, cJSON_CreateString(comp[i][1]));
        cJSON_AddItemToArray(a, cJSON_CreateString(comp[i][2]));
    }
    const char *none[] = {"safety_checker", "feature_extractor"};
    for (int i = 0; i < 2; i++) {
        cJSON *a = cJSON_AddArrayToObject(o, none[i]);
        cJSON_AddItemToArray(a, cJSON_CreateNull());
        cJSON_AddItemToArray(a, cJSON_CreateNull());
    }
    cJSON_AddBoolToObject(o, "requires_safety_checker", 0);
    return o;
}

static cJSON *added_token_entry(const char *content, int special) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "content", content);
    cJSON_AddBoolToObject(e, "lstrip", 0);
    cJSON_AddBoolToObject(e, "normalized", !special);
    cJSON_AddBoolToObject(e, "rstrip", 0);
    cJSON_AddBoolToObject(e, "single_word", 0);
    cJSON_AddBoolToObject(e, "special", special);
    return e;
}

// tokenizer/: the base files, added_tokens.json and tokenizer_config.json's added_tokens_decoder.
static int write_tokenizer(const cd_pipeline *p, const char *out) {
    char *dir = cd_path_join(out, "tokenizer");
    CD_TRY(cd_mkdirs(dir));
    const char *files[] = {"vocab.json", "merges.txt", "special_tokens_map.json", "bpe_simple_vocab_16e6.txt.gz"};
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++) {
        char *s = cd_path_join(p->tokenizer_dir, files[i]), *d = cd_path_join(dir, files[i]);
        if (cd_path_exists(s)) rc = copy_file(s, d);
        free(s);
        free(d);
    }
    char *cfgp = cd_path_join(p->tokenizer_dir, "tokenizer_config.json");
    cJSON *cfg = NULL;
    if (rc == 0 && cd_path_exists(cfgp)) rc = cd_json_load(cfgp, &cfg);
    free(cfgp);
    if (rc == 0 && !cfg) {
        cfg = cJSON_CreateObject();
        cJSON_AddStringToObject(cfg, "tokenizer_class", "CLIPTokenizer");
        cJSON_AddNumberToObject(cfg, "model_max_length", 77);
    }
    cJSON *added = cJSON_CreateObject();
    if (rc == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "added_tokens_decoder");
        cJSON *dec = cJSON_AddObjectToObject(cfg, "added_tokens_decoder");
        char key[16];
        snprintf(key, sizeof key, "%d", cd_tokenizer_bos(p->tok));
        cJSON_AddItemToObject(dec, key, added_token_entry("<|startoftext|>", 1));
        snprintf(key, sizeof key, "%d", cd_tokenizer_eos(p->tok));
        cJSON_AddItemToObject(dec, key, added_token_entry("<|endoftext|>", 1));
        int base = cd_tokenizer_base_size(p->tok);
        for (int i = 0; i < cd_tokenizer_num_added(p->tok); i++) {
            snprintf(key, sizeof key, "%d", base + i);
            cJSON_AddItemToObject(dec, key, added_token_entry(cd_tokenizer_added(p->tok, i), 0));
            cJSON_AddNumberToObject(added, cd_tokenizer_added(p->tok, i), base + i);
        }
        char *cp = cd_path_join(dir, "tokenizer_config.json"), *ap = cd_path_join(dir, "added_tokens.json");
        rc = cd_json_save(cp, cfg);
        if (rc == 0) rc = cd_json_save(ap, added);
        free(cp);
        free(ap);
    }
    cJSON_Delete(cfg);
    cJSON_Delete(added);
    free(dir);
    return rc;
}

static int write_text_encoder(cd_pipeline *p, const char *out) {
    int C = p->text.cfg.hidden, n_tok = p->text.n_tok;
    cJSON *cfg = cJSON_Duplicate(p->text_config, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "vocab_size");
    cJSON_AddNumberToObject(cfg, "vocab_size", n_tok);
    char *cp = cd_path_join(out, "text_encoder/config.json"), *wp = cd_path_join(out, "text_encoder/model.safetensors");
    int rc = cd_json_save(cp, cfg);
    if (rc == 0) rc = write_weights(&p->text_w, wp, TOK_EMB, p->text.tok_emb, n_tok, C);
    cJSON_Delete(cfg);
    free(cp);
    free(wp);
    return rc;
}

// Other component folders of a diffusers model (safety_checker, feature_extractor, ...).
static int copy_extra_components(const cd_pipeline *p, const char *out) {
    if (p->single_file) return 0;
    DIR *d = opendir(p->model_path);
    if (!d) return 0;
    static const char *own[] = {"unet", "vae", "text_encoder", "tokenizer", "scheduler", NULL};
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int skip = 0;
        for (int i = 0; own[i]; i++) skip |= strcmp(e->d_name, own[i]) == 0;
        char *s = cd_path_join(p->model_path, e->d_name), *t = cd_path_join(out, e->d_name);
        if (!skip && cd_is_dir(s)) rc = copy_tree(s, t);
        free(s);
        free(t);
    }
    closedir(d);
    return rc;
}

int cd_export_diffusers(cd_pipeline *p, cd_delta *d, const char *out) {
    if (!p->has_text || !p->tok) return cd_err("%s: the text encoder and tokenizer are needed", p->model_path);
    cd_delta *ds[1] = {d};
    CD_TRY(cd_delta_apply(ds, 1, &p->unet_w, p->tok, &p->text, 0));
    const char *subs[] = {"unet", "vae", "text_encoder", "scheduler"};
    for (int i = 0; i < 4; i++) {
        char *s = cd_path_join(out, subs[i]);
        int rc = cd_mkdirs(s);
        free(s);
        CD_TRY(rc);
    }
    cJSON *uc = cd_unet_config_to_json(&p->unet_cfg), *vc = cd_vae_config_to_json(&p->vae_cfg);
    cJSON *mi = model_index(p);
    char *uw = cd_path_join(out, "unet/diffusion_pytorch_model.safetensors");
    char *vw = cd_path_join(out, "vae/diffusion_pytorch_model.safetensors");
    char *sc = cd_path_join(out, "scheduler/scheduler_config.json");
    int rc = write_weights(&p->unet_w, uw, NULL, NULL, 0, 0);
    if (rc == 0) rc = put_json(p, out, "unet/config.json", uc);
    if (rc == 0) rc = write_weights(&p->vae_w, vw, NULL, NULL, 0, 0);
    if (rc == 0) rc = put_json(p, out, "vae/config.json", vc);
    if (rc == 0) rc = write_text_encoder(p, out);
    if (rc == 0) rc = write_tokenizer(p, out);
    if (rc == 0) rc = cd_json_save(sc, p->scheduler_config);
    if (rc == 0) rc = put_json(p, out, "model_index.json", mi);
    if (rc == 0) rc = copy_extra_components(p, out);
    cJSON_Delete(uc);
    cJSON_Delete(vc);
    cJSON_Delete(mi);
    free(uw);
    free(vw);
    free(sc);
    return rc;
}
