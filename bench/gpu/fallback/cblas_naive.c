// cblas_sgemm stand-in (row-major only): packs op(A) and op(B) row-major, then an OpenMP
// loop over rows of C whose inner loop over columns vectorizes. Accumulates in fp32 in
// k order. Only for bench/gpu-check.sh on machines without OpenBLAS.
#include "cblas.h"
#include <stdlib.h>

void openblas_set_num_threads(int n) { (void)n; }

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    (void)order;
    float *Ap = malloc(sizeof(float) * (size_t)M * (K ? K : 1)), *Bp = malloc(sizeof(float) * (size_t)K * (N ? N : 1));
    if (!Ap || !Bp) abort();
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) Ap[(size_t)i * K + k] = ta == CblasNoTrans ? A[(size_t)i * lda + k] : A[(size_t)k * lda + i];
    #pragma omp parallel for schedule(static)
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) Bp[(size_t)k * N + j] = tb == CblasNoTrans ? B[(size_t)k * ldb + j] : B[(size_t)j * ldb + k];
    #pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) c[j] = beta == 0.f ? 0.f : c[j] * beta;
        for (int k0 = 0; k0 < K; k0 += 256) {
            int k1 = k0 + 256 < K ? k0 + 256 : K;
            for (int j0 = 0; j0 < N; j0 += 512) {
                int j1 = j0 + 512 < N ? j0 + 512 : N;
                for (int k = k0; k < k1; k++) {
                    float a = alpha * Ap[(size_t)i * K + k];
                    const float *b = Bp + (size_t)k * N;
                    for (int j = j0; j < j1; j++) c[j] += a * b[j];
                }
            }
        }
    }
    free(Ap);
    free(Bp);
}
