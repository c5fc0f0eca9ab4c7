// GIF and BMP decoding tests (core/image_gif.c, core/image_bmp.c). GIFs are written with
// giflib's encoder here, BMPs byte by byte; expected colours are worked out by hand.
// CD_DUMP_SEEDS=DIR writes the generated files there (the image fuzzer's seed corpus).
#include "core/image.h"
#include "core/err.h"
#include "core/fileio.h"
#include "tests/testlib.h"
#include <gif_lib.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_PX(im, x, y, r, g, b) CHECKF(px_is(im, x, y, r, g, b), "pixel (%d,%d) is %d,%d,%d, want %d,%d,%d", \
    x, y, px(im, x, y)[0], px(im, x, y)[1], px(im, x, y)[2], r, g, b)
static const uint8_t *px(const cd_image *im, int x, int y) { return im->rgb + ((size_t)y * im->w + x) * 3; }
static int px_is(const cd_image *im, int x, int y, int r, int g, int b) {
    const uint8_t *p = px(im, x, y);
    return p[0] == r && p[1] == g && p[2] == b;
}

static void dump(const char *name, const uint8_t *p, size_t n) {
    const char *dir = getenv("CD_DUMP_SEEDS");
    if (!dir) return;
    char *path = cd_path_join(dir, name);
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(p, 1, n, f); fclose(f); }
    free(path);
}

// Every prefix of a valid file must fail cleanly (the full file is checked by the caller).
static int prefixes_fail(const uint8_t *p, size_t n, const char *what) {
    for (size_t k = 0; k < n; k++) {
        cd_image im;
        cd_errclear();
        if (cd_image_decode(p, k, what, 0, 0, &im) == 0) { cd_image_free(&im); return (int)k + 1; }
        if (im.rgb || !strstr(cd_errmsg(), what)) return (int)k + 1;
    }
    return 0;
}

// ---------------------------------------------------------------- GIF writer

typedef struct { uint8_t *p; size_t n; } membuf;
static int gif_out(GifFileType *g, const GifByteType *d, int n) {
    membuf *m = g->UserData;
    m->p = realloc(m->p, m->n + n);
    memcpy(m->p + m->n, d, n);
    m->n += n;
    return n;
}

typedef struct {
    int left, top, w, h, interlace, trans;   // trans: transparent index or -1
    const GifColorType *local; int nlocal;   // local colour map (NULL: none)
    const uint8_t *idx;                      // w*h indices, row-major (display order)
} gif_frame;

// A GIF with a sw x sh screen, a global map, and the frames given. NULL on giflib failure.
static uint8_t *gif_of(int sw, int sh, const GifColorType *global, int nglobal, const gif_frame *fr, int nfr,
                       size_t *len) {
    int err;
    membuf m = {0};
    GifFileType *g = EGifOpen(&m, gif_out, &err);
    if (!g) return NULL;
    EGifSetGifVersion(g, true);
    ColorMapObject *gm = global ? GifMakeMapObject(nglobal, global) : NULL;
    int ok = EGifPutScreenDesc(g, sw, sh, 8, 0, gm) != GIF_ERROR;
    for (int f = 0; ok && f < nfr; f++) {
        const gif_frame *q = &fr[f];
        if (q->trans >= 0) {
            GraphicsControlBlock gcb = {0, false, 0, q->trans};
            GifByteType ext[4];
            EGifGCBToExtension(&gcb, ext);
            ok = EGifPutExtension(g, GRAPHICS_EXT_FUNC_CODE, 4, ext) != GIF_ERROR;
        }
        ColorMapObject *lm = q->local ? GifMakeMapObject(q->nlocal, q->local) : NULL;
        ok = ok && EGifPutImageDesc(g, q->left, q->top, q->w, q->h, q->interlace, lm) != GIF_ERROR;
        GifFreeMapObject(lm);
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        for (int pass = 0; ok && pass < (q->interlace ? 4 : 1); pass++)   // rows in stored order
            for (int y = q->interlace ? start[pass] : 0; ok && y < q->h; y += q->interlace ? step[pass] : 1)
                ok = EGifPutLine(g, (GifPixelType *)q->idx + (size_t)y * q->w, q->w) != GIF_ERROR;
    }
    if (EGifCloseFile(g, &err) == GIF_ERROR) ok = 0;
    GifFreeMapObject(gm);
    if (!ok) { free(m.p); return NULL; }
    *len = m.n;
    return m.p;
}

