// Image decoding: format sniffing, header probes (decompression-bomb check before any pixel
// is decoded), JPEG (TurboJPEG, DCT-domain scaling, EXIF orientation, gray/CMYK), PNG
// (libpng, every colour type and bit depth), WebP (libwebp). Output is always RGB8; alpha is
// composited over white as img2dataset does: out = c*a/255 + (255 - a), rounded.
#include "core/image.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/image_internal.h"
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <turbojpeg.h>
#include <webp/decode.h>
#include <webp/demux.h>

#define LOAD_MAX_BYTES ((size_t)256 << 20)

// ---------------------------------------------------------------- basics

int cd_image_alloc(cd_image *im, int w, int h) {
    im->w = im->h = 0;
    im->rgb = NULL;
    if (w <= 0 || h <= 0 || (int64_t)w * h > CD_IMAGE_HARD_MAX_PIXELS)
        return cd_err("image size %dx%d out of range", w, h);
    im->rgb = malloc((size_t)w * h * 3);
    if (!im->rgb) return cd_err("out of memory for a %dx%d image", w, h);
    im->w = w;
    im->h = h;
    return 0;
}

void cd_image_free(cd_image *im) {
    if (!im) return;
    free(im->rgb);
    im->rgb = NULL;
    im->w = im->h = 0;
}

cd_imgfmt cd_image_sniff(const void *buf, size_t len) {
    const uint8_t *p = buf;
    if (!p || len < 2) return CD_FMT_UNKNOWN;
    if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return CD_FMT_JPEG;
    if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return CD_FMT_PNG;
    if (len >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return CD_FMT_WEBP;
    if (len >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) return CD_FMT_GIF;
    if (len >= 14 && p[0] == 'B' && p[1] == 'M') return CD_FMT_BMP;
    // HTML (or any markup): optional UTF-8 BOM and whitespace, then '<'.
    size_t i = 0;
    if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) i = 3;
    while (i < len && i < 4096 && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
    if (i < len && p[i] == '<') return CD_FMT_HTML;
    return CD_FMT_UNKNOWN;
}

const char *cd_imgfmt_name(cd_imgfmt f) {
    switch (f) {
    case CD_FMT_JPEG: return "jpeg";
    case CD_FMT_PNG: return "png";
    case CD_FMT_WEBP: return "webp";
    case CD_FMT_GIF: return "gif";
    case CD_FMT_BMP: return "bmp";
    case CD_FMT_HTML: return "html";
    default: return "unknown";
    }
}

static int check_dims(const char *what, const char *fmt, int w, int h, int64_t max_pixels) {
    if (w <= 0 || h <= 0) return cd_err("%s: %s has zero or negative size %dx%d", what, fmt, w, h);
    int64_t px = (int64_t)w * h;
    if (max_pixels > 0 && px > max_pixels)
        return cd_err("%s: %s is %dx%d = %lld pixels, over the limit of %lld (refused before decoding)",
                      what, fmt, w, h, (long long)px, (long long)max_pixels);
    if (px > CD_IMAGE_HARD_MAX_PIXELS)
        return cd_err("%s: %s is %dx%d = %lld pixels, over the hard limit of %lld", what, fmt, w, h,
                      (long long)px, (long long)CD_IMAGE_HARD_MAX_PIXELS);
    return 0;
}

// Composite RGBA8 (n pixels) over white into RGB8; in and out may alias (out <= in).
static void rgba_over_white(const uint8_t *in, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned a = in[4 * i + 3], na = 255 - a;
        for (int c = 0; c < 3; c++) out[3 * i + c] = (uint8_t)((in[4 * i + c] * a + 255 * na + 127) / 255);
    }
}

