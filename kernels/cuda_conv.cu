// 2-D convolution on the GPU through cuDNN (twin of conv_cpu.c): forward, backward data
// (overwrites dx), backward filter (accumulates into dW, beta = 1), bias gradient by a small
// reduction kernel. fp32 uses FMA math (exact fp32) unless cd_cuda_set_tf32(1); bf16 uses
// tensor cores with fp32 accumulation; the _bf16 ops take the process's 16-bit format (bf16, or
// fp16 after cd_cuda_set_fp16(1); the plan cache keys on the format). Descriptors and algorithm choices are cached per shape.
#include "kernels/cuda_common.h"
#include <pthread.h>
#include <string.h>

// y[n, c, hw] += b[c]  (fp32 or 16-bit y)
template <typename T>
__global__ void k_conv_bias(T *y, const float *b, int64_t total, int c, int hw) {
    CD_GRID_LOOP(i, total) {
        int ch = (int)((i / hw) % c);
        cd_st(y, i, cd_ld(y, i) + b[ch]);
    }
}

// db[c] += sum over n, hw of dy[n, c, hw]; one block per channel.
__global__ void k_conv_dbias(float *db, const float *dy, int n, int c, int hw) {
    __shared__ float sh[32];
    int ch = blockIdx.x;
    float s = 0.f;
    for (int i = 0; i < n; i++) {
        const float *r = dy + ((int64_t)i * c + ch) * hw;
        for (int j = threadIdx.x; j < hw; j += blockDim.x) s += r[j];
    }
    s = cd_block_sum(s, sh);
    if (threadIdx.x == 0) db[ch] += s;
}

#if CD_HAVE_CUDNN
#define CONV_CACHE 128
#define WS_LIMIT ((size_t)2 << 30)
typedef struct {
    int key[11];
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t fwd_math, data_math, filter_math;
    size_t fwd_ws, data_ws, filter_ws;
    int has_bwd;
} ConvPlan;
static ConvPlan g_plans[CONV_CACHE];
static int g_nplans;
static pthread_mutex_t g_plan_mu = PTHREAD_MUTEX_INITIALIZER;

