// Conformance of customdiff-train's data side and flags with the HF Custom Diffusion trainer
// (../shared/reference/custom-diffusion.md sections 2, 5, 17; diffusers
// examples/custom_diffusion/train_custom_diffusion.py): flag defaults, --scale-lr, class-image
// centre crop rounding (torchvision), batch layout (instance rows then class rows, paired by
// dataset index), multi-concept prompts, --num-class-images per concept, real-prior captions.
#include "tests/testlib.h"
#define main customdiff_train_main
#include "train/main.c"
#undef main
#include "train/checkpoint.c"
#include "train/data.c"
#include "train/imgsrc.c"
#include "train/log.c"
#include "train/step.c"
#include "train/validate.c"
#include <math.h>
#include <omp.h>

static const cd_opt *find_opt(const char *name) {
    for (const cd_opt *o = opts; o->name; o++)
        if (!strcmp(o->name, name)) return o;
    return NULL;
}

// Defaults of train_custom_diffusion.py's parse_args (the upstream names with hyphens).
// Left out on purpose: --max-train-steps (upstream None = one epoch; ours 250, the README
// setting) and --lr-warmup-steps (upstream 500 but ignored by its default constant scheduler;
// ours 0 = the same constant lr).
TEST(flag_defaults_match_upstream) {
    static const struct { const char *name, *def; } up[] = {
        {"resolution", "512"}, {"train-batch-size", "4"}, {"learning-rate", "1e-5"},
        {"prior-loss-weight", "1.0"}, {"num-class-images", "200"}, {"seed", "42"},
        {"checkpointing-steps", "250"}, {"gradient-accumulation-steps", "1"}, {"max-grad-norm", "1.0"},
        {"adam-beta1", "0.9"}, {"adam-beta2", "0.999"}, {"adam-epsilon", "1e-8"},
        {"adam-weight-decay", "1e-2"}, {"validation-steps", "50"}, {"scale-lr", "0"},
        {"with-prior-preservation", "0"}, {"real-prior", "0"}, {"hflip", "0"}, {"noaug", "0"},
        {"center-crop", "0"}, {"gradient-checkpointing", "0"}};
    for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
        const cd_opt *o = find_opt(up[i].name);
        CHECKF(o != NULL, "no --%s", up[i].name);
        if (!o) continue;
        CHECKF(o->def && strtod(o->def, NULL) == strtod(up[i].def, NULL), "--%s default %s, upstream %s",
               up[i].name, o->def ? o->def : "(none)", up[i].def);
    }
    const cd_opt *o = find_opt("initializer-token"), *m = find_opt("train-mode"), *mt = find_opt("modifier-token");
    CHECK(o && o->def && !strcmp(o->def, "ktn+pll+ucd"));
    CHECK(m && m->def && !strcmp(m->def, "crossattn_kv"));
    CHECK(mt && mt->def == NULL);
}

// --scale-lr: lr * accum * batch * processes, then x2 with prior preservation (Q2).
TEST(scale_lr_formula) {
    cd_train_args a = {.lr = 1e-5, .accum = 1, .batch = 2, .with_prior = 1};
    CHECK(cd_lr_scaled(&a) == 1e-5);
    a.scale_lr = 1;
    CHECKF(fabs(cd_lr_scaled(&a) - 4e-5) < 1e-18, "lr %g, expected 4e-5", cd_lr_scaled(&a));
    a.with_prior = 0;
    a.accum = 3;
    CHECKF(fabs(cd_lr_scaled(&a) - 6e-5) < 1e-18, "lr %g, expected 6e-5", cd_lr_scaled(&a));
}

static cd_image solid(int w, int h, int v) {
    cd_image im = {w, h, cd_malloc((size_t)w * h * 3)};
    memset(im.rgb, v, (size_t)w * h * 3);
    return im;
}

static cd_image ramp(int w, int h) {
    cd_image im = {w, h, cd_malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im.rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 7);
            p[1] = (uint8_t)(y * 4);
            p[2] = 9;
        }
    return im;
}

