// Internal layout of cd_unet, shared by model/unet.c (forward) and model/unet_bwd.c.
#ifndef CD_UNET_INTERNAL_H
#define CD_UNET_INTERNAL_H
#include "model/unet.h"
#include "model/nn.h"

#define MAXL 8

typedef struct {
    int nl, attn, sampler;
    nn_resnet res[MAXL];
    nn_transformer att[MAXL];
    nn_conv samp;
    int cout;
    int H, W;             // spatial size at the resnets (set by forward)
    int skipc[MAXL];      // up: channels of the skip consumed by resnet l
    int skipi[MAXL];      // up: index of that skip
} ublock;

struct cd_unet {
    cd_unet_config cfg;
    cd_weights *ws;
    nn_lin t1, t2;
    nn_conv conv_in, conv_out;
    nn_gn norm_out;
    ublock down[CD_UNET_MAX_BLOCKS], up[CD_UNET_MAX_BLOCKS];
    nn_resnet mid_r[2];
    nn_transformer mid_a;
    // training
    int mode, ckpt, nparams;
    cd_param *params;
    nn_arena ar;
    int trained;            // a training forward is stored
    int B, H, W, M;
    float *hlast, *om, *orr; // input of norm_out and its stats
    int nskip;
    float **skips;                       // [nskip] skip tensors of the stored forward
    float *down_in[CD_UNET_MAX_BLOCKS], *up_in[CD_UNET_MAX_BLOCKS], *mid_in;   // block inputs
    float *emb;                          // silu(time embedding) [B, te]
    const float *ctx;                    // context copy [B, M, cross]
    nn_arena ar2;                        // checkpointing: one block's saved activations
};

// Checkpointing: re-run one top-level block (kind 0 down i, 1 mid, 2 up i) so that its
// layers hold their saved activations again; no-op without checkpointing.
void cd_unet_recompute(cd_unet *u, int kind, int i);

#endif