// ---------------------------------------------------------------- EXIF orientation

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// Orientation tag 0x0112 in IFD0 of a TIFF block t[0..n). 1 when absent or malformed.
static int tiff_orientation(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n || n - ifd < 2) return 1;
    unsigned count = rd16(t + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (rd16(t + e, le) != 0x0112) continue;
        unsigned type = rd16(t + e + 2, le);
        unsigned v = type == 3 ? rd16(t + e + 8, le) : type == 4 ? rd32(t + e + 8, le) : 0;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

int cd_jpeg_exif_orientation(const void *buf, size_t len) {
    const uint8_t *p = buf;
    if (!p || len < 4 || p[0] != 0xFF || p[1] != 0xD8) return 1;
    size_t i = 2;
    while (i + 4 <= len) {
        if (p[i] != 0xFF) return 1;
        uint8_t m = p[i + 1];
        if (m == 0xFF) { i++; continue; }                       // fill byte
        if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) { i += 2; continue; }
        if (m == 0xDA || m == 0xD9) return 1;                    // start of scan / end
        size_t seg = rd16(p + i + 2, 0);
        if (seg < 2 || i + 2 + seg > len) return 1;
        const uint8_t *d = p + i + 4;
        size_t dn = seg - 2;
        if (m == 0xE1 && dn >= 6 && !memcmp(d, "Exif\0\0", 6)) return tiff_orientation(d + 6, dn - 6);
        i += 2 + seg;
    }
    return 1;
}

int cd_image_orient(cd_image *im, int o) {
    if (o <= 1 || o > 8) return 0;
    int w = im->w, h = im->h, ow = o >= 5 ? h : w, oh = o >= 5 ? w : h;
    cd_image out;
    if (cd_image_alloc(&out, ow, oh)) return -1;
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            int ix, iy;
            switch (o) {
            case 2: ix = w - 1 - ox; iy = oy; break;              // mirror horizontal
            case 3: ix = w - 1 - ox; iy = h - 1 - oy; break;      // rotate 180
            case 4: ix = ox; iy = h - 1 - oy; break;              // mirror vertical
            case 5: ix = oy; iy = ox; break;                      // transpose
            case 6: ix = oy; iy = h - 1 - ox; break;              // rotate 90 clockwise
            case 7: ix = w - 1 - oy; iy = h - 1 - ox; break;      // transverse
            default: ix = w - 1 - oy; iy = ox; break;             // 8: rotate 90 counter-clockwise
            }
            memcpy(out.rgb + ((size_t)oy * ow + ox) * 3, im->rgb + ((size_t)iy * w + ix) * 3, 3);
        }
    }
    cd_image_free(im);
    *im = out;
    return 0;
}

// ---------------------------------------------------------------- JPEG

// 1 when the JPEG has an Adobe APP14 marker (CMYK stored inverted, as Photoshop writes it).
static int jpeg_has_adobe(const uint8_t *p, size_t len) {
    size_t i = 2;
    while (i + 4 <= len) {
        if (p[i] != 0xFF) return 0;
        uint8_t m = p[i + 1];
        if (m == 0xFF) { i++; continue; }
        if (m == 0xDA || m == 0xD9) return 0;
        size_t seg = rd16(p + i + 2, 0);
        if (seg < 2 || i + 2 + seg > len) return 0;
        if (m == 0xEE && seg >= 7 && !memcmp(p + i + 4, "Adobe", 5)) return 1;
        i += 2 + seg;
    }
    return 0;
}

// The largest power-of-two reduction (1/2, 1/4, 1/8) keeping the shorter side >= min_side.
static void jpeg_pick_scale(int w, int h, int min_side, int *sw, int *sh) {
    *sw = w;
    *sh = h;
    if (min_side <= 0) return;
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    int best = 1;   // denominator
    for (int i = 0; sf && i < n; i++) {
        if (sf[i].num != 1 || (sf[i].denom != 2 && sf[i].denom != 4 && sf[i].denom != 8)) continue;
        int s = TJSCALED(w < h ? w : h, sf[i]);
        if (s >= min_side && sf[i].denom > best) {
            best = sf[i].denom;
            *sw = TJSCALED(w, sf[i]);
            *sh = TJSCALED(h, sf[i]);
        }
    }
}

