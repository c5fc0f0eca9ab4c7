// The mock cuBLAS (tests/cudasim/cublas.cpp) against hand-worked examples in cuBLAS's
// documented convention: column-major storage, element (i, j) at i + j*ld,
// C = alpha op(A) op(B) + beta C with op(A) m x k, op(B) k x n. Expected values are worked
// out by hand in the comments (no reference GEMM). Also every validation status, the
// beta == 0 rule (C not read), 16-bit output rounding and TF32 input rounding on values
// whose rounding is worked out bit by bit, address-range and overlap faults.
// Prints "N runs, M failures" and exits non-zero on failure.
// Build: g++ -std=c++17 -pthread -I tests/cudasim -I . -I /usr/local/cuda/include
//        tests/cudasim/test_cublas.cpp tests/cudasim/cublas.cpp tests/cudasim/cusim.cpp ... -lopenblas
#include "cusim.h"
#include <thread>
#include <vector>
#include <cublas_v2.h>
#include <math.h>

#include "expect.h"
#define EXPECT_ST(call, want)                                                                                          \
    do {                                                                                                               \
        cublasStatus_t st_ = (call);                                                                                   \
        EXPECT(st_ == (want), "%s returned %s, expected %s", #call, cublasGetStatusName(st_), #want);                  \
    } while (0)

// A registered "device" buffer, NaN-filled (0xFF bytes: NaN as float, bf16 and fp16).
static void *dmem(size_t bytes) {
    void *p = malloc(bytes);
    memset(p, 0xFF, bytes);
    cusim_register(p, bytes);
    return p;
}
static float *dfloats(std::initializer_list<float> v, size_t extra = 0) {
    float *p = (float *)dmem((v.size() + extra) * sizeof(float));
    size_t i = 0;
    for (float x : v) p[i++] = x;
    return p;
}
static uint16_t *dhalves(std::initializer_list<uint16_t> v) {
    uint16_t *p = (uint16_t *)dmem(v.size() * 2);
    size_t i = 0;
    for (uint16_t x : v) p[i++] = x;
    return p;
}
static const float NaN = NAN;
static const cublasOperation_t N = CUBLAS_OP_N, T = CUBLAS_OP_T;

static cublasStatus_t sgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                            int ldc, cublasComputeType_t cm = CUBLAS_COMPUTE_32F) {
    return cublasGemmEx(h, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, &beta, C, CUDA_R_32F, ldc,
                        cm, CUBLAS_GEMM_DEFAULT);
}
static bool eq(const float *got, std::initializer_list<float> want, const char *what) {
    size_t i = 0;
    bool ok = true;
    for (float w : want) {
        bool same = (isnan(w) && isnan(got[i])) || got[i] == w;
        if (!same) {
            fprintf(stderr, "  %s[%zu] = %.9g, expected %.9g\n", what, i, got[i], w);
            ok = false;
        }
        i++;
    }
    return ok;
}
static bool eq16(const uint16_t *got, std::initializer_list<uint16_t> want, const char *what) {
    size_t i = 0;
    bool ok = true;
    for (uint16_t w : want) {
        if (got[i] != w) {
            fprintf(stderr, "  %s[%zu] = 0x%04x, expected 0x%04x\n", what, i, got[i], w);
            ok = false;
        }
        i++;
    }
    return ok;
}

