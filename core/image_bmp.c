// BMP decoding, hand-written and bounds-checked against the buffer at every read.
// Headers: BITMAPCOREHEADER (12), BITMAPINFOHEADER (40), the V2/V3 info headers (52, 56),
// OS/2 2.x (64, uncompressed only), V4 (108), V5 (124). Depths 1/4/8 (palette; indices past
// the palette are black), 16 (5-5-5 by default), 24, 32 (BGRX by default: the fourth byte is
// ignored, as Pillow does). BI_BITFIELDS / BI_ALPHABITFIELDS masks (for 16 and 32 bit) from
// the header or, after a 40-byte header, from the 12 or 16 bytes that follow it; channels
// are scaled as Pillow does (v * 255 / max, truncated). An alpha mask is honoured (over
// white) unless every pixel has alpha 0, which writers that fill the channel with zero
// produce: then the image is taken as opaque, as browsers do. Rows are bottom-up for a
// positive height, top-down for a negative one. RLE8 (8 bit) and RLE4 (4 bit) are decoded
// with every run clipped to the image; pixels the stream skips (delta, early end of line or
// bitmap) keep palette index 0, as in Pillow. Embedded JPEG/PNG are refused.
#include "core/image_internal.h"
#include <stdlib.h>
#include <string.h>

enum { BI_RGB = 0, BI_RLE8 = 1, BI_RLE4 = 2, BI_BITFIELDS = 3, BI_JPEG = 4, BI_PNG = 5, BI_ALPHABITFIELDS = 6 };

typedef struct {
    int64_t w, h;        // h > 0 (top_down says the row order)
    int top_down, bpp, comp, core;
    uint32_t mask[4];    // R G B A (0 = absent)
    size_t pal_off;      // first palette entry
    int pal_n, pal_size; // entries, bytes per entry (4, or 3 for the core header)
    size_t data_off;     // first pixel row in the file
    size_t stride;       // bytes per row (padded to 4)
} bmp_info;

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static const char *comp_name(int c) {
    switch (c) {
    case BI_JPEG: return "embedded JPEG";
    case BI_PNG: return "embedded PNG";
    default: return NULL;
    }
}

// Masks: the defaults, or BI_BITFIELDS masks from the header / after a 40-byte header.
static int bmp_masks(const uint8_t *p, size_t n, const char *what, uint32_t hs, bmp_info *b) {
    memset(b->mask, 0, sizeof b->mask);
    if (b->comp == BI_RLE8 || b->comp == BI_RLE4) return 0;
    if (b->comp == BI_RGB) {
        if (b->bpp == 16) { b->mask[0] = 0x7C00; b->mask[1] = 0x03E0; b->mask[2] = 0x001F; }
        if (b->bpp == 32) { b->mask[0] = 0xFF0000; b->mask[1] = 0xFF00; b->mask[2] = 0xFF; }
        return 0;
    }
    if (b->bpp != 16 && b->bpp != 32)
        return cd_err("%s: BMP bit fields need 16 or 32 bits per pixel, not %d", what, b->bpp);
    int nm = b->comp == BI_ALPHABITFIELDS ? 4 : 3;
    size_t at = 14 + 40;   // inside the header (hs >= 52) or right after a 40-byte one
    if (hs >= 56) nm = 4;
    if (at + 4 * (size_t)nm > n) return cd_err("%s: truncated BMP (bit field masks)", what);
    for (int i = 0; i < nm; i++) b->mask[i] = le32(p + at + 4 * i);
    if (hs == 40) b->pal_off += 4 * (size_t)nm;   // the masks sit where a palette would
    if (b->bpp == 16) for (int i = 0; i < 4; i++) b->mask[i] &= 0xFFFF;
    if (!b->mask[0] && !b->mask[1] && !b->mask[2]) return cd_err("%s: BMP bit field masks are all zero", what);
    return 0;
}

