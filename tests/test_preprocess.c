// customdiff-preprocess end to end: instance folders (JPEG, PNG, WebP, EXIF-rotated, gray,
// CMYK, 16-bit, alpha, duplicates), candidates through the loopback server's fault routes,
// CSV/TSV/folder inputs, --num, resume after kill -9 (stores compared record by record),
// --export, incremental reruns (grown/shrunk folders, extended/reordered lists, changed
// captions, schema-1 stores). Images are generated here with the codec libraries.
#include "tests/testlib.h"
#include "tests/httpd.h"
#include "core/fileio.h"
#include "core/image.h"
#include "core/json.h"
#include "core/store.h"
#include <lmdb.h>
#include <png.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <webp/encode.h>

static th_server *srv;
static char *root, *imgdir, *bin;

// ---- generators ----

static uint8_t *jpeg_of(const uint8_t *px, int w, int h, int pf, int samp, size_t *len) {
    tjhandle tj = tjInitCompress();
    unsigned char *jb = NULL;
    unsigned long jl = 0;
    int rc = tjCompress2(tj, px, w, 0, h, pf, &jb, &jl, samp, 92, 0);
    tjDestroy(tj);
    if (rc) return NULL;
    uint8_t *out = cd_malloc(jl);
    memcpy(out, jb, jl);
    tjFree(jb);
    *len = jl;
    return out;
}

// A smooth pattern that differs per seed (so images hash differently). RGB8.
static uint8_t *pattern(int w, int h, int seed) {
    uint8_t *p = cd_malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 255 / w + seed * 37);
            q[1] = (uint8_t)(y * 255 / h + seed * 11);
            q[2] = (uint8_t)(((x / 16 + y / 16 + seed) & 1) ? 200 : 50);
        }
    return p;
}

static void put(const char *dir, const char *name, const void *d, size_t n) {
    char *p = cd_path_join(dir, name);
    cd_write_file_atomic(p, d, n);
    free(p);
}

static void put_jpeg(const char *dir, const char *name, int w, int h, int seed) {
    uint8_t *p = pattern(w, h, seed);
    size_t n;
    uint8_t *j = jpeg_of(p, w, h, TJPF_RGB, TJSAMP_420, &n);
    put(dir, name, j, n);
    free(j); free(p);
}

typedef struct { uint8_t *p; size_t n; } membuf;
static void mw(png_structp png, png_bytep d, png_size_t n) {
    membuf *m = png_get_io_ptr(png);
    m->p = cd_realloc(m->p, m->n + n);
    memcpy(m->p + m->n, d, n);
    m->n += n;
}
static void mf(png_structp png) { (void)png; }

// rows: samples in PNG layout (16-bit big-endian); ch channels of depth bits.
static void put_png(const char *dir, const char *name, const uint8_t *rows, int w, int h, int ct, int depth, int ch) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    membuf m = {0};
    if (setjmp(png_jmpbuf(png))) { png_destroy_write_struct(&png, &info); free(m.p); return; }
    png_set_write_fn(png, &m, mw, mf);
    png_set_IHDR(png, info, w, h, depth, ct, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)w * ch * depth / 8;
    for (int y = 0; y < h; y++) png_write_row(png, (png_bytep)rows + stride * y);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    put(dir, name, m.p, m.n);
    free(m.p);
}

// EXIF APP1 with IFD0 orientation (little-endian TIFF) inserted after SOI.
static uint8_t *with_exif(const uint8_t *j, size_t n, int orient, size_t *len) {
    uint8_t seg[] = {0xFF, 0xE1, 0, 34, 'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0,
                     1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, (uint8_t)orient, 0, 0, 0, 0, 0, 0, 0};
    uint8_t *out = cd_malloc(n + sizeof seg);
    memcpy(out, j, 2);
    memcpy(out + 2, seg, sizeof seg);
    memcpy(out + 2 + sizeof seg, j + 2, n - 2);
    *len = n + sizeof seg;
    return out;
}

// The instance/candidate image set in dir. Names used by the tests below.
static void make_images(const char *dir) {
    put_jpeg(dir, "a.jpg", 640, 480, 1);
    put_jpeg(dir, "d.jpg", 300, 300, 4);
    uint8_t *p = pattern(300, 500, 2);
    put_png(dir, "b.png", p, 300, 500, PNG_COLOR_TYPE_RGB, 8, 3);
    free(p);
    p = pattern(400, 300, 3);
    uint8_t *wb;
    size_t wn = WebPEncodeRGB(p, 400, 300, 400 * 3, 90, &wb);
    put(dir, "c.webp", wb, wn);
    WebPFree(wb);
    free(p);
    size_t n, n2;                                          // 320x200, orientation 6 -> 200x320
    p = pattern(320, 200, 5);
    uint8_t *j = jpeg_of(p, 320, 200, TJPF_RGB, TJSAMP_444, &n), *e = with_exif(j, n, 6, &n2);
    put(dir, "rot.jpg", e, n2);
    free(j); free(e); free(p);
    uint8_t g[96 * 64];                                   // gray JPEG
    for (int i = 0; i < 96 * 64; i++) g[i] = (uint8_t)(i % 96 * 2);
    j = jpeg_of(g, 96, 64, TJPF_GRAY, TJSAMP_GRAY, &n);
    put(dir, "gray.jpg", j, n);
    free(j);
    uint8_t *c = cd_malloc(80 * 80 * 4);                  // CMYK (Adobe inverted): red
    for (int i = 0; i < 80 * 80; i++) { c[4 * i] = 255; c[4 * i + 1] = 0; c[4 * i + 2] = 0; c[4 * i + 3] = 255; }
    j = jpeg_of(c, 80, 80, TJPF_CMYK, TJSAMP_444, &n);
    put(dir, "cmyk.jpg", j, n);
    free(j); free(c);
    uint8_t *r16 = cd_malloc(70 * 50 * 6);                // 16-bit RGB PNG
    for (int i = 0; i < 70 * 50 * 3; i++) { r16[2 * i] = (uint8_t)(i * 7); r16[2 * i + 1] = (uint8_t)i; }
    put_png(dir, "p16.png", r16, 70, 50, PNG_COLOR_TYPE_RGB, 16, 3);
    free(r16);
    uint8_t *ra = cd_malloc(64 * 64 * 4);                 // RGBA: left half transparent black
    for (int i = 0; i < 64 * 64; i++) {
        uint8_t *q = ra + 4 * i;
        q[0] = q[1] = q[2] = 0;
        q[3] = (i % 64) < 32 ? 0 : 255;
    }
    put_png(dir, "alpha.png", ra, 64, 64, PNG_COLOR_TYPE_RGBA, 8, 4);
    free(ra);
    // A truncated JPEG, and huge dimensions in the SOF of a small one (refused from the header).
    char *ap = cd_path_join(dir, "a.jpg"), *d;
    cd_read_file(ap, &d, &n, 0);
    put(dir, "cut.jpg", d, n / 2);
    for (size_t i = 2; i + 9 < n; i++)
        if ((uint8_t)d[i] == 0xFF && ((uint8_t)d[i + 1] == 0xC0 || (uint8_t)d[i + 1] == 0xC2)) {
            d[i + 5] = (char)(60000 >> 8); d[i + 6] = (char)(60000 & 255);
            d[i + 7] = (char)(60000 >> 8); d[i + 8] = (char)(60000 & 255);
            break;
        }
    put(dir, "huge.jpg", d, n);
    free(d); free(ap);
}

