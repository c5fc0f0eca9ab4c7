// Benchmark: images per second per core for the preprocess path (decode + resize
// center_crop 512 + JPEG q95 encode), fast (header probe, DCT-domain scaled JPEG decode)
// against naive (full-size decode, then the same resize) on the same files, same run.
//
// Inputs: the real photographs of Debian's python3-skimage (bench/get-photos.sh) of 0.7 MP
// and more (JPEG as shipped), and 12 MP 4000x3000 JPEGs SYNTHESISED from its larger colour
// photographs (no 12 MP photo ships there): centre 4:3 crop, Lanczos upscale with our
// resizer, JPEG q92 4:2:0 as cameras write. Upscaled photos are smoother than real ones and
// JPEG decoding is dominated by Huffman decoding, which DCT scaling cannot skip, so the
// ratio depends on entropy: a second 12 MP set adds luma grain (triangular noise +-4) to
// bracket real camera files (~2 MB and more at 12 MP).
// Rates are images per CPU-second of the one thread (CLOCK_THREAD_CPUTIME_ID), so other
// load on a shared machine does not distort them.
//   build/bench/bench_images [PHOTO_DIR] [CPU_SECONDS_PER_MEASURE]
#include "core/err.h"
#include "core/fileio.h"
#include "core/image.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <turbojpeg.h>

#define OUT_SIZE 512
#define MAX_FILES 64

typedef struct { uint8_t *buf; size_t len; int w, h; char name[64]; } jfile;
typedef struct { jfile f[MAX_FILES]; int n; } jset;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// Encode like a camera: q92, 4:2:0 (our encoder keeps 4:4:4 at q >= 90).
static void add420(jset *s, const char *name, const cd_image *im) {
    if (s->n >= MAX_FILES) return;
    jfile *f = &s->f[s->n];
    tjhandle tj = tjInitCompress();
    unsigned char *jb = NULL;
    unsigned long jl = 0;
    if (tj && tjCompress2(tj, im->rgb, im->w, 0, im->h, TJPF_RGB, &jb, &jl, TJSAMP_420, 92, 0) == 0) {
        f->buf = cd_malloc(jl);
        memcpy(f->buf, jb, jl);
        f->len = jl;
        f->w = im->w;
        f->h = im->h;
        snprintf(f->name, sizeof f->name, "%s", name);
        s->n++;
    }
    tjFree(jb);
    if (tj) tjDestroy(tj);
}

// 4000x3000 from a photo: centre 4:3 crop, Lanczos upscale; one file smooth, one with grain.
static void synth12(jset *smooth, jset *grain, const char *name, const cd_image *im, uint32_t seed) {
    int cw = im->w, ch = im->w * 3 / 4;
    if (ch > im->h) { ch = im->h; cw = im->h * 4 / 3; }
    cd_image c, big;
    if (cd_image_crop(im, (im->w - cw) / 2, (im->h - ch) / 2, cw, ch, &c)) return;
    if (cd_image_resize_to(&c, 4000, 3000, CD_FILTER_LANCZOS, &big) == 0) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s@12MP", name);
        add420(smooth, nm, &big);
        for (size_t i = 0; i < (size_t)4000 * 3000; i++) {   // the same noise on R, G, B: luma grain
            seed = seed * 1664525u + 1013904223u;
            int nz = (int)((seed >> 24) % 5) + (int)((seed >> 16 & 255) % 5) - 4;
            for (int k = 0; k < 3; k++) {
                int v = big.rgb[3 * i + k] + nz;
                big.rgb[3 * i + k] = v < 0 ? 0 : v > 255 ? 255 : v;
            }
        }
        add420(grain, nm, &big);
        cd_image_free(&big);
    }
    cd_image_free(&c);
}

// One image through the whole path; returns the encoded size (0 on error).
static size_t process(const jfile *f, int fast, cd_image *keep) {
    int w, h;
    cd_imgfmt fmt;
    cd_image im, r;
    uint8_t *out;
    size_t len;
    if (fast && cd_image_probe(f->buf, f->len, f->name, &fmt, &w, &h)) return 0;
    if (cd_image_decode(f->buf, f->len, f->name, (int64_t)1 << 28, fast ? OUT_SIZE : 0, &im)) return 0;
    int rc = cd_image_resize(&im, OUT_SIZE, CD_RESIZE_CENTER_CROP, &r);
    cd_image_free(&im);
    if (rc) return 0;
    rc = cd_image_encode_jpeg(&r, 95, &out, &len);
    if (keep) *keep = r;
    else cd_image_free(&r);
    if (rc) return 0;
    free(out);
    return len;
}

// Images per second on one thread, looping over the set for at least `secs`.
static double measure(const jset *s, int fast, double secs) {
    int done = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < s->n; i++) {
            if (!process(&s->f[i], fast, NULL)) {
                fprintf(stderr, "bench_images: %s\n", cd_errmsg());
                return 0;
            }
            done++;
        }
        t = now() - t0;
    } while (t < secs);
    return done / t;
}

