// Internal layout of cd_vae, shared by model/vae.c (the CPU forward) and model/vae_cuda.c
// (the same layers walked on the GPU): one binding of the VAE's tensors.
#ifndef CD_VAE_INTERNAL_H
#define CD_VAE_INTERNAL_H
#include "model/vae.h"
#include "model/nn.h"

#define VMAXL 8        // resnets per block (the decoder has layers_per_block + 1)
#define VEPS 1e-6f     // GroupNorm eps of every VAE norm

// Mid-block attention: y = x + attn(GN(x)), one head of c channels.
typedef struct { nn_gn gn; nn_attn at; int c; } vae_attn;

// Encoder or decoder. Decoder blocks are in up order (block i has block_out[n-1-i] channels).
typedef struct {
    nn_conv cin, cout;                            // conv_in, conv_out
    nn_resnet res[CD_VAE_MAX_BLOCKS][VMAXL];      // [block][layer]
    nn_conv samp[CD_VAE_MAX_BLOCKS];              // encoder: downsampler (k3 s2 p0 after F.pad(0,1,0,1));
                                                  // decoder: upsampler conv (after nearest 2x)
    nn_resnet mid[2];
    vae_attn ma;
    nn_gn norm;                                   // conv_norm_out
} vae_coder;

struct cd_vae {
    cd_vae_config cfg;
    cd_weights *ws;
    int enc;               // 1 when the encoder (e, quant) is bound
    vae_coder e, d;
    nn_conv quant, post;   // quant_conv [2L -> 2L], post_quant_conv [L -> L]
};

// Bind v's layers in place to ws by their diffusers names (post_quant_conv, decoder.*, and
// with the encoder encoder.*, quant_conv). need_encoder: 1 binds the encoder, 0 skips it,
// -1 binds it when ws has encoder.conv_in.weight and quant_conv.weight. rng != NULL creates
// missing tensors in ws with random values (tiny models). what names the model in errors.
int cd_vae_bind(cd_vae *v, const cd_vae_config *cfg, cd_weights *ws, int need_encoder, cd_rng *rng,
                const char *what);
#endif
