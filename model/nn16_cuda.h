// Internal: the bf16-storage inference forward of model/nn.h's layers on the GPU (owner: helper
// "bf16path"), used by model/unet_cuda.c and model/vae_cuda.c in bf16 mode. Activations are
// bf16 (uint16_t bit patterns) from layer to layer: every layer reads bf16 and writes bf16, so
// no fp32 copy of an activation is ever made (half the arena and about a third of the memory
// traffic of model/nn_cuda.c's bf16 mode, which keeps fp32 activations and converts every
// GEMM/conv/attention input to bf16 and its output back). GEMMs, convolutions and attention
// run on tensor cores with fp32 accumulation; GroupNorm/LayerNorm statistics, softmax, GEGLU
// and the adds compute in fp32 inside the kernels and round their outputs to bf16.
//
// Preconditions: the nn_dev is in bf16 mode (nn_dev_set_bf16(g, 1): the weights' bf16 copies
// exist). Context as model/nn_cuda.h: pointers are device, shapes as model/nn.h, outputs are
// allocated by the caller (nn_da16), temporaries come from the arena (LIFO, released on
// return), errors are sticky in g->err. FLOPs are counted into g->flops as nn_cuda.c does.
// Only with CD_CUDA.
#ifndef CD_NN16_CUDA_H
#define CD_NN16_CUDA_H
#ifdef CD_CUDA
#include <stdint.h>
#include "model/nn_cuda.h"

// Arena allocation of n bf16 values (256-byte aligned; NULL with g->err on failure).
uint16_t *nn_da16(nn_dev *g, int64_t n);
// An arena bf16 copy of n fp32 device values (NULL on failure).
uint16_t *nn16_from_f32(nn_dev *g, const float *x, int64_t n);

// y [B,cout,Ho,Wo] = conv(x [B,cin,H,W]) (+ bias in fp32, rounded).
void nn16_conv(nn_dev *g, const nn_conv *c, uint16_t *y, const uint16_t *x, int B, int H, int W);
// y [n,out] = x [n,in] W^T (+ bias).
void nn16_lin(nn_dev *g, const nn_lin *l, uint16_t *y, const uint16_t *x, int n);
// GroupNorm (+ SiLU) on x [B,C,hw]; LayerNorm on x [n,C] (y != x).
void nn16_gn(nn_dev *g, const nn_gn *n, uint16_t *y, const uint16_t *x, int B, int hw, int silu);
void nn16_ln(nn_dev *g, const nn_ln *l, uint16_t *y, const uint16_t *x, int n);
// ResnetBlock2D: y [B,cout,H,W] from x [B,cin,H,W]; emb = silu(temb) [B,temb_dim] in bf16 or
// NULL (the time projection's output stays fp32 and is added by the bf16 bias kernel). y != x.
void nn16_resnet(nn_dev *g, const nn_resnet *r, uint16_t *y, const uint16_t *x, const uint16_t *emb,
                 int B, int H, int W);
// y [B,N,C] = attention(x [B,N,C], ctx [B,M,cdim], or x when ctx == NULL); y != x. Head dims
// 40/64/80/160: q/k/v projected to bf16, the fused bf16 kernel, bf16 out. Other head dims: the
// projections to fp32, the unfused fp32 attention, its output rounded to bf16 for out-proj.
void nn16_attn(nn_dev *g, const nn_attn *a, uint16_t *y, const uint16_t *x, const uint16_t *ctx,
               int B, int N, int M);
// Transformer2DModel: y [B,C,H,W] = x + proj_out(blocks(proj_in(GN(x)))); y != x.
void nn16_transformer(nn_dev *g, const nn_transformer *t, uint16_t *y, const uint16_t *x,
                      const uint16_t *ctx, int B, int H, int W, int M);
#endif
#endif
