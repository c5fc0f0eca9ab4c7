// CLIP: configs, loading (CLIPModel / CLIPTextModel folders), binding tensors by name.
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/log.h"
#include "model/clip.h"

static int parse_act(const cJSON *o, const char *what, cd_clip_act *a) {
    const char *s = cd_json_str(o, "hidden_act", "quick_gelu");
    if (!strcmp(s, "quick_gelu")) *a = CD_ACT_QUICK_GELU;
    else if (!strcmp(s, "gelu")) *a = CD_ACT_GELU;
    else return cd_err("%s: hidden_act '%s' is not supported (quick_gelu, gelu)", what, s);
    return 0;
}

int cd_clip_text_config_parse(const cJSON *o, const char *what, cd_clip_text_config *c) {
    memset(c, 0, sizeof(*c));
    c->vocab_size = cd_json_int(o, "vocab_size", 49408);
    c->hidden = cd_json_int(o, "hidden_size", 512);
    c->intermediate = cd_json_int(o, "intermediate_size", 2048);
    c->layers = cd_json_int(o, "num_hidden_layers", 12);
    c->heads = cd_json_int(o, "num_attention_heads", 8);
    c->max_pos = cd_json_int(o, "max_position_embeddings", 77);
    c->projection_dim = cd_json_int(o, "projection_dim", 512);
    c->eps = (float)cd_json_num(o, "layer_norm_eps", 1e-5);
    c->bos_id = cd_json_int(o, "bos_token_id", 49406);
    c->eos_id = cd_json_int(o, "eos_token_id", 2);
    c->pad_id = cd_json_int(o, "pad_token_id", 1);
    // transformers: eos_token_id == 2 is a legacy config -> pooled at argmax(input_ids)
    c->pool_argmax = c->eos_id == 2;
    CD_TRY(parse_act(o, what, &c->act));
    if (c->hidden <= 0 || c->heads <= 0 || c->hidden % c->heads || c->layers < 0 || c->max_pos <= 0 ||
        c->intermediate <= 0 || c->vocab_size <= 0)
        return cd_err("%s: inconsistent text config (hidden_size %d, num_attention_heads %d, num_hidden_layers %d, "
                      "max_position_embeddings %d, intermediate_size %d, vocab_size %d)", what, c->hidden, c->heads,
                      c->layers, c->max_pos, c->intermediate, c->vocab_size);
    return 0;
}

int cd_clip_vision_config_parse(const cJSON *o, const char *what, cd_clip_vision_config *c) {
    memset(c, 0, sizeof(*c));
    c->hidden = cd_json_int(o, "hidden_size", 768);
    c->intermediate = cd_json_int(o, "intermediate_size", 3072);
    c->layers = cd_json_int(o, "num_hidden_layers", 12);
    c->heads = cd_json_int(o, "num_attention_heads", 12);
    c->image_size = cd_json_int(o, "image_size", 224);
    c->patch_size = cd_json_int(o, "patch_size", 32);
    c->channels = cd_json_int(o, "num_channels", 3);
    c->projection_dim = cd_json_int(o, "projection_dim", 512);
    c->eps = (float)cd_json_num(o, "layer_norm_eps", 1e-5);
    CD_TRY(parse_act(o, what, &c->act));
    if (c->hidden <= 0 || c->heads <= 0 || c->hidden % c->heads || c->patch_size <= 0 ||
        c->image_size % c->patch_size || c->channels != 3)
        return cd_err("%s: inconsistent vision config (hidden %d, heads %d, image %d, patch %d, channels %d)",
                      what, c->hidden, c->heads, c->image_size, c->patch_size, c->channels);
    return 0;
}

void cd_clip_text_config_vit_l14(cd_clip_text_config *c) {
    memset(c, 0, sizeof(*c));
    c->vocab_size = 49408; c->hidden = 768; c->intermediate = 3072; c->layers = 12; c->heads = 12;
    c->max_pos = 77; c->projection_dim = 768; c->eps = 1e-5f; c->act = CD_ACT_QUICK_GELU;
    c->bos_id = 49406; c->eos_id = 2; c->pad_id = 1; c->pool_argmax = 1;   // openai/clip-vit-large-patch14
}

