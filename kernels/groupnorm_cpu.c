// GroupNorm over x[n, c, hw] with `groups` groups (c % groups == 0), per-channel affine,
// optional fused SiLU after the affine. Statistics in double; mean/rstd [n*groups].
#include <math.h>
#include <stddef.h>
#include "kernels/kernels.h"

static inline float sigm(float z) { return 1.f / (1.f + expf(-z)); }

void cd_groupnorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                      const float *b, int n, int c, int hw, int groups, float eps, int silu) {
    int cg = c / groups;
    int64_t m = (int64_t)cg * hw;
#pragma omp parallel for schedule(static) if ((int64_t)n * c * hw > 65536)
    for (int ig = 0; ig < n * groups; ig++) {
        int gi = ig % groups;
        const float *xs = x + (int64_t)ig * m;
        float *ys = y + (int64_t)ig * m;
        double s = 0, ss = 0;
        for (int64_t j = 0; j < m; j++) s += xs[j];
        double mu = s / m;
        for (int64_t j = 0; j < m; j++) { double d = xs[j] - mu; ss += d * d; }
        double var = ss / m;
        float r = (float)(1.0 / sqrt(var + eps)), mf = (float)mu;
        if (mean) mean[ig] = mf;
        if (rstd) rstd[ig] = r;
        for (int cc = 0; cc < cg; cc++) {
            int ch = gi * cg + cc;
            float sc = r * (g ? g[ch] : 1.f), sh = (b ? b[ch] : 0.f) - mf * sc;
            const float *xr = xs + (int64_t)cc * hw;
            float *yr = ys + (int64_t)cc * hw;
            if (silu)
                for (int j = 0; j < hw; j++) { float z = xr[j] * sc + sh; yr[j] = z * sigm(z); }
            else
                for (int j = 0; j < hw; j++) yr[j] = xr[j] * sc + sh;
        }
    }
}

// dz = dy (or dy * silu'(z) with z the pre-SiLU affine output); dg += sum dz*xhat,
// db += sum dz; dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat*xhat)) per group.
void cd_groupnorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                      const float *mean, const float *rstd, const float *g, const float *b,
                      int n, int c, int hw, int groups, int silu) {
    int cg = c / groups;
    int64_t m = (int64_t)cg * hw;
#pragma omp parallel for schedule(static) if ((int64_t)n * c * hw > 65536)
    for (int gi = 0; gi < groups; gi++) {
        for (int in = 0; in < n; in++) {
            int ig = in * groups + gi;
            const float *xs = x + (int64_t)ig * m, *dys = dy + (int64_t)ig * m;
            float mu = mean[ig], r = rstd[ig];
            double s1 = 0, s2 = 0;   // sum dxhat, sum dxhat*xhat
            for (int cc = 0; cc < cg; cc++) {
                int ch = gi * cg + cc;
                float gg = g ? g[ch] : 1.f, bb = b ? b[ch] : 0.f;
                const float *xr = xs + (int64_t)cc * hw, *dyr = dys + (int64_t)cc * hw;
                double sdg = 0, sdb = 0;
                for (int j = 0; j < hw; j++) {
                    float xh = (xr[j] - mu) * r, dz = dyr[j];
                    if (silu) { float z = xh * gg + bb, sg = sigm(z); dz *= sg * (1.f + z * (1.f - sg)); }
                    sdg += (double)dz * xh; sdb += dz;
                    s1 += (double)dz * gg; s2 += (double)dz * gg * xh;
                }
                if (dg) dg[ch] += (float)sdg;
                if (db) db[ch] += (float)sdb;
            }
            if (!dx) continue;
            float m1 = (float)(s1 / m), m2 = (float)(s2 / m);
            float *dxs = dx + (int64_t)ig * m;
            for (int cc = 0; cc < cg; cc++) {
                int ch = gi * cg + cc;
                float gg = g ? g[ch] : 1.f, bb = b ? b[ch] : 0.f;
                const float *xr = xs + (int64_t)cc * hw, *dyr = dys + (int64_t)cc * hw;
                float *dxr = dxs + (int64_t)cc * hw;
                for (int j = 0; j < hw; j++) {
                    float xh = (xr[j] - mu) * r, dz = dyr[j];
                    if (silu) { float z = xh * gg + bb, sg = sigm(z); dz *= sg * (1.f + z * (1.f - sg)); }
                    dxr[j] = r * (dz * gg - m1 - xh * m2);
                }
            }
        }
    }
}
