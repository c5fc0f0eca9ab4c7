// Internals of model/clip*.c (not a public API): one pre-LN transformer encoder layer.
#ifndef CD_CLIP_INTERNAL_H
#define CD_CLIP_INTERNAL_H
#include "model/clip.h"

typedef struct { int B, L, C, H, I; float eps; cd_clip_act act; int causal; } clip_dims;

// Where one layer's forward keeps its activations for backward (all NULL: inference).
typedef struct {
    float *ln1, *mean1, *rstd1, *q, *k, *v, *att, *lse, *xmid, *ln2, *mean2, *rstd2, *h1;
} clip_layer_save;

// x [B,L,C] updated in place: x += o_proj(attn(ln1(x))); x += fc2(act(fc1(ln2(x)))).
// sv may be NULL. Scratch is allocated inside.
void clip_layer_fwd(const cd_clip_layer *l, const clip_dims *d, float *x, const clip_layer_save *sv);
// Backward of one layer: dx [B,L,C] in place from d(out) to d(in). xin: the layer input.
void clip_layer_bwd(const cd_clip_layer *l, const clip_dims *d, float *dx, const float *xin,
                    const clip_layer_save *sv);
void clip_act_fwd(cd_clip_act a, float *y, const float *x, int64_t n);
#endif
