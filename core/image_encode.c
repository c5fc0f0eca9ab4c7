// Image encoding: JPEG through TurboJPEG, PNG through libpng (with tEXt chunks), and saving
// by file extension with an atomic write.
//
// JPEG chroma subsampling: 4:4:4 at quality >= 90, 4:2:0 below. img2dataset (cv2.imencode)
// always writes 4:2:0; we keep full chroma at the high qualities people choose when they
// care (the store's default is 95) because the stored images are training data.
#include "core/image.h"
#include "core/err.h"
#include "core/fileio.h"
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <turbojpeg.h>

static int check_image(const cd_image *im, const char *what) {
    if (!im || !im->rgb || im->w <= 0 || im->h <= 0) return cd_err("%s: empty image", what);
    return 0;
}

int cd_image_encode_jpeg(const cd_image *im, int quality, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    CD_TRY(check_image(im, "JPEG encode"));
    if (quality < 1 || quality > 100) return cd_err("JPEG encode: quality %d is not in 1..100", quality);
    tjhandle tj = tjInitCompress();
    if (!tj) return cd_err("JPEG encode: TurboJPEG init failed: %s", tjGetErrorStr2(NULL));
    unsigned char *jb = NULL;
    unsigned long jl = 0;
    int ss = quality >= 90 ? TJSAMP_444 : TJSAMP_420;
    int rc = tjCompress2(tj, im->rgb, im->w, 0, im->h, TJPF_RGB, &jb, &jl, ss, quality, 0);
    if (rc != 0) {
        cd_err("JPEG encode of a %dx%d image: %s", im->w, im->h, tjGetErrorStr2(tj));
        tjFree(jb);
        tjDestroy(tj);
        return -1;
    }
    tjDestroy(tj);
    // Hand back a malloc() buffer so callers free() it.
    *buf = cd_malloc(jl);
    memcpy(*buf, jb, jl);
    *len = jl;
    tjFree(jb);
    return 0;
}

typedef struct {
    uint8_t *p;
    size_t len, cap;
    char msg[200];
} png_sink;

static void png_write_mem(png_structp png, png_bytep data, png_size_t n) {
    png_sink *s = png_get_io_ptr(png);
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        while (cap < s->len + n) cap *= 2;
        s->p = cd_realloc(s->p, cap);
        s->cap = cap;
    }
    memcpy(s->p + s->len, data, n);
    s->len += n;
}
static void png_flush_mem(png_structp png) { (void)png; }
static void png_w_error(png_structp png, png_const_charp msg) {
    png_sink *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_w_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

int cd_image_encode_png(const cd_image *im, int ntext, const char *const *keys, const char *const *vals,
                        uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    CD_TRY(check_image(im, "PNG encode"));
    for (int i = 0; i < ntext; i++) {
        size_t kl = keys[i] ? strlen(keys[i]) : 0;
        if (kl < 1 || kl > 79 || !vals[i]) return cd_err("PNG encode: bad tEXt key '%s' (1..79 chars)", keys[i] ? keys[i] : "");
    }
    png_sink sink = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_w_error, png_w_warning);
    if (!png) return cd_err("PNG encode: libpng init failed");
    png_infop info = png_create_info_struct(png);
    png_textp volatile text = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, info ? &info : NULL);
        free(text);
        free(rows);
        free(sink.p);
        return cd_err("PNG encode of a %dx%d image: %s", im->w, im->h, sink.msg[0] ? sink.msg : "libpng error");
    }
    png_set_write_fn(png, &sink, png_write_mem, png_flush_mem);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, im->w, im->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (ntext > 0) {
        text = cd_calloc(ntext, sizeof(png_text));
        for (int i = 0; i < ntext; i++) {
            text[i].compression = PNG_TEXT_COMPRESSION_NONE;
            text[i].key = (char *)keys[i];
            text[i].text = (char *)vals[i];
            text[i].text_length = strlen(vals[i]);
        }
        png_set_text(png, info, text, ntext);
    }
    rows = cd_malloc(sizeof(png_bytep) * im->h);
    for (int y = 0; y < im->h; y++) rows[y] = im->rgb + (size_t)y * im->w * 3;
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(text);
    free(rows);
    *buf = sink.p;
    *len = sink.len;
    return 0;
}

int cd_image_save(const char *path, const cd_image *im) {
    const char *dot = strrchr(path, '.');
    uint8_t *buf;
    size_t len;
    if (dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"))) {
        if (cd_image_encode_jpeg(im, 95, &buf, &len)) return cd_errctx("%s", path);
    } else if (dot && !strcasecmp(dot, ".png")) {
        if (cd_image_encode_png(im, 0, NULL, NULL, &buf, &len)) return cd_errctx("%s", path);
    } else {
        return cd_err("%s: unknown image extension (use .jpg, .jpeg or .png)", path);
    }
    int rc = cd_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}
