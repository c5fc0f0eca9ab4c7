// Resampling compatible with Pillow's Image.resize (libImaging/Resample.c): separable
// convolution, horizontal pass first into a uint8 intermediate, then vertical; the filter
// support is widened by the downscale factor (antialiasing); coefficients are normalised
// to sum 1 and quantised to fixed point with 22 fractional bits; each pass rounds (adds
// half) and clamps to uint8. Matches PIL bit for bit up to libm rounding of sin().
// Also img2dataset's resize modes, crops and contact-sheet grids.
#include "core/image.h"
#include "core/err.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE4_1__
#include <smmintrin.h>
#endif

#define PREC_BITS (32 - 8 - 2)   // Pillow's PRECISION_BITS

typedef struct {
    double (*f)(double);
    double support;
} filt;

static double box_f(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }
static double bilinear_f(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}
static double bicubic_f(double x) {   // Keys cubic, a = -0.5
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}
static double sinc_f(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}
static double lanczos_f(double x) { return -3.0 <= x && x < 3.0 ? sinc_f(x) * sinc_f(x / 3) : 0.0; }

static const filt FILTERS[] = {
    [CD_FILTER_BILINEAR] = {bilinear_f, 1.0},
    [CD_FILTER_BICUBIC] = {bicubic_f, 2.0},
    [CD_FILTER_LANCZOS] = {lanczos_f, 3.0},
    [CD_FILTER_BOX] = {box_f, 0.5},
};

int cd_filter_parse(const char *s, cd_filter *out) {
    static const char *names[] = {"bilinear", "bicubic", "lanczos", "box"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) { *out = (cd_filter)i; return 0; }
    return cd_err("unknown resampling filter '%s' (bilinear, bicubic, lanczos, box)", s);
}
const char *cd_filter_name(cd_filter f) {
    static const char *names[] = {"bilinear", "bicubic", "lanczos", "box"};
    return (unsigned)f < 4 ? names[f] : "unknown";
}

