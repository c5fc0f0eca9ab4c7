// GEMM and Linear on the GPU through cuBLAS. Row-major C = op(A) op(B) is computed as the
// column-major C^T = op(B)^T op(A)^T, so A/B swap places and the strides are the ld's.
#include "kernels/cuda_common.h"
#include <chrono>

static cublasComputeType_t f32_compute(void) {
    return cd_cuda_get_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

extern "C" void cd_cuda_gemm(int transA, int transB, int M, int N, int K, float alpha,
                             const float *A, int lda, const float *B, int ldb, float beta,
                             float *C, int ldc, void *stream) {
    cublasHandle_t h = (cublasHandle_t)cd_cuda_cublas(stream);
    if (!h || M <= 0 || N <= 0) return;
    cublasCheck(cublasGemmEx(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
                             N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C,
                             CUDA_R_32F, ldc, f32_compute(), CUBLAS_GEMM_DEFAULT));
}

extern "C" void cd_cuda_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha,
                                  const uint16_t *A, int lda, const uint16_t *B, int ldb,
                                  float beta, void *C, int ldc, int c_bf16, void *stream) {
    cublasHandle_t h = (cublasHandle_t)cd_cuda_cublas(stream);
    if (!h || M <= 0 || N <= 0) return;
    const cudaDataType_t r16 = cd_cuda_r16(); // bf16, or fp16 in fp16 mode (cd_cuda_set_fp16)
    cublasCheck(cublasGemmEx(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
                             N, M, K, &alpha, B, r16, ldb, A, r16, lda, &beta, C,
                             c_bf16 ? r16 : CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
}

extern "C" void cd_cuda_gemm_batched(int transA, int transB, int M, int N, int K, float alpha,
                                     const float *A, int lda, int64_t strideA, const float *B,
                                     int ldb, int64_t strideB, float beta, float *C, int ldc,
                                     int64_t strideC, int batch, void *stream) {
    cublasHandle_t h = (cublasHandle_t)cd_cuda_cublas(stream);
    if (!h || M <= 0 || N <= 0 || batch <= 0) return;
    cublasCheck(cublasGemmStridedBatchedEx(
        h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha,
        B, CUDA_R_32F, ldb, strideB, A, CUDA_R_32F, lda, strideA, &beta, C, CUDA_R_32F, ldc,
        strideC, batch, f32_compute(), CUBLAS_GEMM_DEFAULT));
}

// y[n, out] += b[out]  (fp32 or 16-bit y)
template <typename T>
__global__ void k_add_row_bias(T *y, const float *b, int64_t n, int out) {
    CD_GRID_LOOP(i, n * out) cd_st(y, i, cd_ld(y, i) + b[i % out]);
}

// Column sums, deterministic (no float atomics): pass 1, k_colsum_part, writes each row
// split's sums into part[split][c] (block (32, 8): 32 columns, 8 row lanes; grid (columns / 32,
// splits)); pass 2, k_partials_sum, adds the splits to the destination in split order.
__global__ void k_colsum_part(float *part, const float *dy, int n, int c, int rows_per_block) {
    __shared__ float sh[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per_block, r1 = min(n, r0 + rows_per_block);
    float s = 0.f;
    if (col < c)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) s += dy[(int64_t)r * c + col];
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < c) {
        for (int j = 1; j < 8; j++) s += sh[j][threadIdx.x];
        part[(int64_t)blockIdx.y * c + col] = s;
    }
}

__global__ void k_partials_sum(float *dst, const float *part, int splits, int64_t n, int acc) {
    CD_GRID_LOOP(i, n) {
        float s = part[i];
        for (int p = 1; p < splits; p++) s += part[(int64_t)p * n + i];
        dst[i] = acc ? dst[i] + s : s;
    }
}

int cd_cuda_row_splits(int n, int c, int *rows_per_block) {
    int cb = (c + 31) / 32;
    int ys = (264 + cb - 1) / cb; // about two blocks per SM
    if (ys > (n + 63) / 64) ys = (n + 63) / 64;
    if (ys < 1) ys = 1;
    *rows_per_block = (n + ys - 1) / ys;
    return (n + *rows_per_block - 1) / *rows_per_block;
}

void cd_cuda_partials_sum(float *dst, const float *part, int splits, int64_t n, int acc, cudaStream_t st) {
    if (n <= 0) return;
    k_partials_sum<<<cd_ew_blocks(n), 256, 0, st>>>(dst, part, splits, n, acc);
    cudaCheckLaunch();
}

void cd_cuda_colsum_acc(float *db, const float *dy, int n, int c, void *stream) {
    cudaStream_t st = cd_stream(stream);
    int rpb, ys = cd_cuda_row_splits(n, c, &rpb);
    float *part = (float *)cd_cuda_scratch(stream, sizeof(float) * (size_t)ys * c);
    if (!part) return;
    k_colsum_part<<<dim3((c + 31) / 32, ys), dim3(32, 8), 0, st>>>(part, dy, n, c, rpb);
    if (cudaCheckLaunch()) return;
    cd_cuda_partials_sum(db, part, ys, c, 1, st);
}

extern "C" void cd_cuda_linear_fwd(float *y, const float *x, const float *W, const float *b,
                                   int n, int in, int out, void *stream) {
    cd_cuda_gemm(0, 1, n, out, in, 1.f, x, in, W, in, 0.f, y, out, stream);
    if (b) {
        k_add_row_bias<float><<<cd_ew_blocks((int64_t)n * out), 256, 0, cd_stream(stream)>>>(y, b, n, out);
        cudaCheckLaunch();
    }
}

extern "C" void cd_cuda_linear_bwd(float *dx, float *dW, float *db, const float *dy,
                                   const float *x, const float *W, int n, int in, int out,
                                   void *stream) {
    if (dx) cd_cuda_gemm(0, 0, n, in, out, 1.f, dy, out, W, in, 0.f, dx, in, stream);
    if (dW) cd_cuda_gemm(1, 0, out, in, n, 1.f, dy, out, x, in, 1.f, dW, in, stream);
    if (db) cd_cuda_colsum_acc(db, dy, n, out, stream);
}

extern "C" void cd_cuda_linear_fwd_bf16(float *y, const uint16_t *x, const uint16_t *W,
                                        const float *b, int n, int in, int out, void *stream) {
    cd_cuda_gemm_bf16(0, 1, n, out, in, 1.f, x, in, W, in, 0.f, y, out, 0, stream);
    if (b) {
        k_add_row_bias<float><<<cd_ew_blocks((int64_t)n * out), 256, 0, cd_stream(stream)>>>(y, b, n, out);
        cudaCheckLaunch();
    }
}

extern "C" void cd_cuda_linear_fwd_bf16_out(uint16_t *y, const uint16_t *x, const uint16_t *W, const float *b, int n,
                                            int in, int out, void *stream) {
    cd_cuda_gemm_bf16(0, 1, n, out, in, 1.f, x, in, W, in, 0.f, y, out, 1, stream);
    if (b) {
        CD_DISPATCH16(T16, k_add_row_bias<T16><<<cd_ew_blocks((int64_t)n * out), 256, 0, cd_stream(stream)>>>(
                               (T16 *)y, b, n, out));
        cudaCheckLaunch();
    }
}

// Fills x[n] with a cheap hash-based pattern in [-1, 1) (16-bit T when bf16, else fp32), so
// GEMM-rate measurements run on non-zero data (zeros run faster on tensor cores).
template <typename T>
__global__ void k_fill_pattern(void *x, int64_t n, int bf16) {
    CD_GRID_LOOP(i, n) {
        uint32_t h = (uint32_t)i * 2654435761u;
        h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        float v = (float)(h & 0xffff) / 32768.f - 1.f;
        if (bf16) ((T *)x)[i] = cd_to16<T>(v);
        else ((float *)x)[i] = v;
    }
}

extern "C" double cd_cuda_gemm_rate_gflops(int n, int bf16, void *stream) {
    size_t es = bf16 ? 2 : 4, nn = (size_t)n * n;
    void *A = cd_cuda_malloc(nn * es), *B = cd_cuda_malloc(nn * es), *C = cd_cuda_malloc(nn * 4);
    double rate = -1;
    cudaStream_t st = cd_stream(stream);
    if (A && B && C) {
        CD_DISPATCH16(T16, k_fill_pattern<T16><<<cd_ew_blocks(nn), 256, 0, st>>>(A, nn, bf16);
                           k_fill_pattern<T16><<<cd_ew_blocks(nn), 256, 0, st>>>(B, nn, bf16));
    }
    if (A && B && C && !cudaCheckLaunch()) {
        auto run = [&](int reps) {
            for (int r = 0; r < reps; r++) {
                if (bf16) cd_cuda_gemm_bf16(0, 0, n, n, n, 1.f, (uint16_t *)A, n, (uint16_t *)B, n, 0.f, C, n, 0, stream);
                else cd_cuda_gemm(0, 0, n, n, n, 1.f, (float *)A, n, (float *)B, n, 0.f, (float *)C, n, stream);
            }
        };
        run(2);
        cd_cuda_sync(stream);
        int reps = bf16 ? 10 : 3;
        auto t0 = std::chrono::steady_clock::now();
        run(reps);
        if (cd_cuda_sync(stream) == 0) {
            double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            rate = 2.0 * n * (double)n * n * reps / s / 1e9;
        }
    }
    cd_cuda_free(A);
    cd_cuda_free(B);
    cd_cuda_free(C);
    return rate;
}
