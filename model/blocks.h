// Single Transformer2DModel / ResnetBlock2D runs on named weights, for the real-size block
// checks (golden blocks-sd15) and kernel-scale tests. Weights are diffusers parameter names
// under `prefix` in ws (e.g. "transformer_320.").
#ifndef CD_BLOCKS_H
#define CD_BLOCKS_H
#include "model/weights.h"

typedef struct {
    int channels, heads, cross_dim, layers, linear_proj, groups;
} cd_tblock_spec;

// Forward x [B,C,H,W], ctx [B,M,cross] -> out; when grad_out != NULL also backward (token-0
// K/V detach as Custom Diffusion): grad_x [B,C,H,W], grad_ctx [B,M,cross], and the gradients
// of every transformer_blocks.i.attn2.to_k/to_v weight into gk/gv ([layers][C*cross], may be NULL).
int cd_block_transformer_run(cd_weights *ws, const char *prefix, const cd_tblock_spec *s,
                             const float *x, const float *ctx, int B, int H, int W, int M,
                             float *out, const float *grad_out, float *grad_x, float *grad_ctx,
                             float *gk, float *gv);
// ResnetBlock2D forward: x [B,cin,H,W], temb [B,temb_dim] (SiLU applied inside) -> out [B,cout,H,W].
int cd_block_resnet_run(cd_weights *ws, const char *prefix, int cin, int cout, int temb_dim,
                        int groups, float eps, const float *x, const float *temb, int B, int H,
                        int W, float *out);
#endif