// Per output index: the first input index bounds[2i], tap count bounds[2i+1], and ksize
// fixed-point weights kk[i*ksize ..]. Returns ksize.
static int coeffs(int in_size, int out_size, const filt *fl, int **boundsp, int32_t **kkp) {
    double scale = (double)in_size / out_size, fscale = scale < 1.0 ? 1.0 : scale;
    double support = fl->support * fscale, ss = 1.0 / fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = cd_malloc(sizeof(int) * 2 * out_size);
    int32_t *kk = cd_calloc((size_t)out_size * ksize, sizeof(int32_t));
    double *w = cd_malloc(sizeof(double) * ksize);
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize;   // cannot happen; keeps the buffer safe
        for (int x = 0; x < xmax; x++) {
            w[x] = fl->f((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < xmax; x++) {
            double k = ww != 0.0 ? w[x] / ww : w[x];
            kk[(size_t)xx * ksize + x] = (int32_t)(k < 0 ? -0.5 + k * (1 << PREC_BITS) : 0.5 + k * (1 << PREC_BITS));
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(w);
    *boundsp = bounds;
    *kkp = kk;
    return ksize;
}

static inline uint8_t clip8(int32_t v) {
    v >>= PREC_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

// One output pixel of the horizontal pass, scalar.
static inline void tap_h(const uint8_t *p, const int32_t *k, int n, uint8_t *o) {
    int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
    for (int x = 0; x < n; x++) {
        s0 += p[3 * x] * k[x];
        s1 += p[3 * x + 1] * k[x];
        s2 += p[3 * x + 2] * k[x];
    }
    o[0] = clip8(s0);
    o[1] = clip8(s1);
    o[2] = clip8(s2);
}

#ifdef __SSE4_1__
// Same arithmetic on 4 int32 lanes (R, G, B, and a 4th byte that is ignored). Reads one
// byte past the pixel, so never used on the image's last row. packs/packus clamp exactly
// as clip8 does (the shifted sums lie well inside int16).
static inline void tap_h_sse(const uint8_t *p, const int32_t *k, int n, uint8_t *o) {
    __m128i acc = _mm_set1_epi32(1 << (PREC_BITS - 1));
    for (int x = 0; x < n; x++) {
        int32_t v;
        memcpy(&v, p + 3 * x, 4);
        __m128i px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(v));
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(k[x])));
    }
    acc = _mm_srai_epi32(acc, PREC_BITS);
    acc = _mm_packus_epi16(_mm_packs_epi32(acc, acc), acc);
    int32_t r = _mm_cvtsi128_si32(acc);
    memcpy(o, &r, 3);
}
#endif

// Rows [y0, y0+nrows) of in (w x h) -> out (ow x nrows).
static void pass_h(const uint8_t *in, int w, int h, int y0, int nrows, uint8_t *out, int ow, int ks,
                   const int *bounds, const int32_t *kk) {
    for (int y = 0; y < nrows; y++) {
        const uint8_t *row = in + (size_t)(y0 + y) * w * 3;
        uint8_t *o = out + (size_t)y * ow * 3;
#ifdef __SSE4_1__
        if (y0 + y < h - 1) {
            for (int xx = 0; xx < ow; xx++)
                tap_h_sse(row + (size_t)bounds[2 * xx] * 3, kk + (size_t)xx * ks, bounds[2 * xx + 1], o + 3 * xx);
            continue;
        }
#endif
        for (int xx = 0; xx < ow; xx++)
            tap_h(row + (size_t)bounds[2 * xx] * 3, kk + (size_t)xx * ks, bounds[2 * xx + 1], o + 3 * xx);
    }
}

// in (w x ?) rows -> out (w x oh); bounds are relative to in's first row.
static void pass_v(const uint8_t *in, int w, uint8_t *out, int oh, int ks, const int *bounds,
                   const int32_t *kk) {
    size_t n = (size_t)w * 3;
    for (int yy = 0; yy < oh; yy++) {
        const int32_t *k = kk + (size_t)yy * ks;
        const uint8_t *base = in + (size_t)bounds[2 * yy] * n;
        int taps = bounds[2 * yy + 1];
        uint8_t *o = out + (size_t)yy * n;
        size_t i = 0;
#ifdef __SSE4_1__
        for (; i + 16 <= n; i += 16) {   // 16 samples at a time, all taps in registers
            __m128i a0 = _mm_set1_epi32(1 << (PREC_BITS - 1)), a1 = a0, a2 = a0, a3 = a0;
            for (int y = 0; y < taps; y++) {
                __m128i v = _mm_loadu_si128((const __m128i *)(base + (size_t)y * n + i));
                __m128i ky = _mm_set1_epi32(k[y]);
                a0 = _mm_add_epi32(a0, _mm_mullo_epi32(_mm_cvtepu8_epi32(v), ky));
                a1 = _mm_add_epi32(a1, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(v, 4)), ky));
                a2 = _mm_add_epi32(a2, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(v, 8)), ky));
                a3 = _mm_add_epi32(a3, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(v, 12)), ky));
            }
            __m128i lo = _mm_packs_epi32(_mm_srai_epi32(a0, PREC_BITS), _mm_srai_epi32(a1, PREC_BITS));
            __m128i hi = _mm_packs_epi32(_mm_srai_epi32(a2, PREC_BITS), _mm_srai_epi32(a3, PREC_BITS));
            _mm_storeu_si128((__m128i *)(o + i), _mm_packus_epi16(lo, hi));
        }
#endif
        for (; i < n; i++) {
            int32_t acc = 1 << (PREC_BITS - 1);
            for (int y = 0; y < taps; y++) acc += base[(size_t)y * n + i] * k[y];
            o[i] = clip8(acc);
        }
    }
}