// ---- running the binary ----

static int run_pp(const char *args, const char *log) {
    char *cmd = cd_fmt("%s %s >%s 2>&1", bin, args, log);
    int rc = system(cmd);
    free(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static const char *tail_of(const char *log) {
    static char buf[600];
    char *d;
    size_t n;
    buf[0] = 0;
    if (cd_read_file(log, &d, &n, 0) == 0) { snprintf(buf, sizeof buf, "%s", n > 500 ? d + n - 500 : d); free(d); }
    return buf;
}

// manifest.jsonl of a store -> array of objects (NULL on error); *n lines.
static cJSON **manifest(const char *store, int *n) {
    char *p = cd_path_join(store, "manifest.jsonl"), *d;
    size_t len;
    *n = 0;
    if (cd_read_file(p, &d, &len, 0)) { free(p); return NULL; }
    free(p);
    cJSON **v = cd_calloc(4096, sizeof *v);
    for (char *save = NULL, *l = strtok_r(d, "\n", &save); l && *n < 4096; l = strtok_r(NULL, "\n", &save))
        if (cd_json_parse(l, strlen(l), "manifest line", &v[*n]) == 0) (*n)++;
    free(d);
    return v;
}
static void manifest_free(cJSON **v, int n) { for (int i = 0; i < n; i++) cJSON_Delete(v[i]); free(v); }
static const char *st_of(cJSON **v, int n, int i) { return i < n ? cd_json_str(v[i], "status", "?") : "(missing)"; }

// ---- tests ----

TEST(instance_folder_all_formats) {
    char *dir = tl_tmpdir("pp-inst"), *in = cd_path_join(dir, "in"), *store = cd_path_join(dir, "store");
    cd_mkdirs(in);
    make_images(in);
    char *del[] = {"huge.jpg", "cut.jpg"};
    for (int i = 0; i < 2; i++) { char *p = cd_path_join(in, del[i]); unlink(p); free(p); }
    char *ap = cd_path_join(in, "a.jpg"), *d;
    size_t n;
    cd_read_file(ap, &d, &n, 0);
    put(in, "zz_copy_of_a.jpg", d, n);                   // duplicate image bytes
    free(d); free(ap);
    put(in, "a.txt", "a sidecar caption\n", 18);
    put(in, "notes.md", "not an image", 12);
    char *log = cd_path_join(dir, "log"), *args = cd_fmt("--instance %s --caption 'photo of a <new1> thing' --out %s --resolution 64 --workers 2", in, store);
    int rc = run_pp(args, log);
    CHECKF(rc == 0, "exit %d: %s", rc, tail_of(log));
    cd_store *s;
    CHECK_OK(cd_store_open(store, &s));
    int64_t cnt = cd_store_count(s);
    CHECKF(cnt == 9, "count %lld", (long long)cnt);      // a b c cmyk d gray p16 rot alpha
    int seen_rot = 0, seen_gray = 0, seen_alpha = 0, seen_cmyk = 0;
    for (int64_t i = 0; i < cnt; i++) {
        cd_store_rec r;
        CHECK_OK(cd_store_get(s, i, &r));
        cd_image im;
        CHECK_OK(cd_image_decode(r.jpeg, r.jpeg_len, "stored", 0, 0, &im));
        CHECK(im.w == 64 && im.h == 64 && r.width == 64 && r.height == 64);
        const char *b = strrchr(r.source, '/') + 1;
        if (!strcmp(b, "a.jpg")) CHECK(!strcmp(r.caption, "a sidecar caption"));
        else CHECKF(!strcmp(r.caption, "photo of a <new1> thing"), "%s: caption %s", b, r.caption);
        if (!strcmp(b, "rot.jpg")) { seen_rot = 1; CHECK(r.original_width == 200 && r.original_height == 320); }
        if (!strcmp(b, "gray.jpg")) { seen_gray = 1; const uint8_t *q = im.rgb + 3 * (32 * 64 + 32); CHECK(abs(q[0] - q[1]) < 4 && abs(q[1] - q[2]) < 4); }
        if (!strcmp(b, "alpha.png")) { seen_alpha = 1; const uint8_t *q = im.rgb + 3 * (32 * 64 + 4); CHECKF(q[0] > 240 && q[1] > 240 && q[2] > 240, "alpha not over white"); }
        if (!strcmp(b, "cmyk.jpg")) { seen_cmyk = 1; const uint8_t *q = im.rgb + 3 * (32 * 64 + 32); CHECKF(q[0] > 200 && q[1] < 60 && q[2] < 60, "cmyk red = %d,%d,%d", q[0], q[1], q[2]); }
        cd_image_free(&im);
        cd_store_rec_free(&r);
    }
    CHECK(seen_rot && seen_gray && seen_alpha && seen_cmyk);
    cd_store_close(s);
    int nm;
    cJSON **m = manifest(store, &nm);
    CHECK(m && nm == 10);
    int dups = 0;
    for (int i = 0; i < nm; i++) dups += !strcmp(st_of(m, nm, i), "duplicate");
    CHECK(dups == 1 && !strcmp(st_of(m, nm, 9), "duplicate"));   // zz_copy_of_a.jpg is last
    manifest_free(m, nm);
    char *cs = cd_path_join(store, "contact.jpg"), *sj = cd_path_join(store, "stats.json");
    cd_image sheet;
    CHECK_OK(cd_image_load(cs, 0, &sheet));
    cd_image_free(&sheet);
    cJSON *stats;
    CHECK_OK(cd_json_load(sj, &stats));
    CHECK(cd_json_int(stats, "count", 0) == 9 && cd_json_int(stats, "successes", 0) == 9);
    cJSON_Delete(stats);
    free(cs); free(sj); free(args); free(log); free(in); free(store); free(dir);
}

static char *jsonl_line(const char *path, const char *caption) {
    char *u = th_url(srv, path);
    char *l = cd_fmt("{\"url\": \"%s\", \"caption\": \"%s\", \"similarity\": 0.3}\n", u, caption);
    free(u);
    return l;
}

TEST(candidates_fault_routes_and_resume) {
    char *dir = tl_tmpdir("pp-cand"), *store = cd_path_join(dir, "store"), *cand = cd_path_join(dir, "c.jsonl");
    const char *routes[] = {
        "/files/a.jpg",            //  0 success
        "/404",                    //  1 http_error 404
        "/403",                    //  2 http_error 403
        "/429/b.png",              //  3 success after Retry-After
        "/500/c.webp",             //  4 success after a 500
        "/slow/4000/d.jpg",        //  5 timeout (transient)
        "/reset",                  //  6 reset (transient)
        "/truncated/gray.jpg",     //  7 truncated (transient)
        "/files/cut.jpg",          //  8 decode_error (truncated JPEG)
        "/garbage",                //  9 not_an_image
        "/html",                   // 10 not_an_image
        "/files/huge.jpg",         // 11 too_many_pixels
        "/big/3000000",            // 12 too_large (--max-bytes 1MB)
        "/loop/0",                 // 13 redirect_loop
        "/redirect-private",       // 14 refused_address
        "/redirect-metadata",      // 15 refused_address
        "/robots/noai/d.jpg",      // 16 robots_optout
        "/files/a.jpg",            // 17 duplicate_url
        "/redirect/a.jpg",         // 18 duplicate (same bytes as 0)
        "/robots/other/rot.jpg",   // 19 success
        "/files/p16.png?ct=text/html",   // 20 success: Content-Type is not trusted
    };
    const char *want[] = {"success", "http_error", "http_error", "success", "success", "timeout", "reset",
                          "truncated", "decode_error", "not_an_image", "not_an_image", "too_many_pixels",
                          "too_large", "redirect_loop", "refused_address", "refused_address", "robots_optout",
                          "duplicate_url", "duplicate", "success", "success"};
    int nr = sizeof routes / sizeof *routes;
    cd_atomic a;
    CHECK_OK(cd_atomic_open(&a, cand));
    for (int i = 0; i < nr; i++) { char *l = jsonl_line(routes[i], "a candidate"); fputs(l, a.fp); free(l); }
    CHECK_OK(cd_atomic_commit(&a));
    char *log = cd_path_join(dir, "log");
    char *args = cd_fmt("--candidates %s --out %s --resolution 64 --allow-loopback --timeout 1 --retries 1 "
                        "--max-bytes 1MB --concurrency 8", cand, store);
    int rc = run_pp(args, log);
    CHECKF(rc == 0, "exit %d: %s", rc, tail_of(log));
    int nm;
    cJSON **m = manifest(store, &nm);
    CHECKF(m && nm == nr, "manifest has %d lines", nm);
    for (int i = 0; i < nr; i++) {
        const char *got = st_of(m, nm, i);
        if (i == 6 && !strcmp(got, "truncated")) continue;    // an RST may read as either
        CHECKF(!strcmp(got, want[i]), "input %d (%s): status %s, want %s (%s)", i, routes[i], got, want[i],
               cd_json_str(m[i], "error_message", ""));
    }
    CHECK(cd_json_int(m[1], "http_status", 0) == 404 && cd_json_bool(m[5], "transient", 0));
    CHECK(!cd_json_bool(m[1], "transient", 1) && !strcmp(cd_json_str(m[18], "duplicate_of", ""), "0000000000"));
    manifest_free(m, nm);
    cd_store *s;
    CHECK_OK(cd_store_open(store, &s));
    CHECK(cd_store_count(s) == 5);
    cd_store_close(s);
    // Rerun: permanent failures are not asked again, transient ones are.
    int h404 = th_hits(srv, "/404"), hslow = th_hits(srv, "/slow/4000/d.jpg"), hok = th_hits(srv, "/files/a.jpg");
    rc = run_pp(args, log);
    CHECKF(rc == 0, "rerun exit %d: %s", rc, tail_of(log));
    CHECK(th_hits(srv, "/404") == h404 && th_hits(srv, "/files/a.jpg") == hok);
    CHECKF(th_hits(srv, "/slow/4000/d.jpg") > hslow, "transient failure not retried");
    m = manifest(store, &nm);
    CHECK(m && nm == nr && !strcmp(st_of(m, nm, 5), "timeout"));
    manifest_free(m, nm);
    CHECK_OK(cd_store_open(store, &s));
    CHECK(cd_store_count(s) == 5);
    cd_store_close(s);
    free(args); free(log); free(cand); free(store); free(dir);
}

typedef struct { char *sha, *caption, *source; uint8_t *jpeg; size_t n; } recsum;

static int load_store(const char *path, recsum **out, int64_t *n) {
    cd_store *s;
    CD_TRY(cd_store_open(path, &s));
    *n = cd_store_count(s);
    *out = cd_calloc(*n + 1, sizeof **out);
    for (int64_t i = 0; i < *n; i++) {
        cd_store_rec r;
        if (cd_store_get(s, i, &r)) { cd_store_close(s); return -1; }
        (*out)[i] = (recsum){cd_strdup(r.sha256), cd_strdup(r.caption), cd_strdup(r.source), r.jpeg, r.jpeg_len};
        r.jpeg = NULL;
        cd_store_rec_free(&r);
    }
    cd_store_close(s);
    return 0;
}

static void free_sums(recsum *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) { free(v[i].sha); free(v[i].caption); free(v[i].source); free(v[i].jpeg); }
    free(v);
}

TEST(kill9_and_resume_equals_uninterrupted) {
    char *dir = tl_tmpdir("pp-kill"), *cand = cd_path_join(dir, "c.jsonl"), *imgs = cd_path_join(imgdir, "many");
    cd_mkdirs(imgs);
    cd_atomic a;
    CHECK_OK(cd_atomic_open(&a, cand));
    for (int i = 0; i < 48; i++) {
        char name[32], path[64], cap[32];
        snprintf(name, sizeof name, "m%02d.jpg", i);
        put_jpeg(imgs, name, 160 + i, 120, 100 + i);
        snprintf(path, sizeof path, "/slow/%d/many/%s", 20 + (i * 37) % 60, name);
        snprintf(cap, sizeof cap, "image %d", i);
        char *l = jsonl_line(i % 7 == 3 ? "/404" : path, cap);
        fputs(l, a.fp);
        free(l);
    }
    CHECK_OK(cd_atomic_commit(&a));
    char *sa = cd_path_join(dir, "A"), *sb = cd_path_join(dir, "B"), *log = cd_path_join(dir, "log");
    const char *common = "--resolution 48 --allow-loopback --concurrency 4 --batch 3 --workers 2 --num 36 --map-size 32k";
    char *args = cd_fmt("--candidates %s --out %s %s", cand, sa, common);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    free(args);
    int kills = 0;
    for (int round = 0; round < 3; round++) {          // start, kill -9 after a while, again
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open("/dev/null", 1);
            dup2(fd, 1); dup2(fd, 2);
            execl(bin, bin, "--candidates", cand, "--out", sb, "--resolution", "48", "--allow-loopback",
                  "--concurrency", "4", "--batch", "3", "--workers", "2", "--num", "36", "--map-size", "32k", (char *)NULL);
            _exit(127);
        }
        usleep(150000 + round * 120000);
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st)) kills++;                    // killed mid-run, not already done
    }
    args = cd_fmt("--candidates %s --out %s %s", cand, sb, common);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    free(args);
    recsum *va, *vb;
    int64_t na, nb;
    CHECK_OK(load_store(sa, &va, &na));
    CHECK_OK(load_store(sb, &vb, &nb));
    CHECKF(kills >= 1, "no run was killed mid-way");
    CHECKF(na == 36 && nb == na, "counts %lld vs %lld (%d kills)", (long long)na, (long long)nb, kills);
    for (int64_t i = 0; i < na; i++)
        CHECKF(!strcmp(va[i].sha, vb[i].sha) && !strcmp(va[i].source, vb[i].source) &&
               !strcmp(va[i].caption, vb[i].caption) && va[i].n == vb[i].n && !memcmp(va[i].jpeg, vb[i].jpeg, va[i].n),
               "record %lld differs", (long long)i);
    int nm1, nm2;
    char *ma = cd_path_join(sa, "manifest.jsonl"), *mb = cd_path_join(sb, "manifest.jsonl"), *da, *db;
    size_t la, lb;
    CHECK_OK(cd_read_file(ma, &da, &la, 0));
    CHECK_OK(cd_read_file(mb, &db, &lb, 0));
    CHECK(la == lb && !memcmp(da, db, la));              // same manifest, byte for byte
    (void)nm1; (void)nm2;
    free(da); free(db); free(ma); free(mb);
    // --export writes the Custom Diffusion layout
    char *ex = cd_path_join(dir, "export"), *cmd = cd_fmt("--export %s %s", sa, ex);
    CHECKF(run_pp(cmd, log) == 0, "%s", tail_of(log));
    char *capf = cd_path_join(ex, "caption.txt"), *cap;
    size_t cl;
    CHECK_OK(cd_read_file(capf, &cap, &cl, 0));
    int lines = 0;
    for (size_t i = 0; i < cl; i++) lines += cap[i] == '\n';
    CHECK(lines == 36 && !strncmp(cap, "image 0\n", 8));
    char *img0 = cd_path_join(ex, "images/35.jpg");
    CHECK(cd_path_exists(img0));
    free(img0); free(cap); free(capf); free(cmd); free(ex);
    free_sums(va, na); free_sums(vb, nb);
    free(sa); free(sb); free(log); free(cand); free(imgs); free(dir);
}

