// UNet2DConditionModel (diffusers 0.25 semantics) for the SD v1.x and v2.x families, fp32 on
// the CPU through kernels/kernels.h. Forward for sampling; a training forward that keeps what
// backward needs; a backward that gives d(encoder_hidden_states) and gradients of the
// trainable cross-attention tensors only (Custom Diffusion: attn2.to_k/to_v, optionally
// to_q/to_out.0), with the key/value rows of token 0 detached in every cross-attention.
//
// Shapes: sample x [B, in_channels, H, W] (H, W multiples of 2^(nblocks-1)), timesteps t [B]
// (float, 0..999), context [B, Nctx, cross_attention_dim], out [B, out_channels, H, W].
#ifndef CD_UNET_H
#define CD_UNET_H
#include <stdint.h>
#include <cjson/cJSON.h>
#include "model/weights.h"

#define CD_UNET_MAX_BLOCKS 8

typedef struct {
    int in_channels, out_channels;      // 4, 4
    int nblocks;                        // len(block_out_channels)
    int block_out[CD_UNET_MAX_BLOCKS];  // block_out_channels
    int layers_per_block;
    int down_attn[CD_UNET_MAX_BLOCKS];  // 1: CrossAttnDownBlock2D, 0: DownBlock2D
    int up_attn[CD_UNET_MAX_BLOCKS];    // 1: CrossAttnUpBlock2D, 0: UpBlock2D (up order)
    int mid_attn;                       // UNetMidBlock2DCrossAttn (always 1 when supported)
    int heads[CD_UNET_MAX_BLOCKS];      // attention heads per down block (up uses reversed)
    int tlayers[CD_UNET_MAX_BLOCKS];    // transformer_layers_per_block per down block
    int cross_dim;                      // cross_attention_dim
    int groups;                         // norm_num_groups
    float eps;                          // norm_eps
    int linear_proj;                    // use_linear_projection
    int upcast_attention;               // no effect in fp32
    int sample_size;
    int flip_sin_to_cos;
    float freq_shift;
    int time_embed_dim;                 // 4 * block_out[0]
} cd_unet_config;

// Parse a diffusers unet/config.json. Unsupported architectures (SDXL's addition_embed_type,
// class embeddings, other block types, ...) fail with an error naming the key.
int cd_unet_config_parse(cd_unet_config *c, const cJSON *j, const char *what);
// The diffusers config.json equivalent of c (for writing tiny models / exports).
cJSON *cd_unet_config_to_json(const cd_unet_config *c);
// SD v1.5's config (320/640/1280/1280, 8 heads, ctx 768), for benchmarks.
void cd_unet_config_sd15(cd_unet_config *c);

// Training modes: which tensors get gradients.
enum { CD_TRAIN_NONE = 0, CD_TRAIN_CROSSATTN_KV = 1, CD_TRAIN_CROSSATTN = 2 };

// A trainable tensor: w points at the weight the model uses (owned, writable), g at its
// gradient (accumulated by cd_unet_backward, zeroed by cd_unet_zero_grad).
typedef struct {
    char name[192];       // diffusers parameter name, e.g. down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight
    float *w, *g;
    int ndim;
    int64_t shape[4];
    int64_t numel;
} cd_param;

typedef struct cd_unet cd_unet;

// Bind every tensor of the model from ws (names as diffusers). Every missing tensor or
// wrong shape is an error naming it. ws must outlive the model (F32 data used in place).
int cd_unet_new(cd_unet **out, const cd_unet_config *cfg, cd_weights *ws);
void cd_unet_free(cd_unet *u);
const cd_unet_config *cd_unet_cfg(const cd_unet *u);
// Re-read every tensor pointer from ws (after a delta replaced tensors with cd_weights_put).
int cd_unet_rebind(cd_unet *u);

// Per-block activations (conv_in, time_embedding, down_blocks.i, mid_block, up_blocks.i):
// called with the name used by the golden files without the "act." prefix.
typedef void (*cd_unet_act_fn)(void *ctx, const char *name, const float *data, int ndim,
                               const int64_t *shape);

// Inference forward. out [B, out_channels, H, W]. acts may be NULL.
int cd_unet_forward(cd_unet *u, float *out, const float *x, const float *t, const float *ctx,
                    int B, int H, int W, int Nctx, cd_unet_act_fn acts, void *act_ctx);

// ---- training ----------------------------------------------------------------------
// Select the trainable tensors (mode CD_TRAIN_*): their data is made writable (copied out
// of the map) and gradient buffers are allocated. Returns the list (owned by the model).
int cd_unet_set_train(cd_unet *u, int mode, cd_param **params, int *nparams);
// Recompute each top-level block in backward instead of keeping its activations.
void cd_unet_set_checkpointing(cd_unet *u, int on);
void cd_unet_zero_grad(cd_unet *u);
// Forward that keeps what backward needs (activation arena planned once per shape).
int cd_unet_forward_train(cd_unet *u, float *out, const float *x, const float *t,
                          const float *ctx, int B, int H, int W, int Nctx);
// Backward of the last cd_unet_forward_train: dout [B, out_channels, H, W] ->
// dctx [B, Nctx, cross_dim] (overwritten; may be NULL) and += into the params' gradients.
int cd_unet_backward(cd_unet *u, float *dctx, const float *dout);
// Bytes held by the activation arena (for logs and benchmarks).
int64_t cd_unet_arena_bytes(const cd_unet *u);
// Multiply-accumulate count of one forward at this shape (for GFLOP/s reports).
double cd_unet_forward_macs(const cd_unet_config *c, int B, int H, int W, int Nctx);
#endif
