// Tests of the trainer's data path (train/data.c, train/imgsrc.c, train/step.c's schedule):
// the HF profile of the random-scale augmentation (scale bands and caption prefixes, the
// latent mask with its one-pixel border, the zero canvas), class-image crops, flips, the
// warmup schedule and the concepts list.
#include "tests/testlib.h"
#include "train/data.c"
#include "train/imgsrc.c"
#include "train/step.c"
#include <math.h>

static cd_image make_image(int w, int h) {
    cd_image im = {w, h, cd_malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im.rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = 77;
        }
    return im;
}

// Scale bands of the HF trainer at N = 64: s ~ U{N/3..N} with p 0.66, else U{1.2N..1.4N-1};
// prefixes "a far away"/"very small" when s < 0.6N, "zoomed in"/"close up" when s > N.
TEST(instance_scale_bands_and_prefixes) {
    const int N = 64, f = 8, draws = 3000;
    cd_image im = make_image(24, 20);
    float *px = cd_malloc(sizeof(float) * 3 * N * N), mask[64];
    cd_rng r;
    cd_rng_seed(&r, 11);
    int small = 0, zoom = 0, plain = 0, far = 0, bad = 0;
    for (int i = 0; i < draws; i++) {
        int s = 0;
        const char *pre = cd_aug_instance(&im, N, f, 0, 0, &r, px, mask, &s);
        if (!pre) { bad++; continue; }
        if (s < 0.6 * N) { small++; far += !strcmp(pre, "a far away "); bad += strcmp(pre, "a far away ") && strcmp(pre, "very small "); }
        else if (s > N) { zoom++; bad += strcmp(pre, "zoomed in ") && strcmp(pre, "close up "); bad += s < (int)(1.2 * N) || s >= (int)(1.4 * N); }
        else { plain++; bad += pre[0] != 0; bad += s < N / 3; }
    }
    cd_image_free(&im);
    free(px);
    CHECKF(bad == 0, "%d draws broke the rules", bad);
    // expected shares from the formula (44 values N/3..N, 18 of them below 0.6N)
    double lo_n = N - N / 3 + 1, n_small = 0;
    for (int s = N / 3; s <= N; s++) n_small += s < 0.6 * N;
    double e_small = 0.66 * n_small / lo_n, e_zoom = 0.34, e_plain = 1 - e_small - e_zoom;
    CHECKF(fabs(small / (double)draws - e_small) < 0.03, "small share %.3f expected %.3f", small / (double)draws, e_small);
    CHECKF(fabs(zoom / (double)draws - e_zoom) < 0.03, "zoom share %.3f expected %.3f", zoom / (double)draws, e_zoom);
    CHECKF(fabs(plain / (double)draws - e_plain) < 0.03, "plain share %.3f expected %.3f", plain / (double)draws, e_plain);
    CHECKF(fabs(far / (double)small - 0.5) < 0.08, "'a far away' in %.3f of small draws", far / (double)small);
}

// --noaug: s = N is still pasted, and the mask drops a one-latent-pixel ring (Q6): 6x6 of 8x8.
TEST(noaug_mask_has_border) {
    const int N = 64, f = 8, m = N / f;
    cd_image im = make_image(50, 70);
    float *px = cd_malloc(sizeof(float) * 3 * N * N), mask[64];
    cd_rng r;
    cd_rng_seed(&r, 3);
    int s;
    const char *pre = cd_aug_instance(&im, N, f, 1, 0, &r, px, mask, &s);
    cd_image_free(&im);
    free(px);
    CHECK(pre && pre[0] == 0 && s == N);
    double sum = 0;
    for (int i = 0; i < m * m; i++) sum += mask[i];
    CHECKF(sum == 36, "mask sum %g, expected 36 (6x6)", sum);
    for (int i = 0; i < m; i++) CHECK(mask[i] == 0 && mask[i * m] == 0 && mask[(m - 1) * m + i] == 0 && mask[i * m + m - 1] == 0);
}

