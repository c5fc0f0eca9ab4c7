// customdiff-export internals: the two output layouts.
#ifndef CD_EXPORT_H
#define CD_EXPORT_H
#include "model/delta.h"
#include "model/pipeline.h"

// A complete diffusers pipeline folder with the delta applied (p loaded with CD_LOAD_ALL;
// d checked against the base and reconstructed).
int cd_export_diffusers(cd_pipeline *p, cd_delta *d, const char *out);
// diffusers' Custom Diffusion layout: pytorch_custom_diffusion_weights.safetensors and one
// <token>.safetensors per modifier token.
int cd_export_custom_diffusion(const cd_delta *d, const char *out);
// "X.attn2.to_k.weight" -> "X.attn2.processor.to_k_custom_diffusion.weight" (to_q, to_v,
// to_out.0 likewise); heap string, NULL when the name is not an attn2 projection.
char *cd_export_cd_name(const char *name);
#endif