// FFT and Winograd algorithms trade accuracy (errors ~1e-4 in fp32) for speed: never used.
static int approx_algo(cudnnConvolutionFwdAlgo_t a) {
    return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
static int approx_algo(cudnnConvolutionBwdDataAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
static int approx_algo(cudnnConvolutionBwdFilterAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

// Picks the first heuristic result that succeeded, fits the workspace limit, is not an
// approximate (FFT/Winograd) algorithm and, in exact fp32 mode, is no tensor-op variant; an
// exact-mode algorithm then always runs with CUDNN_FMA_MATH (DEFAULT_MATH would allow TF32).
// Deterministic algorithms first (cuDNN ranks e.g. BWD_DATA_ALGO_0, which accumulates with
// atomics, high): a non-deterministic one only when no deterministic one qualifies, and never
// in deterministic mode (det; cd_cuda_set_deterministic), where that is an error.
#define PICK_ALGO(results, count, exact, det, algo_out, math_out, ws_out)                         \
    do {                                                                                         \
        int found_ = 0;                                                                          \
        for (int pass_ = 0; pass_ < ((det) ? 1 : 2) && !found_; pass_++)                          \
            for (int i_ = 0; i_ < (count) && !found_; i_++) {                                    \
                if (results[i_].status != CUDNN_STATUS_SUCCESS || results[i_].memory > WS_LIMIT) continue; \
                if (approx_algo(results[i_].algo)) continue;                                     \
                if (pass_ == 0 && results[i_].determinism != CUDNN_DETERMINISTIC) continue;      \
                if ((exact) && (results[i_].mathType == CUDNN_TENSOR_OP_MATH ||                  \
                                results[i_].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) continue; \
                algo_out = results[i_].algo; ws_out = results[i_].memory;                        \
                math_out = (exact) ? CUDNN_FMA_MATH : results[i_].mathType;                      \
                found_ = 1;                                                                      \
            }                                                                                    \
        if (!found_) {                                                                           \
            cd_cuda_fail(__FILE__, __LINE__, "cudnn algorithm",                                  \
                         (det) ? "no usable deterministic algorithm (deterministic mode)" : "no usable algorithm"); \
            return NULL;                                                                         \
        }                                                                                        \
    } while (0)

static ConvPlan *plan_new(cudnnHandle_t h, const int *key, int bwd) {
    int n = key[0], cin = key[1], hh = key[2], w = key[3], cout = key[4], k = key[5], s = key[6],
        p = key[7], bf16 = key[8], tf32 = key[9], det = key[10];   // bf16: 0 fp32, 1 bf16, 2 fp16 (a 16-bit plan)
    int exact = !bf16 && !tf32;
    cudnnDataType_t dt = bf16 == 2 ? CUDNN_DATA_HALF : bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    int ho = (hh + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    ConvPlan pl;
    memset(&pl, 0, sizeof pl);
    memcpy(pl.key, key, sizeof pl.key);
    if (cudnnCheck(cudnnCreateTensorDescriptor(&pl.xd)) || cudnnCheck(cudnnCreateTensorDescriptor(&pl.yd)) ||
        cudnnCheck(cudnnCreateFilterDescriptor(&pl.wd)) || cudnnCheck(cudnnCreateConvolutionDescriptor(&pl.cd)) ||
        cudnnCheck(cudnnSetTensor4dDescriptor(pl.xd, CUDNN_TENSOR_NCHW, dt, n, cin, hh, w)) ||
        cudnnCheck(cudnnSetTensor4dDescriptor(pl.yd, CUDNN_TENSOR_NCHW, dt, n, cout, ho, wo)) ||
        cudnnCheck(cudnnSetFilter4dDescriptor(pl.wd, dt, CUDNN_TENSOR_NCHW, cout, cin, k, k)) ||
        cudnnCheck(cudnnSetConvolution2dDescriptor(pl.cd, p, p, s, s, 1, 1, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT)) ||
        cudnnCheck(cudnnSetConvolutionMathType(pl.cd, exact ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH)))
        return NULL;
    int cnt = 0;
    cudnnConvolutionFwdAlgoPerf_t fr[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    if (cudnnCheck(cudnnGetConvolutionForwardAlgorithm_v7(h, pl.xd, pl.wd, pl.cd, pl.yd,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &cnt, fr)))
        return NULL;
    PICK_ALGO(fr, cnt, exact, det, pl.fwd, pl.fwd_math, pl.fwd_ws);
    size_t ws = 0; // the workspace under the math type it will run with
    if (cudnnCheck(cudnnSetConvolutionMathType(pl.cd, pl.fwd_math)) ||
        cudnnCheck(cudnnGetConvolutionForwardWorkspaceSize(h, pl.xd, pl.wd, pl.cd, pl.yd, pl.fwd, &ws)))
        return NULL;
    if (ws > pl.fwd_ws) pl.fwd_ws = ws;
    if (bwd) {
        cudnnConvolutionBwdDataAlgoPerf_t dr[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        cudnnConvolutionBwdFilterAlgoPerf_t wr[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        const cudnnMathType_t mode = exact ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH; // for the heuristics
        if (cudnnCheck(cudnnSetConvolutionMathType(pl.cd, mode)) ||
            cudnnCheck(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pl.wd, pl.yd, pl.cd, pl.xd,
                                                                   CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &cnt, dr)))
            return NULL;
        PICK_ALGO(dr, cnt, exact, det, pl.bwd_data, pl.data_math, pl.data_ws);
        if (cudnnCheck(cudnnSetConvolutionMathType(pl.cd, pl.data_math)) ||
            cudnnCheck(cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl.wd, pl.yd, pl.cd, pl.xd, pl.bwd_data, &ws)))
            return NULL;
        if (ws > pl.data_ws) pl.data_ws = ws;
        // 16-bit plans serve only backward-data (frozen convolutions: no weight gradient), so the
        // filter algorithm is searched for fp32/tf32 plans only: a shape cuDNN has no bf16
        // filter algorithm for (conv_out's 4 channels) must not fail the data gradient.
        if (!bf16) {
            if (cudnnCheck(cudnnSetConvolutionMathType(pl.cd, mode)) ||
                cudnnCheck(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, pl.xd, pl.yd, pl.cd, pl.wd,
                                                                         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &cnt, wr)))
                return NULL;
            PICK_ALGO(wr, cnt, exact, det, pl.bwd_filter, pl.filter_math, pl.filter_ws);
            if (cudnnCheck(cudnnSetConvolutionMathType(pl.cd, pl.filter_math)) ||
                cudnnCheck(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pl.xd, pl.yd, pl.cd, pl.wd, pl.bwd_filter, &ws)))
                return NULL;
            if (ws > pl.filter_ws) pl.filter_ws = ws;
        }
        pl.has_bwd = 1;
    }
    pthread_mutex_lock(&g_plan_mu);
    int slot = g_nplans < CONV_CACHE ? g_nplans++ : (int)(key[0] * 131u + key[1] * 7u + key[4]) % CONV_CACHE;
    // An evicted plan's descriptors are leaked on purpose (another thread may hold it).
    g_plans[slot] = pl;
    ConvPlan *out = &g_plans[slot];
    pthread_mutex_unlock(&g_plan_mu);
    return out;
}

// bf16 = 1: a 16-bit plan in the current format (cd_cuda_get_fp16), keyed 1 (bf16) or 2 (fp16).
static ConvPlan *plan_get(cudnnHandle_t h, int n, int cin, int hh, int w, int cout, int k, int s, int p,
                          int bf16, int bwd) {
    int fmt = bf16 ? 1 + cd_cuda_get_fp16() : 0;
    int key[11] = {n, cin, hh, w, cout, k, s, p, fmt, bf16 ? 0 : cd_cuda_get_tf32(), cd_cuda_get_deterministic()};
    pthread_mutex_lock(&g_plan_mu);
    ConvPlan *found = NULL;
    for (int i = 0; i < g_nplans && !found; i++)
        if (!memcmp(g_plans[i].key, key, sizeof key) && (g_plans[i].has_bwd || !bwd)) found = &g_plans[i];
    pthread_mutex_unlock(&g_plan_mu);
    return found ? found : plan_new(h, key, bwd);
}

static int conv_fwd_any(void *y, const void *x, const void *W, int n, int cin, int h, int w, int cout, int k,
                        int s, int p, int bf16, void *stream) {
    cudnnHandle_t hd = (cudnnHandle_t)cd_cuda_cudnn(stream);
    if (!hd) return -1;
    ConvPlan *pl = plan_get(hd, n, cin, h, w, cout, k, s, p, bf16, 0);
    if (!pl) return -1;
    void *ws = pl->fwd_ws ? cd_cuda_scratch(stream, pl->fwd_ws) : NULL;
    if (pl->fwd_ws && !ws) return -1;
    float one = 1.f, zero = 0.f;
    CD_CU_TRY(cudnnCheck(cudnnSetConvolutionMathType(pl->cd, pl->fwd_math)));
    return cudnnCheck(cudnnConvolutionForward(hd, &one, pl->xd, x, pl->wd, W, pl->cd, pl->fwd, ws, pl->fwd_ws,
                                              &zero, pl->yd, y));
}
#endif

extern "C" void cd_cuda_conv2d_fwd(float *y, const float *x, const float *W, const float *b, int n, int cin,
                                   int h, int w, int cout, int k, int s, int p, void *stream) {
#if CD_HAVE_CUDNN
    if (conv_fwd_any(y, x, W, n, cin, h, w, cout, k, s, p, 0, stream)) return;
    if (b) {
        int64_t hw = (int64_t)((h + 2 * p - k) / s + 1) * ((w + 2 * p - k) / s + 1), total = n * cout * hw;
        k_conv_bias<float><<<cd_ew_blocks(total), 256, 0, cd_stream(stream)>>>(y, b, total, cout, (int)hw);
        cudaCheckLaunch();
    }
#else
    cd_cuda_fail(__FILE__, __LINE__, "cd_cuda_conv2d_fwd", "built without cuDNN");
#endif
}

extern "C" void cd_cuda_conv2d_fwd_bf16(uint16_t *y, const uint16_t *x, const uint16_t *W, const float *b,
                                        int n, int cin, int h, int w, int cout, int k, int s, int p,
                                        void *stream) {
#if CD_HAVE_CUDNN
    if (conv_fwd_any(y, x, W, n, cin, h, w, cout, k, s, p, 1, stream)) return;
    if (b) {
        int64_t hw = (int64_t)((h + 2 * p - k) / s + 1) * ((w + 2 * p - k) / s + 1), total = n * cout * hw;
        CD_DISPATCH16(T16, k_conv_bias<T16><<<cd_ew_blocks(total), 256, 0, cd_stream(stream)>>>((T16 *)y, b, total,
                                                                                              cout, (int)hw));
        cudaCheckLaunch();
    }
#else
    cd_cuda_fail(__FILE__, __LINE__, "cd_cuda_conv2d_fwd_bf16", "built without cuDNN");
#endif
}

extern "C" void cd_cuda_conv2d_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                                   const float *W, int n, int cin, int h, int w, int cout, int k, int s, int p,
                                   void *stream) {
#if CD_HAVE_CUDNN
    cudnnHandle_t hd = (cudnnHandle_t)cd_cuda_cudnn(stream);
    if (!hd) return;
    ConvPlan *pl = plan_get(hd, n, cin, h, w, cout, k, s, p, 0, 1);
    if (!pl) return;
    float one = 1.f, zero = 0.f;
    if (dx) {
        void *ws = pl->data_ws ? cd_cuda_scratch(stream, pl->data_ws) : NULL;
        if (pl->data_ws && !ws) return;
        if (cudnnCheck(cudnnSetConvolutionMathType(pl->cd, pl->data_math)) ||
            cudnnCheck(cudnnConvolutionBackwardData(hd, &one, pl->wd, W, pl->yd, dy, pl->cd, pl->bwd_data, ws,
                                                    pl->data_ws, &zero, pl->xd, dx)))
            return;
    }
    if (dW) {
        void *ws = pl->filter_ws ? cd_cuda_scratch(stream, pl->filter_ws) : NULL;
        if (pl->filter_ws && !ws) return;
        if (cudnnCheck(cudnnSetConvolutionMathType(pl->cd, pl->filter_math)) ||
            cudnnCheck(cudnnConvolutionBackwardFilter(hd, &one, pl->xd, x, pl->yd, dy, pl->cd, pl->bwd_filter, ws,
                                                      pl->filter_ws, &one, pl->wd, dW)))
            return;
    }
    if (db) {
        int hw = ((h + 2 * p - k) / s + 1) * ((w + 2 * p - k) / s + 1);
        k_conv_dbias<<<cout, 256, 0, cd_stream(stream)>>>(db, dy, n, cout, hw);
        cudaCheckLaunch();
    }
#else
    cd_cuda_fail(__FILE__, __LINE__, "cd_cuda_conv2d_bwd", "built without cuDNN");
#endif
}

// ---- training: 16-bit backward data (helper "unettrain"; declared at the end of kernels_cuda.h)
// dx = conv2d backward-data of dy through W, 16-bit dy/W/dx (NCHW), fp32 accumulate; dx overwritten.
extern "C" void cd_cuda_conv2d_bwd_data_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *W,
                                             int n, int cin, int h, int w, int cout, int k, int s,
                                             int p, void *stream) {
#if CD_HAVE_CUDNN
    cudnnHandle_t hd = (cudnnHandle_t)cd_cuda_cudnn(stream);
    if (!hd) return;
    ConvPlan *pl = plan_get(hd, n, cin, h, w, cout, k, s, p, 1, 1);
    if (!pl) return;
    float one = 1.f, zero = 0.f;
    void *ws = pl->data_ws ? cd_cuda_scratch(stream, pl->data_ws) : NULL;
    if (pl->data_ws && !ws) return;
    if (cudnnCheck(cudnnSetConvolutionMathType(pl->cd, pl->data_math))) return;
    cudnnCheck(cudnnConvolutionBackwardData(hd, &one, pl->wd, W, pl->yd, dy, pl->cd, pl->bwd_data, ws,
                                            pl->data_ws, &zero, pl->xd, dx));
#else
    cd_cuda_fail(__FILE__, __LINE__, "cd_cuda_conv2d_bwd_data_bf16", "built without cuDNN");
#endif
}