static int copy_image(const cd_image *in, cd_image *out) {
    CD_TRY(cd_image_alloc(out, in->w, in->h));
    memcpy(out->rgb, in->rgb, (size_t)in->w * in->h * 3);
    return 0;
}

int cd_image_resize_to(const cd_image *in, int w, int h, cd_filter filter, cd_image *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!in || !in->rgb || in->w <= 0 || in->h <= 0) return cd_err("resize: empty input image");
    if ((unsigned)filter > CD_FILTER_BOX) return cd_err("resize: bad filter %d", (int)filter);
    if (w <= 0 || h <= 0) return cd_err("resize: bad target size %dx%d", w, h);
    if (w == in->w && h == in->h) return copy_image(in, out);
    const filt *fl = &FILTERS[filter];
    int *bh = NULL, *bv;
    int32_t *kh = NULL, *kv;
    int ksv = coeffs(in->h, h, fl, &bv, &kv);
    int y0 = bv[0], y1 = bv[2 * (h - 1)] + bv[2 * (h - 1) + 1];   // input rows the output needs
    const uint8_t *src = in->rgb;
    uint8_t *tmp = NULL;
    int rc = cd_image_alloc(out, w, h);
    if (rc == 0 && w != in->w) {
        int ksh = coeffs(in->w, w, fl, &bh, &kh);
        if (h == in->h) {   // horizontal only
            pass_h(in->rgb, in->w, in->h, 0, h, out->rgb, w, ksh, bh, kh);
            goto done;
        }
        tmp = cd_malloc((size_t)w * (y1 - y0) * 3);
        pass_h(in->rgb, in->w, in->h, y0, y1 - y0, tmp, w, ksh, bh, kh);
        for (int i = 0; i < h; i++) bv[2 * i] -= y0;
        src = tmp;
    }
    if (rc == 0) pass_v(src, w, out->rgb, h, ksv, bv, kv);
done:
    free(tmp);
    free(bh);
    free(kh);
    free(bv);
    free(kv);
    return rc;
}

// ---------------------------------------------------------------- crops, modes, grid

int cd_image_crop(const cd_image *in, int x, int y, int w, int h, cd_image *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!in || !in->rgb || x < 0 || y < 0 || w <= 0 || h <= 0 || x > in->w - w || y > in->h - h)
        return cd_err("crop %dx%d at (%d,%d) is outside the %dx%d image", w, h, x, y, in ? in->w : 0, in ? in->h : 0);
    CD_TRY(cd_image_alloc(out, w, h));
    for (int r = 0; r < h; r++)
        memcpy(out->rgb + (size_t)r * w * 3, in->rgb + ((size_t)(y + r) * in->w + x) * 3, (size_t)w * 3);
    return 0;
}

int cd_resize_mode_parse(const char *s, cd_resize_mode *out) {
    static const char *names[] = {"no", "keep_ratio", "center_crop", "border"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) { *out = (cd_resize_mode)i; return 0; }
    return cd_err("unknown resize mode '%s' (no, keep_ratio, center_crop, border)", s);
}
const char *cd_resize_mode_name(cd_resize_mode m) {
    static const char *names[] = {"no", "keep_ratio", "center_crop", "border"};
    return (unsigned)m < 4 ? names[m] : "unknown";
}

// albumentations' smallest/longest_max_size: both sides py3round(dim * size / side).
static int scale_to(const cd_image *in, int size, int side, cd_filter down, cd_filter up, cd_image *out) {
    double scale = (double)size / (double)side;
    if (scale == 1.0) return copy_image(in, out);
    int w = (int)nearbyint(in->w * scale), h = (int)nearbyint(in->h * scale);   // half to even
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    return cd_image_resize_to(in, w, h, side > size ? down : up, out);
}