static const GifColorType PAL4[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {10, 20, 30}};

TEST(gif_palette) {
    uint8_t idx[4 * 3] = {0, 1, 2, 3, 3, 2, 1, 0, 1, 1, 2, 2};
    gif_frame f = {0, 0, 4, 3, 0, -1, NULL, 0, idx};
    size_t n;
    uint8_t *g = gif_of(4, 3, PAL4, 4, &f, 1, &n);
    CHECK(g);
    dump("pal.gif", g, n);
    CHECK(cd_image_sniff(g, n) == CD_FMT_GIF);
    cd_imgfmt fmt;
    int w = 0, h = 0;
    CHECK_OK(cd_image_probe(g, n, "pal.gif", &fmt, &w, &h));
    CHECK(fmt == CD_FMT_GIF && w == 4 && h == 3);
    cd_image im;
    CHECK_OK(cd_image_decode(g, n, "pal.gif", 0, 0, &im));
    CHECK(im.w == 4 && im.h == 3);
    for (int i = 0; i < 12; i++) {
        const GifColorType *c = &PAL4[idx[i]];
        CHECK_PX(&im, i % 4, i / 4, c->Red, c->Green, c->Blue);
    }
    cd_image_free(&im);
    CHECK_ERR(cd_image_decode(g, n, "pal.gif", 11, 0, &im), "over the limit");
    int bad = prefixes_fail(g, n - 1, "cut.gif");   // only the trailer may be missing
    CHECKF(!bad, "prefix of %d bytes (of %zu) did not fail cleanly: %s", bad - 1, n, cd_errmsg());
    free(g);
}

TEST(gif_transparency_and_local_map) {
    // Global map PAL4, local map overrides it; index 2 is transparent -> white.
    static const GifColorType loc[4] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {200, 100, 50}};
    uint8_t idx[3 * 2] = {0, 1, 2, 3, 2, 0};
    gif_frame f = {0, 0, 3, 2, 0, 2, loc, 4, idx};
    size_t n;
    uint8_t *g = gif_of(3, 2, PAL4, 4, &f, 1, &n);
    CHECK(g);
    dump("trans.gif", g, n);
    cd_image im;
    CHECK_OK(cd_image_decode(g, n, "trans.gif", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 1, 2, 3);
    CHECK_PX(&im, 1, 0, 4, 5, 6);
    CHECK_PX(&im, 2, 0, 255, 255, 255);
    CHECK_PX(&im, 0, 1, 200, 100, 50);
    CHECK_PX(&im, 1, 1, 255, 255, 255);
    CHECK_PX(&im, 2, 1, 1, 2, 3);
    cd_image_free(&im);
    free(g);
}

TEST(gif_interlaced) {
    // 3 x 11 rows, row y has colour index y (a 16-colour grey ramp: index i -> 16*i).
    GifColorType ramp[16];
    for (int i = 0; i < 16; i++) ramp[i].Red = ramp[i].Green = ramp[i].Blue = (GifByteType)(16 * i);
    uint8_t idx[3 * 11];
    for (int i = 0; i < 33; i++) idx[i] = (uint8_t)(i / 3);
    gif_frame f = {0, 0, 3, 11, 1, -1, NULL, 0, idx};
    size_t n;
    uint8_t *g = gif_of(3, 11, ramp, 16, &f, 1, &n);
    CHECK(g);
    dump("interlaced.gif", g, n);
    cd_image im;
    CHECK_OK(cd_image_decode(g, n, "interlaced.gif", 0, 0, &im));
    CHECK(im.w == 3 && im.h == 11);
    for (int y = 0; y < 11; y++) CHECK_PX(&im, 1, y, 16 * y, 16 * y, 16 * y);
    cd_image_free(&im);
    int bad = prefixes_fail(g, n - 1, "cut.gif");
    CHECKF(!bad, "prefix of %d bytes did not fail cleanly: %s", bad - 1, cd_errmsg());
    free(g);
}

