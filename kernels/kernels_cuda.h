// CUDA twins of every op in kernels/kernels.h (kernels/*.cu). Same arguments as the CPU
// op, all tensors are DEVICE pointers, plus `stream` (a cudaStream_t; NULL = the default
// stream). Ops are asynchronous on their stream except the ones returning a value (mse,
// sumsq), which synchronize it. Plain C: this header needs no CUDA headers, so C code
// built with or without CUDA can include it; the symbols exist only when CD_CUDA is set.
//
// Errors: every CUDA/cuBLAS/cuDNN call goes through a check macro (kernels/cuda_common.h)
// that prints file:line and the library's message to stderr and records it with cd_err.
// Ops returning void keep a sticky flag: cd_cuda_status() returns -1 once any op failed
// (and clears the flag), so a caller checks once per step instead of per op.
#ifndef CD_KERNELS_CUDA_H
#define CD_KERNELS_CUDA_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// ---- device and memory (kernels/cuda_runtime.cu) ------------------------------------
// 1 when a usable CUDA device and driver are present, else 0 (never crashes without a
// driver or a GPU). `why` (may be NULL) receives a short reason when it returns 0.
int cd_cuda_available(char *why, size_t why_cap);
// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB" into buf; 0 or -1.
int cd_cuda_device_name(char *buf, size_t cap);
int cd_cuda_status(void);              // 0, or -1 when an op failed since the last call
void *cd_cuda_malloc(size_t bytes);    // NULL (with cd_err) on failure
void cd_cuda_free(void *p);
int cd_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream);
int cd_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream);
int cd_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes, void *stream);
int cd_cuda_memset(void *dst, int byte, size_t bytes, void *stream);
int cd_cuda_sync(void *stream);        // waits for the stream (NULL: the whole device)
void *cd_cuda_stream_create(void);     // a non-blocking stream, NULL on failure
void cd_cuda_stream_destroy(void *stream);
// Device memory in use (all processes) and total, in bytes (cudaMemGetInfo).
int cd_cuda_mem_info(size_t *used, size_t *total);
// TF32 tensor-core math for fp32 GEMMs and convolutions (off by default: exact fp32).
void cd_cuda_set_tf32(int on);
int cd_cuda_get_tf32(void);
// Per-stream library handles (created on first use, kept for the process).
void *cd_cuda_cublas(void *stream);    // cublasHandle_t bound to stream
void *cd_cuda_cudnn(void *stream);     // cudnnHandle_t bound to stream
// Scratch device memory owned by the stream's context: valid until the next call of
// cd_cuda_scratch on the same stream (grows; never shrinks). NULL on failure.
void *cd_cuda_scratch(void *stream, size_t bytes);
// The stream's second scratch buffer, the same rules: for an op that holds a buffer while it
// calls ops that use cd_cuda_scratch (the head-dim-160 attention backward's widened copies).
void *cd_cuda_scratch_outer(void *stream, size_t bytes);
// Bytes currently allocated through cd_cuda_malloc (not the streams' scratch or the libraries'
// own memory), and in *peak (may be NULL) the most at once since the start or the last
// cd_cuda_alloc_reset_peak(). Thread-safe.
int64_t cd_cuda_alloc_bytes(int64_t *peak);
void cd_cuda_alloc_reset_peak(void);
// CUDA graphs, so that C code needs no CUDA header. cd_cuda_graph_begin starts capturing the
// work queued on `stream` (thread-local capture mode; stream must not be NULL);
// cd_cuda_graph_end stops it and instantiates what was captured into *exec (NULL on failure);
// cd_cuda_graph_launch replays it on stream; cd_cuda_graph_destroy frees it (NULL is fine).
// They return 0, or -1 with cd_err (the CUDA error is cleared, the sticky flag is not set):
// the caller runs its work without a graph. Ops that fail while capturing set the sticky flag
// as usual (check cd_cuda_status() after cd_cuda_graph_end).
int cd_cuda_graph_begin(void *stream);
int cd_cuda_graph_end(void *stream, void **exec);
int cd_cuda_graph_launch(void *exec, void *stream);
void cd_cuda_graph_destroy(void *exec);

