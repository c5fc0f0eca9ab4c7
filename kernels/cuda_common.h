// Shared by kernels/*.cu only (CUDA C++): check macros, launch helpers, stream casts.
// cudaCheck / cublasCheck / cudnnCheck evaluate to 0 on success, or print
// "file:line: <call>: <library message>" to stderr, record it with cd_err, set the sticky
// error flag read by cd_cuda_status(), and evaluate to -1. Use as `if (cudaCheck(x)) return;`
// or CD_CU_TRY(cudaCheck(x)) in functions returning int.
#ifndef CD_CUDA_COMMON_H
#define CD_CUDA_COMMON_H
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cublas_v2.h>
#include <stdint.h>
#include <stdio.h>
extern "C" {
#include "core/err.h"
}
#include "kernels/kernels_cuda.h"

// Records a failure (prints, cd_err, sticky flag). Always returns -1.
int cd_cuda_fail(const char *file, int line, const char *what, const char *msg);
const char *cd_cublas_msg(cublasStatus_t s);

static inline int cd_cuda_check_(cudaError_t e, const char *what, const char *file, int line) {
    return e == cudaSuccess ? 0 : cd_cuda_fail(file, line, what, cudaGetErrorString(e));
}
static inline int cd_cublas_check_(cublasStatus_t s, const char *what, const char *file, int line) {
    return s == CUBLAS_STATUS_SUCCESS ? 0 : cd_cuda_fail(file, line, what, cd_cublas_msg(s));
}
#define cudaCheck(x) cd_cuda_check_((x), #x, __FILE__, __LINE__)
#define cublasCheck(x) cd_cublas_check_((x), #x, __FILE__, __LINE__)
// A kernel launch: reports launch-configuration errors (not asynchronous faults).
#define cudaCheckLaunch() cd_cuda_check_(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
// A precondition of an op (bad shape, unsupported head dim): recorded like a CUDA error.
#define cd_cuda_require(c, msg) ((c) ? 0 : cd_cuda_fail(__FILE__, __LINE__, #c, (msg)))
#define CD_CU_TRY(x) do { if ((x) != 0) return -1; } while (0)

// cuDNN is optional (a GPU machine may lack it): CD_HAVE_CUDNN says whether it is here.
#if !defined(CD_NO_CUDNN) && __has_include(<cudnn.h>)
#include <cudnn.h>
#define CD_HAVE_CUDNN 1
static inline int cd_cudnn_check_(cudnnStatus_t s, const char *what, const char *file, int line) {
    return s == CUDNN_STATUS_SUCCESS ? 0 : cd_cuda_fail(file, line, what, cudnnGetErrorString(s));
}
#define cudnnCheck(x) cd_cudnn_check_((x), #x, __FILE__, __LINE__)
#else
#define CD_HAVE_CUDNN 0
#endif

// Deterministic column sums (kernels/cuda_gemm.cu; C++ linkage, .cu files only), no float atomics:
// cd_cuda_colsum_acc: db[c] += sum over n rows of dy[n, c] (uses the stream's scratch).
// cd_cuda_row_splits: how many row splits (of *rows_per_block rows) a column sum over n x c
// takes; cd_cuda_partials_sum: dst[i] (+)= part[0][i] + ... + part[splits-1][i] for i < n (in that
// order; acc = 1 adds to dst, 0 overwrites it).
void cd_cuda_colsum_acc(float *db, const float *dy, int n, int c, void *stream);
int cd_cuda_row_splits(int n, int c, int *rows_per_block);
void cd_cuda_partials_sum(float *dst, const float *part, int splits, int64_t n, int acc, cudaStream_t st);
// The attention backward's query splits (kernels/cuda_attention.cu; C++ linkage): enough
// (key tile, query split) blocks to fill the GPU twice; *per = query tiles per split.
int cd_attn_bwd_splits(int B, int H, int Nq, int Nk, int *per);

static inline cudaStream_t cd_stream(void *s) { return (cudaStream_t)s; }
static inline unsigned cd_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 2147483647 ? 2147483647 : (b < 1 ? 1 : b));
}
// Grid-stride loop over [0, n).
#define CD_GRID_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)blockDim.x * gridDim.x)
// Grid size for a grid-stride element-wise kernel of 256 threads (enough to fill the GPU).
static inline unsigned cd_ew_blocks(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b > 65536 ? 65536 : (b < 1 ? 1 : b));
}

// Storage-type helpers: fp32 math on float, bf16 or fp16 storage.
__device__ __forceinline__ float cd_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float cd_ld(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void cd_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void cd_st(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
__device__ __forceinline__ float cd_ld(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void cd_st(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

// The process's 16-bit storage format (cd_cuda_set_fp16): kernels are templated on the element
// type T = __nv_bfloat16 (the default) or __half (IEEE fp16) and use these generic conversions
// (round to nearest even; fp16 overflows to +-inf and keeps subnormals).
template <typename T> __device__ __forceinline__ T cd_to16(float v);
template <> __device__ __forceinline__ __nv_bfloat16 cd_to16<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half cd_to16<__half>(float v) { return __float2half_rn(v); }
__device__ __forceinline__ float cd_to32(float v) { return v; }
__device__ __forceinline__ float cd_to32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float cd_to32(__half v) { return __half2float(v); }
// Host side: runs the statement(s) with the typedef T16 set to the current 16-bit element type,
// e.g. CD_DISPATCH16(T16, k<T16><<<g, b, 0, st>>>((T16 *)y, (const T16 *)x, n)).
#define CD_DISPATCH16(T16, ...)                                                                    \
    do {                                                                                           \
        if (cd_cuda_get_fp16()) { typedef __half T16; __VA_ARGS__; }                               \
        else { typedef __nv_bfloat16 T16; __VA_ARGS__; }                                           \
    } while (0)
// The cuBLAS / CUDA data type of the current 16-bit format.
static inline cudaDataType_t cd_cuda_r16(void) { return cd_cuda_get_fp16() ? CUDA_R_16F : CUDA_R_16BF; }

// Warp / block reductions (sum) for blockDim.x a multiple of 32, <= 1024.
__device__ __forceinline__ float cd_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double cd_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// Sum over the block; the result is valid in every thread. `sh` holds >= 32 floats.
__device__ __forceinline__ float cd_block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = cd_warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.f;
    return cd_warp_sum(v);
}
__device__ __forceinline__ double cd_block_sum_d(double v, double *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = cd_warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    return cd_warp_sum_d(v);
}
#endif
