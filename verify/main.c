// customdiff-verify: replay a golden case folder (../shared/golden/SET/cases) against a model
// folder and a CLIP folder; prints per case and tensor the max relative error and PASS/FAIL
// against golden/README.md's tolerances; exits 1 on any failure.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/cli.h"
#include "core/err.h"
#include "core/fileio.h"
#include "verify/verify.h"
#include "verify/device.h"

double cd_verify_relerr(const float *a, const float *b, int64_t n) {
    double maxd = 0, maxb = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = fabs((double)a[i] - b[i]);
        if (d > maxd) maxd = d;
        if (fabs(b[i]) > maxb) maxb = fabs(b[i]);
    }
    return maxb > 0 ? maxd / maxb : maxd;
}

int cd_verify_result(cd_verify_ctx *v, const char *name, const char *tensor, const char *measure,
                     double err, double tol) {
    if (tol > 0) tol = cd_verify_tol(v, tol);   // exact checks (tol 0) stay exact
    int ok = err <= tol;   // NaN fails
    printf("%-14s %-34s %s %.3e tol %.0e %s\n", name, tensor, measure, err, tol, ok ? "PASS" : "FAIL");
    fflush(stdout);
    if (ok) v->npass++; else v->nfail++;
    return ok;
}

int cd_verify_check(cd_verify_ctx *v, const char *name, const char *tensor, const float *got,
                    const float *ref, int64_t n, double tol) {
    return cd_verify_result(v, name, tensor, "max_rel_err", cd_verify_relerr(got, ref, n), tol);
}

void cd_verify_fail(cd_verify_ctx *v, const char *name, const char *what, const char *why) {
    printf("%-14s %-34s FAIL: %s\n", name, what, why);
    fflush(stdout);
    v->nfail++;
}

static int load_cached(cd_clip **slot, const char *dir, const char *opt) {
    if (*slot) return 0;
    if (!dir) return cd_err("this case needs %s", opt);
    cd_clip *m = cd_calloc(1, sizeof(*m));
    if (cd_clip_load(m, dir)) { free(m); return -1; }
    *slot = m;
    return 0;
}

int cd_verify_text_encoder(cd_verify_ctx *v, cd_clip **out) {
    char *dir = v->model ? cd_path_join(v->model, "text_encoder") : NULL;
    int rc = load_cached(&v->text_encoder, dir, "--model");
    free(dir);
    *out = v->text_encoder;
    return rc;
}

int cd_verify_each_model(cd_verify_ctx *v, const char *path, const char *name,
                         int (*one)(cd_verify_ctx *v, const cd_st_file *f, const char *name,
                                    const char *model, const char *tok)) {
    if (!v->model && !v->single_file) return cd_err("%s: needs --model or --single-file", name);
    cd_st_file f;
    CD_TRY(cd_st_open(&f, path));
    int rc = 0;
    char *tok = v->model ? cd_fmt("%s/tokenizer", v->model) : NULL;
    char *sf = cd_fmt("%s(single_file)", name);
    if (v->model && one(v, &f, name, v->model, tok)) rc = -1;
    if (v->single_file && one(v, &f, sf, v->single_file, tok)) rc = -1;
    free(sf);
    free(tok);
    cd_st_close(&f);
    return rc;
}

int cd_verify_clip(cd_verify_ctx *v, cd_clip **out) {
    int rc = load_cached(&v->clip_model, v->clip, "--clip");
    *out = v->clip_model;
    return rc;
}

int main(int argc, char **argv) {
    static const char *model, *clip, *single, *device, *precision;
    cd_opt opts[] = {
        {"model", CD_OPT_STR, &model, NULL, "diffusers pipeline folder (SET/model)"},
        {"clip", CD_OPT_STR, &clip, NULL, "transformers CLIPModel folder (SET/clip)"},
        {"single-file", CD_OPT_STR, &single, NULL, "single-file checkpoint for the cases that take one"},
        {"device", CD_OPT_STR, &device, "cpu", "cpu or cuda (networks on the GPU; needs a CUDA build)"},
        {"precision", CD_OPT_STR, &precision, "fp32", "fp32, tf32, bf16 or fp16 (cuda); tolerances widen to 3e-3 (tf32) / 3e-2 (bf16) / 5e-3 (fp16), 5x for gradients"},
        {0}};
    int npos; char **pos;
    int r = cd_cli_parse("verify", "replay golden case files: customdiff-verify --model SET/model --clip SET/clip SET/cases",
                         opts, argc, argv, &npos, &pos);
    if (r == 1) return 0;
    if (r < 0) cd_die("verify", 2);
    if (npos != 1) { cd_err("give one case folder (e.g. ../shared/golden/tiny-sd/cases)"); cd_die("verify", 2); }
    if (!cd_is_dir(pos[0])) { cd_err("%s: not a folder", pos[0]); cd_die("verify", 2); }
    cd_verify_ctx v = {.model = model, .clip = clip, .cases = pos[0], .single_file = single};
    if (cd_verify_device_init(&v, device, precision)) cd_die("verify", 2);
    int gpu = v.gpu, prec = v.prec;
    for (int i = 0; cd_verify_cases[i]; i++) {
        const cd_verify_case *c = cd_verify_cases[i];
        char *path = cd_path_join(v.cases, c->file);
        if (!cd_path_exists(path)) {
            printf("%-14s SKIP: %s absent\n", c->name, path);
            v.nskip++;
        } else {
            cd_errclear();
            v.gpu = c->device ? gpu : 0;          // host-only cases: CPU, fp32 tolerances
            v.prec = c->device ? prec : CD_PREC_FP32;
            if (c->run(&v, path)) cd_verify_fail(&v, c->name, c->file, cd_errmsg());
        }
        free(path);
    }
    if (v.text_encoder) { cd_clip_free(v.text_encoder); free(v.text_encoder); }
    if (v.clip_model) { cd_clip_free(v.clip_model); free(v.clip_model); }
    printf("verify %s: %d passed, %d failed, %d cases skipped\n", v.cases, v.npass, v.nfail, v.nskip);
    if (v.npass + v.nfail == 0) {
        cd_err("%s: no case files found (expected the golden SET/cases folder: tokenizer.json, unet.safetensors, ...)", v.cases);
        cd_die("verify", 1);
    }
    free(pos);
    return v.nfail ? 1 : 0;
}
