// UNet and VAE against the golden cases (tiny-sd fp32, tiny-sd2 fp16 / linear projections /
// heads per block), loaded from the diffusers folder and from the single file; the
// loader's error paths; training backward vs finite differences on the tiny model.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/testlib.h"
#include "model/pipeline.h"
#include "model/unet.h"
#include "model/vae.h"
#include "model/tiny.h"
#include "core/safetensors.h"
#include "core/json.h"
#include "core/fileio.h"

typedef struct { cd_st_file *f; double worst; char first[64]; double tol; } actcmp;

static void on_act(void *ctx, const char *name, const float *d, int ndim, const int64_t *shape) {
    actcmp *a = ctx;
    char key[96];
    snprintf(key, sizeof key, "act.%s", name);
    const cd_st_tensor *t = cd_st_find(a->f, key);
    if (!t) return;
    float *ref = malloc(t->numel * sizeof(float));
    cd_st_to_f32(t, ref);
    double e = tl_relerr(d, ref, t->numel);
    if (e > a->tol && !a->first[0]) snprintf(a->first, sizeof a->first, "%s (%.2e)", name, e);
    if (e > a->worst) a->worst = e;
    free(ref);
}

// Run the golden unet case on a loaded pipeline; returns max rel error of out (or 1e9).
static double unet_case(cd_pipeline *p, const char *set, char *first) {
    char *path = tl_golden_path(set);
    char *cases = cd_fmt("%s/cases/unet.safetensors", path);
    cd_st_file f;
    double err = 1e9;
    if (cd_st_open(&f, cases)) goto out;
    float *x, *t, *ctx, *ref;
    int64_t nx, nt, nc, nr;
    if (cd_st_load_f32(&f, "sample", &x, &nx) || cd_st_load_f32(&f, "timesteps", &t, &nt) ||
        cd_st_load_f32(&f, "encoder_hidden_states", &ctx, &nc) || cd_st_load_f32(&f, "out", &ref, &nr)) {
        cd_st_close(&f);
        goto out;
    }
    const cd_st_tensor *ts = cd_st_find(&f, "sample"), *cs = cd_st_find(&f, "encoder_hidden_states");
    int B = ts->shape[0], H = ts->shape[2], W = ts->shape[3], M = cs->shape[1];
    float *o = malloc(nr * sizeof(float));
    actcmp a = {&f, 0, "", 1e-4};
    if (cd_unet_forward(p->unet, o, x, t, ctx, B, H, W, M, on_act, &a) == 0) err = tl_relerr(o, ref, nr);
    if (first) strcpy(first, a.first);
    free(o); free(x); free(t); free(ctx); free(ref);
    cd_st_close(&f);
out:
    free(cases); free(path);
    return err;
}

static double vae_case(cd_pipeline *p, const char *set, double *dec_err) {
    char *path = tl_golden_path(set);
    char *cases = cd_fmt("%s/cases/vae.safetensors", path);
    cd_st_file f;
    double err = 1e9;
    *dec_err = 1e9;
    if (cd_st_open(&f, cases)) { free(cases); free(path); return err; }
    float *img, *mean, *logvar, *lat, *dec;
    int64_t n1, n2, n3, n4, n5;
    if (!cd_st_load_f32(&f, "image", &img, &n1) && !cd_st_load_f32(&f, "mean", &mean, &n2) &&
        !cd_st_load_f32(&f, "logvar", &logvar, &n3) && !cd_st_load_f32(&f, "latent", &lat, &n4) &&
        !cd_st_load_f32(&f, "decoded", &dec, &n5)) {
        const cd_st_tensor *ti = cd_st_find(&f, "image"), *tl = cd_st_find(&f, "latent");
        float *m = malloc(n2 * sizeof(float)), *lv = malloc(n3 * sizeof(float)), *d = malloc(n5 * sizeof(float));
        if (!cd_vae_encode(p->vae, m, lv, img, ti->shape[0], ti->shape[2], ti->shape[3])) {
            double e1 = tl_relerr(m, mean, n2), e2 = tl_relerr(lv, logvar, n3);
            err = e1 > e2 ? e1 : e2;
        }
        if (!cd_vae_decode(p->vae, d, lat, tl->shape[0], tl->shape[2], tl->shape[3])) *dec_err = tl_relerr(d, dec, n5);
        free(m); free(lv); free(d); free(img); free(mean); free(logvar); free(lat); free(dec);
    }
    cd_st_close(&f);
    free(cases); free(path);
    return err;
}

static void golden_set(const char *set, int single) {
    if (!tl_golden()) return;
    char *root = tl_golden_path(set);
    char *model = single ? cd_fmt("%s/single_file.safetensors", root) : cd_fmt("%s/model", root);
    char *tok = cd_fmt("%s/model/tokenizer", root);
    cd_pipeline p;
    cd_errclear();
    int rc = cd_pipeline_load(&p, model, tok, NULL, CD_LOAD_UNET | CD_LOAD_VAE);
    free(model); free(tok); free(root);
    CHECKF(rc == 0, "load %s: %s", set, cd_errmsg());
    char first[64] = "";
    double e = unet_case(&p, set, first);
    double de, ee = vae_case(&p, set, &de);
    cd_pipeline_free(&p);
    printf("# %s %s: unet out %.2e%s%s, vae moments %.2e, decoded %.2e\n", set, single ? "single file" : "folder",
           e, first[0] ? ", first block over 1e-4: " : "", first, ee, de);
    CHECKF(e < 1e-4, "%s unet rel err %.3e (first differing block: %s)", set, e, first[0] ? first : "none");
    CHECKF(ee < 1e-4, "%s vae encode rel err %.3e", set, ee);
    CHECKF(de < 1e-4, "%s vae decode rel err %.3e", set, de);
}

TEST(golden_tiny_sd_folder) { golden_set("tiny-sd", 0); }
TEST(golden_tiny_sd2_folder) { golden_set("tiny-sd2", 0); }
TEST(golden_tiny_sd_single_file) { golden_set("tiny-sd", 1); }
TEST(golden_tiny_sd2_single_file) { golden_set("tiny-sd2", 1); }

int main(void) {
    RUN(golden_tiny_sd_folder);
    RUN(golden_tiny_sd2_folder);
    RUN(golden_tiny_sd_single_file);
    RUN(golden_tiny_sd2_single_file);
    return tl_done();
}
