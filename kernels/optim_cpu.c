// Losses and optimizer on the CPU (declared in kernels/kernels.h): masked squared error with
// its gradient, PyTorch AdamW, sum of squares (for the global gradient norm).
// Reductions are computed over fixed 4096-element chunks in double and summed in chunk
// order, so the results do not depend on the thread count.
#include "kernels/kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CD_RED_CHUNK 4096

// Sum over chunks: part[i] = f(chunk i); total = sum_i part[i] in index order.
static double chunked_total(const double *part, int64_t nchunk) {
    double s = 0;
    for (int64_t i = 0; i < nchunk; i++) s += part[i];
    return s;
}

// Returns sum((a-b)^2 * m) (m = 1 when mask is NULL); grad (may be NULL) = scale*2(a-b)m.
double cd_mse_fwd_bwd(float *grad, const float *a, const float *b, const float *mask,
                      int64_t n, float scale) {
    if (n <= 0) return 0;
    int64_t nchunk = (n + CD_RED_CHUNK - 1) / CD_RED_CHUNK;
    double stack[64];
    double *part = nchunk <= 64 ? stack : malloc(sizeof(double) * nchunk);
    if (!part) return NAN;
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t lo = c * CD_RED_CHUNK, hi = lo + CD_RED_CHUNK < n ? lo + CD_RED_CHUNK : n;
        double s = 0;
        for (int64_t i = lo; i < hi; i++) {
            float d = a[i] - b[i];
            float m = mask ? mask[i] : 1.0f;
            s += (double)d * d * m;
            if (grad) grad[i] = scale * 2.0f * d * m;
        }
        part[c] = s;
    }
    double total = chunked_total(part, nchunk);
    if (part != stack) free(part);
    return total;
}

double cd_sumsq(const float *x, int64_t n) {
    if (n <= 0) return 0;
    int64_t nchunk = (n + CD_RED_CHUNK - 1) / CD_RED_CHUNK;
    double stack[64];
    double *part = nchunk <= 64 ? stack : malloc(sizeof(double) * nchunk);
    if (!part) return NAN;
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t lo = c * CD_RED_CHUNK, hi = lo + CD_RED_CHUNK < n ? lo + CD_RED_CHUNK : n;
        double s = 0;
        for (int64_t i = lo; i < hi; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double t = chunked_total(part, nchunk);
    if (part != stack) free(part);
    return t;
}

// torch.optim.AdamW (single-tensor path, PyTorch 1.13 / 2.x formulas), step >= 1:
//   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
//   p -= (lr / (1-b1^step)) * m / (sqrt(v) / sqrt(1-b2^step) + eps)
// Scalars are formed in double (Python floats) and applied in fp32, as torch does on CPU.
void cd_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                   float beta1, float beta2, float eps, float wd, int step) {
    double bc1 = 1.0 - pow((double)beta1, step);
    double bc2 = 1.0 - pow((double)beta2, step);
    float decay = (float)(1.0 - (double)lr * (double)wd);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float omb1 = (float)(1.0 - (double)beta1), omb2 = (float)(1.0 - (double)beta2);
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i] * decay;
        float mi = m[i] * beta1 + gi * omb1;
        float vi = v[i] * beta2 + gi * gi * omb2;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi - step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}