// torchvision CenterCrop offsets are int(round((h - N) / 2)) with Python's half-to-even round:
// 53 -> 32 crops from row 10 (10.5 rounds to 10), not 11.
TEST(class_center_crop_rounds_half_to_even) {
    const int N = 32;
    float *px = cd_malloc(sizeof(float) * 3 * N * N), *ref = cd_malloc(sizeof(float) * 3 * N * N);
    cd_rng r;
    cd_rng_seed(&r, 1);
    cd_image tall = ramp(32, 53), wide = ramp(53, 32);
    CHECK_OK(cd_aug_class(&tall, N, 0, 1, &r, px));
    put_pixels(ref, N, &tall, 0, 0, 10, 0, N, N);
    CHECK(!memcmp(px, ref, sizeof(float) * 3 * N * N));
    CHECK_OK(cd_aug_class(&wide, N, 0, 1, &r, px));
    put_pixels(ref, N, &wide, 0, 0, 0, 10, N, N);
    CHECK(!memcmp(px, ref, sizeof(float) * 3 * N * N));
    cd_image_free(&tall);
    cd_image_free(&wide);
    free(px);
    free(ref);
}

// A folder of n solid images of values v0, v0 + 1, ... (PNG, 40 x 48).
static char *make_folder(const char *root, const char *name, int n, int v0) {
    char *dir = cd_path_join(root, name);
    cd_mkdirs(dir);
    for (int i = 0; i < n; i++) {
        char fn[32];
        snprintf(fn, sizeof fn, "img%02d.png", i);
        char *p = cd_path_join(dir, fn);
        cd_image im = solid(40, 48, v0 + i);
        cd_image_save(p, &im);
        cd_image_free(&im);
        free(p);
    }
    return dir;
}

// The u8 value of a row's centre pixel (solid source images survive resize and crop).
static int row_value(const cd_batch *bt, int row) {
    int N = bt->N;
    float v = bt->pixels[(size_t)row * 3 * N * N + (size_t)(N / 2) * N + N / 2];
    return (int)lround((v + 1.0) * 127.5);
}

// Two concepts with prior preservation: every batch is [b instance rows, b class rows]; row i
// and row b+i come from one dataset index (instance idx % n_inst, class idx % n_class);
// instance captions are their concept's instance prompt (--noaug: no prefix), class captions
// their concept's class prompt; --num-class-images keeps the first N per concept; one epoch
// (len = max(n_inst, n_class)) visits every class image once.
TEST(batch_layout_two_concepts_with_prior) {
    char *root = tl_tmpdir("train_conf");
    char *i0 = make_folder(root, "inst0", 3, 10), *i1 = make_folder(root, "inst1", 2, 100);
    char *c0 = make_folder(root, "cls0", 4, 150), *c1 = make_folder(root, "cls1", 3, 200);
    cd_concept c[2] = {{"photo of a <new1> cat", "cat", i0, c0}, {"a <new2> pot", "pot", i1, c1}};
    cd_train_args a = {.resolution = 32, .with_prior = 1, .noaug = 1, .center_crop = 1,
                       .num_class_images = 3, .seed = 5};
    cd_dataset d;
    CHECK_OK(cd_dataset_open(&d, c, 2, &a, 8));
    CHECKF(d.n_inst == 5 && d.n_class == 6 && d.len == 6, "n_inst %d n_class %d len %d", d.n_inst, d.n_class, d.len);
    cd_rng aug;
    cd_rng_seed(&aug, 7);
    const int b = 2;
    int seen[6] = {0};
    for (int it = 0; it < 3; it++) {   // 3 x 2 = one epoch
        cd_batch bt;
        CHECK_OK(cd_dataset_next(&d, &aug, b, &bt));
        CHECK(bt.B == 2 * b && bt.n_inst == b);
        for (int i = 0; i < b; i++) {
            int vi = row_value(&bt, i), vc = row_value(&bt, b + i);
            CHECKF(vi < 150, "row %d is not an instance image (value %d)", i, vi);
            CHECKF(vc >= 150, "row %d is not a class image (value %d)", b + i, vc);
            CHECK(!strcmp(bt.captions[i], vi < 100 ? c[0].instance_prompt : c[1].instance_prompt));
            CHECK(!strcmp(bt.captions[b + i], vc < 200 ? "cat" : "pot"));
            CHECKF(vc < 153 || vc >= 200, "class image value %d beyond --num-class-images 3", vc);
            CHECK(bt.item[i] == bt.item[b + i] % d.n_inst);
            if (bt.item[b + i] >= 0 && bt.item[b + i] < 6) seen[bt.item[b + i]]++;
        }
        cd_batch_free(&bt);
    }
    for (int k = 0; k < 6; k++) CHECKF(seen[k] == 1, "class item %d drawn %d times in one epoch", k, seen[k]);
    cd_dataset_free(&d);
    free(i0); free(i1); free(c0); free(c1);
    free(root);
}