// ---- binding ---------------------------------------------------------------------------
static int bind_layers(cd_weights *ws, const char *pre, int nl, int C, int I, cd_clip_layer **out) {
    cd_clip_layer *L = cd_calloc(nl > 0 ? nl : 1, sizeof(cd_clip_layer));
    int64_t cc[2] = {C, C}, c1[1] = {C}, ic[2] = {I, C}, ci[2] = {C, I}, i1[1] = {I};
    for (int i = 0; i < nl; i++) {
        cd_clip_layer *l = &L[i];
        struct { float **p; int nd; const int64_t *sh; const char *n; } t[] = {
            {&l->ln1_g, 1, c1, "layer_norm1.weight"}, {&l->ln1_b, 1, c1, "layer_norm1.bias"},
            {&l->q_w, 2, cc, "self_attn.q_proj.weight"}, {&l->q_b, 1, c1, "self_attn.q_proj.bias"},
            {&l->k_w, 2, cc, "self_attn.k_proj.weight"}, {&l->k_b, 1, c1, "self_attn.k_proj.bias"},
            {&l->v_w, 2, cc, "self_attn.v_proj.weight"}, {&l->v_b, 1, c1, "self_attn.v_proj.bias"},
            {&l->o_w, 2, cc, "self_attn.out_proj.weight"}, {&l->o_b, 1, c1, "self_attn.out_proj.bias"},
            {&l->ln2_g, 1, c1, "layer_norm2.weight"}, {&l->ln2_b, 1, c1, "layer_norm2.bias"},
            {&l->fc1_w, 2, ic, "mlp.fc1.weight"}, {&l->fc1_b, 1, i1, "mlp.fc1.bias"},
            {&l->fc2_w, 2, ci, "mlp.fc2.weight"}, {&l->fc2_b, 1, c1, "mlp.fc2.bias"},
        };
        for (size_t j = 0; j < sizeof t / sizeof t[0]; j++)
            if (cd_weights_getf(ws, t[j].p, t[j].nd, t[j].sh, "%s.encoder.layers.%d.%s", pre, i, t[j].n)) {
                free(L);
                return -1;
            }
    }
    *out = L;
    return 0;
}

int cd_clip_text_bind(cd_clip_text *m, const cd_clip_text_config *cfg, cd_weights *ws) {
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    int C = cfg->hidden;
    int64_t c1[1] = {C}, pc[2] = {cfg->max_pos, C};
    cd_weight *te = cd_weights_find(ws, "text_model.embeddings.token_embedding.weight");
    if (!te) return cd_err("%s: tensor 'text_model.embeddings.token_embedding.weight' missing", ws->what);
    if (te->ndim != 2 || te->shape[1] != C || te->shape[0] < cfg->vocab_size)
        return cd_err("%s: token_embedding has shape [%lld,%lld], expected [>=%d,%d]", ws->what,
                      (long long)te->shape[0], (long long)(te->ndim > 1 ? te->shape[1] : 0), cfg->vocab_size, C);
    m->tok_emb = te->data;
    m->n_tok = (int)te->shape[0];
    if (cd_weights_get(ws, "text_model.embeddings.position_embedding.weight", 2, pc, &m->pos_emb) ||
        cd_weights_get(ws, "text_model.final_layer_norm.weight", 1, c1, &m->lnf_g) ||
        cd_weights_get(ws, "text_model.final_layer_norm.bias", 1, c1, &m->lnf_b))
        return -1;
    cd_weights_find(ws, "text_model.embeddings.position_ids");   // a buffer, not a parameter
    if (cd_weights_find(ws, "text_projection.weight")) {
        int64_t ps[2] = {cfg->projection_dim, C};
        CD_TRY(cd_weights_get(ws, "text_projection.weight", 2, ps, &m->proj));
    }
    return bind_layers(ws, "text_model", cfg->layers, C, cfg->intermediate, &m->L);
}

