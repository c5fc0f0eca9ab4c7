// Golden case train.safetensors + train.json: three Custom Diffusion optimizer steps
// (crossattn_kv + the <new1> row initialised from "ktn") replayed from the recorded inputs
// (images, vae_noise, noise, timesteps, mask, input_ids). Per step: the latents, the three
// losses, every gradient (grad.*) and every trained tensor after the step (after.*).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/json.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "model/pipeline.h"
#include "model/trainer.h"
#include "verify/verify.h"
#include "verify/device.h"

#define NAME "train"

typedef struct {
    float lr, prior_w;
    int vpred;
} train_meta;

static int read_meta(const char *case_path, train_meta *m) {
    char *dir = cd_strdup(case_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    char *js = cd_path_join(dir, "train.json");
    cJSON *o = NULL;
    int rc = cd_json_load(js, &o);
    if (rc == 0) {
        const cJSON *opt = cJSON_GetObjectItemCaseSensitive(o, "optimizer");
        m->lr = (float)cd_json_num(opt, "lr", 1e-3);
        m->prior_w = (float)cd_json_num(o, "prior_loss_weight", 1.0);
        const char *t = cd_json_str(o, "target", "epsilon");
        m->vpred = strcmp(t, "v_prediction") == 0;
    }
    cJSON_Delete(o);
    free(js);
    free(dir);
    return rc;
}

// Golden name of a parameter: UNet names as they are, token_embedding.<new1> -> .new1
static void golden_name(const char *param, char *out, size_t cap) {
    const char *lt = strchr(param, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (lt && gt) snprintf(out, cap, "%.*s%.*s", (int)(lt - param), param, (int)(gt - lt - 1), lt + 1);
    else snprintf(out, cap, "%s", param);
}

// Compare every `prefix*` tensor of f with the trainer's parameters (kind 0: grads, 1: weights).
static void cmp_params(cd_verify_ctx *v, const cd_st_file *f, const cd_trainer *tr, int step, int kind) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "step%d.%s.", step, kind ? "after" : "grad");
    int matched = 0, ref_count = 0;
    double worst = 0;
    for (int i = 0; i < f->n; i++)
        if (strncmp(f->t[i].name, prefix, strlen(prefix)) == 0) ref_count++;
    for (int i = 0; i < tr->nparams; i++) {
        const cd_param *p = &tr->params[i];
        char g[256], key[300];
        golden_name(p->name, g, sizeof g);
        snprintf(key, sizeof key, "%s%s", prefix, g);
        float *ref;
        int64_t n;
        if (cd_st_load_f32(f, key, &ref, &n)) {
            cd_verify_fail(v, NAME, key, "no reference tensor for this trainable tensor");
            continue;
        }
        matched++;
        if (n != p->numel) cd_verify_fail(v, NAME, key, "element count differs");
        else {
            double e = cd_verify_relerr(kind ? p->w : p->g, ref, n);
            if (e > worst) worst = e;
            if (e > CD_TOL_GRAD) cd_verify_check(v, NAME, key, kind ? p->w : p->g, ref, n, CD_TOL_GRAD);
        }
        free(ref);
    }
    char what[64];
    snprintf(what, sizeof what, "step%d.%s.* (%d tensors, worst)", step, kind ? "after" : "grad", matched);
    cd_verify_result(v, NAME, what, "max_rel_err", worst, CD_TOL_GRAD);
    if (matched != ref_count) cd_verify_fail(v, NAME, what, "the reference has tensors this trainer does not train");
}

static int load(const cd_st_file *f, int step, const char *what, float **out, int64_t *n) {
    char key[64];
    snprintf(key, sizeof key, "step%d.%s", step, what);
    return cd_st_load_f32(f, key, out, n);
}

static void cmp_scalar(cd_verify_ctx *v, const cd_st_file *f, int step, const char *what, double got) {
    float *ref;
    int64_t n;
    char key[64];
    snprintf(key, sizeof key, "step%d.%s", step, what);
    if (load(f, step, what, &ref, &n)) { cd_verify_fail(v, NAME, key, cd_errmsg()); return; }
    float g = (float)got;
    cd_verify_check(v, NAME, key, &g, ref, 1, CD_TOL_GRAD);
    free(ref);
}