TEST(gif_frame_inside_screen_and_animation) {
    // Screen 6x5, first frame 2x2 at (3,2); a second frame (all index 1) must be ignored.
    uint8_t idx[4] = {1, 2, 3, 0}, idx2[6 * 5];
    memset(idx2, 1, sizeof idx2);
    gif_frame f[2] = {{3, 2, 2, 2, 0, -1, NULL, 0, idx}, {0, 0, 6, 5, 0, -1, NULL, 0, idx2}};
    size_t n;
    uint8_t *g = gif_of(6, 5, PAL4, 4, f, 2, &n);
    CHECK(g);
    dump("subframe-anim.gif", g, n);
    cd_image im;
    CHECK_OK(cd_image_decode(g, n, "sub.gif", 0, 0, &im));
    CHECK(im.w == 6 && im.h == 5);
    CHECK_PX(&im, 0, 0, 255, 255, 255);   // outside the frame: transparent -> white
    CHECK_PX(&im, 5, 4, 255, 255, 255);
    CHECK_PX(&im, 4, 3, 0, 0, 0);
    CHECK_PX(&im, 3, 2, 255, 0, 0);
    CHECK_PX(&im, 4, 2, 0, 255, 0);
    CHECK_PX(&im, 3, 3, 10, 20, 30);
    CHECK_PX(&im, 2, 2, 255, 255, 255);
    CHECK_PX(&im, 5, 1, 255, 255, 255);
    cd_image_free(&im);
    free(g);
    // A frame sticking out of a 2x2 screen grows the canvas to 4x4 (as Pillow does).
    uint8_t nine[9] = {1, 1, 1, 1, 2, 1, 1, 1, 1};
    gif_frame o = {1, 1, 3, 3, 0, -1, NULL, 0, nine};
    g = gif_of(2, 2, PAL4, 4, &o, 1, &n);
    CHECK(g);
    int w, h;
    CHECK_OK(cd_image_probe(g, n, "out.gif", NULL, &w, &h));
    CHECK(w == 4 && h == 4);
    CHECK_OK(cd_image_decode(g, n, "out.gif", 0, 0, &im));
    CHECK(im.w == 4 && im.h == 4);
    CHECK_PX(&im, 0, 0, 255, 255, 255);
    CHECK_PX(&im, 2, 2, 0, 255, 0);
    CHECK_PX(&im, 3, 3, 255, 0, 0);
    cd_image_free(&im);
    CHECK_ERR(cd_image_decode(g, n, "out.gif", 15, 0, &im), "4x4");   // the grown canvas is checked
    free(g);
}