// The worked example: A (2x3) = [1 2 3; 4 5 6], B (3x2) = [7 8; 9 10; 11 12],
// A B = [1*7+2*9+3*11  1*8+2*10+3*12; 4*7+5*9+6*11  4*8+5*10+6*12] = [58 64; 139 154],
// column-major {58, 139, 64, 154}.
static void test_ops(cublasHandle_t h) {
    float *A = dfloats({1, 4, 2, 5, 3, 6});       // A, ld 2
    float *At = dfloats({1, 2, 3, 4, 5, 6});      // A^T (3x2), ld 3: column j is row j of A
    float *B = dfloats({7, 9, 11, 8, 10, 12});    // B, ld 3
    float *Bt = dfloats({7, 8, 9, 10, 11, 12});   // B^T (2x3), ld 2
    float *C = (float *)dmem(4 * sizeof(float));  // NaN: beta == 0 must not read it
    int e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, 139, 64, 154}, "C"), "N/N");
    memset(C, 0xFF, 16);
    EXPECT_ST(sgemm(h, T, N, 2, 2, 3, 1.f, At, 3, B, 3, 0.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, 139, 64, 154}, "C"), "T/N");
    memset(C, 0xFF, 16);
    EXPECT_ST(sgemm(h, N, T, 2, 2, 3, 1.f, A, 2, Bt, 2, 0.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, 139, 64, 154}, "C"), "N/T");
    memset(C, 0xFF, 16);
    EXPECT_ST(sgemm(h, T, T, 2, 2, 3, 1.f, At, 3, Bt, 2, 0.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, 139, 64, 154}, "C"), "T/T");
    memset(C, 0xFF, 16);   // CUBLAS_OP_C is the transpose for real types
    EXPECT_ST(sgemm(h, CUBLAS_OP_C, CUBLAS_OP_C, 2, 2, 3, 1.f, At, 3, Bt, 2, 0.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, 139, 64, 154}, "C"), "C/C");
    // The product the other way, B A (3x3): m/n/k roles swapped, catches an m <-> n mix-up.
    // B A = [7+32 14+40 21+48; 9+40 18+50 27+60; 11+48 22+60 33+72] = [39 54 69; 49 68 87; 59 82 105]
    float *C9 = (float *)dmem(9 * sizeof(float));
    EXPECT_ST(sgemm(h, N, N, 3, 3, 2, 1.f, B, 3, A, 2, 0.f, C9, 3), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C9, {39, 49, 59, 54, 68, 82, 69, 87, 105}, "C9"), "B A (3x3)");
    // A non-square result, m = 3, n = 1, k = 2: [1 2; 3 4; 5 6] [2; 1] = [4; 10; 16]
    float *A32 = dfloats({1, 3, 5, 2, 4, 6}), *b2 = dfloats({2, 1}), *c3 = (float *)dmem(12);
    EXPECT_ST(sgemm(h, N, N, 3, 1, 2, 1.f, A32, 3, b2, 2, 0.f, c3, 3), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(c3, {4, 10, 16}, "c3"), "3x2 times 2x1");
    // alpha scales: 0.5 A B = {29, 69.5, 32, 77}
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 0.5f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {29, 69.5f, 32, 77}, "C"), "alpha 0.5");
    // beta != 0 accumulates: 2 A B - C0 with C0 = {1, 2, 3, 4} -> {115, 276, 125, 304}
    C[0] = 1, C[1] = 2, C[2] = 3, C[3] = 4;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 2.f, A, 2, B, 3, -1.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {115, 276, 125, 304}, "C"), "beta -1");
    // beta != 0 reads C: a NaN in C shows in that element only
    C[0] = 0, C[1] = NaN, C[2] = 0, C[3] = 0;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 2, B, 3, 1.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, NaN, 64, 154}, "C"), "beta 1 reads C");
    // NaN * 0 is NaN as on the GPU: A(0,1) = NaN, B(1,:) = 0
    float *An = dfloats({1, 4, NaN, 5, 3, 6}), *B0 = dfloats({7, 0, 11, 8, 0, 12});
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, An, 2, B0, 3, 0.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {NaN, 28 + 66, NaN, 32 + 72}, "C"), "NaN in A times 0");
    // k == 0: C = beta C; A and B are not addressed (NULL is fine)
    C[0] = 1, C[1] = 2, C[2] = 3, C[3] = 4;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 0, 1.f, NULL, 2, NULL, 1, 3.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {3, 6, 9, 12}, "C"), "k = 0, beta 3");
    memset(C, 0xFF, 16);
    EXPECT_ST(sgemm(h, N, N, 2, 2, 0, 1.f, NULL, 2, NULL, 1, 0.f, C, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {0, 0, 0, 0}, "C"), "k = 0, beta 0 over NaN");
    // m == 0 / n == 0: nothing addressed
    EXPECT_ST(sgemm(h, N, N, 0, 2, 3, 1.f, NULL, 1, NULL, 3, 0.f, NULL, 1), CUBLAS_STATUS_SUCCESS);
    EXPECT_ST(sgemm(h, N, N, 2, 0, 3, 1.f, NULL, 2, NULL, 3, 0.f, NULL, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
}

// Leading dimensions larger than the rows: the padding is neither read (it holds NaN) nor
// written (it holds 777).
static void test_padding(cublasHandle_t h) {
    float *A = dfloats({1, 4, NaN, NaN, 2, 5, NaN, NaN, 3, 6, NaN, NaN});   // A, ld 4
    float *B = dfloats({7, 9, 11, NaN, 8, 10, 12, NaN});                   // B, ld 4
    float *C = dfloats({NaN, NaN, 777, NaN, NaN, 777});                      // C, ld 3
    int e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 4, B, 4, 0.f, C, 3), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, 139, 777, 64, 154, 777}, "C"), "ld padding");
    // transposed with padding: A^T stored 3x2 with ld 5, B^T stored 2x3 with ld 3
    float *At = dfloats({1, 2, 3, NaN, NaN, 4, 5, 6, NaN, NaN});
    float *Bt = dfloats({7, 8, NaN, 9, 10, NaN, 11, 12, NaN});
    C[0] = C[1] = C[3] = C[4] = NaN;
    EXPECT_ST(sgemm(h, T, T, 2, 2, 3, 1.f, At, 5, Bt, 3, 0.f, C, 3), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, 139, 777, 64, 154, 777}, "C"), "T/T ld padding");
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
}

