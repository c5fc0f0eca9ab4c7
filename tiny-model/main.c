// customdiff-tiny-model: write a random tiny Stable Diffusion pipeline (diffusers layout) and
// a tiny CLIPModel, shaped like the golden tiny-sd set, with a tokenizer of our own.
//   OUT/model_index.json OUT/tokenizer/ OUT/text_encoder/ OUT/unet/ OUT/vae/ OUT/scheduler/ OUT/clip/
// One call per component; each writes its own folder.
#include <stdio.h>
#include <stdlib.h>
#include "core/cli.h"
#include "core/err.h"
#include "core/fileio.h"
#include "model/clip_tiny.h"
#include "model/tiny.h"

static const char model_index[] =
    "{\n  \"_class_name\": \"StableDiffusionPipeline\",\n  \"_diffusers_version\": \"0.25.1\",\n"
    "  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],\n"
    "  \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n"
    "  \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],\n"
    "  \"vae\": [\"diffusers\", \"AutoencoderKL\"],\n"
    "  \"scheduler\": [\"diffusers\", \"PNDMScheduler\"],\n"
    "  \"safety_checker\": [null, null],\n  \"feature_extractor\": [null, null],\n"
    "  \"requires_safety_checker\": false\n}\n";

static int write_all(const char *out, uint64_t seed) {
    CD_TRY(cd_mkdirs(out));
    char *p = cd_path_join(out, "model_index.json");
    int rc = cd_write_file_atomic(p, model_index, sizeof model_index - 1);
    free(p);
    char *tok = cd_path_join(out, "tokenizer"), *te = cd_path_join(out, "text_encoder"), *clip = cd_path_join(out, "clip");
    if (!rc) rc = cd_tiny_tokenizer_write(tok);
    if (!rc) rc = cd_tiny_text_encoder_write(te, seed);
    if (!rc) rc = cd_tiny_clip_write(clip, seed);
    if (!rc) rc = cd_tiny_unet_vae_write(out, seed);      // unet/ vae/ scheduler/ (model/tiny.h)
    free(tok); free(te); free(clip);
    return rc;
}

int main(int argc, char **argv) {
    static const char *out;
    static int64_t seed;
    cd_opt opts[] = {
        {"out", CD_OPT_STR, &out, "tiny-model", "output folder (pipeline folder; CLIP in OUT/clip)"},
        {"seed", CD_OPT_I64, &seed, "0", "seed of the random weights"},
        {0}};
    int r = cd_cli_parse("tiny-model", "write a random tiny Stable Diffusion pipeline and CLIP model", opts, argc, argv, NULL, NULL);
    if (r == 1) return 0;
    if (r < 0) cd_die("tiny-model", 2);
    if (write_all(out, (uint64_t)seed)) { cd_errctx("writing the tiny model into %s", out); cd_die("tiny-model", 1); }
    printf("customdiff-tiny-model: wrote %s (model_index.json, tokenizer/, text_encoder/, unet/, vae/, scheduler/, clip/), seed %lld\n", out, (long long)seed);
    return 0;
}