static int jpeg_header(tjhandle tj, const uint8_t *p, size_t n, const char *what, int *w, int *h, int *cs) {
    int ss;
    if (n > 0xFFFFFFFFul) return cd_err("%s: JPEG over 4 GiB", what);
    if (tjDecompressHeader3(tj, p, (unsigned long)n, w, h, &ss, cs) != 0)
        return cd_err("%s: bad JPEG header: %s", what, tjGetErrorStr2(tj));
    return 0;
}

static int jpeg_decode(const uint8_t *p, size_t n, const char *what, int64_t maxpx, int min_side,
                       cd_image *out) {
    tjhandle tj = tjInitDecompress();
    if (!tj) return cd_err("%s: TurboJPEG init failed: %s", what, tjGetErrorStr2(NULL));
    int w, h, cs, sw, sh, rc = -1;
    uint8_t *buf = NULL;
    if (jpeg_header(tj, p, n, what, &w, &h, &cs) || check_dims(what, "JPEG", w, h, maxpx)) goto done;
    jpeg_pick_scale(w, h, min_side, &sw, &sh);
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    int pf = cmyk ? TJPF_CMYK : TJPF_RGB, ps = cmyk ? 4 : 3;
    buf = malloc((size_t)sw * sh * ps);
    if (!buf) { cd_err("%s: out of memory decoding a %dx%d JPEG", what, sw, sh); goto done; }
    if (tjDecompress2(tj, p, (unsigned long)n, buf, sw, 0, sh, pf, TJFLAG_LIMITSCANS) != 0) {
        // Warnings (corrupt or truncated data) are errors too, except stray bytes between
        // markers, which many cameras write; a missing end-of-image marker is truncation.
        const char *msg = tjGetErrorStr2(tj);
        int fatal = tjGetErrorCode(tj) == TJERR_FATAL;
        int benign = !fatal && strstr(msg, "extraneous bytes") && n >= 2 &&
                     memmem(p + n / 2, n - n / 2, "\xFF\xD9", 2);
        if (!benign) {
            cd_err("%s: %s JPEG: %s", what, fatal ? "corrupt" : "truncated or corrupt", msg);
            goto done;
        }
    }
    if (cmyk) {   // C M Y K -> RGB; Adobe files store inverted ink values
        int inv = jpeg_has_adobe(p, n);
        size_t np = (size_t)sw * sh;
        for (size_t i = 0; i < np; i++) {
            unsigned c = buf[4 * i], m = buf[4 * i + 1], y = buf[4 * i + 2], k = buf[4 * i + 3];
            if (!inv) { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k; }
            buf[3 * i] = (uint8_t)((c * k + 127) / 255);
            buf[3 * i + 1] = (uint8_t)((m * k + 127) / 255);
            buf[3 * i + 2] = (uint8_t)((y * k + 127) / 255);
        }
        uint8_t *shrunk = realloc(buf, np * 3);
        if (shrunk) buf = shrunk;
    }
    out->w = sw;
    out->h = sh;
    out->rgb = buf;
    buf = NULL;
    rc = cd_image_orient(out, cd_jpeg_exif_orientation(p, n));
    if (rc) { cd_errctx("%s", what); cd_image_free(out); }
done:
    free(buf);
    tjDestroy(tj);
    return rc;
}

// ---------------------------------------------------------------- PNG

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    char msg[200];
} png_src;

