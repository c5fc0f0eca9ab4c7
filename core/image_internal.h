// Private to core/image*.c: the GIF and BMP decoders (core/image_gif.c, core/image_bmp.c)
// that core/image_decode.c dispatches to, and the helpers they share. Not a public API.
#ifndef CD_IMAGE_INTERNAL_H
#define CD_IMAGE_INTERNAL_H
#include "core/err.h"
#include "core/image.h"
#include <stddef.h>
#include <stdint.h>

// Header only: the size the decoder would produce (GIF: the logical screen grown to hold
// the first frame; BMP: width x |height|). 0, or -1 with an error naming `what`.
int cd_gif_probe(const uint8_t *p, size_t n, const char *what, int *w, int *h);
int cd_bmp_probe(const uint8_t *p, size_t n, const char *what, int *w, int *h);
// Full decode to RGB8 (alpha/transparency over white); max_pixels as cd_image_decode.
int cd_gif_decode(const uint8_t *p, size_t n, const char *what, int64_t max_pixels, cd_image *out);
int cd_bmp_decode(const uint8_t *p, size_t n, const char *what, int64_t max_pixels, cd_image *out);

// The size policy of every decoder: positive sides, <= max_pixels (0 = no cap) and the hard cap.
static inline int cd_image_check_size(const char *what, const char *fmt, int64_t w, int64_t h,
                                      int64_t max_pixels) {
    if (w <= 0 || h <= 0)
        return cd_err("%s: %s has zero or negative size %lldx%lld", what, fmt, (long long)w, (long long)h);
    int64_t px = w * h;
    if (max_pixels > 0 && px > max_pixels)
        return cd_err("%s: %s is %lldx%lld = %lld pixels, over the limit of %lld (refused before decoding)",
                      what, fmt, (long long)w, (long long)h, (long long)px, (long long)max_pixels);
    if (px > CD_IMAGE_HARD_MAX_PIXELS)
        return cd_err("%s: %s is %lldx%lld = %lld pixels, over the hard limit of %lld", what, fmt,
                      (long long)w, (long long)h, (long long)px, (long long)CD_IMAGE_HARD_MAX_PIXELS);
    return 0;
}

// One colour c (0..255) with alpha a (0..255) over white, rounded: c*a/255 + (255 - a).
static inline uint8_t cd_over_white(unsigned c, unsigned a) {
    return (uint8_t)((c * a + 255 * (255 - a) + 127) / 255);
}
#endif
