// Image decode / resize / encode tests. Inputs are generated here with the codec libraries
// themselves (TurboJPEG, libpng, libwebp); expected values are worked out by hand.
#include "core/image.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "tests/testlib.h"
#include <math.h>
#include <sys/resource.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <webp/encode.h>

// ---------------------------------------------------------------- generators

static uint8_t *jpeg_of(const uint8_t *px, int w, int h, int pf, int samp, int q, size_t *len) {
    tjhandle tj = tjInitCompress();
    unsigned char *jb = NULL;
    unsigned long jl = 0;
    if (tjCompress2(tj, px, w, 0, h, pf, &jb, &jl, samp, q, 0) != 0) { tjDestroy(tj); return NULL; }
    tjDestroy(tj);
    uint8_t *out = malloc(jl);
    memcpy(out, jb, jl);
    tjFree(jb);
    *len = jl;
    return out;
}

// Four quadrants: TL red, TR green, BL blue, BR white.
static uint8_t *quadrants(int w, int h) {
    uint8_t *p = malloc((size_t)w * h * 3);
    static const uint8_t col[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) memcpy(p + ((size_t)y * w + x) * 3, col[(y >= h / 2) * 2 + (x >= w / 2)], 3);
    return p;
}

// Insert an APP1 Exif segment with IFD0 orientation right after SOI.
static uint8_t *with_exif(const uint8_t *j, size_t n, int orient, int little, size_t *len) {
    uint8_t seg[4 + 6 + 8 + 2 + 12 + 4];
    size_t k = 0;
    seg[k++] = 0xFF; seg[k++] = 0xE1;
    int sl = sizeof seg - 2;
    seg[k++] = sl >> 8; seg[k++] = sl & 255;
    memcpy(seg + k, "Exif\0\0", 6); k += 6;
#define P16(v) do { if (little) { seg[k++] = (v) & 255; seg[k++] = (v) >> 8; } else { seg[k++] = (v) >> 8; seg[k++] = (v) & 255; } } while (0)
#define P32(v) do { if (little) { P16((v) & 0xFFFF); P16((v) >> 16); } else { P16((v) >> 16); P16((v) & 0xFFFF); } } while (0)
    seg[k++] = little ? 'I' : 'M'; seg[k++] = little ? 'I' : 'M';
    P16(42); P32(8);
    P16(1);                                     // one entry
    P16(0x0112); P16(3); P32(1); P16(orient); P16(0);
    P32(0);                                     // no next IFD
    uint8_t *out = malloc(n + k);
    memcpy(out, j, 2);
    memcpy(out + 2, seg, k);
    memcpy(out + 2 + k, j + 2, n - 2);
    *len = n + k;
    return out;
}

typedef struct { uint8_t *p; size_t n; } membuf;
static void mw(png_structp png, png_bytep d, png_size_t n) {
    membuf *m = png_get_io_ptr(png);
    m->p = realloc(m->p, m->n + n);
    memcpy(m->p + m->n, d, n);
    m->n += n;
}
static void mf(png_structp png) { (void)png; }

// Encode raw rows (already in the PNG's sample layout, 16-bit big-endian) as a PNG.
static uint8_t *png_of(const uint8_t *data, int w, int h, int ct, int depth, const png_color *pal, int npal,
                       const uint8_t *trns, int ntrns, size_t *len) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    membuf m = {0};
    if (setjmp(png_jmpbuf(png))) { png_destroy_write_struct(&png, &info); free(m.p); return NULL; }
    png_set_write_fn(png, &m, mw, mf);
    png_set_IHDR(png, info, w, h, depth, ct, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    int ch = ct == PNG_COLOR_TYPE_RGB ? 3 : ct == PNG_COLOR_TYPE_RGBA ? 4 : ct == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t stride = (size_t)w * ch * depth / 8;
    for (int y = 0; y < h; y++) png_write_row(png, (png_bytep)data + stride * y);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    *len = m.n;
    return m.p;
}

static const uint8_t *px(const cd_image *im, int x, int y) { return im->rgb + ((size_t)y * im->w + x) * 3; }
static int near(const uint8_t *p, int r, int g, int b, int tol) {
    return abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol;
}
#define CHECK_PX(im, x, y, r, g, b, tol) CHECKF(near(px(im, x, y), r, g, b, tol), \
    "pixel (%d,%d) = (%d,%d,%d), want (%d,%d,%d)", x, y, px(im, x, y)[0], px(im, x, y)[1], px(im, x, y)[2], r, g, b)

