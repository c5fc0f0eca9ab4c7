// Golden case text_encoder.safetensors: MODEL/text_encoder on input_ids -> last_hidden_state,
// pooled; the CLIP folder's text tower on clip_input_ids -> clip_text_embeds (+ normalised).
#include <stdio.h>
#include <stdlib.h>
#include "core/err.h"
#include "core/safetensors.h"
#include "core/fileio.h"
#include "model/pipeline.h"
#include "verify/verify.h"
#include "verify/device.h"

// Load an id tensor (stored as F32 or an integer type) [B, L].
static int load_ids(const cd_st_file *f, const char *name, int32_t **ids, int *B, int *L) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t || t->ndim != 2) return cd_err("%s: tensor '%s' missing or not 2-D", f->path, name);
    float *tmp = cd_malloc(sizeof(float) * t->numel);
    cd_st_to_f32(t, tmp);
    *B = (int)t->shape[0]; *L = (int)t->shape[1];
    *ids = cd_malloc(sizeof(int32_t) * t->numel);
    for (int64_t i = 0; i < t->numel; i++) (*ids)[i] = (int32_t)tmp[i];
    free(tmp);
    return 0;
}

// Compare got [n] with the reference tensor `name` of f.
static void cmp(cd_verify_ctx *v, const cd_st_file *f, const char *name, const float *got, int64_t n) {
    float *ref; int64_t rn;
    if (cd_st_load_f32(f, name, &ref, &rn)) { cd_verify_fail(v, "text_encoder", name, cd_errmsg()); return; }
    if (rn != n) cd_verify_fail(v, "text_encoder", name, "element count differs");
    else cd_verify_check(v, "text_encoder", name, got, ref, n, CD_TOL_MODEL);
    free(ref);
}

static int run_pipeline_text(cd_verify_ctx *v, const cd_st_file *f) {
    cd_clip *te;
    CD_TRY(cd_verify_text_encoder(v, &te));
    int32_t *ids; int B, L;
    CD_TRY(load_ids(f, "input_ids", &ids, &B, &L));
    int C = te->text.cfg.hidden;
    float *hid = cd_malloc(sizeof(float) * (size_t)B * L * C), *pooled = cd_malloc(sizeof(float) * (size_t)B * C);
    int rc = vd_text_forward(v, &te->text, ids, B, L, hid, pooled);
    if (!rc) {
        cmp(v, f, "last_hidden_state", hid, (int64_t)B * L * C);
        cmp(v, f, "pooled", pooled, (int64_t)B * C);
    }
    free(ids); free(hid); free(pooled);
    return rc;
}

// --single-file: the text encoder renamed from the original layout (v1 transformer.* or
// v2 OpenCLIP) must give the same outputs.
static int run_single_file_text(cd_verify_ctx *v, const cd_st_file *f) {
    char *tokdir = v->model ? cd_path_join(v->model, "tokenizer") : NULL;
    cd_pipeline p;
    int rc = cd_pipeline_load(&p, v->single_file, tokdir, NULL, CD_LOAD_TEXT);
    free(tokdir);
    CD_TRY(rc);
    int32_t *ids; int B, L;
    rc = load_ids(f, "input_ids", &ids, &B, &L);
    if (rc) { cd_pipeline_free(&p); return -1; }
    int C = p.text.cfg.hidden;
    float *hid = cd_malloc(sizeof(float) * (size_t)B * L * C), *pooled = cd_malloc(sizeof(float) * (size_t)B * C);
    rc = vd_text_forward(v, &p.text, ids, B, L, hid, pooled);
    if (!rc) {
        float *ref; int64_t rn;
        const char *names[2] = {"last_hidden_state", "pooled"};
        float *got[2] = {hid, pooled};
        int64_t n[2] = {(int64_t)B * L * C, (int64_t)B * C};
        for (int k = 0; k < 2; k++) {
            char label[64];
            snprintf(label, sizeof label, "%s(single_file)", names[k]);
            if (cd_st_load_f32(f, names[k], &ref, &rn) || rn != n[k]) { cd_verify_fail(v, "text_encoder", label, "reference missing or wrong size"); continue; }
            cd_verify_check(v, "text_encoder", label, got[k], ref, n[k], CD_TOL_MODEL);
            free(ref);
        }
    }
    free(ids); free(hid); free(pooled);
    cd_pipeline_free(&p);
    return rc;
}

static int run_clip_text(cd_verify_ctx *v, const cd_st_file *f) {
    cd_clip *m;
    CD_TRY(cd_verify_clip(v, &m));
    int32_t *ids; int B, L;
    CD_TRY(load_ids(f, "clip_input_ids", &ids, &B, &L));
    int P = m->text.cfg.projection_dim;
    float *e = cd_malloc(sizeof(float) * (size_t)B * P), *en = cd_malloc(sizeof(float) * (size_t)B * P);
    int rc = vd_text_embed(v, &m->text, ids, B, L, e, 0);
    if (!rc) rc = vd_text_embed(v, &m->text, ids, B, L, en, 1);
    if (!rc) {
        cmp(v, f, "clip_text_embeds", e, (int64_t)B * P);
        cmp(v, f, "clip_text_embeds_normalized", en, (int64_t)B * P);
    }
    free(ids); free(e); free(en);
    return rc;
}

static int run(cd_verify_ctx *v, const char *path) {
    cd_st_file f;
    CD_TRY(cd_st_open(&f, path));
    int rc = 0;
    if (cd_st_find(&f, "input_ids") && run_pipeline_text(v, &f)) {
        cd_verify_fail(v, "text_encoder", "last_hidden_state", cd_errmsg());
    }
    if (v->single_file && cd_st_find(&f, "input_ids") && run_single_file_text(v, &f)) {
        cd_verify_fail(v, "text_encoder", "last_hidden_state(single_file)", cd_errmsg());
    }
    if (cd_st_find(&f, "clip_input_ids") && run_clip_text(v, &f)) {
        cd_verify_fail(v, "text_encoder", "clip_text_embeds", cd_errmsg());
    }
    cd_st_close(&f);
    return rc;
}

const cd_verify_case cd_verify_case_text = {"text_encoder", "text_encoder.safetensors", run, 1};