TEST(csv_tsv_and_folder_inputs) {
    char *dir = tl_tmpdir("pp-csv"), *csv = cd_path_join(dir, "c.csv"), *store = cd_path_join(dir, "s1");
    char *ua = th_url(srv, "/files/a.jpg"), *ub = th_url(srv, "/files/b.png");
    char *text = cd_fmt("id,URL,TEXT\n1,%s,\"a cat, sitting \"\"here\"\"\"\n2,\"%s\",\"multi\nline\"\n", ua, ub);
    put(dir, "c.csv", text, strlen(text));
    free(text);
    char *log = cd_path_join(dir, "log"), *args = cd_fmt("--candidates %s --out %s --resolution 32 --allow-loopback", csv, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    cd_store *s;
    cd_store_rec r;
    CHECK_OK(cd_store_open(store, &s));
    CHECK(cd_store_count(s) == 2);
    CHECK_OK(cd_store_get(s, 0, &r));
    CHECKF(!strcmp(r.caption, "a cat, sitting \"here\""), "caption %s", r.caption);
    cd_store_rec_free(&r);
    CHECK_OK(cd_store_get(s, 1, &r));
    CHECK(!strcmp(r.caption, "multi line") && !strcmp(r.source, ub));
    cd_store_rec_free(&r);
    cd_store_close(s);
    free(args);
    // TSV, and --num 1
    char *tsv = cd_path_join(dir, "c.tsv"), *s2 = cd_path_join(dir, "s2");
    text = cd_fmt("url\tcaption\n%s\tfirst\n%s\tsecond\n", ua, ub);
    put(dir, "c.tsv", text, strlen(text));
    free(text);
    args = cd_fmt("--candidates %s --out %s --resolution 32 --allow-loopback --num 1", tsv, s2);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    CHECK_OK(cd_store_open(s2, &s));
    CHECK(cd_store_count(s) == 1);
    CHECK_OK(cd_store_get(s, 0, &r));
    CHECK(!strcmp(r.caption, "first"));
    cd_store_rec_free(&r);
    cd_store_close(s);
    free(args);
    // Custom Diffusion folder layout (local files, paths relative to the folder's images/)
    char *cdf = cd_path_join(dir, "cdret"), *cdimg = cd_path_join(cdf, "images"), *s3 = cd_path_join(dir, "s3");
    cd_mkdirs(cdimg);
    char *src = cd_path_join(imgdir, "c.webp"), *d;
    size_t n;
    cd_read_file(src, &d, &n, 0);
    put(cdimg, "0.jpg", d, n);                           // a WebP named .jpg: sniffed by bytes
    free(d); free(src);
    put(cdf, "images.txt", "somewhere/else/0.jpg\n", 21);
    put(cdf, "caption.txt", "a webp picture\n", 15);
    put(cdf, "urls.txt", "http://example.com/0.webp\n", 26);
    args = cd_fmt("--candidates %s --out %s --resolution 32", cdf, s3);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    CHECK_OK(cd_store_open(s3, &s));
    CHECK(cd_store_count(s) == 1);
    CHECK_OK(cd_store_get(s, 0, &r));
    CHECK(!strcmp(r.caption, "a webp picture") && !strcmp(r.source, "http://example.com/0.webp"));
    cd_store_rec_free(&r);
    cd_store_close(s);
    free(args); free(cdf); free(cdimg); free(s3);
    free(ua); free(ub); free(tsv); free(s2); free(log); free(csv); free(store); free(dir);
}

// ---- incremental reruns: inputs are matched by identity (source), not list position ----

// stats.json of a store (NULL on error).
static cJSON *stats_of(const char *store) {
    char *p = cd_path_join(store, "stats.json");
    cJSON *o = NULL;
    if (cd_json_load(p, &o)) o = NULL;
    free(p);
    return o;
}
static int run_stat(const cJSON *st, const char *key) {
    return cd_json_int(cJSON_GetObjectItemCaseSensitive(st, "this_run"), key, -1);
}

static void copy_file(const char *from_dir, const char *name, const char *to_dir, const char *to_name) {
    char *p = cd_path_join(from_dir, name), *d;
    size_t n;
    if (cd_read_file(p, &d, &n, 0) == 0) { put(to_dir, to_name, d, n); free(d); }
    free(p);
}

// Record i's source file name (after the last '/') and sha256, for order checks.
static int rec_is(cd_store *s, int64_t i, const char *base, const char *sha) {
    cd_store_rec r;
    if (cd_store_get(s, i, &r)) return 0;
    const char *b = strrchr(r.source, '/');
    int ok = b && !strcmp(b + 1, base) && (!sha || !strcmp(r.sha256, sha));
    cd_store_rec_free(&r);
    return ok;
}

TEST(instance_folder_grows_and_shrinks) {
    char *dir = tl_tmpdir("pp-grow"), *in = cd_path_join(dir, "in"), *store = cd_path_join(dir, "store");
    cd_mkdirs(in);
    copy_file(imgdir, "a.jpg", in, "a.jpg");
    copy_file(imgdir, "b.png", in, "b.png");
    copy_file(imgdir, "d.jpg", in, "d.jpg");
    char *log = cd_path_join(dir, "log"), *args = cd_fmt("--instance %s --caption 'a <new1> dog' --out %s --resolution 32 --workers 2", in, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    recsum *v0;
    int64_t n0;
    CHECK_OK(load_store(store, &v0, &n0));
    CHECK(n0 == 3);
    // Grow: a new file sorting first, one sorting between, and a copy of a.jpg's bytes.
    copy_file(imgdir, "c.webp", in, "0first.webp");
    copy_file(imgdir, "rot.jpg", in, "c.jpg");
    copy_file(imgdir, "a.jpg", in, "zcopy.jpg");
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    cJSON *st = stats_of(store);
    CHECKF(st && run_stat(st, "processed") == 3 && run_stat(st, "resumed_skipped") == 3 && run_stat(st, "stored") == 2,
           "processed %d skipped %d stored %d", run_stat(st, "processed"), run_stat(st, "resumed_skipped"), run_stat(st, "stored"));
    cJSON_Delete(st);
    cd_store *s;
    CHECK_OK(cd_store_open(store, &s));
    CHECK(cd_store_count(s) == 5);
    CHECK(rec_is(s, 0, "a.jpg", v0[0].sha) && rec_is(s, 1, "b.png", v0[1].sha) && rec_is(s, 2, "d.jpg", v0[2].sha));
    CHECK(rec_is(s, 3, "0first.webp", NULL) && rec_is(s, 4, "c.jpg", NULL));   // new ones: next keys, input order
    cd_store_close(s);
    int nm;
    cJSON **m = manifest(store, &nm);
    CHECKF(m && nm == 6, "manifest has %d lines", nm);
    const char *ids[] = {"a.jpg", "b.png", "d.jpg", "0first.webp", "c.jpg", "zcopy.jpg"};
    for (int i = 0; i < nm && i < 6; i++)
        CHECKF(!strcmp(cd_json_str(m[i], "id", ""), ids[i]), "entry %d id %s", i, cd_json_str(m[i], "id", ""));
    CHECK(nm == 6 && !strcmp(st_of(m, nm, 5), "duplicate") && !strcmp(cd_json_str(m[5], "duplicate_of", ""), "0000000000"));
    manifest_free(m, nm);
    // Shrink: b.png removed -> kept in the store, reported absent; the folder under another
    // spelling of its path is the same inputs.
    char *bp = cd_path_join(in, "b.png");
    unlink(bp);
    free(bp);
    free(args);
    args = cd_fmt("--instance %s/./ --caption 'a <new1> dog' --out %s --resolution 32 --workers 2", in, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    CHECK(strstr(tail_of(log), "absent"));
    st = stats_of(store);
    CHECK(st && run_stat(st, "processed") == 0 && cd_json_int(st, "count", 0) == 5 && cd_json_int(st, "inputs_absent", 0) == 1);
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(st, "absent_from_inputs");
    CHECK(cJSON_GetArraySize(ab) == 1 && !strcmp(cd_json_str(cJSON_GetArrayItem(ab, 0), "id", ""), "b.png"));
    cJSON_Delete(st);
    m = manifest(store, &nm);
    CHECK(m && nm == 6 && cd_json_bool(m[1], "absent_from_inputs", 0) && !cd_json_bool(m[0], "absent_from_inputs", 0));
    manifest_free(m, nm);
    // Put it back: matched again, nothing processed, nothing absent.
    copy_file(imgdir, "b.png", in, "b.png");
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    st = stats_of(store);
    CHECK(st && run_stat(st, "processed") == 0 && cd_json_int(st, "inputs_absent", -1) == 0 && cd_json_int(st, "count", 0) == 5);
    cJSON_Delete(st);
    free_sums(v0, n0);
    free(args); free(log); free(in); free(store); free(dir);
}

// The server's hit counts for /files/inc/iNN.jpg, NN < n.
static void inc_hits(int *h, int n) {
    for (int i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof p, "/files/inc/i%02d.jpg", i);
        h[i] = th_hits(srv, p);
    }
}

// candidates file with the URLs of inc/iNN.jpg for NN in order[0..n).
static void write_inc_list(const char *path, const int *order, int n) {
    cd_atomic a;
    if (cd_atomic_open(&a, path)) return;
    for (int k = 0; k < n; k++) {
        char p[64], cap[32];
        snprintf(p, sizeof p, "/files/inc/i%02d.jpg", order[k]);
        snprintf(cap, sizeof cap, "picture %d", order[k]);
        char *l = jsonl_line(p, cap);
        fputs(l, a.fp);
        free(l);
    }
    cd_atomic_commit(&a);
}

TEST(candidates_extend_larger_num_and_reorder) {
    char *dir = tl_tmpdir("pp-ext"), *cand = cd_path_join(dir, "c.jsonl"), *store = cd_path_join(dir, "store");
    char *inc = cd_path_join(imgdir, "inc"), *log = cd_path_join(dir, "log");
    cd_mkdirs(inc);
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "i%02d.jpg", i);
        put_jpeg(inc, name, 90 + i, 70, 300 + i);
    }
    int order[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, h0[10], h1[10];
    write_inc_list(cand, order, 6);                       // a short list, --num 3
    inc_hits(h0, 10);
    char *args = cd_fmt("--candidates %s --out %s --resolution 32 --allow-loopback --concurrency 1 --num 3", cand, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    free(args);
    recsum *v0;
    int64_t n0;
    CHECK_OK(load_store(store, &v0, &n0));
    CHECK(n0 == 3);
    // Extended list (retrieve --num larger), --num 7: the first three are not fetched again.
    write_inc_list(cand, order, 10);
    inc_hits(h0, 10);
    args = cd_fmt("--candidates %s --out %s --resolution 32 --allow-loopback --concurrency 1 --num 7", cand, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    free(args);
    inc_hits(h1, 10);
    for (int i = 0; i < 3; i++) CHECKF(h1[i] == h0[i], "input %d fetched again", i);
    for (int i = 3; i < 7; i++) CHECKF(h1[i] == h0[i] + 1, "input %d: %d fetches", i, h1[i] - h0[i]);
    cd_store *s;
    CHECK_OK(cd_store_open(store, &s));
    CHECK(cd_store_count(s) == 7);
    for (int i = 0; i < 7; i++) {
        char b[32];
        snprintf(b, sizeof b, "i%02d.jpg", i);
        CHECKF(rec_is(s, i, b, i < 3 ? v0[i].sha : NULL), "record %d is not %s", i, b);
    }
    cd_store_close(s);
    // Reordered list (reversed), all inputs: only the three never fetched are fetched; the
    // new records follow in the new input order.
    int rev[10] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
    write_inc_list(cand, rev, 10);
    inc_hits(h0, 10);
    args = cd_fmt("--candidates %s --out %s --resolution 32 --allow-loopback --concurrency 1", cand, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    inc_hits(h1, 10);
    for (int i = 0; i < 10; i++) CHECKF(h1[i] == h0[i] + (i >= 7), "input %d: %d fetches", i, h1[i] - h0[i]);
    CHECK_OK(cd_store_open(store, &s));
    CHECK(cd_store_count(s) == 10 && rec_is(s, 7, "i09.jpg", NULL) && rec_is(s, 8, "i08.jpg", NULL) && rec_is(s, 9, "i07.jpg", NULL));
    cd_store_close(s);
    // Shuffled again: nothing fetched, nothing duplicated, one manifest entry per URL.
    int shuf[10] = {4, 0, 9, 2, 7, 1, 8, 3, 6, 5};
    write_inc_list(cand, shuf, 10);
    inc_hits(h0, 10);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    inc_hits(h1, 10);
    for (int i = 0; i < 10; i++) CHECKF(h1[i] == h0[i], "input %d fetched again", i);
    cJSON *st = stats_of(store);
    CHECK(st && cd_json_int(st, "count", 0) == 10 && run_stat(st, "processed") == 0 && cd_json_int(st, "inputs_absent", -1) == 0);
    cJSON_Delete(st);
    int nm;
    cJSON **m = manifest(store, &nm);
    CHECK(m && nm == 10);
    for (int i = 0; i < nm; i++) CHECK(!strcmp(st_of(m, nm, i), "success"));
    manifest_free(m, nm);
    free_sums(v0, n0);
    free(args); free(inc); free(log); free(cand); free(store); free(dir);
}

TEST(changed_caption_updated_in_place) {
    char *dir = tl_tmpdir("pp-cap"), *in = cd_path_join(dir, "in"), *store = cd_path_join(dir, "store");
    cd_mkdirs(in);
    copy_file(imgdir, "a.jpg", in, "a.jpg");
    copy_file(imgdir, "d.jpg", in, "d.jpg");
    copy_file(imgdir, "a.jpg", in, "zcopy.jpg");           // a duplicate: its entry changes, no record
    char *log = cd_path_join(dir, "log"), *args = cd_fmt("--instance %s --caption 'a <new1> dog' --out %s --resolution 32", in, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    free(args);
    recsum *v0, *v1;
    int64_t n0, n1;
    CHECK_OK(load_store(store, &v0, &n0));
    put(in, "d.txt", "a sidecar for d\n", 16);
    args = cd_fmt("--instance %s --caption 'a <new2> dog' --out %s --resolution 32", in, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    CHECK_OK(load_store(store, &v1, &n1));
    CHECK(n0 == 2 && n1 == 2);
    for (int64_t i = 0; i < n1 && n0 == n1; i++)           // same keys, bytes, sources
        CHECK(!strcmp(v0[i].sha, v1[i].sha) && !strcmp(v0[i].source, v1[i].source) &&
              v0[i].n == v1[i].n && !memcmp(v0[i].jpeg, v1[i].jpeg, v0[i].n));
    CHECKF(n1 == 2 && !strcmp(v1[0].caption, "a <new2> dog") && !strcmp(v1[1].caption, "a sidecar for d"),
           "captions '%s' '%s'", v1[0].caption, v1[1].caption);
    cJSON *st = stats_of(store);
    CHECK(st && run_stat(st, "processed") == 0 && run_stat(st, "caption_updated") == 3);
    cJSON_Delete(st);
    int nm;
    cJSON **m = manifest(store, &nm);
    CHECK(m && nm == 3 && !strcmp(cd_json_str(m[2], "caption", ""), "a <new2> dog") &&
          !strcmp(cd_json_str(m[1], "caption", ""), "a sidecar for d"));
    manifest_free(m, nm);
    // The same command again changes nothing.
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    st = stats_of(store);
    CHECK(st && run_stat(st, "caption_updated") == 0 && run_stat(st, "processed") == 0);
    cJSON_Delete(st);
    free_sums(v0, n0); free_sums(v1, n1);
    free(args); free(log); free(in); free(store); free(dir);
}

// Rewrite a store as schema version 1 wrote it: manifest entries without "id"/"occurrence",
// meta/info schema_version = version.
static int make_v1(const char *path, int version) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi man, meta;
    int rc = mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    if (!rc) rc = mdb_env_open(env, path, 0, 0644);
    if (!rc) rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc) { mdb_env_close(env); return cd_err("%s: %s", path, mdb_strerror(rc)); }
    rc = mdb_dbi_open(txn, "manifest", 0, &man) || mdb_dbi_open(txn, "meta", 0, &meta);
    MDB_cursor *c;
    MDB_val k, v;
    char *keys[64], *vals[64];                           // read all, then write (pages move)
    int n = 0;
    if (!rc) rc = mdb_cursor_open(txn, man, &c);
    for (int r = rc ? 1 : mdb_cursor_get(c, &k, &v, MDB_FIRST); !r && n < 64; r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cJSON *o;
        if (cd_json_parse(v.mv_data, v.mv_size, "entry", &o)) { rc = -1; break; }
        cJSON_DeleteItemFromObject(o, "id");
        cJSON_DeleteItemFromObject(o, "occurrence");
        vals[n] = cJSON_PrintUnformatted(o);
        keys[n] = cd_malloc(k.mv_size + 1);
        memcpy(keys[n], k.mv_data, k.mv_size);
        keys[n++][k.mv_size] = 0;
        cJSON_Delete(o);
    }
    if (!rc) mdb_cursor_close(c);
    for (int i = 0; i < n; i++) {
        MDB_val nk = {strlen(keys[i]), keys[i]}, nv = {strlen(vals[i]), vals[i]};
        if (!rc) rc = mdb_put(txn, man, &nk, &nv, 0);
        free(keys[i]); free(vals[i]);
    }
    if (!rc) {
        MDB_val ik = {4, "info"}, iv;
        cJSON *o = NULL;
        rc = mdb_get(txn, meta, &ik, &iv) || cd_json_parse(iv.mv_data, iv.mv_size, "info", &o);
        if (!rc) {
            cJSON_DeleteItemFromObject(o, "schema_version");
            cJSON_AddNumberToObject(o, "schema_version", version);
            char *s = cJSON_PrintUnformatted(o);
            MDB_val nv = {strlen(s), s};
            rc = mdb_put(txn, meta, &ik, &nv, 0);
            free(s);
        }
        cJSON_Delete(o);
    }
    if (rc) mdb_txn_abort(txn); else rc = mdb_txn_commit(txn);
    mdb_env_close(env);
    return rc ? cd_err("%s: could not rewrite as schema %d", path, version) : 0;
}

TEST(schema1_store_is_upgraded) {
    char *dir = tl_tmpdir("pp-v1"), *in = cd_path_join(dir, "in"), *store = cd_path_join(dir, "store");
    char *cand = cd_path_join(dir, "c.jsonl"), *cstore = cd_path_join(dir, "cstore"), *log = cd_path_join(dir, "log");
    cd_mkdirs(in);
    copy_file(imgdir, "a.jpg", in, "a.jpg");
    copy_file(imgdir, "d.jpg", in, "d.jpg");
    char *args = cd_fmt("--instance %s --caption 'x' --out %s --resolution 32", in, store);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    CHECK_OK(make_v1(store, 1));
    copy_file(imgdir, "c.webp", in, "b.webp");
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));   // v1 entries matched by their path
    cJSON *st = stats_of(store);
    CHECK(st && run_stat(st, "processed") == 1 && cd_json_int(st, "count", 0) == 3 && cd_json_int(st, "inputs_absent", -1) == 0);
    cJSON_Delete(st);
    int nm;
    cJSON **m = manifest(store, &nm);
    CHECK(m && nm == 3 && !strcmp(cd_json_str(m[0], "id", ""), "a.jpg") && !strcmp(cd_json_str(m[1], "id", ""), "d.jpg") &&
          !strcmp(cd_json_str(m[2], "id", ""), "b.webp"));
    manifest_free(m, nm);
    cd_store *s;
    cd_store_info info;
    CHECK_OK(cd_store_open(store, &s));
    CHECK_OK(cd_store_get_info(s, &info));
    CHECK(info.schema_version == CD_STORE_SCHEMA_VERSION && rec_is(s, 2, "b.webp", NULL));
    cd_store_close(s);
    free(args);
    // A v1 candidates store with a URL listed twice: matched by url and occurrence.
    char *ua = th_url(srv, "/files/a.jpg"), *ub = th_url(srv, "/files/b.png");
    char *text = cd_fmt("{\"url\": \"%s\"}\n{\"url\": \"%s\"}\n{\"url\": \"%s\"}\n", ua, ub, ua);
    put(dir, "c.jsonl", text, strlen(text));
    free(text);
    args = cd_fmt("--candidates %s --out %s --resolution 32 --allow-loopback", cand, cstore);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    CHECK_OK(make_v1(cstore, 1));
    int ha = th_hits(srv, "/files/a.jpg"), hb = th_hits(srv, "/files/b.png");
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    CHECK(th_hits(srv, "/files/a.jpg") == ha && th_hits(srv, "/files/b.png") == hb);
    m = manifest(cstore, &nm);
    CHECK(m && nm == 3 && !strcmp(st_of(m, nm, 2), "duplicate_url") && cd_json_int(m[2], "occurrence", 0) == 2);
    manifest_free(m, nm);
    // A store from a newer program is refused with a clear message.
    CHECK_OK(make_v1(cstore, CD_STORE_SCHEMA_VERSION + 1));
    CHECK(run_pp(args, log) != 0 && strstr(tail_of(log), "newer than this program"));
    free(ua); free(ub);
    free(args); free(log); free(cand); free(cstore); free(in); free(store); free(dir);
}

// kill -9 during an incremental rerun (an extended, reordered list): same store as without.
static void write_slow_list(const char *path, const char *sub, const int *order, int n) {
    cd_atomic a;
    if (cd_atomic_open(&a, path)) return;
    for (int k = 0; k < n; k++) {
        char p[96], cap[32];
        snprintf(p, sizeof p, "/slow/%d/%s/k%02d.jpg", 20 + (order[k] * 37) % 50, sub, order[k]);
        snprintf(cap, sizeof cap, "slow %d", order[k]);
        char *l = jsonl_line(order[k] % 9 == 4 ? "/404" : p, cap);
        fputs(l, a.fp);
        free(l);
    }
    cd_atomic_commit(&a);
}

TEST(kill9_during_incremental_rerun) {
    char *dir = tl_tmpdir("pp-kinc"), *cand = cd_path_join(dir, "c.jsonl"), *imgs = cd_path_join(imgdir, "kinc");
    char *sa = cd_path_join(dir, "A"), *sb = cd_path_join(dir, "B"), *log = cd_path_join(dir, "log");
    cd_mkdirs(imgs);
    int order[40];
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "k%02d.jpg", i);
        put_jpeg(imgs, name, 100 + i, 90, 500 + i);
        order[i] = i;
    }
    const char *common = "--resolution 40 --allow-loopback --concurrency 4 --batch 3 --workers 2";
    write_slow_list(cand, "kinc", order, 16);                // first run: 16 inputs, --num 8
    for (int k = 0; k < 2; k++) {
        char *args = cd_fmt("--candidates %s --out %s %s --num 8", cand, k ? sb : sa, common);
        CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
        free(args);
    }
    for (int i = 0; i < 40; i++) order[i] = (i * 7) % 40;     // extended and reordered
    write_slow_list(cand, "kinc", order, 40);
    char *args = cd_fmt("--candidates %s --out %s %s --num 30", cand, sa, common);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    free(args);
    int kills = 0;
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open("/dev/null", 1);
            dup2(fd, 1); dup2(fd, 2);
            execl(bin, bin, "--candidates", cand, "--out", sb, "--resolution", "40", "--allow-loopback",
                  "--concurrency", "4", "--batch", "3", "--workers", "2", "--num", "30", (char *)NULL);
            _exit(127);
        }
        usleep(120000 + round * 100000);
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st)) kills++;
    }
    args = cd_fmt("--candidates %s --out %s %s --num 30", cand, sb, common);
    CHECKF(run_pp(args, log) == 0, "%s", tail_of(log));
    free(args);
    recsum *va, *vb;
    int64_t na, nb;
    CHECK_OK(load_store(sa, &va, &na));
    CHECK_OK(load_store(sb, &vb, &nb));
    CHECKF(kills >= 1, "no run was killed mid-way");
    CHECKF(na == 30 && nb == na, "counts %lld vs %lld (%d kills)", (long long)na, (long long)nb, kills);
    for (int64_t i = 0; i < na && nb == na; i++)
        CHECKF(!strcmp(va[i].sha, vb[i].sha) && !strcmp(va[i].source, vb[i].source) &&
               !strcmp(va[i].caption, vb[i].caption) && va[i].n == vb[i].n && !memcmp(va[i].jpeg, vb[i].jpeg, va[i].n),
               "record %lld differs", (long long)i);
    char *ma = cd_path_join(sa, "manifest.jsonl"), *mb = cd_path_join(sb, "manifest.jsonl"), *da, *db;
    size_t la, lb;
    CHECK_OK(cd_read_file(ma, &da, &la, 0));
    CHECK_OK(cd_read_file(mb, &db, &lb, 0));
    CHECK(la == lb && !memcmp(da, db, la));
    free(da); free(db); free(ma); free(mb);
    free_sums(va, na); free_sums(vb, nb);
    free(sa); free(sb); free(log); free(cand); free(imgs); free(dir);
}

