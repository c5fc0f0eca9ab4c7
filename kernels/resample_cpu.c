// Nearest 2x upsampling, NCHW <-> NHWC transposes and channel concat/split.
#include <string.h>
#include "kernels/kernels.h"

void cd_upsample2x_fwd(float *y, const float *x, int n, int c, int h, int w) {
    int W2 = 2 * w;
#pragma omp parallel for schedule(static) if ((int64_t)n * c * h * w > 65536)
    for (int64_t pc = 0; pc < (int64_t)n * c; pc++) {
        const float *xs = x + pc * h * w;
        float *ys = y + pc * 4 * h * w;
        for (int i = 0; i < h; i++) {
            float *r0 = ys + (int64_t)(2 * i) * W2;
            for (int j = 0; j < w; j++) r0[2 * j] = r0[2 * j + 1] = xs[i * w + j];
            memcpy(r0 + W2, r0, W2 * sizeof(float));
        }
    }
}

void cd_upsample2x_bwd(float *dx, const float *dy, int n, int c, int h, int w) {
    int W2 = 2 * w;
#pragma omp parallel for schedule(static) if ((int64_t)n * c * h * w > 65536)
    for (int64_t pc = 0; pc < (int64_t)n * c; pc++) {
        const float *ys = dy + pc * 4 * h * w;
        float *xs = dx + pc * h * w;
        for (int i = 0; i < h; i++) {
            const float *r0 = ys + (int64_t)(2 * i) * W2, *r1 = r0 + W2;
            for (int j = 0; j < w; j++)
                xs[i * w + j] = r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1];
        }
    }
}

#define TB 32
// y[n,hw,c] = x[n,c,hw], blocked for cache.
static void transpose(float *y, const float *x, int rows, int cols) {
#pragma omp parallel for schedule(static) collapse(2) if ((int64_t)rows * cols > 65536)
    for (int i0 = 0; i0 < rows; i0 += TB)
        for (int j0 = 0; j0 < cols; j0 += TB)
            for (int i = i0; i < i0 + TB && i < rows; i++)
                for (int j = j0; j < j0 + TB && j < cols; j++)
                    y[(int64_t)j * rows + i] = x[(int64_t)i * cols + j];
}

void cd_nchw_to_nhwc(float *y, const float *x, int n, int c, int hw) {
    for (int i = 0; i < n; i++) transpose(y + (int64_t)i * c * hw, x + (int64_t)i * c * hw, c, hw);
}

void cd_nhwc_to_nchw(float *y, const float *x, int n, int c, int hw) {
    for (int i = 0; i < n; i++) transpose(y + (int64_t)i * c * hw, x + (int64_t)i * c * hw, hw, c);
}

void cd_concat_c(float *y, const float *a, const float *b, int n, int ca, int cb, int hw) {
    for (int i = 0; i < n; i++) {
        float *yi = y + (int64_t)i * (ca + cb) * hw;
        memcpy(yi, a + (int64_t)i * ca * hw, (size_t)ca * hw * sizeof(float));
        memcpy(yi + (int64_t)ca * hw, b + (int64_t)i * cb * hw, (size_t)cb * hw * sizeof(float));
    }
}

void cd_split_c(float *da, float *db, const float *dy, int n, int ca, int cb, int hw) {
    for (int i = 0; i < n; i++) {
        const float *yi = dy + (int64_t)i * (ca + cb) * hw;
        if (da) memcpy(da + (int64_t)i * ca * hw, yi, (size_t)ca * hw * sizeof(float));
        if (db) memcpy(db + (int64_t)i * cb * hw, yi + (int64_t)ca * hw, (size_t)cb * hw * sizeof(float));
    }
}
