// Linear layer y = x W^T + b through cd_gemm. See kernels.h.
#include <string.h>
#include "kernels/kernels.h"

// y[n,out] = x[n,in] @ W[out,in]^T + b[out]
void cd_linear_fwd(float *y, const float *x, const float *W, const float *b, int n, int in, int out) {
    if (n <= 0 || out <= 0) return;
    if (b) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) memcpy(y + (int64_t)i * out, b, sizeof(float) * out);
    }
    cd_gemm(0, 1, n, out, in, 1.f, x, in, W, in, b ? 1.f : 0.f, y, out);
}

// dx[n,in] = dy[n,out] @ W[out,in]; dW[out,in] += dy^T @ x; db[out] += sum_n dy.
// db sums rows in a fixed order per output column: the result does not depend on threads.
void cd_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                   const float *W, int n, int in, int out) {
    if (n <= 0) return;
    if (dx) cd_gemm(0, 0, n, in, out, 1.f, dy, out, W, in, 0.f, dx, in);
    if (dW) cd_gemm(1, 0, out, in, n, 1.f, dy, out, x, in, 1.f, dW, in);
    if (db) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += dy[(int64_t)i * out + o];
            db[o] += (float)s;
        }
    }
}