// ---- the 16-bit storage format (kernels/cuda_runtime.cu) ------------------------------
// Every `_bf16` op below, and the two conversions, store uint16_t values in the process's
// 16-bit format: bf16 (the default) or, after cd_cuda_set_fp16(1), IEEE fp16 (binary16:
// GEMMs and convolutions then take fp16 inputs with fp32 accumulation; fp32 -> fp16 rounds to
// nearest even, overflows to +-inf and keeps subnormals, as __float2half_rn). The names keep
// "bf16" (the default and the format the sampler and trainer use unless --precision fp16).
// Process-wide like TF32: set it before weights are converted or plans are made, never while
// work is queued; 16-bit copies made in one format are garbage read in the other.
void cd_cuda_set_fp16(int on);
int cd_cuda_get_fp16(void);
// Deterministic mode (off by default): the attention backward adds without float atomics, so
// the same inputs give the same bits run to run (on the same GPU and library versions). It
// costs the attention backward a second, query-parallel pass for dq (FlashAttention's
// deterministic trade-off). Every other op is deterministic in both modes: reductions sum
// per-block partials in a fixed order, cuBLAS GEMMs are (NVIDIA: same architecture and SM
// count), and convolutions pick deterministic cuDNN algorithms (cuda_conv.cu).
// Process-wide like TF32: set it before work is queued.
void cd_cuda_set_deterministic(int on);
int cd_cuda_get_deterministic(void);

// ---- bf16 conversion (kernels/cuda_elementwise.cu) ----------------------------------
void cd_cuda_f32_to_bf16(uint16_t *y, const float *x, int64_t n, void *stream);
void cd_cuda_bf16_to_f32(float *y, const uint16_t *x, int64_t n, void *stream);

// ---- GEMM (kernels/cuda_gemm.cu) ----------------------------------------------------
void cd_cuda_gemm(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C,
                  int ldc, void *stream);
// bf16 A, B (uint16_t bit patterns), fp32 accumulate; C fp32 (c_bf16 = 0) or bf16.
void cd_cuda_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha,
                       const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                       void *C, int ldc, int c_bf16, void *stream);
// Batched strided GEMM (fp32 or tf32 per cd_cuda_set_tf32): C_i = alpha op(A_i) op(B_i) + beta C_i.
void cd_cuda_gemm_batched(int transA, int transB, int M, int N, int K, float alpha,
                          const float *A, int lda, int64_t strideA, const float *B, int ldb,
                          int64_t strideB, float beta, float *C, int ldc, int64_t strideC,
                          int batch, void *stream);
// Measured GEMM rate (GFLOP/s) at n^3: 16-bit in (the current format) / fp32 accumulate when bf16, else fp32
// (tf32 when enabled). Allocates and frees its own buffers; -1 on failure.
double cd_cuda_gemm_rate_gflops(int n, int bf16, void *stream);

void cd_cuda_linear_fwd(float *y, const float *x, const float *W, const float *b, int n,
                        int in, int out, void *stream);
void cd_cuda_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int n, int in, int out, void *stream);
// bf16 Linear: x, W bf16; y fp32 (+ fp32 bias). For frozen bf16 weights.
void cd_cuda_linear_fwd_bf16(float *y, const uint16_t *x, const uint16_t *W, const float *b,
                             int n, int in, int out, void *stream);
// The same with a bf16 y (the GEMM's output rounded to bf16, then + bias rounded again).
void cd_cuda_linear_fwd_bf16_out(uint16_t *y, const uint16_t *x, const uint16_t *W,
                                 const float *b, int n, int in, int out, void *stream);

// ---- LayerNorm / GroupNorm (kernels/cuda_norm.cu) ------------------------------------
void cd_cuda_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                           const float *b, int n, int c, float eps, void *stream);
void cd_cuda_layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *g, int n, int c,
                           void *stream);
void cd_cuda_groupnorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                           const float *b, int n, int c, int hw, int groups, float eps,
                           int silu, void *stream);
void cd_cuda_groupnorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *g,
                           const float *b, int n, int c, int hw, int groups, int silu,
                           void *stream);

// bf16 storage, fp32 statistics and math (forward only: the sampler's path).
void cd_cuda_layernorm_fwd_bf16(uint16_t *y, float *mean, float *rstd, const uint16_t *x,
                                const float *g, const float *b, int n, int c, float eps,
                                void *stream);
void cd_cuda_groupnorm_fwd_bf16(uint16_t *y, float *mean, float *rstd, const uint16_t *x,
                                const float *g, const float *b, int n, int c, int hw, int groups,
                                float eps, int silu, void *stream);

// ---- Convolution (kernels/cuda_conv.cu, cuDNN) ----------------------------------------
void cd_cuda_conv2d_fwd(float *y, const float *x, const float *W, const float *b, int n,
                        int cin, int h, int w, int cout, int k, int s, int p, void *stream);
void cd_cuda_conv2d_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int n, int cin, int h, int w, int cout, int k, int s,
                        int p, void *stream);
