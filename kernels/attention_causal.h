// Causal variant of cd_attention_fwd/bwd (kernels/attention_cpu.c): query i attends to keys
// j <= i only (CLIP's text transformer). Same arguments and conventions as in kernels.h;
// Nq must equal Nk. (Kept out of kernels.h, which is the lead's file.)
#ifndef CD_ATTENTION_CAUSAL_H
#define CD_ATTENTION_CAUSAL_H
void cd_attention_causal_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                             int B, int H, int N, int D, float scale);
void cd_attention_causal_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             int B, int H, int N, int D, float scale);
#endif