int cd_clip_vision_bind(cd_clip_vision *m, const cd_clip_vision_config *cfg, cd_weights *ws) {
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    int C = cfg->hidden, p = cfg->patch_size, np = (cfg->image_size / p) * (cfg->image_size / p);
    int64_t c1[1] = {C}, pw[4] = {C, cfg->channels, p, p}, pe[2] = {np + 1, C}, ps[2] = {cfg->projection_dim, C};
    if (cd_weights_get(ws, "vision_model.embeddings.patch_embedding.weight", 4, pw, &m->patch_w) ||
        cd_weights_get(ws, "vision_model.embeddings.class_embedding", 1, c1, &m->cls) ||
        cd_weights_get(ws, "vision_model.embeddings.position_embedding.weight", 2, pe, &m->pos_emb) ||
        cd_weights_get(ws, "vision_model.pre_layrnorm.weight", 1, c1, &m->pre_g) ||
        cd_weights_get(ws, "vision_model.pre_layrnorm.bias", 1, c1, &m->pre_b) ||
        cd_weights_get(ws, "vision_model.post_layernorm.weight", 1, c1, &m->post_g) ||
        cd_weights_get(ws, "vision_model.post_layernorm.bias", 1, c1, &m->post_b) ||
        cd_weights_get(ws, "visual_projection.weight", 2, ps, &m->proj))
        return -1;
    cd_weights_find(ws, "vision_model.embeddings.position_ids");
    return bind_layers(ws, "vision_model", cfg->layers, C, cfg->intermediate, &m->L);
}

void cd_clip_text_release(cd_clip_text *m) {
    free(m->L); free(m->tok_own);
    m->L = NULL; m->tok_own = NULL;
}
void cd_clip_vision_release(cd_clip_vision *m) { free(m->L); m->L = NULL; }

int cd_clip_text_resize_tokens(cd_clip_text *m, int n_tok) {
    int C = m->cfg.hidden;
    if (n_tok < m->n_tok) return cd_err("clip: cannot shrink the token embedding from %d to %d rows", m->n_tok, n_tok);
    float *t = cd_calloc((size_t)n_tok * C, sizeof(float));
    memcpy(t, m->tok_emb, sizeof(float) * (size_t)m->n_tok * C);
    free(m->tok_own);
    m->tok_own = m->tok_emb = t;
    m->n_tok = n_tok;
    return 0;
}

int cd_clip_text_copy_row(cd_clip_text *m, int dst, int src) {
    if (dst < 0 || dst >= m->n_tok || src < 0 || src >= m->n_tok)
        return cd_err("clip: token row %d or %d out of range (%d rows)", dst, src, m->n_tok);
    if (!m->tok_own) CD_TRY(cd_clip_text_resize_tokens(m, m->n_tok));
    memmove(m->tok_emb + (size_t)dst * m->cfg.hidden, m->tok_emb + (size_t)src * m->cfg.hidden, sizeof(float) * m->cfg.hidden);
    return 0;
}

// ---- loading a folder ------------------------------------------------------------------
static int load_preproc(cd_clip_preproc *p, const char *dir, int image_size) {
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memset(p, 0, sizeof(*p));
    p->do_resize = p->do_center_crop = p->do_rescale = p->do_normalize = 1;
    p->shortest_edge = p->crop_h = p->crop_w = image_size;
    p->resample = 3;
    p->rescale = 1.f / 255.f;
    memcpy(p->mean, mean, sizeof mean); memcpy(p->std, std, sizeof std);
    char *path = cd_path_join(dir, "preprocessor_config.json");
    cJSON *o = NULL;
    int rc = 0;
    if (cd_path_exists(path) && !(rc = cd_json_load(path, &o))) {
        p->do_resize = cd_json_bool(o, "do_resize", 1);
        p->do_center_crop = cd_json_bool(o, "do_center_crop", 1);
        p->do_rescale = cd_json_bool(o, "do_rescale", 1);
        p->do_normalize = cd_json_bool(o, "do_normalize", 1);
        p->resample = cd_json_int(o, "resample", 3);
        p->rescale = (float)cd_json_num(o, "rescale_factor", 1.0 / 255.0);
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(o, "size");
        p->shortest_edge = cJSON_IsNumber(sz) ? sz->valueint : cd_json_int(sz, "shortest_edge", image_size);
        const cJSON *cs = cJSON_GetObjectItemCaseSensitive(o, "crop_size");
        p->crop_h = cJSON_IsNumber(cs) ? cs->valueint : cd_json_int(cs, "height", image_size);
        p->crop_w = cJSON_IsNumber(cs) ? cs->valueint : cd_json_int(cs, "width", image_size);
        const char *keys[2] = {"image_mean", "image_std"};
        float *dst[2] = {p->mean, p->std};
        for (int k = 0; k < 2; k++) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
            if (cJSON_IsArray(a) && cJSON_GetArraySize(a) == 3)
                for (int i = 0; i < 3; i++) dst[k][i] = (float)cJSON_GetArrayItem(a, i)->valuedouble;
        }
        if (p->crop_h != image_size || p->crop_w != image_size || p->shortest_edge <= 0)
            rc = cd_err("%s: crop %dx%d does not match the vision tower's image_size %d", path, p->crop_w, p->crop_h, image_size);
        else if (p->resample != 3 && p->resample != 2)
            rc = cd_err("%s: resample %d not supported (3 bicubic, 2 bilinear)", path, p->resample);
    }
    cJSON_Delete(o);
    free(path);
    return rc;
}

