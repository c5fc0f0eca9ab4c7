// libFuzzer target: the image decode wrapper (sniff, header probe, full decode with a
// pixel cap, then a resize of whatever decoded). Any input must return 0 or -1, never crash,
// leak or read out of bounds.
#include "core/err.h"
#include "core/image.h"
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cd_imgfmt fmt;
    int w = 0, h = 0;
    (void)cd_image_sniff(data, size);
    (void)cd_image_probe(data, size, "fuzz", &fmt, &w, &h);
    cd_image im;
    int min_side = size > 0 ? (data[size - 1] & 1) * 16 : 0;   // exercise DCT scaling too
    if (cd_image_decode(data, size, "fuzz", (int64_t)1 << 24, min_side, &im) == 0) {
        cd_image out;
        if (im.w * (int64_t)im.h <= (1 << 20) && cd_image_resize(&im, 32, CD_RESIZE_CENTER_CROP, &out) == 0)
            cd_image_free(&out);
        cd_image_free(&im);
    }
    cd_errclear();
    return 0;
}
