// A whole Stable Diffusion model loaded from a diffusers pipeline folder (model_index.json,
// unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a single-file checkpoint in the
// original layout (.safetensors; v1 cond_stage_model.transformer.* or v2 OpenCLIP
// cond_stage_model.model.*), renamed to diffusers/transformers names in model/names.c.
//
// Single file: the architecture is inferred from the tensors' shapes with the standard
// SD rules (v1: 8 heads everywhere, v2: head dim 64, linear projections, v_prediction) unless
// a diffusers folder's configs are given (config_dir, or found beside the tokenizer folder:
// TOKENIZER/../unet/config.json etc.), as diffusers' from_single_file(config=...) does; the
// shapes are always checked against the config used. A single file needs a tokenizer
// folder (--tokenizer DIR): without one it is an error that says so.
//
// Weights are memory-mapped; F32 tensors are used in place, F16/BF16 converted once.
#ifndef CD_PIPELINE_H
#define CD_PIPELINE_H
#include <cjson/cJSON.h>
#include "model/weights.h"
#include "model/unet.h"
#include "model/vae.h"
#include "model/tokenizer.h"
#include "model/clip.h"

// What to load (bit flags).
enum {
    CD_LOAD_UNET = 1, CD_LOAD_VAE_DECODER = 2, CD_LOAD_VAE_ENCODER = 4, CD_LOAD_TEXT = 8,
    CD_LOAD_TOKENIZER = 16,
    CD_LOAD_VAE = CD_LOAD_VAE_DECODER | CD_LOAD_VAE_ENCODER,
    CD_LOAD_ALL = 31,
};

enum { CD_FAMILY_UNKNOWN = 0, CD_FAMILY_SD1 = 1, CD_FAMILY_SD2 = 2 };

typedef struct {
    char *model_path;          // as given
    int single_file;           // 1: single-file checkpoint
    int family;                // CD_FAMILY_*
    // Weights by component, diffusers/transformers names (text: "text_model.*").
    cd_weights unet_w, vae_w, text_w;
    cd_unet_config unet_cfg;
    cd_vae_config vae_cfg;
    cJSON *text_config;        // transformers CLIPTextConfig as JSON (synthesized for a single file)
    cJSON *scheduler_config;   // scheduler/scheduler_config.json (synthesized for a single file);
                               // prediction_type is always present in it
    char *tokenizer_dir;
    cd_tokenizer *tok;         // CD_LOAD_TOKENIZER
    cd_unet *unet;             // CD_LOAD_UNET
    cd_vae *vae;               // CD_LOAD_VAE_*
    cd_clip_text text;         // CD_LOAD_TEXT (bound to text_w)
    int has_text;
    char **unknown;            // tensors in the files that no loaded component used
    int nunknown;
} cd_pipeline;

// Load. tokenizer_dir may be NULL (folder: MODEL/tokenizer); config_dir may be NULL.
// Errors name the file and the tensor (missing, wrong shape), or the unsupported key.
// Unknown tensors are listed in p->unknown and logged as a warning.
int cd_pipeline_load(cd_pipeline *p, const char *model, const char *tokenizer_dir,
                     const char *config_dir, unsigned what);
void cd_pipeline_free(cd_pipeline *p);
// prediction_type from the scheduler config ("epsilon" or "v_prediction").
const char *cd_pipeline_prediction_type(const cd_pipeline *p);
#endif