// Parses and validates every header field; nothing past the headers is touched.
static int bmp_parse(const uint8_t *p, size_t n, const char *what, bmp_info *b) {
    memset(b, 0, sizeof *b);
    if (n < 14 + 12 || p[0] != 'B' || p[1] != 'M') return cd_err("%s: truncated BMP header", what);
    uint32_t off = le32(p + 10), hs = le32(p + 14);
    if (hs != 12 && hs != 40 && hs != 52 && hs != 56 && hs != 64 && hs != 108 && hs != 124)
        return cd_err("%s: unsupported BMP header size %u", what, hs);
    if (14 + (size_t)hs > n) return cd_err("%s: truncated BMP header (%u-byte info header)", what, hs);
    const uint8_t *h = p + 14;
    int64_t sh;
    if (hs == 12) {   // BITMAPCOREHEADER: 16-bit unsigned sides, 3-byte palette entries
        b->core = 1;
        b->w = le16(h + 4);
        sh = le16(h + 6);
        b->bpp = (int)le16(h + 10);
        b->comp = BI_RGB;
    } else {
        b->w = (int32_t)le32(h + 4);
        sh = (int32_t)le32(h + 8);
        b->bpp = (int)le16(h + 14);
        b->comp = (int)le32(h + 16);
    }
    b->top_down = sh < 0;
    b->h = sh < 0 ? -sh : sh;
    if (b->w <= 0 || b->h <= 0) return cd_err("%s: BMP has bad size %lldx%lld", what, (long long)b->w, (long long)sh);
    if (b->bpp != 1 && b->bpp != 4 && b->bpp != 8 && b->bpp != 16 && b->bpp != 24 && b->bpp != 32)
        return cd_err("%s: unsupported BMP depth of %d bits per pixel", what, b->bpp);
    if (comp_name(b->comp)) return cd_err("%s: BMP with %s not supported", what, comp_name(b->comp));
    if ((b->comp == BI_RLE8 && b->bpp != 8) || (b->comp == BI_RLE4 && b->bpp != 4))
        return cd_err("%s: RLE%d BMP with %d bits per pixel", what, b->comp == BI_RLE8 ? 8 : 4, b->bpp);
    if (b->comp != BI_RGB && b->comp != BI_BITFIELDS && b->comp != BI_ALPHABITFIELDS && b->comp != BI_RLE8 &&
        b->comp != BI_RLE4)
        return cd_err("%s: unknown BMP compression %d", what, b->comp);
    if (hs == 64 && b->comp != BI_RGB) return cd_err("%s: compressed OS/2 BMP not supported", what);
    b->pal_off = 14 + (size_t)hs;
    b->pal_size = b->core ? 3 : 4;
    CD_TRY(bmp_masks(p, n, what, hs, b));
    if (b->bpp <= 8) {
        uint32_t used = b->core ? 0 : le32(h + 32);
        uint32_t maxn = 1u << b->bpp;
        b->pal_n = (int)(used == 0 || used > maxn ? maxn : used);
        if (b->pal_off + (size_t)b->pal_n * b->pal_size > n) {   // keep the entries that are there
            size_t have = b->pal_off < n ? (n - b->pal_off) / b->pal_size : 0;
            if (have == 0) return cd_err("%s: truncated BMP (no palette)", what);
            b->pal_n = (int)have;
        }
    }
    b->data_off = off;
    if (off < 14 + (size_t)hs || off >= n) return cd_err("%s: BMP pixel data offset %u outside the file (%zu bytes)", what, off, n);
    b->stride = (size_t)((b->w * b->bpp + 31) / 32) * 4;
    return 0;
}

int cd_bmp_probe(const uint8_t *p, size_t n, const char *what, int *w, int *h) {
    bmp_info b;
    CD_TRY(bmp_parse(p, n, what, &b));   // sides are positive and fit an int32
    *w = (int)b.w;
    *h = (int)b.h;
    return 0;
}

