// SD v1.5's UNet configuration as a constant (random-weight benchmarks, tests, the tiny
// model's base shape). Kept apart from unet_config.c so that builds without cJSON (the
// minimal GPU-check build) have it too.
#include "model/unet.h"
#include <string.h>

void cd_unet_config_sd15(cd_unet_config *c) {
    memset(c, 0, sizeof *c);
    c->in_channels = c->out_channels = 4;
    c->nblocks = 4;
    int bo[4] = {320, 640, 1280, 1280};
    for (int i = 0; i < 4; i++) {
        c->block_out[i] = bo[i]; c->heads[i] = 8; c->tlayers[i] = 1;
        c->down_attn[i] = i < 3; c->up_attn[i] = i > 0;
    }
    c->layers_per_block = 2;
    c->mid_attn = 1;
    c->cross_dim = 768;
    c->groups = 32;
    c->eps = 1e-5f;
    c->sample_size = 64;
    c->flip_sin_to_cos = 1;
    c->freq_shift = 0;
    c->time_embed_dim = 1280;
}
