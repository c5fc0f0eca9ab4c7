// Sampling inside the trainer (see train/validate.h).
#include "train/validate.h"
#include "train/imgsrc.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "kernels/kernels.h"
#include "model/vae.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Text conditioning [2, 77, C]: row 0 the empty prompt, row 1 the prompt.
static int encode_pair(cd_run *r, const char *prompt, float *ctx) {
    int32_t ids[2 * CD_CLIP_MAX_LEN];
    CD_TRY(cd_tokenizer_encode(r->pipe.tok, "", CD_CLIP_MAX_LEN, ids, NULL));
    CD_TRY(cd_tokenizer_encode(r->pipe.tok, prompt, CD_CLIP_MAX_LEN, ids + CD_CLIP_MAX_LEN, NULL));
    return cd_clip_text_forward(&r->tr.text, ids, 2, CD_CLIP_MAX_LEN, ctx, NULL);
}

static int denoise(cd_run *r, cd_scheduler *s, const float *ctx, float *x, int h, float guidance) {
    const cd_unet_config *uc = cd_unet_cfg(r->pipe.unet);
    int64_t per = (int64_t)uc->in_channels * h * h;
    float *xin = cd_malloc(sizeof(float) * 2 * per), *eps = cd_malloc(sizeof(float) * 2 * per);
    int rc = 0;
    for (int i = 0; i < s->n && rc == 0; i++) {
        cd_sched_scale_input(s, i, xin, x, per);
        memcpy(xin + per, xin, sizeof(float) * per);
        float t[2] = {s->timesteps[i], s->timesteps[i]};
        rc = r->gpu ? cd_unet_cuda_forward(cd_trainer_cuda_unet(r->gpu), eps, xin, t, ctx, 2, h, h,
                                           CD_CLIP_MAX_LEN, NULL, NULL)
                    : cd_unet_forward(r->pipe.unet, eps, xin, t, ctx, 2, h, h, CD_CLIP_MAX_LEN, NULL, NULL);
        for (int64_t k = 0; k < per && rc == 0; k++) eps[k] = eps[k] + guidance * (eps[per + k] - eps[k]);
        if (rc == 0) rc = cd_sched_step(s, i, eps, x, per);
    }
    free(xin);
    free(eps);
    return rc;
}

typedef struct { cd_rng g; } noise_src;
static int noise_fn(void *ctx, int step, float *out, int64_t n) {
    cd_rng_normal(&((noise_src *)ctx)->g, out, n);
    return 0;
}

int cd_sample_one(cd_run *r, const char *prompt, cd_sched_kind kind, int steps, float guidance,
                  uint64_t seed, uint64_t stream, int N, cd_image *out) {
    if (!r->pipe.vae) return cd_err("sampling needs the VAE decoder");
    int f = cd_vae_downscale(r->pipe.vae), h = N / f;
    int64_t per = (int64_t)cd_unet_cfg(r->pipe.unet)->in_channels * h * h;
    cd_sched_config sc;
    cd_scheduler s;
    CD_TRY(cd_sched_config_from_json(&sc, r->pipe.scheduler_config, "scheduler_config.json"));
    CD_TRY(cd_sched_init(&s, kind, &sc));
    noise_src ns;
    cd_rng_split(&ns.g, seed, stream);
    s.noise = noise_fn;
    s.noise_ctx = &ns;
    float *ctx = cd_malloc(sizeof(float) * 2 * CD_CLIP_MAX_LEN * r->tr.tcfg.hidden);
    float *x = cd_malloc(sizeof(float) * per), *img = cd_malloc(sizeof(float) * 3 * N * N);
    cd_rng_normal(&ns.g, x, per);
    int rc = cd_sched_set_timesteps(&s, steps);
    for (int64_t k = 0; k < per; k++) x[k] *= s.init_noise_sigma;
    if (rc == 0) rc = encode_pair(r, prompt, ctx);
    if (rc == 0) rc = denoise(r, &s, ctx, x, h, guidance);
    if (rc == 0) {
        cd_scale(x, 1.0f / r->tr.scaling, per);
        cd_vae_cuda *gv = r->gpu ? cd_trainer_cuda_vae(r->gpu) : NULL;
        rc = gv ? cd_vae_cuda_decode(gv, img, x, 1, h, h) : cd_vae_decode(r->pipe.vae, img, x, 1, h, h);
    }
    if (rc == 0) {
        out->w = out->h = N;
        out->rgb = cd_malloc((size_t)N * N * 3);
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < N * N; i++) {
                float v = img[(size_t)c * N * N + i] * 0.5f + 0.5f;
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                out->rgb[(size_t)i * 3 + c] = (uint8_t)lrintf(v * 255.0f);
            }
    }
    cd_sched_free(&s);
    free(ctx); free(x); free(img);
    return rc;
}