// bf16 activations and weights (NCHW), fp32 accumulate, bf16 y; fp32 bias (may be NULL).
void cd_cuda_conv2d_fwd_bf16(uint16_t *y, const uint16_t *x, const uint16_t *W,
                             const float *b, int n, int cin, int h, int w, int cout, int k,
                             int s, int p, void *stream);

// ---- Attention (kernels/cuda_attention.cu: fused flash-style, fp32) ----------------------
// Supported head dims: 40, 64, 80, 160 (others: error recorded, cd_cuda_status() = -1).
void cd_cuda_attention_fwd(float *out, float *lse, const float *q, const float *k,
                           const float *v, int B, int H, int Nq, int Nk, int D, float scale,
                           void *stream);
void cd_cuda_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *out, const float *lse,
                           int B, int H, int Nq, int Nk, int D, float scale, int detach_k0,
                           void *stream);
// Causal twins of kernels/attention_causal.h (query i sees keys j <= i; CLIP's text model).
void cd_cuda_attention_causal_fwd(float *out, float *lse, const float *q, const float *k,
                                  const float *v, int B, int H, int N, int D, float scale,
                                  void *stream);
void cd_cuda_attention_causal_bwd(float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v,
                                  const float *out, const float *lse, int B, int H, int N, int D,
                                  float scale, void *stream);
// bf16 q, k, v on tensor cores (kernels/cuda_attention_bf16.cu), fp32 softmax and
// accumulation; out fp32 (out_bf16 = 0) or bf16; lse fp32 (may be NULL). q, k, v 16-byte aligned.
void cd_cuda_attention_fwd_bf16(void *out, int out_bf16, float *lse, const uint16_t *q,
                                const uint16_t *k, const uint16_t *v, int B, int H, int Nq,
                                int Nk, int D, float scale, void *stream);
// Backward of the bf16 forward: dout, q, k, v, out bf16; lse fp32 (required); dq, dk, dv fp32
// (overwritten). Tensor cores for head dims 40/64/80; 160 runs the fp32 kernel on widened copies.
void cd_cuda_attention_bwd_bf16(float *dq, float *dk, float *dv, const uint16_t *dout,
                                const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                const uint16_t *out, const float *lse, int B, int H, int Nq,
                                int Nk, int D, float scale, int detach_k0, void *stream);
// Causal twins of the two above (query i sees keys j <= i, Nq = Nk = N; the CLIP text model):
// the semantics of cd_cuda_attention_causal_fwd/_bwd with the storage, head dims and 16-bit
// rounding points of cd_cuda_attention_fwd_bf16/_bwd_bf16 (backward: out 16-bit, lse required).
void cd_cuda_attention_causal_fwd_bf16(void *out, int out_bf16, float *lse, const uint16_t *q,
                                       const uint16_t *k, const uint16_t *v, int B, int H, int N,
                                       int D, float scale, void *stream);
void cd_cuda_attention_causal_bwd_bf16(float *dq, float *dk, float *dv, const uint16_t *dout,
                                       const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                       const uint16_t *out, const float *lse, int B, int H, int N,
                                       int D, float scale, void *stream);
// Unfused baseline (kernels/cuda_attention_naive.cu): cuBLAS batched GEMMs + a softmax
// kernel with the full [H,Nq,Nk] score matrix in device memory (for benches and as a
// second opinion in tests). Same semantics as the fused ops; lse may be NULL.
int cd_cuda_attention_naive_fwd(float *out, float *lse, const float *q, const float *k,
                                const float *v, int B, int H, int Nq, int Nk, int D,
                                float scale, void *stream);
int cd_cuda_attention_naive_bwd(float *dq, float *dk, float *dv, const float *dout,
                                const float *q, const float *k, const float *v, int B, int H,
                                int Nq, int Nk, int D, float scale, int detach_k0,
                                void *stream);

// ---- Activations, element-wise, layout (kernels/cuda_elementwise.cu) -------------------
void cd_cuda_silu_fwd(float *y, const float *x, int64_t n, void *stream);
void cd_cuda_silu_bwd(float *dx, const float *dy, const float *x, int64_t n, void *stream);
void cd_cuda_gelu_fwd(float *y, const float *x, int64_t n, void *stream);
void cd_cuda_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n, void *stream);
void cd_cuda_quick_gelu_fwd(float *y, const float *x, int64_t n, void *stream);
void cd_cuda_quick_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n, void *stream);
void cd_cuda_geglu_fwd(float *y, const float *x, int64_t n, int c, void *stream);
void cd_cuda_geglu_bwd(float *dx, const float *dy, const float *x, int64_t n, int c,
                       void *stream);