int cd_image_resize_filters(const cd_image *in, int size, cd_resize_mode mode, cd_filter down,
                            cd_filter up, cd_image *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!in || !in->rgb || in->w <= 0 || in->h <= 0) return cd_err("resize: empty input image");
    if (mode == CD_RESIZE_NO) return copy_image(in, out);
    if (size <= 0) return cd_err("resize: bad target size %d", size);
    int mn = in->w < in->h ? in->w : in->h, mx = in->w < in->h ? in->h : in->w;
    cd_image t;
    if (mode == CD_RESIZE_KEEP_RATIO) return scale_to(in, size, mn, down, up, out);
    if (mode == CD_RESIZE_CENTER_CROP) {
        CD_TRY(scale_to(in, size, mn, down, up, &t));
        int cw = t.w < size ? t.w : size, ch = t.h < size ? t.h : size;
        int rc = cd_image_crop(&t, (t.w - cw) / 2, (t.h - ch) / 2, cw, ch, out);
        cd_image_free(&t);
        return rc;
    }
    if (mode != CD_RESIZE_BORDER) return cd_err("resize: bad mode %d", (int)mode);
    CD_TRY(scale_to(in, size, mx, down, up, &t));
    int W = t.w > size ? t.w : size, H = t.h > size ? t.h : size;
    if (cd_image_alloc(out, W, H)) { cd_image_free(&t); return -1; }
    memset(out->rgb, 255, (size_t)W * H * 3);   // img2dataset pads with white
    int top = (H - t.h) / 2, left = (W - t.w) / 2;
    for (int r = 0; r < t.h; r++)
        memcpy(out->rgb + ((size_t)(top + r) * W + left) * 3, t.rgb + (size_t)r * t.w * 3, (size_t)t.w * 3);
    cd_image_free(&t);
    return 0;
}

int cd_image_resize(const cd_image *in, int size, cd_resize_mode mode, cd_image *out) {
    return cd_image_resize_filters(in, size, mode, CD_FILTER_BOX, CD_FILTER_LANCZOS, out);
}

#define GRID_GAP 4
#define GRID_BG 24   // dark grey background

int cd_image_grid(const cd_image *ims, int n, int cols, int thumb, cd_image *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (n <= 0 || cols <= 0 || thumb <= 0) return cd_err("grid: bad layout n=%d cols=%d thumb=%d", n, cols, thumb);
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    int64_t W = (int64_t)cols * (thumb + GRID_GAP) + GRID_GAP, H = (int64_t)rows * (thumb + GRID_GAP) + GRID_GAP;
    if (W > 65535 || H > 65535) return cd_err("grid: %lldx%lld is too large", (long long)W, (long long)H);
    CD_TRY(cd_image_alloc(out, (int)W, (int)H));
    memset(out->rgb, GRID_BG, (size_t)W * H * 3);
    for (int i = 0; i < n; i++) {
        const cd_image *im = &ims[i];
        if (!im->rgb || im->w <= 0 || im->h <= 0) continue;   // an empty cell
        int mx = im->w > im->h ? im->w : im->h;
        double s = (double)thumb / mx;
        int tw = (int)nearbyint(im->w * s), th = (int)nearbyint(im->h * s);
        tw = tw < 1 ? 1 : tw > thumb ? thumb : tw;
        th = th < 1 ? 1 : th > thumb ? thumb : th;
        cd_image t;
        if (cd_image_resize_to(im, tw, th, CD_FILTER_BICUBIC, &t)) { cd_image_free(out); return -1; }
        int x0 = GRID_GAP + (i % cols) * (thumb + GRID_GAP) + (thumb - tw) / 2;
        int y0 = GRID_GAP + (i / cols) * (thumb + GRID_GAP) + (thumb - th) / 2;
        for (int r = 0; r < th; r++)
            memcpy(out->rgb + ((size_t)(y0 + r) * W + x0) * 3, t.rgb + (size_t)r * tw * 3, (size_t)tw * 3);
        cd_image_free(&t);
    }
    return 0;
}
