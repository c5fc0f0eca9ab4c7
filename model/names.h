// Single-file Stable Diffusion checkpoints (the original CompVis/Stability layout) renamed to
// diffusers/transformers names, in one place:
//   model.diffusion_model.*            -> UNet2DConditionModel names
//   first_stage_model.*                -> AutoencoderKL names (1x1-conv attention -> linear)
//   cond_stage_model.transformer.*     -> CLIPTextModel "text_model.*" (SD v1.x)
//   cond_stage_model.model.*           -> CLIPTextModel "text_model.*" (SD v2.x OpenCLIP:
//                                         in_proj split into q/k/v, ln_final, ...)
#ifndef CD_NAMES_H
#define CD_NAMES_H
#include "core/safetensors.h"
#include "model/weights.h"

#define CD_SF_UNET "model.diffusion_model."
#define CD_SF_VAE "first_stage_model."
#define CD_SF_TEXT_V1 "cond_stage_model.transformer."
#define CD_SF_TEXT_V2 "cond_stage_model.model."

typedef struct {
    int family;            // CD_FAMILY_SD1 / SD2 (model/pipeline.h), 0 unknown
    int layers_per_block;  // UNet, from the input_blocks layout
    int openclip_layers;   // v2: resblocks in the file
    int vae_levels;        // VAE decoder up.* levels (to reverse their order)
    int openclip_native;   // v2: native OpenCLIP names (ln_final...) -> penultimate layer used
} cd_sf_info;

// Inspect a single file's keys: family, UNet layers_per_block. Errors name the file.
int cd_sf_inspect(const cd_st_file *f, cd_sf_info *info);
// Rename callbacks for cd_weights_load (ctx: cd_sf_info*), keys with the prefix removed.
char *cd_sf_rename_unet(const char *key, void *ctx);
char *cd_sf_rename_vae(const char *key, void *ctx);
char *cd_sf_rename_text_v1(const char *key, void *ctx);
char *cd_sf_rename_text_v2(const char *key, void *ctx);
// After loading: VAE attention 1x1 convs reshaped to linear; v2 in_proj split into
// q/k/v_proj, unused last OpenCLIP layer marked used (SD2 conditions on the penultimate).
void cd_sf_fix_vae(cd_weights *ws);
void cd_sf_fix_text_v2(cd_weights *ws, const cd_sf_info *info);
#endif
