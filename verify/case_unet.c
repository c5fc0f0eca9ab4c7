// unet case: sample, timesteps, encoder_hidden_states -> out, with the per-block activations
// (act.*) compared in forward order to name the first block that differs. Runs on the model
// loaded from --model (folder) and from --single-file when given.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "verify/verify.h"
#include "verify/device.h"
#include "model/pipeline.h"
#include "core/safetensors.h"
#include "core/err.h"

typedef struct { cd_verify_ctx *v; const cd_st_file *f; const char *name; char first[64]; } acts;

static void on_act(void *ctx, const char *block, const float *d, int ndim, const int64_t *shape) {
    acts *a = ctx;
    char key[96];
    snprintf(key, sizeof key, "act.%s", block);
    const cd_st_tensor *t = cd_st_find(a->f, key);
    if (!t) return;
    float *ref = cd_malloc(t->numel * sizeof(float));
    cd_st_to_f32(t, ref);
    if (!cd_verify_check(a->v, a->name, key, d, ref, t->numel, CD_TOL_MODEL) && !a->first[0])
        snprintf(a->first, sizeof a->first, "%s", block);
    free(ref);
}

// Load `model` (folder or single file) and run the case.
static int run_one(cd_verify_ctx *v, const cd_st_file *f, const char *name, const char *model,
                   const char *tok) {
    cd_pipeline p;
    if (cd_pipeline_load(&p, model, tok, NULL, CD_LOAD_UNET)) return -1;
    float *x = NULL, *t = NULL, *ctx = NULL, *ref = NULL;
    int64_t nx, nt, nc, nr;
    int rc = -1;
    if (cd_st_load_f32(f, "sample", &x, &nx) || cd_st_load_f32(f, "timesteps", &t, &nt) ||
        cd_st_load_f32(f, "encoder_hidden_states", &ctx, &nc) || cd_st_load_f32(f, "out", &ref, &nr))
        goto out;
    const cd_st_tensor *ts = cd_st_find(f, "sample"), *cs = cd_st_find(f, "encoder_hidden_states");
    float *o = cd_malloc(nr * sizeof(float));
    acts a = {v, f, name, ""};
    rc = vd_unet_forward(v, p.unet, o, x, t, ctx, ts->shape[0], ts->shape[2], ts->shape[3], cs->shape[1], on_act, &a);
    if (!rc) cd_verify_check(v, name, "out", o, ref, nr, CD_TOL_MODEL);
    if (!rc && a.first[0]) printf("%s first block that differs: %s\n", name, a.first);
    free(o);
out:
    free(x); free(t); free(ctx); free(ref);
    cd_pipeline_free(&p);
    return rc;
}

static int run(cd_verify_ctx *v, const char *path) {
    return cd_verify_each_model(v, path, "unet", run_one);
}

const cd_verify_case cd_verify_case_unet = {"unet", "unet.safetensors", run, 1};