// Small scales: the canvas outside the pasted s x s square is exactly 0 (u8/127.5-1 never is),
// and the mask is a rectangle inside the pasted region shrunk by one latent pixel.
TEST(small_scale_canvas_and_mask) {
    const int N = 64, f = 8, m = N / f;
    cd_image im = make_image(30, 30);
    float *px = cd_malloc(sizeof(float) * 3 * N * N), mask[64];
    cd_rng r;
    cd_rng_seed(&r, 5);
    int checked = 0;
    for (int it = 0; it < 200 && checked < 20; it++) {
        int s;
        cd_aug_instance(&im, N, f, 0, 0, &r, px, mask, &s);
        if (s > N) {
            for (int i = 0; i < m * m; i++) CHECK(mask[i] == 1);
            continue;
        }
        int zeros = 0;
        for (int i = 0; i < N * N; i++) zeros += px[i] == 0.0f;
        CHECKF(zeros == N * N - s * s, "s=%d: %d zero pixels, expected %d", s, zeros, N * N - s * s);
        int rows = 0, cols = 0;
        for (int y = 0; y < m; y++) { int any = 0; for (int x = 0; x < m; x++) any |= mask[y * m + x] != 0; rows += any; }
        for (int x = 0; x < m; x++) { int any = 0; for (int y = 0; y < m; y++) any |= mask[y * m + x] != 0; cols += any; }
        int most = s / f - 1, least = s / f - 3 > 0 ? s / f - 3 : 0;
        CHECKF(rows <= most && rows >= least && cols <= most && cols >= least, "s=%d: mask %dx%d", s, rows, cols);
        checked++;
    }
    cd_image_free(&im);
    free(px);
    CHECK(checked > 5);
}

// Class images: shorter side -> N (bilinear), centre crop; flips happen about half the time.
TEST(class_center_crop_and_flip) {
    const int N = 32;
    cd_image im = make_image(40, 64), rs;
    float *px = cd_malloc(sizeof(float) * 3 * N * N), *ref = cd_malloc(sizeof(float) * 3 * N * N);
    cd_rng r;
    cd_rng_seed(&r, 9);
    CHECK_OK(cd_aug_class(&im, N, 0, 1, &r, px));
    CHECK_OK(cd_image_resize_to(&im, 32, 51, CD_FILTER_BILINEAR, &rs));   // int(32 * 64 / 40) = 51
    int top = (int)lround((51 - 32) / 2.0);
    put_pixels(ref, N, &rs, 0, 0, top, 0, N, N);
    int same = !memcmp(px, ref, sizeof(float) * 3 * N * N);
    int flips = 0;
    for (int i = 0; i < 200; i++) {
        CHECK_OK(cd_aug_class(&im, N, 1, 1, &r, px));
        flips += memcmp(px, ref, sizeof(float) * 3 * N * N) != 0;
    }
    cd_image_free(&rs);
    cd_image_free(&im);
    free(px);
    free(ref);
    CHECK(same);
    CHECKF(flips > 70 && flips < 130, "%d of 200 flipped", flips);
}

TEST(warmup_schedule) {
    CHECK(cd_lr_at(1e-3, 0, 0) == 1e-3);
    CHECK(cd_lr_at(1e-3, 4, 0) == 0.0);
    CHECK(fabs(cd_lr_at(1e-3, 4, 2) - 5e-4) < 1e-15);
    CHECK(cd_lr_at(1e-3, 4, 4) == 1e-3 && cd_lr_at(1e-3, 4, 100) == 1e-3);
}

TEST(concepts_list) {
    char *dir = tl_tmpdir("concepts");
    char *p = cd_path_join(dir, "c.json"), *q = cd_path_join(dir, "bad.json");
    const char *ok = "[{\"instance_prompt\": \"photo of a <new1> cat\", \"class_prompt\": \"cat\", "
                     "\"instance_data_dir\": \"./data/cat\", \"class_data_dir\": \"./real_reg/samples_cat\"},"
                     " {\"instance_prompt\": \"a <new2> pot\", \"instance_data_dir\": \"./data/pot\"}]";
    CHECK_OK(cd_write_file_atomic(p, ok, strlen(ok)));
    CHECK_OK(cd_write_file_atomic(q, "[{\"class_prompt\": \"cat\"}]", 25));
    cd_concept *c;
    int n;
    CHECK_OK(cd_concepts_load(p, &c, &n));
    CHECK(n == 2 && !strcmp(c[0].class_dir, "./real_reg/samples_cat") && !strcmp(c[1].instance_prompt, "a <new2> pot") &&
          c[1].class_dir == NULL);
    cd_concepts_free(c, n);
    CHECK_ERR(cd_concepts_load(q, &c, &n), "instance_prompt");
    free(p);
    free(q);
    free(dir);
}

TEST(empty_and_missing_sources) {
    char *dir = tl_tmpdir("imgsrc");
    cd_imgsrc *s;
    CHECK_ERR(cd_imgsrc_open(&s, dir, 0, 0), "no images");
    char *nope = cd_path_join(dir, "nope");
    CHECK_ERR(cd_imgsrc_open(&s, nope, 0, 0), "no such folder");
    free(nope);
    free(dir);
}

int main(void) {
    RUN(instance_scale_bands_and_prefixes);
    RUN(noaug_mask_has_border);
    RUN(small_scale_canvas_and_mask);
    RUN(class_center_crop_and_flip);
    RUN(warmup_schedule);
    RUN(concepts_list);
    RUN(empty_and_missing_sources);
    return tl_done();
}
