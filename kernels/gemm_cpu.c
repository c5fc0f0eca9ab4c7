// GEMM through OpenBLAS (cblas_sgemm), row-major. See kernels.h.
#include <cblas.h>
#include <stdlib.h>
#include <time.h>
#include "kernels/kernels.h"

void cd_gemm(int transA, int transB, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   // C = beta * C (BLAS would do the same; keep it explicit for K == 0)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(int64_t)i * ldc + j] = beta == 0.f ? 0.f : beta * C[(int64_t)i * ldc + j];
        return;
    }
    // Deterministic whatever the thread count: OpenBLAS runs single-threaded inside fixed
    // tiles of C (MB x NB) that OpenMP distributes; every element of C is one full-K dot
    // product computed by the same call for any thread count. (Multithreaded OpenBLAS gave
    // different bits at 1 and 2 threads, which broke "same seed, same image".)
    static int once;
    if (!once) { openblas_set_num_threads(1); once = 1; }
    enum { MB = 128, NB = 512 };
    int mt = (M + MB - 1) / MB, nt = (N + NB - 1) / NB, tiles = mt * nt;
    #pragma omp parallel for schedule(static) if (tiles > 1 && (double)M * N * K > 1e6)
    for (int t = 0; t < tiles; t++) {
        int m0 = (t / nt) * MB, n0 = (t % nt) * NB;
        int mb = M - m0 < MB ? M - m0 : MB, nb = N - n0 < NB ? N - n0 : NB;
        const float *At = transA ? A + m0 : A + (int64_t)m0 * lda;
        const float *Bt = transB ? B + (int64_t)n0 * ldb : B + n0;
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    mb, nb, K, alpha, At, lda, Bt, ldb, beta, C + (int64_t)m0 * ldc + n0, ldc);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Best of a few runs of an n x n x n SGEMM (after one warm-up), in GFLOP/s.
double cd_gemm_rate_gflops(int n) {
    if (n <= 0) return 0;
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = malloc(nn * sizeof(float));
    if (!a || !b || !c) { free(a); free(b); free(c); return 0; }
    for (size_t i = 0; i < nn; i++) { a[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f; b[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f; }
    cd_gemm(0, 0, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    double best = 1e30, total = 0;
    for (int r = 0; r < 10 && (r < 3 || total < 1.0); r++) {
        double t0 = now_s();
        cd_gemm(0, 0, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
        double dt = now_s() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    free(a); free(b); free(c);
    return 2.0 * (double)n * n * n / best * 1e-9;
}
