// 2-D convolution on the CPU: im2col + cd_gemm (BLAS), tiled over output pixels so the
// column buffer stays small (<= ~16 MB); 1x1 stride-1 convolutions skip im2col.
// Shapes: x [n,cin,h,w], W [cout,cin,k,k], b [cout], y [n,cout,ho,wo].
#include <stdlib.h>
#include <string.h>
#include "kernels/kernels.h"
#include "core/err.h"

#define COL_BUDGET (8 << 20)   // floats in the column buffer (32 MB)

// col[(ci*k+ki)*k+kj, j] for output pixels p0..p0+np-1 (row-major over ho x wo).
static void im2col(float *col, const float *x, int cin, int h, int w, int k, int s, int p,
                   int wo, int p0, int np) {
#pragma omp parallel for schedule(static) if ((int64_t)cin * k * k * np > 65536)
    for (int ci = 0; ci < cin; ci++) {
        const float *xc = x + (int64_t)ci * h * w;
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *dst = col + ((int64_t)(ci * k + ki) * k + kj) * np;
                int oy = p0 / wo, ox = p0 % wo;
                for (int j = 0; j < np; j++) {
                    int iy = oy * s - p + ki, ix = ox * s - p + kj;
                    dst[j] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? xc[iy * w + ix] : 0.f;
                    if (++ox == wo) { ox = 0; oy++; }
                }
            }
    }
}

// dx += col2im(dcol): the adjoint of im2col.
static void col2im(float *dx, const float *col, int cin, int h, int w, int k, int s, int p,
                   int wo, int p0, int np) {
#pragma omp parallel for schedule(static) if ((int64_t)cin * k * k * np > 65536)
    for (int ci = 0; ci < cin; ci++) {
        float *xc = dx + (int64_t)ci * h * w;
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *src = col + ((int64_t)(ci * k + ki) * k + kj) * np;
                int oy = p0 / wo, ox = p0 % wo;
                for (int j = 0; j < np; j++) {
                    int iy = oy * s - p + ki, ix = ox * s - p + kj;
                    if (iy >= 0 && iy < h && ix >= 0 && ix < w) xc[iy * w + ix] += src[j];
                    if (++ox == wo) { ox = 0; oy++; }
                }
            }
    }
}

static int chunk_pixels(int K, int P) {
    int64_t c = COL_BUDGET / (K > 0 ? K : 1);
    if (c < 64) c = 64;
    return c >= P ? P : (int)c;
}

void cd_conv2d_fwd(float *y, const float *x, const float *W, const float *b,
                   int n, int cin, int h, int w, int cout, int k, int s, int p) {
    int ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1, P = ho * wo;
    int K = cin * k * k;
    int direct = (k == 1 && s == 1 && p == 0);
    int cp = chunk_pixels(K, P);
    float *col = direct ? NULL : cd_malloc((size_t)K * cp * sizeof(float));
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * cin * h * w;
        float *yi = y + (int64_t)i * cout * P;
        if (b) {
#pragma omp parallel for schedule(static) if ((int64_t)cout * P > 65536)
            for (int co = 0; co < cout; co++)
                for (int j = 0; j < P; j++) yi[(int64_t)co * P + j] = b[co];
        }
        if (direct) {
            cd_gemm(0, 0, cout, P, K, 1.f, W, K, xi, P, b ? 1.f : 0.f, yi, P);
            continue;
        }
        for (int p0 = 0; p0 < P; p0 += cp) {
            int np = P - p0 < cp ? P - p0 : cp;
            im2col(col, xi, cin, h, w, k, s, p, wo, p0, np);
            cd_gemm(0, 0, cout, np, K, 1.f, W, K, col, np, b ? 1.f : 0.f, yi + p0, P);
        }
    }
    free(col);
}

void cd_conv2d_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                   const float *W, int n, int cin, int h, int w, int cout, int k, int s, int p) {
    int ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1, P = ho * wo;
    int K = cin * k * k;
    int direct = (k == 1 && s == 1 && p == 0);
    int cp = chunk_pixels(K, P);
    float *col = direct ? NULL : cd_malloc((size_t)K * cp * sizeof(float));
    for (int i = 0; i < n; i++) {
        const float *xi = x ? x + (int64_t)i * cin * h * w : NULL;
        const float *dyi = dy + (int64_t)i * cout * P;
        float *dxi = dx ? dx + (int64_t)i * cin * h * w : NULL;
        if (db) {
            for (int co = 0; co < cout; co++) {
                double acc = 0;
                for (int j = 0; j < P; j++) acc += dyi[(int64_t)co * P + j];
                db[co] += (float)acc;
            }
        }
        if (direct) {
            if (dxi) cd_gemm(1, 0, K, P, cout, 1.f, W, K, dyi, P, 0.f, dxi, P);
            if (dW) cd_gemm(0, 1, cout, K, P, 1.f, dyi, P, xi, P, 1.f, dW, K);
            continue;
        }
        if (dxi) memset(dxi, 0, (size_t)cin * h * w * sizeof(float));
        for (int p0 = 0; p0 < P; p0 += cp) {
            int np = P - p0 < cp ? P - p0 : cp;
            if (dW) {
                im2col(col, xi, cin, h, w, k, s, p, wo, p0, np);
                // dW[cout,K] += dy[:, p0:p0+np] @ col^T
                cd_gemm(0, 1, cout, K, np, 1.f, dyi + p0, P, col, np, 1.f, dW, K);
            }
            if (dxi) {
                // dcol[K,np] = W^T @ dy[:, chunk]
                cd_gemm(1, 0, K, np, cout, 1.f, W, K, dyi + p0, P, 0.f, col, np);
                col2im(dxi, col, cin, h, w, k, s, p, wo, p0, np);
            }
        }
    }
    free(col);
}