static void png_read_mem(png_structp png, png_bytep dst, png_size_t n) {
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos) png_error(png, "truncated PNG data");
    memcpy(dst, s->p + s->pos, n);
    s->pos += n;
}
static void png_on_error(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

// Reads the header; with `pixels` also decodes into out. 0 or -1 (error names `what`).
static int png_run(const uint8_t *p, size_t n, const char *what, int64_t maxpx, int pixels,
                   int *pw, int *ph, cd_image *out) {
    png_src src = {p, n, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return cd_err("%s: libpng init failed", what);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        free(buf);
        free(rows);
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        return cd_err("%s: bad PNG: %s", what, src.msg[0] ? src.msg : "libpng error");
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);   // we check the size ourselves
    // Metadata we never use is skipped unread (no allocation, no zlib bombs in zTXt/iCCP),
    // and any other chunk buffer is capped: a forged length cannot allocate gigabytes.
    static const png_byte skip[] = "tEXt\0zTXt\0iTXt\0iCCP\0eXIf\0sPLT\0";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, 6);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);   // unknown chunks too
    png_set_chunk_malloc_max(png, 8 << 20);
    png_set_chunk_cache_max(png, 1000);
    png_read_info(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    if (pw) *pw = w;
    if (ph) *ph = h;
    int bad = pixels ? check_dims(what, "PNG", w, h, maxpx) : (w <= 0 || h <= 0);
    if (bad || !pixels) {   // a probe stops after the header
        png_destroy_read_struct(&png, &info, NULL);
        if (bad && !pixels) cd_err("%s: PNG has bad size %dx%d", what, w, h);
        return bad ? -1 : 0;
    }
    int ct = png_get_color_type(png, info);
    png_set_expand(png);                       // palette -> RGB, gray < 8 bit -> 8, tRNS -> alpha
    png_set_scale_16(png);                     // 16 bit -> 8 bit (rounded)
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    if (ch != 3 && ch != 4) png_error(png, "unexpected channel count after expansion");
    size_t stride = (size_t)w * ch;
    if (png_get_rowbytes(png, info) != stride) png_error(png, "unexpected row size");
    buf = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!buf || !rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = buf + stride * y;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    uint8_t *rgb = buf;
    if (ch == 4) {
        rgba_over_white(rgb, rgb, (size_t)w * h);
        uint8_t *s = realloc(rgb, (size_t)w * h * 3);
        if (s) rgb = s;
    }
    out->w = w;
    out->h = h;
    out->rgb = rgb;
    return 0;
}

// ---------------------------------------------------------------- WebP

static int webp_decode(const uint8_t *p, size_t n, const char *what, int64_t maxpx, cd_image *out) {
    WebPBitstreamFeatures f;
    if (WebPGetFeatures(p, n, &f) != VP8_STATUS_OK) return cd_err("%s: bad WebP header", what);
    CD_TRY(check_dims(what, "WebP", f.width, f.height, maxpx));
    const uint8_t *fp = p;
    size_t fn = n;
    WebPDemuxer *dmx = NULL;
    WebPIterator it;
    if (f.has_animation) {   // decode the first frame
        WebPData data = {p, n};
        dmx = WebPDemux(&data);
        if (!dmx || !WebPDemuxGetFrame(dmx, 1, &it)) {
            WebPDemuxDelete(dmx);
            return cd_err("%s: bad animated WebP", what);
        }
        fp = it.fragment.bytes;
        fn = it.fragment.size;
        if (WebPGetFeatures(fp, fn, &f) != VP8_STATUS_OK ||
            check_dims(what, "WebP frame", f.width, f.height, maxpx)) {
            WebPDemuxReleaseIterator(&it);
            WebPDemuxDelete(dmx);
            return cd_err("%s: bad WebP frame", what);
        }
    }
    int w = f.width, h = f.height, rc = 0;
    size_t sz = (size_t)w * h * (f.has_alpha ? 4 : 3);
    uint8_t *buf = malloc(sz);
    if (!buf) rc = cd_err("%s: out of memory for a %dx%d WebP", what, w, h);
    else if (f.has_alpha ? !WebPDecodeRGBAInto(fp, fn, buf, sz, w * 4) : !WebPDecodeRGBInto(fp, fn, buf, sz, w * 3))
        rc = cd_err("%s: truncated or corrupt WebP", what);
    if (dmx) { WebPDemuxReleaseIterator(&it); WebPDemuxDelete(dmx); }
    if (rc) { free(buf); return -1; }
    if (f.has_alpha) {
        rgba_over_white(buf, buf, (size_t)w * h);
        uint8_t *s = realloc(buf, (size_t)w * h * 3);
        if (s) buf = s;
    }
    out->w = w;
    out->h = h;
    out->rgb = buf;
    return 0;
}

