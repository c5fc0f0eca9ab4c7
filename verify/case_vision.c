// Golden case vision.safetensors (+ vision_input.png): the CLIP folder's vision tower on
// pixel_values -> image_embeds (+ normalised), within 1e-4; and vision_input.png through
// our CLIPImageProcessor recipe -> pixel_values[0] within 0.03 (max rel err), with an
// embedding of cosine >= 0.999 to image_embeds[0].
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/image.h"
#include "core/safetensors.h"
#include "verify/verify.h"
#include "verify/device.h"

static void cmp(cd_verify_ctx *v, const cd_st_file *f, const char *name, const float *got, int64_t n) {
    float *ref; int64_t rn;
    if (cd_st_load_f32(f, name, &ref, &rn)) { cd_verify_fail(v, "vision", name, cd_errmsg()); return; }
    if (rn != n) cd_verify_fail(v, "vision", name, "element count differs");
    else cd_verify_check(v, "vision", name, got, ref, n, CD_TOL_MODEL);
    free(ref);
}

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

// vision_input.png -> our pixels vs pixel_values[0]; our embedding vs image_embeds[0].
static int run_png(cd_verify_ctx *v, const cd_clip *m, const cd_st_file *f, const char *png,
                   const float *pix_ref) {
    cd_image im;
    CD_TRY(cd_image_load(png, 0, &im));
    int S = m->vision.cfg.image_size, P = m->vision.cfg.projection_dim;
    float *pix = cd_malloc(sizeof(float) * 3 * S * S), *e = cd_malloc(sizeof(float) * P), *ref = NULL;
    int64_t rn;
    int rc = cd_clip_preprocess(&m->prep, &im, pix);
    if (!rc) {
        cd_verify_check(v, "vision", "vision_input.png->pixel_values[0]", pix, pix_ref, 3 * S * S, 0.03);
        rc = vd_vision_forward(v, &m->vision, pix, 1, NULL, e, 0);
    }
    if (!rc) rc = cd_st_load_f32(f, "image_embeds", &ref, &rn);
    if (!rc) cd_verify_result(v, "vision", "vision_input.png->image_embeds[0]", "1-cosine", 1 - cosine(e, ref, P), 1e-3);
    cd_image_free(&im);
    free(pix); free(e); free(ref);
    return rc;
}

static int run(cd_verify_ctx *v, const char *path) {
    cd_clip *m;
    CD_TRY(cd_verify_clip(v, &m));
    if (!m->has_vision) return cd_err("%s: the CLIP folder has no vision tower", v->clip);
    cd_st_file f;
    CD_TRY(cd_st_open(&f, path));
    const cd_st_tensor *pt = cd_st_find(&f, "pixel_values");
    int S = m->vision.cfg.image_size, P = m->vision.cfg.projection_dim, rc = 0;
    if (!pt || pt->ndim != 4 || pt->shape[1] != 3 || pt->shape[2] != S || pt->shape[3] != S) {
        cd_st_close(&f);
        return cd_err("%s: pixel_values missing or not [B,3,%d,%d]", path, S, S);
    }
    int B = (int)pt->shape[0];
    float *pix = cd_malloc(sizeof(float) * pt->numel);
    cd_st_to_f32(pt, pix);
    float *e = cd_malloc(sizeof(float) * (size_t)B * P), *en = cd_malloc(sizeof(float) * (size_t)B * P);
    rc = vd_vision_forward(v, &m->vision, pix, B, NULL, e, 0);
    if (!rc) rc = vd_vision_forward(v, &m->vision, pix, B, NULL, en, 1);
    if (!rc) {
        cmp(v, &f, "image_embeds", e, (int64_t)B * P);
        cmp(v, &f, "image_embeds_normalized", en, (int64_t)B * P);
    }
    char *png = cd_path_join(v->cases, "vision_input.png");
    if (!rc && cd_path_exists(png) && run_png(v, m, &f, png, pix))
        cd_verify_fail(v, "vision", "vision_input.png", cd_errmsg());
    else if (!rc && !cd_path_exists(png)) printf("%-14s SKIP: %s absent\n", "vision", png);
    free(png); free(pix); free(e); free(en);
    cd_st_close(&f);
    return rc;
}

const cd_verify_case cd_verify_case_vision = {"vision", "vision.safetensors", run, 1};