// One channel of a bit-field pixel scaled to 8 bits (v * 255 / max, truncated, as Pillow).
static unsigned field(uint32_t px, uint32_t mask, unsigned dflt) {
    if (!mask) return dflt;
    int sh = __builtin_ctz(mask);
    uint32_t max = mask >> sh, v = (px & mask) >> sh;
    return (unsigned)((uint64_t)v * 255 / max);
}

// Row `src` (one stored row) -> RGBA8 `dst` (w pixels).
static void bmp_row(const bmp_info *b, const uint8_t *pal, const uint8_t *src, uint8_t *dst) {
    for (int64_t x = 0; x < b->w; x++, dst += 4) {
        if (b->bpp <= 8) {
            unsigned bits = (unsigned)(x * b->bpp), byte = src[bits >> 3];
            unsigned idx = (byte >> (8 - b->bpp - (bits & 7))) & ((1u << b->bpp) - 1);
            if ((int)idx < b->pal_n) {
                const uint8_t *e = pal + (size_t)idx * b->pal_size;
                dst[0] = e[2]; dst[1] = e[1]; dst[2] = e[0];
            } else {
                dst[0] = dst[1] = dst[2] = 0;
            }
            dst[3] = 255;
        } else if (b->bpp == 24) {
            const uint8_t *s = src + x * 3;
            dst[0] = s[2]; dst[1] = s[1]; dst[2] = s[0]; dst[3] = 255;
        } else {
            uint32_t px = b->bpp == 16 ? le16(src + x * 2) : le32(src + x * 4);
            dst[0] = (uint8_t)field(px, b->mask[0], 0);
            dst[1] = (uint8_t)field(px, b->mask[1], 0);
            dst[2] = (uint8_t)field(px, b->mask[2], 0);
            dst[3] = (uint8_t)field(px, b->mask[3], 255);
        }
    }
}

// RLE8 / RLE4 stream -> palette indices idx[w*h] (zeroed by the caller; row 0 is the first
// stored row). Runs and absolute runs are clipped to the row; the stream must reach the end
// of the bitmap (marker or last row), else it is truncated.
static int bmp_rle(const uint8_t *p, size_t n, const char *what, const bmp_info *b, uint8_t *idx) {
    int rle4 = b->comp == BI_RLE4;
    size_t i = b->data_off;
    int64_t x = 0, y = 0, w = b->w;
    while (y < b->h) {
        if (n - i < 2) return cd_err("%s: truncated RLE%d BMP data", what, rle4 ? 4 : 8);
        unsigned c = p[i], v = p[i + 1];
        i += 2;
        uint8_t *row = idx + (size_t)y * w;
        if (c > 0) {   // a run of c pixels (RLE4: alternating nibbles of v)
            for (int64_t k = 0; k < c && x + k < w; k++) row[x + k] = rle4 ? (k & 1 ? v & 15 : v >> 4) : v;
            x += c;
        } else if (v == 0) {   // end of line
            x = 0;
            y++;
        } else if (v == 1) {   // end of bitmap
            break;
        } else if (v == 2) {   // delta: move right and up
            if (n - i < 2) return cd_err("%s: truncated RLE%d BMP data", what, rle4 ? 4 : 8);
            x += p[i];
            y += p[i + 1];
            i += 2;
        } else {               // absolute run of v pixels, padded to an even byte count
            size_t nb = rle4 ? (v + 1) / 2 : v;
            if (n - i < nb) return cd_err("%s: truncated RLE%d BMP data", what, rle4 ? 4 : 8);
            for (int64_t k = 0; k < v && x + k < w; k++)
                row[x + k] = rle4 ? (k & 1 ? p[i + k / 2] & 15 : p[i + k / 2] >> 4) : p[i + k];
            x += v;
            i += nb + (nb & 1) <= n - i ? nb + (nb & 1) : nb;
        }
    }
    return 0;
}

