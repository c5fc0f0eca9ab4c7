// Tests of kernels/optim_cpu.c: AdamW against values worked out with PyTorch's formulas
// (in Python doubles, step by step), the masked MSE gradient by finite differences, sums of
// squares, and independence from the thread count.
#include "tests/testlib.h"
#include "kernels/kernels.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

// p, grads for 3 steps; expected p after each step from
//   p *= 1-lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//   p -= lr/(1-b1^k) * m / (sqrt(v)/sqrt(1-b2^k) + eps),  lr 1e-3, wd 1e-2, (0.9, 0.999), 1e-8
TEST(adamw_three_steps_match_pytorch_formula) {
    float p[4] = {0.5f, -1.25f, 2.0f, 0.0f}, m[4] = {0}, v[4] = {0};
    const float g[3][4] = {{0.1f, -0.2f, 0.0f, 3.0f}, {-0.05f, 0.4f, 1e-3f, -3.0f}, {0.2f, 0.2f, -2.0f, 0.5f}};
    const double want[3][4] = {
        {0.49899500010000003, -1.24898750005, 1.99998, -0.0009999999966666666},
        {0.498723673144033, -1.2493411136904597, 1.9992158738973371, -0.0009473584178947707},
        {0.49806057435678147, -1.2498478610771793, 1.999834407786614, -0.000981767444560639}};
    for (int k = 0; k < 3; k++) {
        cd_adamw_step(p, g[k], m, v, 4, 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f, k + 1);
        for (int i = 0; i < 4; i++)
            CHECKF(fabs(p[i] - want[k][i]) <= 2e-7 * (1 + fabs(want[k][i])),
                   "step %d elem %d: %.9g want %.9g", k + 1, i, p[i], want[k][i]);
    }
}

TEST(adamw_zero_grad_only_decays) {
    float p[3] = {1, -2, 3}, g[3] = {0}, m[3] = {0}, v[3] = {0};
    cd_adamw_step(p, g, m, v, 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.5f, 1);
    CHECK(fabsf(p[0] - 0.95f) < 1e-7f && fabsf(p[1] + 1.9f) < 1e-6f && fabsf(p[2] - 2.85f) < 1e-6f);
}

// d/da of scale * sum((a-b)^2 m), by central differences in double.
TEST(mse_grad_matches_finite_difference) {
    enum { N = 37 };
    float a[N], b[N], mask[N], grad[N];
    tl_rand(a, N, 1);
    tl_rand(b, N, 2);
    for (int i = 0; i < N; i++) mask[i] = (i % 3) ? 1.0f : 0.0f;
    float scale = 0.37f;
    double f0 = cd_mse_fwd_bwd(grad, a, b, mask, N, scale);
    double ref = 0;
    for (int i = 0; i < N; i++) ref += ((double)a[i] - b[i]) * ((double)a[i] - b[i]) * mask[i];
    CHECKF(fabs(f0 - ref) < 1e-9 * (1 + ref), "sum %.12g want %.12g", f0, ref);
    for (int i = 0; i < N; i++) {
        float save = a[i];
        const float h = 1e-2f;
        a[i] = save + h;
        double fp = cd_mse_fwd_bwd(NULL, a, b, mask, N, 1);
        a[i] = save - h;
        double fm = cd_mse_fwd_bwd(NULL, a, b, mask, N, 1);
        a[i] = save;
        double fd = scale * (fp - fm) / (2.0 * h);
        CHECKF(fabs(fd - grad[i]) < 1e-4 * (1 + fabs(fd)), "elem %d: grad %g fd %g", i, grad[i], fd);
    }
}

TEST(mse_without_mask) {
    float a[3] = {1, 2, 3}, b[3] = {0, 0, 1}, g[3];
    double s = cd_mse_fwd_bwd(g, a, b, NULL, 3, 1.0f);
    CHECK(fabs(s - 9.0) < 1e-12);
    CHECK(g[0] == 2.0f && g[1] == 4.0f && g[2] == 4.0f);
}

// Large enough to be threaded: the result must be bit-identical for 1 and 2 threads.
TEST(reductions_independent_of_thread_count) {
    int64_t n = 300001;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    tl_rand(x, n, 7);
    tl_rand(y, n, 8);
    omp_set_num_threads(1);
    double s1 = cd_sumsq(x, n), m1 = cd_mse_fwd_bwd(NULL, x, y, NULL, n, 1);
    omp_set_num_threads(2);
    double s2 = cd_sumsq(x, n), m2 = cd_mse_fwd_bwd(NULL, x, y, NULL, n, 1);
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
    free(x);
    free(y);
    CHECK(s1 == s2 && m1 == m2);
    CHECKF(fabs(s1 - ref) < 1e-9 * ref, "sumsq %.12g want %.12g", s1, ref);
}

int main(void) {
    RUN(adamw_three_steps_match_pytorch_formula);
    RUN(adamw_zero_grad_only_decays);
    RUN(mse_grad_matches_finite_difference);
    RUN(mse_without_mask);
    RUN(reductions_independent_of_thread_count);
    return tl_done();
}