// --real-prior with a retrieval folder (images.txt + caption.txt): class captions are the
// caption.txt line of each image, not --class-prompt.
TEST(real_prior_captions_from_caption_txt) {
    char *root = tl_tmpdir("train_conf_rp");
    char *inst = make_folder(root, "inst", 1, 10), *imgs = make_folder(root, "reg/images", 3, 160);
    char *reg = cd_path_join(root, "reg");
    char *lst = cd_fmt("%s/img00.png\n%s/img01.png\n%s/img02.png\n", imgs, imgs, imgs);
    const char *caps = "caption 160\ncaption 161\ncaption 162\n";
    char *lp = cd_path_join(reg, "images.txt"), *cp = cd_path_join(reg, "caption.txt");
    CHECK_OK(cd_write_file_atomic(lp, lst, strlen(lst)));
    CHECK_OK(cd_write_file_atomic(cp, caps, strlen(caps)));
    cd_concept c = {"photo of a <new1> cat", "cat", inst, reg};
    cd_train_args a = {.resolution = 32, .with_prior = 1, .real_prior = 1, .noaug = 1, .center_crop = 1,
                       .num_class_images = 200, .seed = 2};
    cd_dataset d;
    CHECK_OK(cd_dataset_open(&d, &c, 1, &a, 8));
    cd_rng aug;
    cd_rng_seed(&aug, 3);
    for (int it = 0; it < 3; it++) {
        cd_batch bt;
        CHECK_OK(cd_dataset_next(&d, &aug, 1, &bt));
        char want[32];
        snprintf(want, sizeof want, "caption %d", row_value(&bt, 1));
        CHECKF(!strcmp(bt.captions[1], want), "class caption '%s', expected '%s'", bt.captions[1], want);
        CHECK(!strcmp(bt.captions[0], "photo of a <new1> cat"));
        cd_batch_free(&bt);
    }
    cd_dataset_free(&d);
    free(inst); free(imgs); free(reg); free(lst); free(lp); free(cp);
    free(root);
}

// Generated prior (--with-prior-preservation without --real-prior): the missing class images
// are sampled like upstream's pipeline(class_prompt): the model's default size (unet
// sample_size x VAE factor, 16 x 8 = 128 for tiny-sd), not --resolution (here 32).
TEST(generated_class_images_at_model_size) {
    if (!tl_golden()) return;
    omp_set_num_threads(1);   // tiny shapes: one thread is fastest on a shared 2-core machine
    char *model = tl_golden_path("tiny-sd/model"), *root = tl_tmpdir("train_conf_gen");
    char *cls = cd_path_join(root, "cls");
    static cd_run r;
    memset(&r, 0, sizeof r);
    cd_train_args a = {.with_prior = 1, .num_class_images = 1, .resolution = 32, .seed = 1};
    cd_concept c = {"photo of a <new1> cat", "a cat", NULL, cls};
    r.a = &a;
    r.concepts = &c;
    r.nconcepts = 1;
    CHECK_OK(cd_pipeline_load(&r.pipe, model, NULL, NULL,
                              CD_LOAD_UNET | CD_LOAD_VAE_DECODER | CD_LOAD_TEXT | CD_LOAD_TOKENIZER));
    CHECK_OK(cd_trainer_init(&r.tr, &r.pipe, NULL, NULL, NULL));
    CHECK_OK(cd_generate_class_images(&r));
    char **names = NULL;
    int n = 0;
    CHECK_OK(cd_list_dir(cls, &names, &n));
    CHECKF(n == 1, "%d files in the class folder", n);
    if (n == 1) {
        char *p = cd_path_join(cls, names[0]);
        cd_image im = {0};
        CHECK_OK(cd_image_load(p, 0, &im));
        int want = cd_unet_cfg(r.pipe.unet)->sample_size * cd_vae_downscale(r.pipe.vae);
        CHECKF(want == 128 && im.w == want && im.h == want, "class image %dx%d, expected %dx%d", im.w, im.h, want, want);
        cd_image_free(&im);
        free(p);
    }
    cd_free_strv(names, n);
    cd_trainer_free(&r.tr);
    cd_pipeline_free(&r.pipe);
    free(cls);
    free(root);
    free(model);
}

int main(void) {
    RUN(flag_defaults_match_upstream);
    RUN(scale_lr_formula);
    RUN(class_center_crop_rounds_half_to_even);
    RUN(batch_layout_two_concepts_with_prior);
    RUN(real_prior_captions_from_caption_txt);
    RUN(generated_class_images_at_model_size);
    return tl_done();
}