// Two batches: A_1 = 2 A_0 (strideA 8 with 2 padding NaNs), B shared (strideB 0),
// C strideC 5 (one 777 between): C_0 = {58, 139, 64, 154}, C_1 = 2 C_0.
static void test_batched(cublasHandle_t h) {
    float *A = dfloats({1, 4, 2, 5, 3, 6, NaN, NaN, 2, 8, 4, 10, 6, 12});
    float *B = dfloats({7, 9, 11, 8, 10, 12});
    float *C = dfloats({NaN, NaN, NaN, NaN, 777, NaN, NaN, NaN, NaN});
    float one = 1, zero = 0;
    int e0 = cusim_errors;
    EXPECT_ST(cublasGemmStridedBatchedEx(h, N, N, 2, 2, 3, &one, A, CUDA_R_32F, 2, 8, B, CUDA_R_32F, 3, 0, &zero, C,
                                         CUDA_R_32F, 2, 5, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {58, 139, 64, 154, 777, 116, 278, 128, 308}, "C"), "strided batched");
    // Interleaved outputs (as attention heads in a [tokens, heads*D] row): batch b's C starts
    // at element 2b with ldc 4, so the batches' columns alternate and never share an element.
    float *Ci = (float *)dmem(8 * sizeof(float));
    EXPECT_ST(cublasGemmStridedBatchedEx(h, N, N, 2, 2, 3, &one, A, CUDA_R_32F, 2, 8, B, CUDA_R_32F, 3, 0, &zero, Ci,
                                         CUDA_R_32F, 4, 2, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(Ci, {58, 139, 116, 278, 64, 154, 128, 308}, "Ci"), "interleaved batches");
    // batchCount 0: nothing happens
    EXPECT_ST(cublasGemmStridedBatchedEx(h, N, N, 2, 2, 3, &one, NULL, CUDA_R_32F, 2, 8, NULL, CUDA_R_32F, 3, 0, &zero,
                                         NULL, CUDA_R_32F, 2, 5, 0, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
    // overlapping outputs (strideC 2 < the 4 elements of one C) race on the GPU
    float *Co = (float *)dmem(8 * sizeof(float));
    EXPECT_ST(cublasGemmStridedBatchedEx(h, N, N, 2, 2, 3, &one, A, CUDA_R_32F, 2, 8, B, CUDA_R_32F, 3, 0, &zero, Co,
                                         CUDA_R_32F, 2, 2, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "overlapping batch outputs: %d faults, expected 1", cusim_errors - e0);
    EXPECT(isnan(Co[0]), "a refused call wrote C");
    // strideA past the buffer: batch 1's A would end at element 14 + 8 = 22 > 14
    e0 = cusim_errors;
    EXPECT_ST(cublasGemmStridedBatchedEx(h, N, N, 2, 2, 3, &one, A, CUDA_R_32F, 2, 16, B, CUDA_R_32F, 3, 0, &zero, C,
                                         CUDA_R_32F, 2, 5, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "strideA past the buffer: %d faults, expected 1", cusim_errors - e0);
}

// bf16 has 7 explicit mantissa bits: near 1 the spacing is 2^-7. Bit patterns:
// 1 = 0x3F80, 1+2^-7 = 0x3F81, 1+2^-6 = 0x3F82, -1 = 0xBF80, 2^-8 = 0x3B80 (exponent 119),
// 2^-8 + 2^-10 = 2^-8 * 1.25 = 0x3BA0.
static void test_bf16(cublasHandle_t h) {
    // op(A) 1x2 = [1 1]; B 2x4 columns: [1, 2^-8] -> 1 + 2^-8, a tie -> even 1 (0x3F80);
    // [1+2^-7, 2^-8] -> 1 + 3*2^-8, a tie between 0x3F81 (odd) and 0x3F82 -> 0x3F82;
    // [1, 2^-8+2^-10] -> above the half -> 0x3F81; [-1, -2^-8] -> -(1 + 2^-8) -> 0xBF80.
    uint16_t *A = dhalves({0x3F80, 0x3F80});
    uint16_t *B = dhalves({0x3F80, 0x3B80, 0x3F81, 0x3B80, 0x3F80, 0x3BA0, 0xBF80, 0xBB80});
    uint16_t *C = (uint16_t *)dmem(8); // NaN
    float one = 1, zero = 0;
    int e0 = cusim_errors;
    EXPECT_ST(cublasGemmEx(h, N, N, 1, 4, 2, &one, A, CUDA_R_16BF, 1, B, CUDA_R_16BF, 2, &zero, C, CUDA_R_16BF, 1,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq16(C, {0x3F80, 0x3F82, 0x3F81, 0xBF80}, "C bf16"), "bf16 output rounds to nearest even");
    // the same products into an fp32 C: exact
    float *Cf = (float *)dmem(16);
    EXPECT_ST(cublasGemmEx(h, N, N, 1, 4, 2, &one, A, CUDA_R_16BF, 1, B, CUDA_R_16BF, 2, &zero, Cf, CUDA_R_32F, 1,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT_TENSOR_OP),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(Cf, {1 + 1.f / 256, 1 + 3.f / 256, 1 + 1.f / 256 + 1.f / 1024, -(1 + 1.f / 256)}, "Cf"),
           "bf16 inputs, fp32 output exact");
    // beta reads a bf16 C: C0 = 1 (0x3F80), + 1 * 2^-8 -> 1 + 2^-8 -> tie -> 0x3F80; with
    // C0 = 1+2^-7 (0x3F81): 1 + 3*2^-8 -> 0x3F82
    uint16_t *a1 = dhalves({0x3F80}), *b1 = dhalves({0x3B80}), *c2 = dhalves({0x3F80, 0x3F81});
    uint16_t *b2 = dhalves({0x3B80, 0x3B80});
    EXPECT_ST(cublasGemmEx(h, N, N, 1, 2, 1, &one, a1, CUDA_R_16BF, 1, b2, CUDA_R_16BF, 1, &one, c2, CUDA_R_16BF, 1,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq16(c2, {0x3F80, 0x3F82}, "c2"), "bf16 C with beta 1");
    (void)b1;
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
}

// fp16 has 10 explicit mantissa bits: near 1 the spacing is 2^-10. Bit patterns:
// 1 = 0x3C00, 1+2^-10 = 0x3C01, 1+2^-9 = 0x3C02, 2^-11 = 0x1000 (exponent 4),
// 2^-11*1.25 = 0x1100, 65504 (max) = 0x7BFF, 16 = 0x4C00, inf = 0x7C00, 2^-12 = 0x0C00,
// 2^-13 = 0x0800, smallest subnormal 2^-24 = 0x0001.
static void test_fp16(cublasHandle_t h) {
    // op(A) = [1 1]; B columns: [1, 2^-11] tie -> 0x3C00; [1+2^-10, 2^-11] tie -> 0x3C02;
    // [1, 2^-11*1.25] above half -> 0x3C01; [65504, 16] = 65520, the tie between 65504 (odd)
    // and 65536 -> even = inf 0x7C00; [2^-12 * 2^-12] needs A = [2^-12 ...]: see below.
    uint16_t *A = dhalves({0x3C00, 0x3C00});
    uint16_t *B = dhalves({0x3C00, 0x1000, 0x3C01, 0x1000, 0x3C00, 0x1100, 0x7BFF, 0x4C00});
    uint16_t *C = (uint16_t *)dmem(8);
    float one = 1, zero = 0;
    int e0 = cusim_errors;
    EXPECT_ST(cublasGemmEx(h, N, N, 1, 4, 2, &one, A, CUDA_R_16F, 1, B, CUDA_R_16F, 2, &zero, C, CUDA_R_16F, 1,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq16(C, {0x3C00, 0x3C02, 0x3C01, 0x7C00}, "C fp16"), "fp16 output rounds to nearest even, overflows to inf");
    // subnormal outputs: 2^-12 * 2^-12 = 2^-24 -> 0x0001; 2^-12 * 2^-13 = 2^-25, the tie
    // between 0 and 2^-24 -> 0x0000; 2^-12 * (2^-13 + 2^-14) = 0.75 * 2^-24 -> 0x0001
    uint16_t *a = dhalves({0x0C00}), *b = dhalves({0x0C00, 0x0800, 0x0A00}), *c = (uint16_t *)dmem(6);
    EXPECT_ST(cublasGemmEx(h, N, N, 1, 3, 1, &one, a, CUDA_R_16F, 1, b, CUDA_R_16F, 1, &zero, c, CUDA_R_16F, 1,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq16(c, {0x0001, 0x0000, 0x0001}, "c fp16"), "fp16 subnormal outputs");
    // fp16 inputs into fp32 C: exact (65504 + 16 = 65520)
    float *Cf = (float *)dmem(16);
    EXPECT_ST(cublasGemmEx(h, N, N, 1, 4, 2, &one, A, CUDA_R_16F, 1, B, CUDA_R_16F, 2, &zero, Cf, CUDA_R_32F, 1,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(Cf, {1 + 1.f / 2048, 1 + 3.f / 2048, 1 + 1.f / 2048 + 1.f / 8192, 65520}, "Cf"),
           "fp16 inputs, fp32 output exact");
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
}

// TF32 keeps 10 explicit mantissa bits: near 1 the spacing is 2^-10. 1 + 2^-12 is a quarter
// spacing above 1 (-> 1), 1 + 3*2^-12 three quarters (-> 1 + 2^-10); 1 + 2^-11 is a tie, which
// the mock rounds away from zero like the GPU's cvt.rna.tf32.f32 (-> 1 + 2^-10). B is rounded too.
static void test_tf32(cublasHandle_t h) {
    const float q = 1.f / 4096;
    float *A = dfloats({1 + q, 1 + 3 * q, 1 + 2 * q, -(1 + 3 * q)}), *one = dfloats({1}), *C = (float *)dmem(16);
    int e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 4, 1, 1, 1.f, A, 4, one, 1, 0.f, C, 4, CUBLAS_COMPUTE_32F_FAST_TF32),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {1, 1 + 4 * q, 1 + 4 * q, -(1 + 4 * q)}, "C tf32"), "FAST_TF32 rounds A");
    EXPECT_ST(sgemm(h, N, N, 4, 1, 1, 1.f, A, 4, one, 1, 0.f, C, 4, CUBLAS_COMPUTE_32F), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {1 + q, 1 + 3 * q, 1 + 2 * q, -(1 + 3 * q)}, "C fp32"), "COMPUTE_32F is exact");
    EXPECT_ST(sgemm(h, N, N, 1, 4, 1, 1.f, one, 1, A, 1, 0.f, C, 1, CUBLAS_COMPUTE_32F_FAST_TF32),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {1, 1 + 4 * q, 1 + 4 * q, -(1 + 4 * q)}, "C tf32"), "FAST_TF32 rounds B");
    // the accumulation is not rounded to TF32: (1+2^-10) + 2^-20 stays exact in fp32
    float *a2 = dfloats({1 + 4 * q, 1.f / 1048576}), *b2 = dfloats({1, 1});
    EXPECT_ST(sgemm(h, N, N, 1, 1, 2, 1.f, a2, 1, b2, 2, 0.f, C, 1, CUBLAS_COMPUTE_32F_FAST_TF32),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {1 + 4 * q + 1.f / 1048576}, "C"), "tf32 accumulates in (at least) fp32");
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
}

// A product large enough for the mock's BLAS path (64^3): all-ones A and B give 64 everywhere.
// Then A(3, 5) = NaN with B(5, j) = 0 for all j: C(3, j) is NaN (NaN * 0, as on the GPU), every
// other C(i, j) = 63.
static void test_large(cublasHandle_t h) {
    const int n = 64;
    float *A = (float *)dmem(n * n * 4), *B = (float *)dmem(n * n * 4), *C = (float *)dmem(n * n * 4);
    for (int i = 0; i < n * n; i++) A[i] = B[i] = 1.f;
    int e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, T, n, n, n, 0.5f, A, n, B, n, 0.f, C, n), CUBLAS_STATUS_SUCCESS);
    bool ok = true;
    for (int i = 0; i < n * n; i++) ok = ok && C[i] == 32.f;
    EXPECT(ok, "64^3 all ones * 0.5 != 32");
    A[5 * n + 3] = NaN;                                   // A(3, 5)
    for (int j = 0; j < n; j++) B[j * n + 5] = 0.f;      // B(5, j) = 0
    EXPECT_ST(sgemm(h, N, N, n, n, n, 1.f, A, n, B, n, 0.f, C, n), CUBLAS_STATUS_SUCCESS);
    int nan_row3 = 0, nan_else = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) {
            if (i == 3) nan_row3 += isnan(C[j * n + i]);
            else nan_else += isnan(C[j * n + i]) || C[j * n + i] != 63.f;
        }
    EXPECT(nan_row3 == n && nan_else == 0, "NaN * 0 in the large path: %d of %d NaN in row 3, %d wrong elsewhere",
           nan_row3, n, nan_else);
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
}

static void test_validation(cublasHandle_t h) {
    float *A = dfloats({1, 4, 2, 5, 3, 6}), *B = dfloats({7, 9, 11, 8, 10, 12}), *C = (float *)dmem(16);
    float one = 1;
    int e0 = cusim_errors;
    // handles
    EXPECT_ST(sgemm(NULL, N, N, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_NOT_INITIALIZED);
    cublasHandle_t d;
    EXPECT_ST(cublasCreate(&d), CUBLAS_STATUS_SUCCESS);
    EXPECT_ST(cublasDestroy(d), CUBLAS_STATUS_SUCCESS);
    EXPECT_ST(sgemm(d, N, N, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_NOT_INITIALIZED);
    EXPECT_ST(cublasSetStream(d, 0), CUBLAS_STATUS_NOT_INITIALIZED);
    EXPECT_ST(cublasDestroy(d), CUBLAS_STATUS_NOT_INITIALIZED);
    uint64_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    EXPECT_ST(sgemm((cublasHandle_t)junk, N, N, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_NOT_INITIALIZED);
    EXPECT_ST(cublasCreate(NULL), CUBLAS_STATUS_INVALID_VALUE);
    // sizes, ops
    EXPECT_ST(sgemm(h, N, N, -1, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, N, N, 2, -1, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, N, N, 2, 2, -1, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, CUBLAS_OP_CONJG, N, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, N, CUBLAS_OP_CONJG, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(cublasGemmStridedBatchedEx(h, N, N, 2, 2, 3, &one, A, CUDA_R_32F, 2, 6, B, CUDA_R_32F, 3, 6, &one, C,
                                         CUDA_R_32F, 2, 4, -1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_INVALID_VALUE);
    // leading dimensions: lda >= max(1, m) for N and max(1, k) for T; ldb >= max(1, k) for N
    // and max(1, n) for T; ldc >= max(1, m)
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 1, B, 3, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, T, N, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 2, B, 2, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, N, T, 2, 2, 3, 1.f, A, 2, B, 1, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 1), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(sgemm(h, N, N, 0, 2, 3, 1.f, A, 1, B, 3, 0.f, C, 0), CUBLAS_STATUS_INVALID_VALUE);  // max(1, 0)
    EXPECT_ST(sgemm(h, N, N, 2, 2, 0, 1.f, A, 2, B, 0, 0.f, C, 2), CUBLAS_STATUS_INVALID_VALUE);  // ldb >= 1
    // a transposed A needs lda >= k, not m: m = 1, k = 3, lda = 3 is fine (A stored 3x1)
    EXPECT_ST(sgemm(h, T, N, 1, 1, 3, 1.f, A, 3, B, 3, 0.f, C, 1), CUBLAS_STATUS_SUCCESS);
    EXPECT(C[0] == 1 * 7 + 4 * 9 + 2 * 11, "T with lda = k: %g, expected 65", C[0]);
    // alpha / beta
    EXPECT_ST(cublasGemmEx(h, N, N, 2, 2, 3, NULL, A, CUDA_R_32F, 2, B, CUDA_R_32F, 3, &one, C, CUDA_R_32F, 2,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(cublasGemmEx(h, N, N, 2, 2, 3, &one, A, CUDA_R_32F, 2, B, CUDA_R_32F, 3, NULL, C, CUDA_R_32F, 2,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_INVALID_VALUE);
    // types outside the cublasGemmEx table
    struct { cudaDataType_t a, b, c; cublasComputeType_t cm; } bad[] = {
        {CUDA_R_32F, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F},    // A and B differ
        {CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16F, CUBLAS_COMPUTE_32F},   // bf16 in, fp16 out
        {CUDA_R_16F, CUDA_R_16F, CUDA_R_16BF, CUBLAS_COMPUTE_32F},    // fp16 in, bf16 out
        {CUDA_R_32F, CUDA_R_32F, CUDA_R_16BF, CUBLAS_COMPUTE_32F},    // fp32 in, bf16 out
        {CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32}, // FAST_* take fp32 only
        {CUDA_R_16F, CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F_FAST_16F},
        {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_64F},     // 64F compute needs 64F data
        {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_16F},
        {CUDA_R_8I, CUDA_R_8I, CUDA_R_8I, CUBLAS_COMPUTE_32F},
        {CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, (cublasComputeType_t)0},
    };
    for (auto &t : bad) {
        cublasStatus_t s = cublasGemmEx(h, N, N, 2, 2, 3, &one, A, t.a, 2, B, t.b, 3, &one, C, t.c, 2, t.cm,
                                        CUBLAS_GEMM_DEFAULT);
        EXPECT(s == CUBLAS_STATUS_NOT_SUPPORTED, "types %d %d %d compute %d: %s, expected NOT_SUPPORTED", t.a, t.b,
               t.c, t.cm, cublasGetStatusName(s));
    }
    EXPECT_ST(cublasGemmEx(h, N, N, 2, 2, 3, &one, A, CUDA_R_32F, 2, B, CUDA_R_32F, 3, &one, C, CUDA_R_32F, 2,
                           CUBLAS_COMPUTE_32F, (cublasGemmAlgo_t)50),
              CUBLAS_STATUS_NOT_SUPPORTED);
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
    // a combination in NVIDIA's table the mock does not compute: NOT_SUPPORTED and a SIMFAULT
    EXPECT_ST(cublasGemmEx(h, N, N, 2, 2, 3, &one, A, CUDA_R_64F, 2, B, CUDA_R_64F, 3, &one, C, CUDA_R_64F, 2,
                           CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_NOT_SUPPORTED);
    EXPECT(cusim_errors == e0 + 1, "64F: %d faults, expected 1 (not implemented)", cusim_errors - e0);
}

// Every matrix's whole extent must lie in one registered buffer: faults, EXECUTION_FAILED,
// C untouched.
static void test_ranges(cublasHandle_t h) {
    float *A = dfloats({1, 4, 2, 5, 3, 6}), *B = dfloats({7, 9, 11, 8, 10, 12}), *C = (float *)dmem(16);
    int e0 = cusim_errors;
    // lda 3 on a 6-element A: column 2 ends at element 2*3 + 2 = 8 > 6
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 3, B, 3, 0.f, C, 2), CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "lda past the buffer: %d faults, expected 1", cusim_errors - e0);
    EXPECT(isnan(C[0]) && isnan(C[3]), "a refused call wrote C");
    // A one element in: its last element is one past the end
    e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A + 1, 2, B, 3, 0.f, C, 2), CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "A + 1: %d faults, expected 1", cusim_errors - e0);
    // ldc 3 on a 4-element C: (2-1)*3 + 2 = 5 > 4
    e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 2, B, 3, 0.f, C, 3), CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "ldc past the buffer: %d faults, expected 1", cusim_errors - e0);
    // a host (unregistered) B
    float hb[6] = {7, 9, 11, 8, 10, 12};
    e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 2, hb, 3, 0.f, C, 2), CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "host B: %d faults, expected 1", cusim_errors - e0);
    // bf16 element size: a 6-element bf16 A with lda 3 ends at element 8 too
    uint16_t *A16 = (uint16_t *)dmem(12), *B16 = (uint16_t *)dmem(12);
    float one = 1, zero = 0;
    e0 = cusim_errors;
    EXPECT_ST(cublasGemmEx(h, N, N, 2, 2, 3, &one, A16, CUDA_R_16BF, 3, B16, CUDA_R_16BF, 3, &zero, C, CUDA_R_32F, 2,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "bf16 lda past the buffer: %d faults, expected 1", cusim_errors - e0);
    // a float matrix 2 bytes into its buffer is misaligned (the GPU faults on the access)
    float *Bm = (float *)dmem(28);
    e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, A, 2, (const float *)((char *)Bm + 2), 3, 0.f, C, 2),
              CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "misaligned B: %d faults, expected 1", cusim_errors - e0);
    // C over A (in place) races on the GPU
    float *buf = dfloats({1, 4, 2, 5, 3, 6, 0, 0, 0, 0});
    e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, buf, 2, B, 3, 0.f, buf + 4, 2), CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors == e0 + 1, "C over A: %d faults, expected 1", cusim_errors - e0);
    // ...but C next to A in the same buffer is fine: A = buf[0..6), C = buf[6..10)
    e0 = cusim_errors;
    EXPECT_ST(sgemm(h, N, N, 2, 2, 3, 1.f, buf, 2, B, 3, 0.f, buf + 6, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(buf + 6, {58, 139, 64, 154}, "C"), "C after A in one buffer");
    EXPECT(cusim_errors == e0, "C after A: %d unexpected faults", cusim_errors - e0);
}