// Indices (RLE) -> RGB through the palette, flipping bottom-up rows.
static void bmp_rle_rgb(const bmp_info *b, const uint8_t *pal, const uint8_t *idx, cd_image *out) {
    for (int64_t y = 0; y < b->h; y++) {
        const uint8_t *r = idx + (size_t)(b->top_down ? y : b->h - 1 - y) * b->w;
        uint8_t *o = out->rgb + (size_t)y * b->w * 3;
        for (int64_t x = 0; x < b->w; x++, o += 3) {
            if (r[x] < b->pal_n) {
                const uint8_t *e = pal + (size_t)r[x] * b->pal_size;
                o[0] = e[2]; o[1] = e[1]; o[2] = e[0];
            } else {
                o[0] = o[1] = o[2] = 0;
            }
        }
    }
}

static int bmp_decode_rle(const uint8_t *p, size_t n, const char *what, const bmp_info *b, cd_image *out) {
    uint8_t *idx = calloc((size_t)b->w, (size_t)b->h);
    if (!idx || cd_image_alloc(out, (int)b->w, (int)b->h)) {
        free(idx);
        return cd_err("%s: out of memory for a %lldx%lld BMP", what, (long long)b->w, (long long)b->h);
    }
    if (bmp_rle(p, n, what, b, idx)) {
        free(idx);
        cd_image_free(out);
        return -1;
    }
    bmp_rle_rgb(b, p + b->pal_off, idx, out);
    free(idx);
    return 0;
}

int cd_bmp_decode(const uint8_t *p, size_t n, const char *what, int64_t maxpx, cd_image *out) {
    bmp_info b;
    out->w = out->h = 0;
    out->rgb = NULL;
    CD_TRY(bmp_parse(p, n, what, &b));
    CD_TRY(cd_image_check_size(what, "BMP", b.w, b.h, maxpx));
    if (b.comp == BI_RLE8 || b.comp == BI_RLE4) return bmp_decode_rle(p, n, what, &b, out);
    // Every row must be there; the last one may lack its padding.
    size_t last = (size_t)((b.w * b.bpp + 7) / 8);
    if ((size_t)(n - b.data_off) < b.stride * (size_t)(b.h - 1) + last)
        return cd_err("%s: truncated BMP: %lldx%lld at %d bits needs %zu bytes of pixels, %zu present", what,
                      (long long)b.w, (long long)b.h, b.bpp, b.stride * (size_t)(b.h - 1) + last,
                      (size_t)(n - b.data_off));
    uint8_t *rgba = malloc((size_t)b.w * 4);
    if (!rgba || cd_image_alloc(out, (int)b.w, (int)b.h)) {
        free(rgba);
        return cd_err("%s: out of memory for a %lldx%lld BMP", what, (long long)b.w, (long long)b.h);
    }
    int alpha = b.mask[3] != 0, any_alpha = 0;
    uint8_t *amap = alpha ? malloc((size_t)b.w * b.h) : NULL;   // alpha plane, applied at the end
    if (alpha && !amap) { free(rgba); cd_image_free(out); return cd_err("%s: out of memory", what); }
    for (int64_t y = 0; y < b.h; y++) {
        int64_t sy = b.top_down ? y : b.h - 1 - y;
        bmp_row(&b, p + b.pal_off, p + b.data_off + (size_t)sy * b.stride, rgba);
        uint8_t *o = out->rgb + (size_t)y * b.w * 3;
        for (int64_t x = 0; x < b.w; x++) {
            memcpy(o + x * 3, rgba + x * 4, 3);
            if (alpha) { amap[(size_t)y * b.w + x] = rgba[x * 4 + 3]; any_alpha |= rgba[x * 4 + 3]; }
        }
    }
    if (alpha && any_alpha) {   // all-zero alpha: an unused channel, the image is opaque
        size_t np = (size_t)b.w * b.h;
        for (size_t i = 0; i < np; i++)
            for (int c = 0; c < 3; c++) out->rgb[i * 3 + c] = cd_over_white(out->rgb[i * 3 + c], amap[i]);
    }
    free(amap);
    free(rgba);
    return 0;
}