// Fused bias + GEGLU: y[n,c] = (x[:, :c] + bias[:c]) * gelu(x[:, c:] + bias[c:]),
// bias [2c] (the ff.net.0.proj Linear's bias folded into the gate).
void cd_cuda_bias_geglu_fwd(float *y, const float *x, const float *bias, int64_t n, int c,
                            void *stream);
// Its backward: dx [n, 2c] w.r.t. the pre-bias x (the bias gradient is the column sum of dx,
// which the Linear's backward forms).
void cd_cuda_bias_geglu_bwd(float *dx, const float *dy, const float *x, const float *bias,
                            int64_t n, int c, void *stream);
void cd_cuda_add(float *y, const float *a, const float *b, int64_t n, void *stream);
// bf16 storage variants (fp32 math): the sampler's forward path.
void cd_cuda_silu_fwd_bf16(uint16_t *y, const uint16_t *x, int64_t n, void *stream);
void cd_cuda_bias_geglu_fwd_bf16(uint16_t *y, const uint16_t *x, const float *bias, int64_t n,
                                 int c, void *stream);
void cd_cuda_add_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, int64_t n, void *stream);
void cd_cuda_add_bias_nc_bf16(uint16_t *y, const float *bias, int n, int c, int hw, void *stream);
void cd_cuda_upsample2x_fwd_bf16(uint16_t *y, const uint16_t *x, int n, int c, int h, int w,
                                 void *stream);
void cd_cuda_nchw_to_nhwc_bf16(uint16_t *y, const uint16_t *x, int n, int c, int hw, void *stream);
void cd_cuda_nhwc_to_nchw_bf16(uint16_t *y, const uint16_t *x, int n, int c, int hw, void *stream);
void cd_cuda_concat_c_bf16(uint16_t *y, const uint16_t *a, const uint16_t *b, int n, int ca,
                           int cb, int hw, void *stream);
void cd_cuda_acc(float *y, const float *x, int64_t n, void *stream);
void cd_cuda_scale(float *y, float s, int64_t n, void *stream);
void cd_cuda_clamp(float *y, float lo, float hi, int64_t n, void *stream);
void cd_cuda_add_bias_nc(float *y, const float *bias, int n, int c, int hw, void *stream);
void cd_cuda_upsample2x_fwd(float *y, const float *x, int n, int c, int h, int w, void *stream);
void cd_cuda_upsample2x_bwd(float *dx, const float *dy, int n, int c, int h, int w, void *stream);
void cd_cuda_nchw_to_nhwc(float *y, const float *x, int n, int c, int hw, void *stream);
void cd_cuda_nhwc_to_nchw(float *y, const float *x, int n, int c, int hw, void *stream);
void cd_cuda_concat_c(float *y, const float *a, const float *b, int n, int ca, int cb, int hw,
                      void *stream);
void cd_cuda_split_c(float *da, float *db, const float *dy, int n, int ca, int cb, int hw,
                     void *stream);
void cd_cuda_timestep_embedding(float *out, const float *t, int n, int dim, int flip_sin_to_cos,
                                float freq_shift, float max_period, void *stream);
void cd_cuda_embedding_fwd(float *out, const int32_t *ids, const float *table, int n, int c,
                           void *stream);
void cd_cuda_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int n, int c,
                           const uint8_t *row_mask, void *stream);

// ---- Losses and optimizer (kernels/cuda_optim.cu) --------------------------------------
// Returns the sum on the host (synchronizes the stream); NaN when a CUDA call failed.
double cd_cuda_mse_fwd_bwd(float *grad, const float *a, const float *b, const float *mask,
                           int64_t n, float scale, void *stream);
void cd_cuda_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                        float beta1, float beta2, float eps, float wd, int step, void *stream);
double cd_cuda_sumsq(const float *x, int64_t n, void *stream);
// ==== training additions (helper "unettrain": kernels/cuda_conv.cu, emulated in
// kernels/emu/emu_unettrain.c) ==============================================================
// Convolution backward data in bf16: dy [n,cout,ho,wo] and W [cout,cin,k,k] bf16 -> dx
// [n,cin,h,w] bf16 (overwritten), fp32 accumulation (cuDNN tensor cores).
void cd_cuda_conv2d_bwd_data_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *W, int n,
                                  int cin, int h, int w, int cout, int k, int s, int p,
                                  void *stream);
#ifdef __cplusplus
}
#endif
#endif