TEST(gif_malformed) {
    cd_image im;
    // Logical screen 65535x65535: refused from the header, probe still reports it.
    uint8_t huge[] = {'G', 'I', 'F', '8', '9', 'a', 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0, 0,
                      ',', 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0, ';'};
    CHECK_ERR(cd_image_decode(huge, sizeof huge, "huge.gif", 1 << 24, 0, &im), "refused before decoding");
    CHECK(im.rgb == NULL);
    CHECK_ERR(cd_image_decode(huge, sizeof huge, "huge.gif", 0, 0, &im), "hard limit");
    dump("huge-screen.gif", huge, sizeof huge);
    // Screen 0x0 (some encoders) takes the frame's size: a 1x1 frame with no colour map
    // anywhere is read as grey levels (index 0 -> black).
    uint8_t tiny[sizeof huge];
    memcpy(tiny, huge, sizeof huge);
    tiny[6] = tiny[7] = tiny[8] = tiny[9] = 0;
    CHECK_OK(cd_image_decode(tiny, sizeof tiny, "tiny.gif", 0, 0, &im));
    CHECK(im.w == 1 && im.h == 1);
    CHECK_PX(&im, 0, 0, 0, 0, 0);
    cd_image_free(&im);
    dump("noscreen-nomap.gif", tiny, sizeof tiny);
    // No image at all, a zero-size frame, garbage after the signature.
    uint8_t none[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0, ';'};
    CHECK_ERR(cd_image_decode(none, sizeof none, "none.gif", 0, 0, &im), "no image");
    uint8_t zero[sizeof huge];
    memcpy(zero, tiny, sizeof tiny);
    zero[18] = 0;   // frame width 0
    CHECK_ERR(cd_image_decode(zero, sizeof zero, "zero.gif", 0, 0, &im), "zero.gif");
    CHECK(im.rgb == NULL);
    uint8_t junk[64] = "GIF89a";
    for (int i = 6; i < 64; i++) junk[i] = (uint8_t)(i * 37);
    CHECK_ERR(cd_image_decode(junk, sizeof junk, "junk.gif", 0, 0, &im), "junk.gif");
}

// ---------------------------------------------------------------- BMP writer

static void put16(uint8_t *p, unsigned v) { p[0] = v & 255; p[1] = (v >> 8) & 255; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xFFFF); put16(p + 2, v >> 16); }

// A BMP: file header, an hs-byte info header (12 = core), masks (after a 40-byte header or
// inside a larger one), npal palette entries (BGRx, BGR for core), then `rows` (stored
// order, padded rows, nrows bytes). h may be negative (top-down).
static uint8_t *bmp_of(int hs, int w, int h, int bpp, int comp, const uint32_t *masks, int nmask,
                       const uint8_t *pal, int npal, uint32_t clr_used, const uint8_t *rows, size_t nrows,
                       size_t *len) {
    int pe = hs == 12 ? 3 : 4;
    size_t mask_extra = hs == 40 && nmask ? 4 * (size_t)nmask : 0;
    size_t off = 14 + hs + mask_extra + (size_t)npal * pe, n = off + nrows;
    uint8_t *p = calloc(1, n);
    p[0] = 'B'; p[1] = 'M';
    put32(p + 2, (uint32_t)n);
    put32(p + 10, (uint32_t)off);
    uint8_t *d = p + 14;
    put32(d, hs);
    if (hs == 12) {
        put16(d + 4, w); put16(d + 6, h); put16(d + 8, 1); put16(d + 10, bpp);
    } else {
        put32(d + 4, (uint32_t)w); put32(d + 8, (uint32_t)h); put16(d + 12, 1); put16(d + 14, bpp);
        put32(d + 16, comp); put32(d + 20, (uint32_t)nrows); put32(d + 32, clr_used);
        for (int i = 0; i < nmask; i++) put32(d + 40 + 4 * i, masks[i]);
    }
    if (npal) memcpy(p + 14 + hs + mask_extra, pal, (size_t)npal * pe);
    memcpy(p + off, rows, nrows);
    *len = n;
    return p;
}