// ---------------------------------------------------------------- JPEG

TEST(jpeg_exif_orientations) {
    int w = 64, h = 32;
    uint8_t *q = quadrants(w, h);
    size_t jl, el;
    uint8_t *j = jpeg_of(q, w, h, TJPF_RGB, TJSAMP_444, 95, &jl);
    CHECK(j);
    // Per orientation: colour expected at output TL, TR, BL, BR (R,G,B,W = 0,1,2,3).
    static const int want[9][4] = {[1] = {0, 1, 2, 3}, [3] = {3, 2, 1, 0}, [6] = {2, 0, 3, 1}, [8] = {1, 3, 0, 2}};
    static const uint8_t col[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
    int os[] = {1, 3, 6, 8};
    for (int i = 0; i < 4; i++) {
        int o = os[i];
        uint8_t *e = with_exif(j, jl, o, i % 2, &el);
        CHECKF(cd_jpeg_exif_orientation(e, el) == o, "parsed orientation %d, want %d", cd_jpeg_exif_orientation(e, el), o);
        cd_image im;
        int pw, ph;
        CHECK_OK(cd_image_probe(e, el, "exif.jpg", NULL, &pw, &ph));
        CHECK_OK(cd_image_decode(e, el, "exif.jpg", 0, 0, &im));
        free(e);
        int ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
        CHECKF(im.w == ow && im.h == oh && pw == ow && ph == oh, "orientation %d: %dx%d probe %dx%d", o, im.w, im.h, pw, ph);
        int xs[4] = {ow / 4, 3 * ow / 4, ow / 4, 3 * ow / 4}, ys[4] = {oh / 4, oh / 4, 3 * oh / 4, 3 * oh / 4};
        for (int c = 0; c < 4; c++) {
            const uint8_t *k = col[want[o][c]];
            CHECKF(near(px(&im, xs[c], ys[c]), k[0], k[1], k[2], 40), "orientation %d corner %d: (%d,%d,%d)", o, c,
                   px(&im, xs[c], ys[c])[0], px(&im, xs[c], ys[c])[1], px(&im, xs[c], ys[c])[2]);
        }
        cd_image_free(&im);
    }
    free(j);
    free(q);
}

TEST(jpeg_gray_and_cmyk) {
    int w = 32, h = 16;
    uint8_t g[32 * 16];
    for (int i = 0; i < w * h; i++) g[i] = (i % w) < 16 ? 40 : 200;
    size_t jl;
    uint8_t *j = jpeg_of(g, w, h, TJPF_GRAY, TJSAMP_GRAY, 95, &jl);
    cd_image im;
    CHECK_OK(cd_image_decode(j, jl, "gray.jpg", 0, 0, &im));
    CHECK(im.w == 32 && im.h == 16);
    CHECK_PX(&im, 4, 8, 40, 40, 40, 3);
    CHECK_PX(&im, 28, 8, 200, 200, 200, 3);
    cd_image_free(&im);
    free(j);
    // CMYK with the Adobe marker TurboJPEG writes: inverted ink (255 = no ink).
    // Left: no C, full M+Y, no K -> red. Right: no CMY, K half -> grey 128.
    uint8_t c[32 * 16 * 4];
    for (int i = 0; i < w * h; i++) {
        uint8_t *p = c + 4 * i;
        if ((i % w) < 16) { p[0] = 255; p[1] = 0; p[2] = 0; p[3] = 255; }
        else { p[0] = 255; p[1] = 255; p[2] = 255; p[3] = 128; }
    }
    j = jpeg_of(c, w, h, TJPF_CMYK, TJSAMP_444, 98, &jl);
    CHECK(j && memmem(j, jl, "Adobe", 5));
    CHECK_OK(cd_image_decode(j, jl, "cmyk.jpg", 0, 0, &im));
    CHECK_PX(&im, 4, 8, 255, 0, 0, 12);
    CHECK_PX(&im, 28, 8, 128, 128, 128, 6);
    cd_image_free(&im);
    free(j);
}

TEST(jpeg_truncated_garbage_huge) {
    int w = 128, h = 128;
    uint8_t *p = malloc(w * h * 3);
    uint32_t s = 1;
    for (int i = 0; i < w * h * 3; i++) { s = s * 1664525u + 1013904223u; p[i] = s >> 24; }
    size_t jl;
    uint8_t *j = jpeg_of(p, w, h, TJPF_RGB, TJSAMP_420, 90, &jl);
    cd_image im;
    CHECK_OK(cd_image_decode(j, jl, "full.jpg", 0, 0, &im));
    cd_image_free(&im);
    CHECK_ERR(cd_image_decode(j, jl * 6 / 10, "cut.jpg", 0, 0, &im), "cut.jpg");
    CHECK_ERR(cd_image_decode(j, jl - 2, "noeoi.jpg", 0, 0, &im), "noeoi.jpg");
    CHECK(im.rgb == NULL);
    CHECK_ERR(cd_image_decode(j, 100, "head.jpg", 0, 0, &im), "JPEG");
    // Garbage after a JPEG signature, garbage without one, HTML, empty.
    uint8_t junk[600];
    memcpy(junk, p, sizeof junk);
    junk[0] = 0xFF; junk[1] = 0xD8; junk[2] = 0xFF;
    CHECK_ERR(cd_image_decode(junk, sizeof junk, "junk.jpg", 0, 0, &im), "junk.jpg");
    junk[0] = 0x13;
    CHECK_ERR(cd_image_decode(junk, sizeof junk, "junk.bin", 0, 0, &im), "not an image");
    const char *html = "\n  <!doctype html><html><body>hi</body></html>";
    CHECK(cd_image_sniff(html, strlen(html)) == CD_FMT_HTML);
    CHECK_ERR(cd_image_decode(html, strlen(html), "page", 0, 0, &im), "html page");
    CHECK_ERR(cd_image_decode("", 0, "empty.jpg", 0, 0, &im), "empty");
    CHECK(cd_image_sniff("GIF89a......", 12) == CD_FMT_GIF);
    CHECK_ERR(cd_image_decode("GIF89a\x01\x00\x01\x00\x00\x00\x00", 13, "a.gif", 0, 0, &im), "gif");
    // Patch the SOF dimensions to 60000x60000: refused from the header, before decoding.
    for (size_t i = 2; i + 9 < jl; i++) {
        if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC2)) {
            j[i + 5] = 60000 >> 8; j[i + 6] = 60000 & 255; j[i + 7] = 60000 >> 8; j[i + 8] = 60000 & 255;
            break;
        }
    }
    int pw, ph;
    cd_imgfmt f;
    CHECK_OK(cd_image_probe(j, jl, "big.jpg", &f, &pw, &ph));
    CHECK(f == CD_FMT_JPEG && pw == 60000 && ph == 60000);
    CHECK_ERR(cd_image_decode(j, jl, "big.jpg", (int64_t)1 << 24, 0, &im), "before decoding");
    free(j);
    free(p);
}