int cd_validate(cd_run *r, const char *prompt, const char *run_dir) {
    cd_image im;
    CD_TRY(cd_sample_one(r, prompt, CD_SCHED_DDIM, 25, 7.5f, (uint64_t)r->a->seed, 0x7a11d,
                         r->a->resolution, &im));
    char *dir = cd_path_join(run_dir, "validation");
    char name[64];
    snprintf(name, sizeof name, "step-%06lld.png", (long long)r->step);
    char *path = cd_path_join(dir, name);
    int rc = cd_mkdirs(dir);
    if (rc == 0) rc = cd_image_save(path, &im);
    if (rc == 0) cd_info("validation sample %s", path);
    cd_image_free(&im);
    free(dir);
    free(path);
    return rc;
}

// Images already in a class folder (0 when it does not exist or is empty).
static int count_images(const char *dir) {
    if (!cd_is_dir(dir)) return 0;
    cd_imgsrc *s;
    if (cd_imgsrc_open(&s, dir, 0, 0)) { cd_errclear(); return 0; }
    int n = cd_imgsrc_count(s);
    cd_imgsrc_free(s);
    return n;
}

// Side of generated class images: upstream calls pipeline(prompt), i.e. the model's default
// size unet.sample_size x VAE factor (512 for SD1, 768 for SD2-768), whatever --resolution is;
// the class transform then resizes them to --resolution.
static int class_image_size(const cd_run *r) {
    if (!r->pipe.vae || !r->pipe.unet) return r->a->resolution;
    int s = cd_unet_cfg(r->pipe.unet)->sample_size * cd_vae_downscale(r->pipe.vae);
    return s > 0 ? s : r->a->resolution;
}

static int generate_for(cd_run *r, const cd_concept *c, int have, int want) {
    const cd_train_args *a = r->a;
    cd_sched_kind kind;
    if (cd_sched_kind_parse(cd_json_str(r->pipe.scheduler_config, "_class_name", "PNDMScheduler"), &kind)) {
        cd_errclear();
        kind = CD_SCHED_PNDM;
    }
    CD_TRY(cd_mkdirs(c->class_dir));
    cd_info("generating %d class images for '%s' into %s", want - have, c->class_prompt, c->class_dir);
    cd_progress pr;
    cd_progress_start(&pr, "class images", want - have);
    for (int i = have; i < want; i++) {
        cd_image im;
        CD_TRY(cd_sample_one(r, c->class_prompt, kind, 50, 7.5f, (uint64_t)a->seed, 0xc1a550000ull + i,
                             class_image_size(r), &im));
        uint8_t *jpg = NULL;
        size_t len = 0;
        int rc = cd_image_encode_jpeg(&im, 95, &jpg, &len);
        cd_image_free(&im);
        if (rc) return -1;
        // upstream names: f"{index}-{hash of the image bytes}.jpg"
        uint8_t dig[32];
        cd_sha256(jpg, len, dig);
        char name[64];
        snprintf(name, sizeof name, "%d-%02x%02x%02x%02x%02x%02x%02x%02x.jpg", i, dig[0], dig[1], dig[2],
                 dig[3], dig[4], dig[5], dig[6], dig[7]);
        char *path = cd_path_join(c->class_dir, name);
        rc = cd_write_file_atomic(path, jpg, len);
        free(path);
        free(jpg);
        if (rc) return -1;
        cd_progress_update(&pr, i - have + 1, NULL);
    }
    cd_progress_end(&pr, NULL);
    return 0;
}

int cd_generate_class_images(cd_run *r) {
    const cd_train_args *a = r->a;
    if (!a->with_prior || a->real_prior || a->num_class_images <= 0) return 0;
    for (int i = 0; i < r->nconcepts; i++) {
        const cd_concept *c = &r->concepts[i];
        if (!c->class_dir) continue;
        char *mdb = cd_path_join(c->class_dir, "data.mdb"), *lst = cd_path_join(c->class_dir, "images.txt");
        int fixed = cd_path_exists(mdb) || cd_path_exists(lst);
        free(mdb);
        free(lst);
        if (fixed) continue;   // a store or a retrieval list: real images, used as they are
        int have = count_images(c->class_dir);
        if (have >= a->num_class_images) continue;
        if (!c->class_prompt) return cd_err("concept %d: generating class images needs --class-prompt", i);
        CD_TRY(generate_for(r, c, have, a->num_class_images));
    }
    return 0;
}
