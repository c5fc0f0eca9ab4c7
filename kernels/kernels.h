// Every numeric op of customdiff, CPU reference (kernels/*_cpu.c). The CUDA twins
// (kernels/*.cu, declared in kernels/kernels_cuda.h) take the same arguments, device
// pointers, plus a stream, and are named cd_cuda_<op>.
//
// Conventions
// - fp32, row-major, contiguous. Images/feature maps are NCHW. Token sequences are
//   [B, N, C] with C = heads * head_dim (head-interleaved, as a Linear's output).
// - Backward functions ACCUMULATE (+=) into weight gradients (dW, db, dg...) and
//   OVERWRITE activation gradients (dx) unless the comment says otherwise. Any gradient
//   pointer may be NULL: that gradient is not computed (frozen weights get no dW).
// - Ops are threaded with OpenMP; results do not depend on the thread count.
#ifndef CD_KERNELS_H
#define CD_KERNELS_H
#include <stdint.h>

// ---- GEMM (kernels/gemm_cpu.c, OpenBLAS) -------------------------------------------
// C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C; lda/ldb/ldc are row strides.
void cd_gemm(int transA, int transB, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
// Measured single-precision GEMM rate of this machine (GFLOP/s) at an n^3 problem.
double cd_gemm_rate_gflops(int n);

// ---- Linear (kernels/linear_cpu.c) ---------------------------------------------------
// y[n,out] = x[n,in] @ W[out,in]^T + b[out]   (b may be NULL)
void cd_linear_fwd(float *y, const float *x, const float *W, const float *b, int n, int in, int out);
// dx[n,in] = dy @ W (overwrite); dW[out,in] += dy^T @ x; db[out] += sum_n dy
void cd_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                   const float *W, int n, int in, int out);

// ---- LayerNorm (kernels/norm_cpu.c) ---------------------------------------------------
// LayerNorm over the last dim c of x[n,c]; mean/rstd [n] saved for backward (may be NULL).
void cd_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                      const float *b, int n, int c, float eps);
void cd_layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                      const float *mean, const float *rstd, const float *g, int n, int c);
// ---- GroupNorm (kernels/groupnorm_cpu.c) ---------------------------------------------
// GroupNorm of x[n,c,hw] with `groups` groups; mean/rstd [n*groups]; silu=1 applies
// SiLU after the affine (fused GroupNorm+SiLU, as ResnetBlock2D uses it).
void cd_groupnorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                      const float *b, int n, int c, int hw, int groups, float eps, int silu);
void cd_groupnorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                      const float *mean, const float *rstd, const float *g, const float *b,
                      int n, int c, int hw, int groups, int silu);

// ---- Convolution (kernels/conv_cpu.c) -------------------------------------------------
// y[n,cout,ho,wo] = conv(x[n,cin,h,w], W[cout,cin,k,k]) + b, square kernel k, stride s,
// zero padding p; ho = (h + 2p - k)/s + 1.
void cd_conv2d_fwd(float *y, const float *x, const float *W, const float *b,
                   int n, int cin, int h, int w, int cout, int k, int s, int p);
void cd_conv2d_bwd(float *dx, float *dW, float *db, const float *dy, const float *x,
                   const float *W, int n, int cin, int h, int w, int cout, int k, int s, int p);

// ---- Attention (kernels/attention_cpu.c) ----------------------------------------------
// out[B,Nq,H*D] = softmax(q k^T * scale) v per head; q [B,Nq,H*D], k,v [B,Nk,H*D].
// lse [B,H,Nq] (log-sum-exp of the scaled scores) is saved for backward (may be NULL).
void cd_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                      int B, int H, int Nq, int Nk, int D, float scale);
// dq overwritten; dk, dv overwritten. detach_k0 = 1 zeroes dk/dv of key row 0 in every
// batch (Custom Diffusion's token-0 detach in cross-attention).
void cd_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                      const float *k, const float *v, const float *out, const float *lse,
                      int B, int H, int Nq, int Nk, int D, float scale, int detach_k0);