static int load_weights_file(cd_clip *m, const char *dir) {
    char *st = cd_path_join(dir, "model.safetensors");
    int rc;
    if (!cd_path_exists(st)) {
        rc = cd_err("%s: model.safetensors missing (pytorch_model.bin is not read; convert it to safetensors)", dir);
    } else rc = cd_weights_load(&m->ws, st, NULL, NULL, NULL);
    free(st);
    return rc;
}

static int load_inner(cd_clip *m, const char *dir) {
    char *cp = cd_path_join(dir, "config.json");
    cJSON *o;
    int rc = cd_json_load(cp, &o);
    if (rc) { free(cp); return -1; }
    CD_TRY(load_weights_file(m, dir));
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(o, "text_config");
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(o, "vision_config");
    int proj = cd_json_int(o, "projection_dim", -1);
    cd_clip_text_config tcfg;
    cd_clip_vision_config vcfg;
    rc = cd_clip_text_config_parse(tc ? tc : o, cp, &tcfg);
    if (!rc && proj > 0) tcfg.projection_dim = proj;
    if (!rc) rc = cd_clip_text_bind(&m->text, &tcfg, &m->ws);
    m->has_text = !rc;
    if (!rc && vc) {
        rc = cd_clip_vision_config_parse(vc, cp, &vcfg);
        if (!rc && proj > 0) vcfg.projection_dim = proj;
        if (!rc) rc = cd_clip_vision_bind(&m->vision, &vcfg, &m->ws);
        m->has_vision = !rc;
        if (!rc) rc = load_preproc(&m->prep, dir, vcfg.image_size);
    }
    cd_weights_find(&m->ws, "logit_scale");
    cJSON_Delete(o);
    free(cp);
    return rc;
}

int cd_clip_load(cd_clip *m, const char *dir) {
    memset(m, 0, sizeof(*m));
    cd_weights_init(&m->ws, dir);
    if (load_inner(m, dir)) {
        cd_errctx("loading CLIP from %s", dir);
        cd_clip_free(m);
        return -1;
    }
    char *vj = cd_path_join(dir, "vocab.json"), *gz = cd_path_join(dir, "bpe_simple_vocab_16e6.txt.gz");
    int rc = 0;
    if (cd_path_exists(vj) || cd_path_exists(gz)) rc = cd_tokenizer_load(&m->tok, dir);
    free(vj); free(gz);
    if (rc) { cd_clip_free(m); return -1; }
    char **unused; int nu = 0;
    if (!cd_weights_unused(&m->ws, &unused, &nu)) {
        if (nu) cd_warn("%s: %d tensors not used by CLIP (first: %s)", dir, nu, unused[0]);
        cd_free_strv(unused, nu);
    }
    return 0;
}

void cd_clip_free(cd_clip *m) {
    cd_clip_text_release(&m->text);
    cd_clip_vision_release(&m->vision);
    cd_tokenizer_free(m->tok);
    cd_weights_free(&m->ws);
    memset(m, 0, sizeof(*m));
}
