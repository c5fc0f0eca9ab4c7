// Elementwise activations and arithmetic. Each element is independent, so threading
// never changes results. In-place (y == x, dx == dy) is allowed. See kernels.h.
#include <math.h>
#include "kernels/kernels.h"

static inline float sigm(float z) { return 1.f / (1.f + expf(-z)); }
static inline float gelu1(float x) { return 0.5f * x * (1.f + erff(x * (float)M_SQRT1_2)); }
static inline float gelu_grad(float x) {
    return 0.5f * (1.f + erff(x * (float)M_SQRT1_2)) + x * expf(-0.5f * x * x) * 0.3989422804014327f;
}

void cd_silu_fwd(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigm(x[i]);
}
void cd_silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) { float s = sigm(x[i]); dx[i] = dy[i] * s * (1.f + x[i] * (1.f - s)); }
}
void cd_gelu_fwd(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = gelu1(x[i]);
}
void cd_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * gelu_grad(x[i]);
}
void cd_quick_gelu_fwd(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigm(1.702f * x[i]);
}
void cd_quick_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float s = sigm(1.702f * x[i]);
        dx[i] = dy[i] * (s + 1.702f * x[i] * s * (1.f - s));
    }
}
// x[n,2c] = [hidden | gate] -> y[n,c] = hidden * gelu(gate). y must not alias x.
void cd_geglu_fwd(float *y, const float *x, int64_t n, int c) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *h = x + r * 2 * c, *g = h + c;
        for (int j = 0; j < c; j++) y[r * c + j] = h[j] * gelu1(g[j]);
    }
}
// dx[n,2c] from dy[n,c] (overwrite).
void cd_geglu_bwd(float *dx, const float *dy, const float *x, int64_t n, int c) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *h = x + r * 2 * c, *g = h + c;
        float *dh = dx + r * 2 * c, *dg = dh + c;
        for (int j = 0; j < c; j++) {
            float d = dy[r * c + j], gv = g[j], hv = h[j];
            dh[j] = d * gelu1(gv);
            dg[j] = d * hv * gelu_grad(gv);
        }
    }
}
void cd_add(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
void cd_acc(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
void cd_scale(float *y, float s, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}
void cd_clamp(float *y, float lo, float hi, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = fminf(fmaxf(y[i], lo), hi);
}
void cd_add_bias_nc(float *y, const float *bias, int n, int c, int hw) {
#pragma omp parallel for schedule(static) collapse(2)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            float bv = bias[(int64_t)i * c + j];
            float *p = y + ((int64_t)i * c + j) * hw;
            for (int k = 0; k < hw; k++) p[k] += bv;
        }
}
