// customdiff-export: a delta into
//   --format diffusers (default): a complete diffusers pipeline folder: the base weights with
//     the fine-tuned tensors laid in, the text encoder's embedding table grown by the modifier
//     tokens' rows, the tokenizer with the added tokens (added_tokens.json and
//     tokenizer_config.json's added_tokens_decoder, as transformers writes them);
//   --format custom-diffusion: diffusers' Custom Diffusion layout,
//     pytorch_custom_diffusion_weights.safetensors (…attn2.processor.to_k_custom_diffusion.weight)
//     + one <token>.safetensors per modifier token ({"<new1>": [C]}, metadata format=pt).
#include "export/export.h"
#include "core/cli.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *model, *tokenizer, *delta_path, *out, *format;

static cd_opt opts[] = {
    {"model", CD_OPT_STR, &model, NULL, "base model: diffusers folder or single-file .safetensors"},
    {"tokenizer", CD_OPT_STR, &tokenizer, NULL, "tokenizer folder (default MODEL/tokenizer)"},
    {"delta", CD_OPT_STR, &delta_path, NULL, "the delta (customdiff-train's delta.safetensors, or another supported layout)"},
    {"out", CD_OPT_STR, &out, NULL, "output folder"},
    {"format", CD_OPT_STR, &format, "diffusers", "diffusers (a whole pipeline folder) or custom-diffusion"},
    {0}};

int main(int argc, char **argv) {
    int rc = cd_cli_parse("export", "write a delta as a diffusers pipeline folder or in diffusers' Custom "
                          "Diffusion layout", opts, argc, argv, NULL, NULL);
    if (rc > 0) return 0;
    if (rc < 0) cd_die("export", 2);
    if (!model || !delta_path || !out) {
        cd_err("--model, --delta and --out are required");
        cd_die("export", 2);
    }
    int cdfmt = strcmp(format, "custom-diffusion") == 0;
    if (!cdfmt && strcmp(format, "diffusers") != 0) {
        cd_err("--format '%s': expected diffusers or custom-diffusion", format);
        cd_die("export", 2);
    }
    char *rm = realpath(model, NULL), *ro = realpath(out, NULL);
    int same = rm && ro && strcmp(rm, ro) == 0;
    free(rm); free(ro);
    if (same) {
        cd_err("--out %s is the base model's folder: writing there would replace the base model (give a new folder)", out);
        cd_die("export", 2);
    }
    cd_pipeline p;
    cd_delta d;
    memset(&d, 0, sizeof d);
    unsigned what = cdfmt ? CD_LOAD_UNET | CD_LOAD_TEXT : CD_LOAD_ALL;
    if (cd_pipeline_load(&p, model, tokenizer, NULL, what)) cd_die("export", 1);
    if (cd_delta_read(&d, delta_path) || cd_delta_check_base(&d, &p.unet_w) ||
        cd_delta_reconstruct(&d, &p.unet_w))
        cd_die("export", 1);
    rc = cdfmt ? cd_export_custom_diffusion(&d, out) : cd_export_diffusers(&p, &d, out);
    if (rc) cd_die("export", 1);
    printf("customdiff-export: wrote %s (%s format: %d tensors, %d tokens from %s)\n", out, format, d.n,
           d.ntok, delta_path);
    cd_delta_free(&d);
    cd_pipeline_free(&p);
    return 0;
}