static uint8_t *gradient(int w, int h) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = x * 255 / (w - 1);
            q[1] = y * 255 / (h - 1);
            q[2] = (x / 64 + y / 64) % 2 ? 200 : 60;
        }
    return p;
}

TEST(jpeg_dct_scaling) {
    int w = 2048, h = 1536;
    uint8_t *p = gradient(w, h);
    size_t jl;
    uint8_t *j = jpeg_of(p, w, h, TJPF_RGB, TJSAMP_420, 90, &jl);
    free(p);
    cd_image small, full, a, b;
    CHECK_OK(cd_image_decode(j, jl, "big.jpg", 0, 256, &small));
    CHECKF(small.w == 512 && small.h == 384, "DCT-scaled decode is %dx%d, want 512x384", small.w, small.h);
    CHECK_OK(cd_image_decode(j, jl, "big.jpg", 0, 0, &full));
    CHECK(full.w == 2048 && full.h == 1536);
    CHECK_OK(cd_image_resize(&small, 256, CD_RESIZE_CENTER_CROP, &a));
    CHECK_OK(cd_image_resize(&full, 256, CD_RESIZE_CENTER_CROP, &b));
    CHECK(a.w == 256 && a.h == 256 && b.w == 256 && b.h == 256);
    double sum = 0;
    for (size_t i = 0; i < (size_t)256 * 256 * 3; i++) sum += abs(a.rgb[i] - b.rgb[i]);
    double mad = sum / (256.0 * 256 * 3);
    CHECKF(mad < 2.0, "DCT-scaled path differs from the full decode by %.2f per sample", mad);
    cd_image_free(&small); cd_image_free(&full); cd_image_free(&a); cd_image_free(&b);
    free(j);
}

// ---------------------------------------------------------------- PNG / WebP

