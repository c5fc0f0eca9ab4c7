// Single-block runs of model/blocks.h on the GPU, through the device training layers of
// model/nn_cuda.h (model/blocks_cuda.c): the real-size blocks-sd15 golden checks of
// `customdiff-verify --device cuda`. Host in, host out; fp32 (TF32 per cd_cuda_set_tf32) or
// bf16 (bf16 = 1: GEMM/conv/attention inputs in bf16, fp32 accumulation and activations).
// Without CUDA every call fails with "built without CUDA".
#ifndef CD_BLOCKS_CUDA_H
#define CD_BLOCKS_CUDA_H
#include "model/blocks.h"

// As cd_block_transformer_run: forward x [B,C,H,W], ctx [B,M,cross] -> out; when grad_out !=
// NULL also backward with the token-0 K/V detach: grad_x, grad_ctx (may be NULL), and the
// gradients of every transformer_blocks.i.attn2.to_k/to_v weight into gk/gv
// ([layers][C*cross], overwritten; may be NULL).
int cd_block_transformer_run_cuda(cd_weights *ws, const char *prefix, const cd_tblock_spec *s,
                                  const float *x, const float *ctx, int B, int H, int W, int M,
                                  float *out, const float *grad_out, float *grad_x,
                                  float *grad_ctx, float *gk, float *gv, int bf16);
// As cd_block_resnet_run (forward only).
int cd_block_resnet_run_cuda(cd_weights *ws, const char *prefix, int cin, int cout, int temb_dim,
                             int groups, float eps, const float *x, const float *temb, int B,
                             int H, int W, float *out, int bf16);
#endif