static int run_step(cd_verify_ctx *v, const cd_st_file *f, cd_trainer *tr, cd_trainer_cuda *g,
                    const train_meta *m, const int32_t *ids, int step) {
    float *img = NULL, *vn = NULL, *noise = NULL, *tf = NULL, *mask = NULL, *lat_ref = NULL;
    int64_t ni, nv, nn, nt, nm, nl;
    int rc = load(f, step, "images", &img, &ni);
    if (!rc) rc = load(f, step, "vae_noise", &vn, &nv);
    if (!rc) rc = load(f, step, "noise", &noise, &nn);
    if (!rc) rc = load(f, step, "timesteps", &tf, &nt);
    if (!rc) rc = load(f, step, "mask", &mask, &nm);
    if (!rc) rc = load(f, step, "latents", &lat_ref, &nl);
    const cd_st_tensor *ti = cd_st_find(f, "step0.images");
    const cd_st_tensor *tm = cd_st_find(f, "step0.mask");
    if (!rc && (!ti || ti->ndim != 4 || !tm || tm->ndim != 4)) rc = cd_err("%s: images/mask are not 4-D", f->path);
    float *lat = NULL;
    if (!rc) {
        int B = (int)nt, *t = cd_malloc(sizeof(int) * B);
        for (int i = 0; i < B; i++) t[i] = (int)tf[i];
        cd_train_batch b = {.B = B, .n_inst = (int)tm->shape[0], .with_prior = B > tm->shape[0],
                            .H = (int)ti->shape[2], .W = (int)ti->shape[3], .ids = ids, .pixels = img,
                            .vae_noise = vn, .noise = noise, .timesteps = t, .mask = mask, .loss_scale = 1};
        cd_train_losses ls;
        lat = cd_malloc(sizeof(float) * nl);
        rc = g ? cd_trainer_cuda_accumulate(g, &b, &ls, lat) : cd_trainer_accumulate(tr, &b, &ls, lat);
        if (!rc && g) rc = cd_trainer_cuda_grads_to_host(g);
        free(t);
        if (!rc) {
            char key[32];
            snprintf(key, sizeof key, "step%d.latents", step);
            cd_verify_check(v, NAME, key, lat, lat_ref, nl, CD_TOL_MODEL);
            cmp_scalar(v, f, step, "loss", ls.loss);
            cmp_scalar(v, f, step, "loss_instance", ls.loss_inst);
            cmp_scalar(v, f, step, "loss_prior", ls.loss_prior);
            cmp_params(v, f, tr, step, 0);
            double gn;
            rc = g ? cd_trainer_cuda_step(g, m->lr, &gn, NULL) : cd_trainer_step(tr, m->lr, &gn);
            if (!rc && g) rc = cd_trainer_cuda_to_host(g);
        }
        if (!rc) cmp_params(v, f, tr, step, 1);
    }
    free(img); free(vn); free(noise); free(tf); free(mask); free(lat_ref); free(lat);
    return rc;
}

static int run(cd_verify_ctx *v, const char *path) {
    if (!v->model) return cd_err("the train case needs --model");
    train_meta m;
    CD_TRY(read_meta(path, &m));
    cd_st_file f;
    CD_TRY(cd_st_open(&f, path));
    cd_pipeline pipe;
    memset(&pipe, 0, sizeof pipe);
    cd_trainer tr;
    memset(&tr, 0, sizeof tr);
    int32_t *ids = NULL;
    int rc = cd_pipeline_load(&pipe, v->model, NULL, NULL,
                              CD_LOAD_UNET | CD_LOAD_VAE_ENCODER | CD_LOAD_TEXT | CD_LOAD_TOKENIZER);
    cd_trainer_opts o;
    cd_trainer_opts_default(&o);
    o.prior_loss_weight = m.prior_w;
    if (!rc) rc = cd_trainer_init(&tr, &pipe, "<new1>", "ktn", &o);
    cd_trainer_cuda *g = NULL;
    if (!rc && v->gpu) rc = cd_trainer_cuda_new(&g, &tr, v->prec);
    if (!rc && tr.vpred != m.vpred)
        rc = cd_err("%s: the model's prediction type differs from train.json's target", v->model);
    if (!rc) {
        float *idf;
        int64_t n;
        rc = cd_st_load_f32(&f, "input_ids", &idf, &n);
        if (!rc) {
            ids = cd_malloc(sizeof(int32_t) * n);
            for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)idf[i];
            free(idf);
        }
    }
    for (int s = 0; s < 3 && !rc; s++) {
        char key[32];
        snprintf(key, sizeof key, "step%d.loss", s);
        if (!cd_st_find(&f, key)) break;
        rc = run_step(v, &f, &tr, g, &m, ids, s);
    }
    free(ids);
    cd_trainer_cuda_free(g);
    if (tr.pipe) cd_trainer_free(&tr);
    cd_pipeline_free(&pipe);
    cd_st_close(&f);
    return rc;
}

const cd_verify_case cd_verify_case_train = {NAME, "train.safetensors", run, 1};