TEST(bad_command_lines) {
    char *dir = tl_tmpdir("pp-bad"), *log = cd_path_join(dir, "log");
    CHECK(run_pp("--out x", log) == 2);
    CHECK(run_pp("--candidates /nonexistent.jsonl --out x", log) != 0);
    CHECK(strstr(tail_of(log), "/nonexistent.jsonl"));
    char *args = cd_fmt("--candidates %s/none --out %s/s", dir, dir);
    CHECK(run_pp(args, log) != 0);
    free(args);
    CHECK(run_pp("--help", log) == 0 && strstr(tail_of(log), "--export"));
    free(log); free(dir);
}

int main(void) {
    const char *b = getenv("BUILD");
    bin = cd_fmt("%s/bin/customdiff-preprocess", b ? b : "build");
    if (access(bin, X_OK)) { printf("SKIP preprocess: %s not built\n", bin); return 0; }
    root = tl_tmpdir("pp");
    imgdir = cd_path_join(root, "img");
    cd_mkdirs(imgdir);
    make_images(imgdir);
    if (th_start(imgdir, 0, &srv)) { printf("FAIL httpd_start: %s\n", cd_errmsg()); return 1; }
    RUN(instance_folder_all_formats);
    RUN(candidates_fault_routes_and_resume);
    RUN(csv_tsv_and_folder_inputs);
    RUN(kill9_and_resume_equals_uninterrupted);
    RUN(instance_folder_grows_and_shrinks);
    RUN(candidates_extend_larger_num_and_reorder);
    RUN(changed_caption_updated_in_place);
    RUN(schema1_store_is_upgraded);
    RUN(kill9_during_incremental_rerun);
    RUN(bad_command_lines);
    th_stop(srv);
    free(root); free(imgdir); free(bin);
    return tl_done();
}