static void report(const char *title, const jset *s, double secs) {
    if (s->n == 0) { printf("%s: no images\n", title); return; }
    double mp = 0, mb = 0, mad = 0;
    for (int i = 0; i < s->n; i++) {
        mp += s->f[i].w * (double)s->f[i].h / 1e6 / s->n;
        mb += s->f[i].len / 1e6 / s->n;
        cd_image a = {0}, b = {0};   // how far the fast output is from the naive one
        process(&s->f[i], 1, &a);
        process(&s->f[i], 0, &b);
        double d = 0;
        for (size_t k = 0; a.rgb && b.rgb && k < (size_t)a.w * a.h * 3; k++) d += abs(a.rgb[k] - b.rgb[k]);
        mad += d / ((double)OUT_SIZE * OUT_SIZE * 3) / s->n;
        cd_image_free(&a);
        cd_image_free(&b);
    }
    double fast = measure(s, 1, secs), naive = measure(s, 0, secs);
    // The floor no scaling removes: a 1/8-scale decode still entropy-decodes every block.
    double t0 = now();
    int reps = 0;
    do {
        for (int i = 0; i < s->n; i++) {
            cd_image im;
            if (cd_image_decode(s->f[i].buf, s->f[i].len, s->f[i].name, 0, 1, &im) == 0) cd_image_free(&im);
            reps++;
        }
    } while (now() - t0 < secs / 3);
    double floor_ms = (now() - t0) / reps * 1e3;
    printf("%s: %d files, mean %.2f MP, %.2f MB JPEG\n", title, s->n, mp, mb);
    printf("  fast  (probe + DCT-scaled decode + resize + encode): %7.2f images/s/core\n", fast);
    printf("  naive (full decode + resize + encode):               %7.2f images/s/core\n", naive);
    printf("  ratio fast/naive: %.2fx   (mean |fast-naive| = %.2f of 255 per sample)\n", naive > 0 ? fast / naive : 0, mad);
    printf("  per image: fast %.1f ms, naive %.1f ms; a 1/8-scale decode alone takes %.1f ms (entropy decoding,\n"
           "  which DCT scaling cannot skip), so the ratio is at most %.2fx on these files\n",
           1e3 / fast, 1e3 / naive, floor_ms, (1e3 / naive) / floor_ms);
}

static void cpu_name(char *buf, size_t n) {
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(buf, n, "%s", strchr(line, ':') + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    fclose(f);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "build/photos";
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    char **names;
    int n;
    if (cd_list_dir(dir, &names, &n)) {
        fprintf(stderr, "bench_images: %s (run bench/get-photos.sh first)\n", cd_errmsg());
        return 1;
    }
    static jset mp1, mp12, mp12g;
    int nsynth = 0;
    for (int i = 0; i < n; i++) {
        const char *dot = strrchr(names[i], '.');
        if (!dot || (strcmp(dot, ".jpg") && strcmp(dot, ".png"))) continue;
        char *p = cd_path_join(dir, names[i]);
        cd_image im;
        int ok = cd_image_load(p, 0, &im) == 0;
        free(p);
        if (!ok) continue;
        double mp = im.w * (double)im.h / 1e6;
        if (mp >= 0.7 && !strcmp(dot, ".jpg")) {   // the ~1 MP set: real JPEGs as shipped
            jfile *f = &mp1.f[mp1.n++];
            char *q = cd_path_join(dir, names[i]);
            char *data;
            if (cd_read_file(q, &data, &f->len, 0) == 0) {
                f->buf = (uint8_t *)data;
                f->w = im.w;
                f->h = im.h;
                snprintf(f->name, sizeof f->name, "%s", names[i]);
            } else {
                mp1.n--;
            }
            free(q);
        }
        // 12 MP set: synthesised from the larger colour photographs.
        if (nsynth < 4 && mp >= 0.25 && strcmp(names[i], "camera.png") && strcmp(names[i], "moon.png") &&
            strcmp(names[i], "coins.png"))
            synth12(&mp12, &mp12g, names[i], &im, 12345u + nsynth++);
        cd_image_free(&im);
    }
    cd_free_strv(names, n);
    char cpu[128];
    cpu_name(cpu, sizeof cpu);
    printf("bench_images: decode + resize center_crop %d (box down / lanczos up) + JPEG q95, one thread, per CPU-second\n", OUT_SIZE);
    printf("CPU: %s; photos: %s (Debian python3-skimage data); %.1f s per measurement\n", cpu, dir, secs);
    printf("~1 MP set: the real JPEG photographs of 0.7 MP and more, as shipped\n");
    printf("12 MP sets: 4000x3000 SYNTHESISED from real photographs (Lanczos upscale, JPEG q92 4:2:0),\n"
           "  smooth as upscaled, and with luma grain (+-4) to carry a camera file's entropy\n\n");
    report("~1 MP real photographs", &mp1, secs);
    report("12 MP synthesised, smooth", &mp12, secs);
    report("12 MP synthesised, with grain", &mp12g, secs);
    for (int i = 0; i < mp1.n; i++) free(mp1.f[i].buf);
    for (int i = 0; i < mp12.n; i++) free(mp12.f[i].buf);
    for (int i = 0; i < mp12g.n; i++) free(mp12g.f[i].buf);
    return 0;
}