// ---------------------------------------------------------------- public entry points

static int unsupported(const char *what, cd_imgfmt f, size_t len) {
    if (len == 0) return cd_err("%s: empty file (0 bytes)", what);
    if (f == CD_FMT_HTML) return cd_err("%s: html page, not an image", what);
    return cd_err("%s: not an image (unknown format, %zu bytes)", what, len);
}

int cd_image_probe(const void *buf, size_t len, const char *what, cd_imgfmt *fmt, int *w, int *h) {
    if (!what) what = "image";
    cd_imgfmt f = cd_image_sniff(buf, len);
    if (fmt) *fmt = f;
    int iw = 0, ih = 0;
    if (f == CD_FMT_JPEG) {
        tjhandle tj = tjInitDecompress();
        if (!tj) return cd_err("%s: TurboJPEG init failed", what);
        int cs, rc = jpeg_header(tj, buf, len, what, &iw, &ih, &cs);
        tjDestroy(tj);
        CD_TRY(rc);
        if (cd_jpeg_exif_orientation(buf, len) >= 5) { int t = iw; iw = ih; ih = t; }
    } else if (f == CD_FMT_PNG) {
        CD_TRY(png_run(buf, len, what, 0, 0, &iw, &ih, NULL));
    } else if (f == CD_FMT_WEBP) {
        if (!WebPGetInfo(buf, len, &iw, &ih)) return cd_err("%s: bad WebP header", what);
    } else if (f == CD_FMT_GIF) {
        CD_TRY(cd_gif_probe(buf, len, what, &iw, &ih));
    } else if (f == CD_FMT_BMP) {
        CD_TRY(cd_bmp_probe(buf, len, what, &iw, &ih));
    } else {
        return unsupported(what, f, len);
    }
    if (iw <= 0 || ih <= 0) return cd_err("%s: %s has zero size %dx%d", what, cd_imgfmt_name(f), iw, ih);
    if (w) *w = iw;
    if (h) *h = ih;
    return 0;
}

int cd_image_decode(const void *buf, size_t len, const char *what, int64_t max_pixels, int min_side,
                    cd_image *out) {
    if (!what) what = "image";
    out->w = out->h = 0;
    out->rgb = NULL;
    cd_imgfmt f = cd_image_sniff(buf, len);
    switch (f) {
    case CD_FMT_JPEG: return jpeg_decode(buf, len, what, max_pixels, min_side, out);
    case CD_FMT_PNG: return png_run(buf, len, what, max_pixels, 1, NULL, NULL, out);
    case CD_FMT_WEBP: return webp_decode(buf, len, what, max_pixels, out);
    case CD_FMT_GIF: return cd_gif_decode(buf, len, what, max_pixels, out);
    case CD_FMT_BMP: return cd_bmp_decode(buf, len, what, max_pixels, out);
    default: return unsupported(what, f, len);
    }
}

int cd_image_load(const char *path, int64_t max_pixels, cd_image *out) {
    char *data;
    size_t len;
    out->w = out->h = 0;
    out->rgb = NULL;
    CD_TRY(cd_read_file(path, &data, &len, LOAD_MAX_BYTES));
    int rc = cd_image_decode(data, len, path, max_pixels, 0, out);
    free(data);
    return rc;
}

int cd_image_name_supported(const char *name) {
    static const char *exts[] = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"};
    const char *d = strrchr(name, '.');
    if (!d) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
        if (!strcasecmp(d, exts[i])) return 1;
    return 0;
}
