// Minimal stand-in for <cblas.h> (only cblas_sgemm, row-major) for building the CUDA twin
// test on a GPU machine that lacks libopenblas-dev. Used only by bench/gpu-check.sh.
#ifndef CD_CBLAS_FALLBACK_H
#define CD_CBLAS_FALLBACK_H
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };
void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
// OpenBLAS's thread control (kernels/gemm_cpu.c pins it to 1): a no-op here.
void openblas_set_num_threads(int n);
#endif