static void test_handle(cublasHandle_t h) {
    cudaStream_t s = (cudaStream_t)0x1234, got = 0;
    EXPECT_ST(cublasSetStream(h, s), CUBLAS_STATUS_SUCCESS);
    EXPECT_ST(cublasGetStream(h, &got), CUBLAS_STATUS_SUCCESS);
    EXPECT(got == s, "GetStream returned %p", (void *)got);
    EXPECT_ST(cublasSetStream(h, 0), CUBLAS_STATUS_SUCCESS);
    cublasPointerMode_t pm;
    EXPECT_ST(cublasGetPointerMode(h, &pm), CUBLAS_STATUS_SUCCESS);
    EXPECT(pm == CUBLAS_POINTER_MODE_HOST, "default pointer mode %d", pm);
    EXPECT_ST(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
    EXPECT_ST(cublasSetMathMode(h, (cublasMath_t)5), CUBLAS_STATUS_INVALID_VALUE);
    EXPECT_ST(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_SUCCESS);
    // device pointer mode: alpha / beta are read from device memory (checked)
    float *A = dfloats({1, 4, 2, 5, 3, 6}), *B = dfloats({7, 9, 11, 8, 10, 12}), *C = (float *)dmem(16);
    float *ab = dfloats({2, 0});
    EXPECT_ST(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_DEVICE), CUBLAS_STATUS_SUCCESS);
    int e0 = cusim_errors;
    EXPECT_ST(cublasGemmEx(h, N, N, 2, 2, 3, ab, A, CUDA_R_32F, 2, B, CUDA_R_32F, 3, ab + 1, C, CUDA_R_32F, 2,
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    EXPECT(eq(C, {116, 278, 128, 308}, "C"), "device alpha 2");
    float host_alpha = 1, host_beta = 0;
    EXPECT_ST(cublasGemmEx(h, N, N, 2, 2, 3, &host_alpha, A, CUDA_R_32F, 2, B, CUDA_R_32F, 3, &host_beta, C,
                           CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_EXECUTION_FAILED);
    EXPECT(cusim_errors > e0, "host alpha in device pointer mode: no fault");
    EXPECT_ST(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), CUBLAS_STATUS_SUCCESS);
    EXPECT(!strcmp(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE"), "status name");
}

// Several host threads on their own handles at once (the mock must be reentrant).
static void test_threads() {
    std::vector<std::thread> th;
    int bad[4] = {0, 0, 0, 0};
    int e0 = cusim_errors;
    for (int t = 0; t < 4; t++)
        th.emplace_back([t, &bad] {
            cublasHandle_t h;
            if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) { bad[t] = 1; return; }
            float *A = dfloats({1, 4, 2, 5, 3, 6}), *B = dfloats({7, 9, 11, 8, 10, 12}), *C = (float *)dmem(16);
            for (int r = 0; r < 200; r++) {
                if (sgemm(h, N, N, 2, 2, 3, (float)t, A, 2, B, 3, 0.f, C, 2) != CUBLAS_STATUS_SUCCESS ||
                    C[0] != 58.f * t || C[3] != 154.f * t)
                    bad[t]++;
            }
            cublasDestroy(h);
        });
    for (auto &x : th) x.join();
    EXPECT(!bad[0] && !bad[1] && !bad[2] && !bad[3], "threads: %d %d %d %d bad results", bad[0], bad[1], bad[2], bad[3]);
    EXPECT(cusim_errors == e0, "%d unexpected simulator faults", cusim_errors - e0);
}

int main() {
    fprintf(stderr, "test_cublas: the SIMFAULT lines below are expected (faults the tests provoke and count)\n");
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "cublasCreate failed\n"); return 1; }
    test_ops(h);
    test_padding(h);
    test_batched(h);
    test_bf16(h);
    test_fp16(h);
    test_tf32(h);
    test_large(h);
    test_validation(h);
    test_ranges(h);
    test_handle(h);
    test_threads();
    EXPECT_ST(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    printf("%d runs, %d failures\n", g_runs, g_fail);
    return g_fail ? 1 : 0;
}
