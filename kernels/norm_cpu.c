// LayerNorm over the last dimension (PyTorch semantics: biased variance, eps inside sqrt).
// Row statistics in double. See kernels.h.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/kernels.h"

void cd_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                      const float *b, int n, int c, float eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * c;
        float *yi = y + (int64_t)i * c;
        double s = 0, ss = 0;
        for (int j = 0; j < c; j++) s += xi[j];
        double mu = s / c;
        for (int j = 0; j < c; j++) { double d = xi[j] - mu; ss += d * d; }
        double rs = 1.0 / sqrt(ss / c + eps);
        float fm = (float)mu, fr = (float)rs;
        for (int j = 0; j < c; j++) {
            float v = (xi[j] - fm) * fr;
            yi[j] = v * (g ? g[j] : 1.f) + (b ? b[j] : 0.f);
        }
        if (mean) mean[i] = fm;
        if (rstd) rstd[i] = fr;
    }
}

// Rows are split into fixed chunks of ROWS; dg/db partial sums per chunk are added in chunk
// order, so results do not depend on the thread count.
#define LN_ROWS 64
void cd_layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                      const float *mean, const float *rstd, const float *g, int n, int c) {
    int nchunk = (n + LN_ROWS - 1) / LN_ROWS;
    double *part = (dg || db) ? calloc((size_t)nchunk * 2 * c, sizeof(double)) : NULL;
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < nchunk; ch++) {
        double *pg = part ? part + (size_t)ch * 2 * c : NULL, *pb = pg ? pg + c : NULL;
        for (int i = ch * LN_ROWS; i < n && i < (ch + 1) * LN_ROWS; i++) {
            const float *xi = x + (int64_t)i * c, *dyi = dy + (int64_t)i * c;
            float mu = mean[i], rs = rstd[i];
            double s1 = 0, s2 = 0;   // mean(dy*g), mean(dy*g*xhat)
            for (int j = 0; j < c; j++) {
                float xh = (xi[j] - mu) * rs;
                float dxh = dyi[j] * (g ? g[j] : 1.f);
                s1 += dxh; s2 += (double)dxh * xh;
                if (pg) { pg[j] += (double)dyi[j] * xh; pb[j] += dyi[j]; }
            }
            s1 /= c; s2 /= c;
            if (dx) {
                float *dxi = dx + (int64_t)i * c;
                for (int j = 0; j < c; j++) {
                    float xh = (xi[j] - mu) * rs;
                    float dxh = dyi[j] * (g ? g[j] : 1.f);
                    dxi[j] = (float)(rs * (dxh - s1 - xh * s2));
                }
            }
        }
    }
    if (part) {
        for (int j = 0; j < c; j++) {
            double sg = 0, sb = 0;
            for (int ch = 0; ch < nchunk; ch++) { sg += part[(size_t)ch * 2 * c + j]; sb += part[(size_t)ch * 2 * c + c + j]; }
            if (dg) dg[j] += (float)sg;
            if (db) db[j] += (float)sb;
        }
        free(part);
    }
}