// Causal variant (CLIP's text transformer): query i attends to keys j <= i; Nq == Nk == N.
void cd_attention_causal_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                             int B, int H, int N, int D, float scale);
void cd_attention_causal_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             int B, int H, int N, int D, float scale);

// ---- Activations (kernels/act_cpu.c); in-place allowed (y == x) ----------------------
void cd_silu_fwd(float *y, const float *x, int64_t n);
void cd_silu_bwd(float *dx, const float *dy, const float *x, int64_t n);
void cd_gelu_fwd(float *y, const float *x, int64_t n);          // exact erf GELU
void cd_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n);
void cd_quick_gelu_fwd(float *y, const float *x, int64_t n);    // x * sigmoid(1.702 x)
void cd_quick_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n);
// GEGLU: x[n, 2c] -> y[n,c] = x[:, :c] * gelu(x[:, c:])  (diffusers' order: hidden, gate)
void cd_geglu_fwd(float *y, const float *x, int64_t n, int c);
void cd_geglu_bwd(float *dx, const float *dy, const float *x, int64_t n, int c);
// y = a + b (elementwise); dst may alias a or b.
void cd_add(float *y, const float *a, const float *b, int64_t n);
// y += x
void cd_acc(float *y, const float *x, int64_t n);
void cd_scale(float *y, float s, int64_t n);
// y = min(max(y, lo), hi) in place, as fminf(fmaxf(y, lo), hi) (a NaN becomes lo).
void cd_clamp(float *y, float lo, float hi, int64_t n);
// y[n,c,hw] += bias[n,c] broadcast over hw (time-embedding injection)
void cd_add_bias_nc(float *y, const float *bias, int n, int c, int hw);

// ---- Resampling and layout (kernels/resample_cpu.c) -----------------------------------
// nearest 2x upsample x[n,c,h,w] -> y[n,c,2h,2w]; backward sums the 4 children.
void cd_upsample2x_fwd(float *y, const float *x, int n, int c, int h, int w);
void cd_upsample2x_bwd(float *dx, const float *dy, int n, int c, int h, int w);
// NCHW <-> NHWC ([n,c,hw] <-> [n,hw,c]), for proj_in/proj_out of Transformer2DModel.
void cd_nchw_to_nhwc(float *y, const float *x, int n, int c, int hw);
void cd_nhwc_to_nchw(float *y, const float *x, int n, int c, int hw);
// concat along channels: y[n, ca+cb, hw] = [a[n,ca,hw], b[n,cb,hw]]; and its split.
void cd_concat_c(float *y, const float *a, const float *b, int n, int ca, int cb, int hw);
void cd_split_c(float *da, float *db, const float *dy, int n, int ca, int cb, int hw);

// ---- Embeddings (kernels/embed_cpu.c) -------------------------------------------------
// Sinusoidal timestep embedding as diffusers' get_timestep_embedding:
// half = dim/2, exponent = -ln(max_period) * i / (half - freq_shift), emb = t * exp(exponent),
// out = [sin, cos] or [cos, sin] when flip_sin_to_cos.  t[n] -> out[n, dim]
void cd_timestep_embedding(float *out, const float *t, int n, int dim, int flip_sin_to_cos,
                           float freq_shift, float max_period);
// out[n, c] = table[ids[n], :]; backward accumulates rows into dtable (only rows whose
// mask[id] is set when mask != NULL).
void cd_embedding_fwd(float *out, const int32_t *ids, const float *table, int n, int c);
void cd_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int n, int c,
                      const uint8_t *row_mask);

// ---- Losses and optimizer (kernels/optim_cpu.c) ---------------------------------------
// Mean squared error sum over elements with optional mask; returns sum((a-b)^2 * m);
// grad (may be NULL) = scale * 2 (a-b) m.
double cd_mse_fwd_bwd(float *grad, const float *a, const float *b, const float *mask,
                      int64_t n, float scale);
// AdamW (PyTorch semantics: decoupled weight decay p -= lr*wd*p, bias-corrected moments).
void cd_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                   float beta1, float beta2, float eps, float wd, int step);
double cd_sumsq(const float *x, int64_t n);
#endif