TEST(png_variants) {
    cd_image im;
    size_t n;
    uint8_t *b;
    // 16-bit RGB (big-endian samples): 0xFFFF, 0x0000, 0x8080 -> 255, 0, 128.
    uint8_t d16[2 * 2 * 6];
    for (int i = 0; i < 4; i++) {
        uint8_t *q = d16 + 6 * i;
        q[0] = 0xFF; q[1] = 0xFF; q[2] = 0; q[3] = 0; q[4] = 0x80; q[5] = 0x80;
    }
    b = png_of(d16, 2, 2, PNG_COLOR_TYPE_RGB, 16, NULL, 0, NULL, 0, &n);
    CHECK_OK(cd_image_decode(b, n, "16.png", 0, 0, &im));
    CHECK_PX(&im, 1, 1, 255, 0, 128, 0);
    cd_image_free(&im); free(b);
    // Palette with transparency: index 0 opaque blue, index 1 fully transparent black.
    png_color pal[2] = {{0, 0, 255}, {0, 0, 0}};
    uint8_t trns[2] = {255, 0}, idx[4] = {0, 1, 1, 0};
    b = png_of(idx, 2, 2, PNG_COLOR_TYPE_PALETTE, 8, pal, 2, trns, 2, &n);
    CHECK_OK(cd_image_decode(b, n, "pal.png", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 0, 0, 255, 0);
    CHECK_PX(&im, 1, 0, 255, 255, 255, 0);
    cd_image_free(&im); free(b);
    // Gray + alpha: black at alpha 0, 255, 128 -> 255, 0, 127 (c*a/255 + 255-a).
    uint8_t ga[3 * 2] = {0, 0, 0, 255, 0, 128};
    b = png_of(ga, 3, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, NULL, 0, NULL, 0, &n);
    CHECK_OK(cd_image_decode(b, n, "ga.png", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 255, 255, 255, 0);
    CHECK_PX(&im, 1, 0, 0, 0, 0, 0);
    CHECK_PX(&im, 2, 0, 127, 127, 127, 0);
    cd_image_free(&im); free(b);
    // RGBA red at alpha 128 over white -> (255, 127, 127); 1-bit gray.
    uint8_t rgba[4] = {255, 0, 0, 128};
    b = png_of(rgba, 1, 1, PNG_COLOR_TYPE_RGBA, 8, NULL, 0, NULL, 0, &n);
    CHECK_OK(cd_image_decode(b, n, "rgba.png", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 255, 127, 127, 0);
    cd_image_free(&im); free(b);
    uint8_t bits[1] = {0x40};   // 0 1 0 0 ...
    b = png_of(bits, 3, 1, PNG_COLOR_TYPE_GRAY, 1, NULL, 0, NULL, 0, &n);
    CHECK_OK(cd_image_decode(b, n, "bits.png", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 0, 0, 0, 0);
    CHECK_PX(&im, 1, 0, 255, 255, 255, 0);
    cd_image_free(&im);
    // Truncated PNG.
    CHECK_ERR(cd_image_decode(b, n - 20, "cut.png", 0, 0, &im), "cut.png");
    CHECK_ERR(cd_image_decode(b, 20, "head.png", 0, 0, &im), "head.png");
    free(b);
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

TEST(png_huge_header_refused) {
    // Signature + IHDR 100000 x 100000 RGB8 + a tiny IDAT that would never be reached.
    uint8_t b[8 + 25 + 12];
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t *c = b + 8;
    c[0] = 0; c[1] = 0; c[2] = 0; c[3] = 13;
    memcpy(c + 4, "IHDR", 4);
    uint32_t d = 100000;
    for (int k = 0; k < 2; k++) { c[8 + 4 * k] = d >> 24; c[9 + 4 * k] = d >> 16; c[10 + 4 * k] = d >> 8; c[11 + 4 * k] = d; }
    c[16] = 8; c[17] = 2; c[18] = 0; c[19] = 0; c[20] = 0;
    uint32_t crc = crc32_of(c + 4, 17);
    c[21] = crc >> 24; c[22] = crc >> 16; c[23] = crc >> 8; c[24] = crc;
    memcpy(b + 33, "\0\0\0\0IDAT\x35\xaf\x06\x1e", 12);
    int w, h;
    CHECK_OK(cd_image_probe(b, sizeof b, "huge.png", NULL, &w, &h));
    CHECK(w == 100000 && h == 100000);
    cd_image im;
    CHECK_ERR(cd_image_decode(b, sizeof b, "huge.png", (int64_t)1 << 24, 0, &im), "refused before decoding");
    CHECK_ERR(cd_image_decode(b, sizeof b, "huge.png", 0, 0, &im), "hard limit");
}

TEST(png_forged_chunk_length) {
    // Valid 16x12 IHDR, then a tEXt chunk claiming 0x7a000003 bytes (fuzzer find): must fail
    // as truncated without allocating the claimed 2 GB.
    uint8_t b[8 + 25 + 8 + 16];
    memcpy(b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t *c = b + 8;
    memcpy(c, "\0\0\0\x0dIHDR\0\0\0\x10\0\0\0\x0c\x08\x02\0\0\0", 21);
    uint32_t crc = crc32_of(c + 4, 17);
    c[21] = crc >> 24; c[22] = crc >> 16; c[23] = crc >> 8; c[24] = crc;
    memcpy(b + 33, "\x7a\0\0\x03tEXtk\0value-value-val", 24);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    cd_image im;
    CHECK_ERR(cd_image_decode(b, sizeof b, "forged.png", 0, 0, &im), "forged.png");
    getrusage(RUSAGE_SELF, &r1);
    CHECKF(r1.ru_maxrss - r0.ru_maxrss < 200 * 1024, "peak RSS grew by %ld kB", r1.ru_maxrss - r0.ru_maxrss);
}

TEST(webp_lossy_and_alpha) {
    int w = 16, h = 16;
    uint8_t rgb[16 * 16 * 3], rgba[16 * 16 * 4];
    for (int i = 0; i < w * h; i++) {
        rgb[3 * i] = 100; rgb[3 * i + 1] = 150; rgb[3 * i + 2] = 200;
        rgba[4 * i] = 0; rgba[4 * i + 1] = 0; rgba[4 * i + 2] = 255; rgba[4 * i + 3] = (i % w) < 8 ? 0 : 255;
    }
    uint8_t *o = NULL;
    size_t n = WebPEncodeRGB(rgb, w, h, w * 3, 90, &o);
    CHECK(n > 0);
    cd_image im;
    int pw, ph;
    cd_imgfmt f;
    CHECK_OK(cd_image_probe(o, n, "a.webp", &f, &pw, &ph));
    CHECK(f == CD_FMT_WEBP && pw == 16 && ph == 16);
    CHECK_OK(cd_image_decode(o, n, "a.webp", 0, 0, &im));
    CHECK_PX(&im, 8, 8, 100, 150, 200, 8);
    cd_image_free(&im);
    CHECK_ERR(cd_image_decode(o, n / 2, "cut.webp", 0, 0, &im), "cut.webp");
    WebPFree(o);
    n = WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &o);
    CHECK(n > 0);
    CHECK_OK(cd_image_decode(o, n, "alpha.webp", 0, 0, &im));
    CHECK_PX(&im, 2, 8, 255, 255, 255, 0);
    CHECK_PX(&im, 12, 8, 0, 0, 255, 0);
    cd_image_free(&im);
    CHECK_ERR(cd_image_decode(o, n, "alpha.webp", 100, 0, &im), "over the limit");
    WebPFree(o);
}

// ---------------------------------------------------------------- resize

TEST(resize_known_values) {
    // Bicubic (a=-0.5) 4 -> 2 horizontally: support 4, taps at -0.25, 0.25, 0.75, 1.25
    // -> weights .8671875 .8671875 .2265625 -.0703125 (sum 1.890625): [10,50,200,250] -> 79.77/1.890625 = 42.19 -> 42 and
    // (-.703 + 11.328 + 173.438 + 216.797)/1.890625 = 212.02 -> 212.
    uint8_t row[12] = {10, 10, 10, 50, 50, 50, 200, 200, 200, 250, 250, 250};
    cd_image in = {4, 1, row}, out;
    CHECK_OK(cd_image_resize_to(&in, 2, 1, CD_FILTER_BICUBIC, &out));
    CHECKF(out.rgb[0] == 42 && out.rgb[3] == 212, "bicubic gave %d %d, want 42 212", out.rgb[0], out.rgb[3]);
    cd_image_free(&out);
    // Bilinear 2 -> 4 vertically: [0, 100] -> [0, 25, 75, 100] (PIL's edge handling).
    uint8_t col[6] = {0, 0, 0, 100, 100, 100};
    cd_image c = {1, 2, col};
    CHECK_OK(cd_image_resize_to(&c, 1, 4, CD_FILTER_BILINEAR, &out));
    CHECKF(out.rgb[0] == 0 && out.rgb[3] == 25 && out.rgb[6] == 75 && out.rgb[9] == 100, "bilinear gave %d %d %d %d",
           out.rgb[0], out.rgb[3], out.rgb[6], out.rgb[9]);
    cd_image_free(&out);
    // Box 4 -> 2 is the pair average (rounded half up): (10+50)/2 = 30, (200+250)/2 = 225.
    CHECK_OK(cd_image_resize_to(&in, 2, 1, CD_FILTER_BOX, &out));
    CHECK(out.rgb[0] == 30 && out.rgb[3] == 225);
    cd_image_free(&out);
}

TEST(resize_constant_stays_constant) {
    int w = 37, h = 23;
    uint8_t *p = malloc(w * h * 3);
    for (int i = 0; i < w * h; i++) { p[3 * i] = 7; p[3 * i + 1] = 128; p[3 * i + 2] = 250; }
    cd_image in = {w, h, p}, out;
    int sizes[][2] = {{5, 3}, {100, 61}, {37, 9}, {12, 23}, {1, 1}};
    for (int f = 0; f <= CD_FILTER_BOX; f++)
        for (int s = 0; s < 5; s++) {
            CHECK_OK(cd_image_resize_to(&in, sizes[s][0], sizes[s][1], (cd_filter)f, &out));
            for (int i = 0; i < out.w * out.h; i++)
                CHECKF(near(out.rgb + 3 * i, 7, 128, 250, 0), "filter %s to %dx%d: pixel %d changed", cd_filter_name(f),
                       out.w, out.h, i);
            cd_image_free(&out);
        }
    free(p);
}

TEST(resize_modes) {
    // 200x100: left quarter red, middle half green, right quarter blue.
    int w = 200, h = 100;
    uint8_t *p = malloc(w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = x < 50 ? 255 : 0; q[1] = x >= 50 && x < 150 ? 255 : 0; q[2] = x >= 150 ? 255 : 0;
        }
    cd_image in = {w, h, p}, out;
    CHECK_OK(cd_image_resize(&in, 50, CD_RESIZE_NO, &out));
    CHECK(out.w == 200 && out.h == 100 && !memcmp(out.rgb, p, w * h * 3));
    cd_image_free(&out);
    CHECK_OK(cd_image_resize(&in, 50, CD_RESIZE_KEEP_RATIO, &out));
    CHECK(out.w == 100 && out.h == 50);
    CHECK_PX(&out, 10, 25, 255, 0, 0, 0);
    cd_image_free(&out);
    CHECK_OK(cd_image_resize(&in, 50, CD_RESIZE_CENTER_CROP, &out));
    CHECK(out.w == 50 && out.h == 50);
    for (int y = 0; y < 50; y++)
        for (int x = 0; x < 50; x++) CHECK_PX(&out, x, y, 0, 255, 0, 0);   // only the green middle
    cd_image_free(&out);
    CHECK_OK(cd_image_resize(&in, 50, CD_RESIZE_BORDER, &out));
    CHECK(out.w == 50 && out.h == 50);   // 50x25 content at top = (50-25)/2 = 12, white padding
    CHECK_PX(&out, 25, 0, 255, 255, 255, 0);
    CHECK_PX(&out, 25, 11, 255, 255, 255, 0);
    CHECK_PX(&out, 25, 12, 0, 255, 0, 0);
    CHECK_PX(&out, 25, 36, 0, 255, 0, 0);
    CHECK_PX(&out, 2, 36, 255, 0, 0, 0);
    CHECK_PX(&out, 25, 37, 255, 255, 255, 0);
    cd_image_free(&out);
    // Upscale keeps going (resize_only_if_bigger=False); rounding is half-to-even.
    cd_image s = {20, 10, p};
    CHECK_OK(cd_image_resize(&s, 40, CD_RESIZE_KEEP_RATIO, &out));
    CHECK(out.w == 80 && out.h == 40);
    cd_image_free(&out);
    cd_image a = {3, 2, p}, b = {5, 2, p};
    CHECK_OK(cd_image_resize(&a, 3, CD_RESIZE_KEEP_RATIO, &out));   // 4.5 -> 4
    CHECKF(out.w == 4 && out.h == 3, "3x2 -> %dx%d, want 4x3", out.w, out.h);
    cd_image_free(&out);
    CHECK_OK(cd_image_resize(&b, 3, CD_RESIZE_KEEP_RATIO, &out));   // 7.5 -> 8
    CHECKF(out.w == 8 && out.h == 3, "5x2 -> %dx%d, want 8x3", out.w, out.h);
    cd_image_free(&out);
    cd_resize_mode m;
    CHECK_OK(cd_resize_mode_parse("center_crop", &m));
    CHECK(m == CD_RESIZE_CENTER_CROP && !strcmp(cd_resize_mode_name(m), "center_crop"));
    CHECK_ERR(cd_resize_mode_parse("stretch", &m), "stretch");
    CHECK_ERR(cd_image_crop(&in, 190, 0, 20, 10, &out), "outside");
    CHECK_OK(cd_image_crop(&in, 160, 0, 20, 10, &out));
    CHECK(out.w == 20 && out.h == 10);
    CHECK_PX(&out, 0, 0, 0, 0, 255, 0);
    cd_image_free(&out);
    free(p);
}

// CLIPImageProcessor (PIL bicubic shortest-edge resize with int(size*long/short), centre
// crop, /255, normalise): recover uint8 from the golden pixel_values row 0 and compare.
static void clip_golden_case(const char *set) {
    char *rp = cd_fmt("%s/cases/vision_input.png", set), *rs = cd_fmt("%s/cases/vision.safetensors", set);
    char *rc = cd_fmt("%s/clip/preprocessor_config.json", set);
    char *pp = tl_golden_path(rp), *ps = tl_golden_path(rs), *pc = tl_golden_path(rc);
    free(rp); free(rs); free(rc);
    cd_image in = {0}, r = {0}, c = {0};
    cd_st_file f = {0};
    char *cfg = NULL;
    size_t cl;
    float *pv = NULL;
    int64_t n;
    int opened = 0;
    if (cd_read_file(pc, &cfg, &cl, 1 << 20) || cd_image_load(pp, 0, &in) || cd_st_open(&f, ps)) {
        tl_fail(__FILE__, __LINE__, "%s", cd_errmsg());
        goto out;
    }
    opened = 1;
    const char *se = strstr(cfg, "\"shortest_edge\"");
    int size = 0;
    if (!se || sscanf(strchr(se, ':') + 1, "%d", &size) != 1) { tl_fail(__FILE__, __LINE__, "%s: no shortest_edge", pc); goto out; }
    if (cd_st_load_f32(&f, "pixel_values", &pv, &n)) { tl_fail(__FILE__, __LINE__, "%s", cd_errmsg()); goto out; }
    const cd_st_tensor *t = cd_st_find(&f, "pixel_values");
    int crop = (int)t->shape[3];
    int sh = in.w <= in.h ? in.w : in.h, lo = in.w <= in.h ? in.h : in.w;
    int nl = (int)((double)size * lo / sh), nw = in.w <= in.h ? size : nl, nh = in.w <= in.h ? nl : size;
    if (cd_image_resize_to(&in, nw, nh, CD_FILTER_BICUBIC, &r) ||
        cd_image_crop(&r, (nw - crop) / 2, (nh - crop) / 2, crop, crop, &c)) {
        tl_fail(__FILE__, __LINE__, "%s", cd_errmsg());
        goto out;
    }
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073}, sd[3] = {0.26862954, 0.26130258, 0.27577711};
    int maxd = 0, ndiff = 0;
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < crop * crop; i++) {
            int want = (int)lround((pv[(size_t)ch * crop * crop + i] * sd[ch] + mean[ch]) * 255.0);
            int d = abs(want - c.rgb[3 * i + ch]);
            if (d > maxd) maxd = d;
            ndiff += d != 0;
        }
    if (maxd > 1) tl_fail(__FILE__, __LINE__, "%s: bicubic resize differs from PIL by up to %d (%d samples differ)", set, maxd, ndiff);
    else printf("  %s: PIL bicubic %dx%d -> %dx%d -> crop %d: %d of %d samples differ by 1\n", set, in.w, in.h, nw, nh,
                crop, ndiff, 3 * crop * crop);
out:
    if (opened) cd_st_close(&f);
    free(pv); free(cfg); free(pp); free(ps); free(pc);
    cd_image_free(&in); cd_image_free(&r); cd_image_free(&c);
}

TEST(clip_preprocess_matches_pil_golden) {
    if (!tl_golden()) return;
    clip_golden_case("tiny-sd");
    if (tl_failed_now) return;
    clip_golden_case("tiny-sd2");
}

// ---------------------------------------------------------------- encode, save, grid

TEST(encode_save_load) {
    int w = 64, h = 48;
    uint8_t *p = gradient(w, h);
    cd_image im = {w, h, p}, back;
    uint8_t *b;
    size_t n;
    CHECK_OK(cd_image_encode_jpeg(&im, 95, &b, &n));
    CHECK_OK(cd_image_decode(b, n, "q95.jpg", 0, 0, &back));
    double sum = 0;
    for (int i = 0; i < w * h * 3; i++) sum += abs(back.rgb[i] - p[i]);
    CHECKF(sum / (w * h * 3) < 3.0, "JPEG q95 roundtrip error %.2f", sum / (w * h * 3));
    cd_image_free(&back);
    free(b);
    CHECK_ERR(cd_image_encode_jpeg(&im, 0, &b, &n), "quality");
    const char *keys[] = {"prompt", "seed"}, *vals[] = {"a <new1> cat", "42"};
    CHECK_OK(cd_image_encode_png(&im, 2, keys, vals, &b, &n));
    CHECK(memmem(b, n, "tEXtprompt\0a <new1> cat", 23));
    CHECK_OK(cd_image_decode(b, n, "t.png", 0, 0, &back));
    CHECK(back.w == w && back.h == h && !memcmp(back.rgb, p, w * h * 3));
    cd_image_free(&back);
    free(b);
    char *dir = tl_tmpdir("image");
    char *pp = cd_path_join(dir, "x.png"), *pj = cd_path_join(dir, "x.JPG"), *pb = cd_path_join(dir, "x.bmp");
    CHECK_OK(cd_image_save(pp, &im));
    CHECK_OK(cd_image_load(pp, 0, &back));
    CHECK(back.w == w && !memcmp(back.rgb, p, w * h * 3));
    cd_image_free(&back);
    CHECK_OK(cd_image_save(pj, &im));
    CHECK_OK(cd_image_load(pj, 0, &back));
    CHECK(back.w == w && back.h == h);
    cd_image_free(&back);
    CHECK_ERR(cd_image_save(pb, &im), "x.bmp");
    CHECK_ERR(cd_image_load(pb, 0, &back), "x.bmp");
    free(pp); free(pj); free(pb); free(dir);
    free(p);
}

TEST(grid_layout) {
    uint8_t red[3 * 40 * 20], blue[3 * 10 * 30];
    for (int i = 0; i < 40 * 20; i++) { red[3 * i] = 255; red[3 * i + 1] = 0; red[3 * i + 2] = 0; }
    for (int i = 0; i < 10 * 30; i++) { blue[3 * i] = 0; blue[3 * i + 1] = 0; blue[3 * i + 2] = 255; }
    cd_image ims[3] = {{40, 20, red}, {10, 30, blue}, {40, 20, red}}, g;
    CHECK_OK(cd_image_grid(ims, 3, 2, 16, &g));
    CHECK(g.w == 2 * 16 + 3 * 4 && g.h == 2 * 16 + 3 * 4);
    CHECK_PX(&g, 0, 0, 24, 24, 24, 0);        // gap
    CHECK_PX(&g, 4 + 8, 4 + 8, 255, 0, 0, 0);  // red 16x8 centred in cell 0: rows 8..15
    CHECK_PX(&g, 4 + 8, 4 + 1, 24, 24, 24, 0); // above it: background
    CHECK_PX(&g, 24 + 8, 4 + 8, 0, 0, 255, 0); // blue cell 1
    CHECK_PX(&g, 24 + 8, 24 + 8, 24, 24, 24, 0); // empty cell 3
    cd_image_free(&g);
    CHECK_ERR(cd_image_grid(ims, 0, 2, 16, &g), "grid");
}

int main(void) {
    RUN(jpeg_exif_orientations);
    RUN(jpeg_gray_and_cmyk);
    RUN(jpeg_truncated_garbage_huge);
    RUN(jpeg_dct_scaling);
    RUN(png_variants);
    RUN(png_huge_header_refused);
    RUN(png_forged_chunk_length);
    RUN(webp_lossy_and_alpha);
    RUN(resize_known_values);
    RUN(resize_constant_stays_constant);
    RUN(resize_modes);
    RUN(clip_preprocess_matches_pil_golden);
    RUN(encode_save_load);
    RUN(grid_layout);
    return tl_done();
}
