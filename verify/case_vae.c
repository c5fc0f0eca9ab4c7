// vae case: image -> mean, logvar (encoder moments after quant_conv); latent -> decoded.
// Runs on --model (folder) and --single-file when given.
#include <stdio.h>
#include <stdlib.h>
#include "verify/verify.h"
#include "verify/device.h"
#include "model/pipeline.h"
#include "core/safetensors.h"
#include "core/err.h"

static int run_one(cd_verify_ctx *v, const cd_st_file *f, const char *name, const char *model,
                   const char *tok) {
    cd_pipeline p;
    if (cd_pipeline_load(&p, model, tok, NULL, CD_LOAD_VAE)) return -1;
    float *img = NULL, *mean = NULL, *logvar = NULL, *lat = NULL, *dec = NULL;
    int64_t n1, n2, n3, n4, n5;
    int rc = -1;
    if (cd_st_load_f32(f, "image", &img, &n1) || cd_st_load_f32(f, "mean", &mean, &n2) ||
        cd_st_load_f32(f, "logvar", &logvar, &n3) || cd_st_load_f32(f, "latent", &lat, &n4) ||
        cd_st_load_f32(f, "decoded", &dec, &n5))
        goto out;
    const cd_st_tensor *ti = cd_st_find(f, "image"), *tl = cd_st_find(f, "latent");
    float *m = cd_malloc(n2 * sizeof(float)), *lv = cd_malloc(n3 * sizeof(float)), *d = cd_malloc(n5 * sizeof(float));
    rc = vd_vae_encode(v, &p, m, lv, img, ti->shape[0], ti->shape[2], ti->shape[3]);
    if (!rc) {
        cd_verify_check(v, name, "mean", m, mean, n2, CD_TOL_MODEL);
        cd_verify_check(v, name, "logvar", lv, logvar, n3, CD_TOL_MODEL);
        rc = vd_vae_decode(v, &p, d, lat, tl->shape[0], tl->shape[2], tl->shape[3]);
        if (!rc) cd_verify_check(v, name, "decoded", d, dec, n5, CD_TOL_MODEL);
    }
    free(m); free(lv); free(d);
out:
    free(img); free(mean); free(logvar); free(lat); free(dec);
    cd_pipeline_free(&p);
    return rc;
}

static int run(cd_verify_ctx *v, const char *path) {
    return cd_verify_each_model(v, path, "vae", run_one);
}

const cd_verify_case cd_verify_case_vae = {"vae", "vae.safetensors", run, 1};
