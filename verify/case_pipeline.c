// Golden case pipeline.safetensors + pipeline.json: text to image end to end. From
// init_latents, the prompt and negative prompt of pipeline.json, the scheduler, steps, eta and
// guidance it names: final_latents (1e-3), image (VAE decode, 1e-3) and image_uint8 (off by
// one in at most 0.1% of the values, never more). The model is --model (a diffusers folder)
// and, when given, --single-file too (its tokenizer and configs from --model).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "model/sampler.h"
#include "verify/verify.h"
#include "verify/device.h"

#define NAME "pipeline"

typedef struct {
    const char *prompt, *negative, *scheduler;
    int steps;
    double eta, guidance;
} case_params;

static int load_params(const char *path, cJSON **j, case_params *c) {
    char *dir = cd_strdup(path), *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    char *jp = cd_path_join(dir, "pipeline.json");
    free(dir);
    int rc = cd_json_load(jp, j);
    if (!rc) {
        c->prompt = cd_json_str(*j, "prompt", "");
        c->negative = cd_json_str(*j, "negative_prompt", "");
        c->scheduler = cd_json_str(*j, "scheduler", "ddim");
        c->steps = cd_json_int(*j, "steps", 10);
        c->eta = cd_json_num(*j, "eta", 0.0);
        c->guidance = cd_json_num(*j, "guidance_scale", 6.0);
    }
    free(jp);
    return rc;
}

static void compare_uint8(cd_verify_ctx *v, const char *what, const uint8_t *got, const cd_st_tensor *ref) {
    if (!ref || ref->dtype != CD_U8) { cd_verify_fail(v, NAME, what, "image_uint8 missing or not U8"); return; }
    const uint8_t *r = ref->data;
    int64_t off1 = 0, worse = 0;
    if (v->prec != CD_PREC_FP32) {
        // Reduced precision moves pixels by more than one level: the largest difference,
        // against the float image's tolerance expressed in levels of [0, 255] (= 2 * tol * 255 / 2).
        int maxd = 0;
        for (int64_t k = 0; k < ref->numel; k++) {
            int d = abs((int)got[k] - (int)r[k]);
            if (d > maxd) maxd = d;
        }
        char t[96];
        snprintf(t, sizeof t, "%s (largest difference)", what);
        cd_verify_result(v, NAME, t, "levels", maxd, 255.0 * cd_verify_tol(v, CD_TOL_GRAD));
        return;
    }
    for (int64_t k = 0; k < ref->numel; k++) {
        int d = abs((int)got[k] - (int)r[k]);
        off1 += d == 1;
        worse += d > 1;
    }
    char t[96];
    snprintf(t, sizeof t, "%s (values off by >1)", what);
    cd_verify_result(v, NAME, t, "count", (double)worse, 0);
    snprintf(t, sizeof t, "%s (fraction off by 1)", what);
    cd_verify_result(v, NAME, t, "fraction", (double)off1 / ref->numel, 1e-3);
}

// Run the case on one model (folder or single file); tag names the lines.
static int run_model(cd_verify_ctx *v, const cd_st_file *f, const case_params *c, const char *model,
                     const char *tok, const char *cfgdir, const char *tag) {
    cd_pipeline p;
    CD_TRY(cd_pipeline_load(&p, model, tok, cfgdir, CD_LOAD_UNET | CD_LOAD_VAE_DECODER | CD_LOAD_TEXT | CD_LOAD_TOKENIZER));
    cd_sampler s;
    cd_scheduler sch;
    cd_sched_config sc;
    cd_sched_kind kind;
    memset(&sch, 0, sizeof sch);
    float *lat = NULL, *want = NULL, *cond = NULL, *unc = NULL, *img = NULL, *wimg = NULL;
    int64_t n, nw, ni;
    cd_image im = {0};
    int rc = cd_sampler_init(&s, &p);
    if (!rc) rc = cd_sched_kind_parse(c->scheduler, &kind);
    if (!rc) rc = cd_sched_config_from_json(&sc, p.scheduler_config, "scheduler_config.json");
    if (!rc) rc = cd_sched_init(&sch, kind, &sc);
    if (!rc) rc = cd_sched_set_timesteps(&sch, c->steps);
    sch.eta = c->eta;
    const cd_st_tensor *il = cd_st_find(f, "init_latents");
    if (!rc && (!il || il->ndim != 4 || il->shape[0] != 1)) rc = cd_err("%s: init_latents missing or not [1,C,h,w]", f->path);
    if (!rc) rc = cd_st_load_f32(f, "init_latents", &lat, &n);
    if (!rc) {
        cond = cd_malloc(sizeof(float) * s.ctx_len * s.ctx_dim);
        unc = cd_malloc(sizeof(float) * s.ctx_len * s.ctx_dim);
        rc = cd_sampler_encode(&s, c->prompt, cond);
        if (!rc) rc = cd_sampler_encode(&s, c->negative, unc);
    }
    int h = il ? (int)il->shape[2] : 0, w = il ? (int)il->shape[3] : 0;
    if (!rc) {
        img = cd_malloc(sizeof(float) * 3 * (size_t)h * s.f * w * s.f);
        rc = vd_sample(v, &s, &sch, cond, unc, (float)c->guidance, lat, h, w, img, &im);
    }
    char what[96];
    if (!rc && !cd_st_load_f32(f, "final_latents", &want, &nw) && nw == n) {
        snprintf(what, sizeof what, "final_latents%s", tag);
        cd_verify_check(v, NAME, what, lat, want, n, CD_TOL_GRAD);
    }
    if (!rc && !cd_st_load_f32(f, "image", &wimg, &ni) && ni == 3LL * h * s.f * w * s.f) {
        snprintf(what, sizeof what, "image%s", tag);
        cd_verify_check(v, NAME, what, img, wimg, ni, CD_TOL_GRAD);
    }
    if (!rc) {
        snprintf(what, sizeof what, "image_uint8%s", tag);
        compare_uint8(v, what, im.rgb, cd_st_find(f, "image_uint8"));
    }
    free(lat); free(want); free(cond); free(unc); free(img); free(wimg);
    cd_image_free(&im);
    cd_sched_free(&sch);
    cd_sampler_free(&s);
    cd_pipeline_free(&p);
    return rc;
}

static int run(cd_verify_ctx *v, const char *path) {
    if (!v->model) return cd_err("the pipeline case needs --model");
    cJSON *j;
    case_params c;
    CD_TRY(load_params(path, &j, &c));
    cd_st_file f;
    if (cd_st_open(&f, path)) { cJSON_Delete(j); return -1; }
    if (run_model(v, &f, &c, v->model, NULL, NULL, ""))
        cd_verify_fail(v, NAME, "folder", cd_errmsg());
    if (v->single_file) {
        char *tok = cd_path_join(v->model, "tokenizer");
        if (run_model(v, &f, &c, v->single_file, tok, v->model, " (single file)"))
            cd_verify_fail(v, NAME, "single_file", cd_errmsg());
        free(tok);
    }
    cd_st_close(&f);
    cJSON_Delete(j);
    return 0;
}

const cd_verify_case cd_verify_case_pipeline = {NAME, "pipeline.safetensors", run, 1};