TEST(bmp_palette_depths) {
    cd_image im;
    size_t n;
    // 1 bit, 10x2 bottom-up, palette {black-ish, orange}: stored row 0 is the bottom row.
    uint8_t pal2[8] = {1, 2, 3, 0, 0, 128, 255, 0};   // BGRx: (3,2,1) and (255,128,0)
    uint8_t rows1[8] = {0xA0, 0x40, 0, 0,  0x00, 0xC0, 0, 0};
    uint8_t *b = bmp_of(40, 10, 2, 1, 0, NULL, 0, pal2, 2, 0, rows1, sizeof rows1, &n);
    dump("1bit.bmp", b, n);
    int w, h;
    cd_imgfmt f;
    CHECK_OK(cd_image_probe(b, n, "1bit.bmp", &f, &w, &h));
    CHECK(f == CD_FMT_BMP && w == 10 && h == 2);
    CHECK_OK(cd_image_decode(b, n, "1bit.bmp", 0, 0, &im));
    CHECK(im.w == 10 && im.h == 2);
    CHECK_PX(&im, 0, 1, 255, 128, 0);   // bottom row = stored row 0: 1010 0000 01
    CHECK_PX(&im, 1, 1, 3, 2, 1);
    CHECK_PX(&im, 2, 1, 255, 128, 0);
    CHECK_PX(&im, 9, 1, 255, 128, 0);
    CHECK_PX(&im, 8, 1, 3, 2, 1);
    CHECK_PX(&im, 8, 0, 255, 128, 0);   // top row: 0000 0000 11
    CHECK_PX(&im, 7, 0, 3, 2, 1);
    cd_image_free(&im);
    int bad = prefixes_fail(b, n - 2, "cut.bmp");   // the last row may lack its 2 padding bytes
    CHECKF(!bad, "prefix of %d bytes did not fail cleanly: %s", bad - 1, cd_errmsg());
    free(b);
    // 4 bit, 3x1, clrUsed = 2: index 5 is past the palette -> black.
    uint8_t rows4[4] = {0x15, 0x00, 0, 0};
    b = bmp_of(40, 3, 1, 4, 0, NULL, 0, pal2, 2, 2, rows4, sizeof rows4, &n);
    dump("4bit.bmp", b, n);
    CHECK_OK(cd_image_decode(b, n, "4bit.bmp", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 255, 128, 0);
    CHECK_PX(&im, 1, 0, 0, 0, 0);
    CHECK_PX(&im, 2, 0, 3, 2, 1);
    cd_image_free(&im);
    free(b);
    // 8 bit, V5 header, top-down 2x2 with 256-entry palette (entry i = (i, 255-i, 7)).
    uint8_t pal256[1024];
    for (int i = 0; i < 256; i++) { pal256[4 * i] = 7; pal256[4 * i + 1] = 255 - i; pal256[4 * i + 2] = i; pal256[4 * i + 3] = 0; }
    uint8_t rows8[8] = {10, 20, 0, 0, 30, 255, 0, 0};
    b = bmp_of(124, 2, -2, 8, 0, NULL, 0, pal256, 256, 0, rows8, sizeof rows8, &n);
    dump("8bit-v5-topdown.bmp", b, n);
    CHECK_OK(cd_image_probe(b, n, "8.bmp", NULL, &w, &h));
    CHECK(w == 2 && h == 2);
    CHECK_OK(cd_image_decode(b, n, "8.bmp", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 10, 245, 7);
    CHECK_PX(&im, 1, 0, 20, 235, 7);
    CHECK_PX(&im, 0, 1, 30, 225, 7);
    CHECK_PX(&im, 1, 1, 255, 0, 7);
    cd_image_free(&im);
    free(b);
}

TEST(bmp_direct_depths) {
    cd_image im;
    size_t n;
    // 16 bit BI_RGB (x1r5g5b5), 2x1: red 31 -> 255, blue 16 -> 16*255/31 = 131 (truncated).
    uint8_t r16[4] = {0x00, 0x7C, 0x10, 0x00};
    uint8_t *b = bmp_of(40, 2, 1, 16, 0, NULL, 0, NULL, 0, 0, r16, 4, &n);
    dump("16bit-555.bmp", b, n);
    CHECK_OK(cd_image_decode(b, n, "555.bmp", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 255, 0, 0);
    CHECK_PX(&im, 1, 0, 0, 0, 131);
    cd_image_free(&im);
    free(b);
    // 16 bit BI_BITFIELDS 5-6-5 with masks after a 40-byte header: green 1 -> 255/63 = 4.
    static const uint32_t m565[3] = {0xF800, 0x07E0, 0x001F};
    uint8_t r565[4] = {0x20, 0x00, 0xFF, 0xFF};
    b = bmp_of(40, 2, 1, 16, 3, m565, 3, NULL, 0, 0, r565, 4, &n);
    dump("16bit-565.bmp", b, n);
    CHECK_OK(cd_image_decode(b, n, "565.bmp", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 0, 4, 0);
    CHECK_PX(&im, 1, 0, 255, 255, 255);
    cd_image_free(&im);
    free(b);
    // 24 bit, core header, 3x2 bottom-up: rows padded to 12 bytes.
    uint8_t r24[24] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0,  10, 20, 30, 40, 50, 60, 70, 80, 90, 0, 0, 0};
    b = bmp_of(12, 3, 2, 24, 0, NULL, 0, NULL, 0, 0, r24, sizeof r24, &n);
    dump("24bit-core.bmp", b, n);
    CHECK_OK(cd_image_decode(b, n, "24.bmp", 0, 0, &im));
    CHECK(im.w == 3 && im.h == 2);
    CHECK_PX(&im, 0, 1, 3, 2, 1);
    CHECK_PX(&im, 2, 1, 9, 8, 7);
    CHECK_PX(&im, 0, 0, 30, 20, 10);
    CHECK_PX(&im, 2, 0, 90, 80, 70);
    cd_image_free(&im);
    CHECK_OK(cd_image_decode(b, n - 3, "nopad.bmp", 0, 0, &im));   // last row without padding
    cd_image_free(&im);
    CHECK_ERR(cd_image_decode(b, n - 4, "short.bmp", 0, 0, &im), "truncated BMP");
    int bad = prefixes_fail(b, n - 3, "cut.bmp");
    CHECKF(!bad, "prefix of %d bytes did not fail cleanly: %s", bad - 1, cd_errmsg());
    free(b);
    // 32 bit BI_RGB: BGRX, the fourth byte is ignored.
    uint8_t r32[8] = {50, 60, 70, 0, 1, 2, 3, 128};
    b = bmp_of(40, 2, 1, 32, 0, NULL, 0, NULL, 0, 0, r32, 8, &n);
    dump("32bit-bgrx.bmp", b, n);
    CHECK_OK(cd_image_decode(b, n, "32.bmp", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 70, 60, 50);
    CHECK_PX(&im, 1, 0, 3, 2, 1);
    cd_image_free(&im);
    free(b);
}

TEST(bmp_alpha_bitfields) {
    cd_image im;
    size_t n;
    // V4 header, BI_BITFIELDS with an alpha mask: alpha 0 -> white, alpha 128 black -> 127.
    static const uint32_t argb[4] = {0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000};
    uint8_t r[12] = {0, 0, 255, 0,  0, 0, 0, 128,  9, 8, 7, 255};
    uint8_t *b = bmp_of(108, 3, 1, 32, 3, argb, 4, NULL, 0, 0, r, 12, &n);
    dump("32bit-alpha-v4.bmp", b, n);
    CHECK_OK(cd_image_decode(b, n, "a.bmp", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 255, 255, 255);
    CHECK_PX(&im, 1, 0, 127, 127, 127);
    CHECK_PX(&im, 2, 0, 7, 8, 9);
    cd_image_free(&im);
    free(b);
    // Alpha mask but every alpha 0: an unused channel, the image is opaque.
    uint8_t z[8] = {9, 8, 7, 0, 1, 2, 3, 0};
    b = bmp_of(124, 2, 1, 32, 3, argb, 4, NULL, 0, 0, z, 8, &n);
    CHECK_OK(cd_image_decode(b, n, "z.bmp", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 7, 8, 9);
    CHECK_PX(&im, 1, 0, 3, 2, 1);
    cd_image_free(&im);
    free(b);
    // BI_BITFIELDS on 24 bit is refused.
    b = bmp_of(40, 1, 1, 24, 3, argb, 3, NULL, 0, 0, r, 4, &n);
    CHECK_ERR(cd_image_decode(b, n, "bf24.bmp", 0, 0, &im), "16 or 32");
    free(b);
}

TEST(bmp_rle) {
    cd_image im;
    size_t n;
    // Palette: index i -> (10*i, 0, 0); index 0 -> (0,0,0). 4x3 bottom-up RLE8.
    uint8_t pal[4 * 4] = {0, 0, 0, 0,  0, 0, 10, 0,  0, 0, 20, 0,  0, 0, 30, 0};
    uint8_t s8[] = {3, 1, 9, 2, 0, 0,          // bottom row: 1 1 1 2, the run of 9 clipped at 4
                    0, 3, 2, 3, 1, 0, 0, 0,    // middle row: absolute 2 3 1 (+pad), index 0 left
                    0, 2, 2, 0, 1, 3, 0, 1};   // delta right 2; top row: 0 0 3 0; end of bitmap
    uint8_t *b = bmp_of(40, 4, 3, 8, 1, NULL, 0, pal, 4, 4, s8, sizeof s8, &n);
    dump("rle8.bmp", b, n);
    CHECK_OK(cd_image_decode(b, n, "rle8.bmp", 0, 0, &im));
    CHECK(im.w == 4 && im.h == 3);
    static const int want[3][4] = {{0, 0, 3, 0}, {2, 3, 1, 0}, {1, 1, 1, 2}};
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 4; x++) CHECK_PX(&im, x, y, 10 * want[y][x], 0, 0);
    cd_image_free(&im);
    int bad = prefixes_fail(b, n, "cut.bmp");   // the top row is not finished before the end marker
    CHECKF(!bad, "prefix of %d bytes did not fail cleanly: %s", bad - 1, cd_errmsg());
    free(b);
    // RLE4, 5x1: a run of nibbles 1,2,1,2,1 then end of bitmap; absolute 3 nibbles on 3x1.
    uint8_t s4[] = {5, 0x12, 0, 1};
    b = bmp_of(40, 5, 1, 4, 2, NULL, 0, pal, 4, 4, s4, sizeof s4, &n);
    dump("rle4.bmp", b, n);
    CHECK_OK(cd_image_decode(b, n, "rle4.bmp", 0, 0, &im));
    for (int x = 0; x < 5; x++) CHECK_PX(&im, x, 0, x & 1 ? 20 : 10, 0, 0);
    cd_image_free(&im);
    free(b);
    uint8_t a4[] = {0, 3, 0x31, 0x20, 0, 1};
    b = bmp_of(40, 3, 1, 4, 2, NULL, 0, pal, 4, 4, a4, sizeof a4, &n);
    CHECK_OK(cd_image_decode(b, n, "abs4.bmp", 0, 0, &im));
    CHECK_PX(&im, 0, 0, 30, 0, 0);
    CHECK_PX(&im, 1, 0, 10, 0, 0);
    CHECK_PX(&im, 2, 0, 20, 0, 0);
    cd_image_free(&im);
    free(b);
    // RLE8 on a 24-bit header is refused; a stream cut inside an absolute run is truncated.
    b = bmp_of(40, 3, 1, 24, 1, NULL, 0, NULL, 0, 0, a4, sizeof a4, &n);
    CHECK_ERR(cd_image_decode(b, n, "rle24.bmp", 0, 0, &im), "RLE8 BMP with 24 bits");
    free(b);
    uint8_t cut[] = {0, 200, 1, 2, 3};
    b = bmp_of(40, 3, 1, 8, 1, NULL, 0, pal, 4, 4, cut, sizeof cut, &n);
    CHECK_ERR(cd_image_decode(b, n, "cut8.bmp", 0, 0, &im), "truncated RLE8");
    CHECK(im.rgb == NULL);
    free(b);
}

TEST(bmp_malformed) {
    cd_image im;
    size_t n;
    uint8_t row[4] = {0};
    // Embedded JPEG: a clear refusal.
    uint8_t *b = bmp_of(40, 1, 1, 24, 4, NULL, 0, NULL, 0, 0, row, 4, &n);
    CHECK_ERR(cd_image_decode(b, n, "jpg.bmp", 0, 0, &im), "BMP with embedded JPEG not supported");
    free(b);
    // Huge dimensions: the probe reports them, decode refuses before touching pixels.
    b = bmp_of(40, 100000, -100000, 24, 0, NULL, 0, NULL, 0, 0, row, 4, &n);
    dump("huge.bmp", b, n);
    int w, h;
    CHECK_OK(cd_image_probe(b, n, "huge.bmp", NULL, &w, &h));
    CHECK(w == 100000 && h == 100000);
    CHECK_ERR(cd_image_decode(b, n, "huge.bmp", 1 << 24, 0, &im), "refused before decoding");
    CHECK_ERR(cd_image_decode(b, n, "huge.bmp", 0, 0, &im), "hard limit");
    CHECK(im.rgb == NULL);
    // Within the pixel limits but the rows are not there.
    put32(b + 18, 1000); put32(b + 22, 1000);
    CHECK_ERR(cd_image_decode(b, n, "short.bmp", 0, 0, &im), "truncated BMP");
    // Height INT32_MIN, width 0, depth 7, unknown header size, pixel offset past the end.
    put32(b + 22, 0x80000000u);
    CHECK_ERR(cd_image_decode(b, n, "min.bmp", 0, 0, &im), "min.bmp");
    put32(b + 22, 1); put32(b + 18, 0);
    CHECK_ERR(cd_image_decode(b, n, "w0.bmp", 0, 0, &im), "bad size");
    put32(b + 18, 1); put16(b + 28, 7);
    CHECK_ERR(cd_image_decode(b, n, "d7.bmp", 0, 0, &im), "depth");
    put16(b + 28, 24); put32(b + 14, 41);
    CHECK_ERR(cd_image_decode(b, n, "hs.bmp", 0, 0, &im), "header size");
    put32(b + 14, 40); put32(b + 10, (uint32_t)n);
    CHECK_ERR(cd_image_decode(b, n, "off.bmp", 0, 0, &im), "offset");
    put32(b + 10, 0xFFFFFFFFu);
    CHECK_ERR(cd_image_probe(b, n, "off.bmp", NULL, &w, &h), "offset");
    put32(b + 10, 54);
    CHECK_OK(cd_image_decode(b, n, "ok.bmp", 0, 0, &im));
    CHECK(im.w == 1 && im.h == 1);
    cd_image_free(&im);
    free(b);
    // A palette that runs off the end of the file.
    uint8_t hdr[14 + 40] = {'B', 'M'};
    put32(hdr + 10, 54); put32(hdr + 14, 40); put32(hdr + 18, 1); put32(hdr + 22, 1);
    put16(hdr + 26, 1); put16(hdr + 28, 8);
    CHECK_ERR(cd_image_decode(hdr, sizeof hdr, "nopal.bmp", 0, 0, &im), "nopal.bmp");
    CHECK_ERR(cd_image_decode("BM\0\0\0\0\0\0\0\0\0\0\0\0", 14, "tiny.bmp", 0, 0, &im), "truncated BMP header");
}

int main(void) {
    RUN(gif_palette);
    RUN(gif_transparency_and_local_map);
    RUN(gif_interlaced);
    RUN(gif_frame_inside_screen_and_animation);
    RUN(gif_malformed);
    RUN(bmp_palette_depths);
    RUN(bmp_direct_depths);
    RUN(bmp_alpha_bitfields);
    RUN(bmp_rle);
    RUN(bmp_malformed);
    return tl_done();
}
