// Tiny random CLIP text encoder / CLIPModel and the tiny tokenizer. See model/clip_tiny.h.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/clip_tiny.h"

// The text the tiny vocabulary is learned from: caption-like English.
static const char tiny_corpus[] =
    "a photo of a cat. a photo of a dog. a close up photo of a cat sitting on a wooden table. "
    "a painting of a dog in the style of van gogh. a picture of a teddy bear on the beach. "
    "a photograph of a person wearing a red hat and a blue jacket in the snow. "
    "a cat sitting inside a wooden pot and looking up at the camera. "
    "a dog playing with a ball in the green grass of the park on a sunny day. "
    "an oil painting of a mountain lake at sunset with trees and clouds in the sky. "
    "a watercolor illustration of a small house with a garden full of flowers. "
    "a black and white photograph of a city street at night with cars and lights. "
    "a high quality portrait photo of a woman smiling, studio lighting, sharp focus. "
    "a man riding a bicycle along the river next to an old stone bridge. "
    "a bowl of fresh fruit with apples, oranges, bananas and grapes on the kitchen counter. "
    "a vintage car parked in front of a brick building with large windows. "
    "a bird flying over the ocean waves under a bright blue sky. "
    "a chair made of wood standing in an empty room with white walls. "
    "a plush toy sitting on a bed next to a pillow and a blanket. "
    "a ceramic vase with painted patterns, a guitar leaning against the wall. "
    "a barn in a field of wheat, a lighthouse on the rocky coast, a castle on a hill. "
    "the kitten sleeps while the puppy runs; the children laugh and the music plays. "
    "sculpture, statue, tortoise, pet, animal, nature, landscape, forest, desert, river. "
    "rendering, digital art, cartoon, sketch, drawing, pencil, charcoal, anime, pixel art. "
    "two cats and three dogs, four birds, five flowers, many colorful balloons at a party. "
    "wearing sunglasses, wearing a scarf, with a crown, on top of a purple rug, in a basket. "
    "professional photography, detailed, realistic, 4k, 8k, depth of field, bokeh, 35mm. "
    "morning light, golden hour, foggy weather, rainy evening, winter, summer, autumn, spring. ";

void cd_tiny_text_config(cd_clip_text_config *c) {
    memset(c, 0, sizeof(*c));
    c->vocab_size = CD_TINY_VOCAB; c->hidden = 32; c->intermediate = 128; c->layers = 3; c->heads = 4;
    c->max_pos = 77; c->projection_dim = 16; c->eps = 1e-5f; c->act = CD_ACT_QUICK_GELU;
    c->bos_id = CD_TINY_VOCAB - 2; c->eos_id = CD_TINY_VOCAB - 1; c->pad_id = 1; c->pool_argmax = 0;
}

void cd_tiny_vision_config(cd_clip_vision_config *c) {
    memset(c, 0, sizeof(*c));
    c->hidden = 32; c->intermediate = 128; c->layers = 2; c->heads = 4; c->image_size = 64;
    c->patch_size = 16; c->channels = 3; c->projection_dim = 16; c->eps = 1e-5f; c->act = CD_ACT_QUICK_GELU;
}

int cd_tiny_tokenizer_write(const char *dir) {
    return cd_bpe_learn_write(dir, tiny_corpus, CD_TINY_VOCAB - 514, "<|endoftext|>");
}

// N(0, std^2) tensor (mean added) into ws.
static void put_rand(cd_weights *ws, cd_rng *r, float mean, float std, int nd, int64_t a, int64_t b,
                     int64_t c, int64_t d, const char *fmt, ...) __attribute__((format(printf, 10, 11)));

static void put_rand(cd_weights *ws, cd_rng *r, float mean, float std, int nd, int64_t a, int64_t b,
                     int64_t c, int64_t d, const char *fmt, ...) {
    int64_t sh[4] = {a, b, c, d}, n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    float *x = cd_malloc(sizeof(float) * n);
    cd_rng_normal(r, x, n);
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * x[i];
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    cd_weights_put(ws, name, nd, sh, x);
    free(x);
}

static void put_layers(cd_weights *ws, cd_rng *r, const char *pre, int nl, int C, int I) {
    float sc = 1.f / sqrtf((float)C), si = 1.f / sqrtf((float)I);
    for (int i = 0; i < nl; i++) {
        const char *proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int p = 0; p < 4; p++) {
            put_rand(ws, r, 0, sc, 2, C, C, 0, 0, "%s.encoder.layers.%d.self_attn.%s.weight", pre, i, proj[p]);
            put_rand(ws, r, 0, 0.02f, 1, C, 0, 0, 0, "%s.encoder.layers.%d.self_attn.%s.bias", pre, i, proj[p]);
        }
        for (int k = 1; k <= 2; k++) {
            put_rand(ws, r, 1, 0.1f, 1, C, 0, 0, 0, "%s.encoder.layers.%d.layer_norm%d.weight", pre, i, k);
            put_rand(ws, r, 0, 0.1f, 1, C, 0, 0, 0, "%s.encoder.layers.%d.layer_norm%d.bias", pre, i, k);
        }
        put_rand(ws, r, 0, sc, 2, I, C, 0, 0, "%s.encoder.layers.%d.mlp.fc1.weight", pre, i);
        put_rand(ws, r, 0, 0.02f, 1, I, 0, 0, 0, "%s.encoder.layers.%d.mlp.fc1.bias", pre, i);
        put_rand(ws, r, 0, si, 2, C, I, 0, 0, "%s.encoder.layers.%d.mlp.fc2.weight", pre, i);
        put_rand(ws, r, 0, 0.02f, 1, C, 0, 0, 0, "%s.encoder.layers.%d.mlp.fc2.bias", pre, i);
    }
}

void cd_tiny_clip_weights(cd_weights *ws, const cd_clip_text_config *tc, int with_proj,
                          const cd_clip_vision_config *vc, uint64_t seed) {
    cd_rng r;
    cd_rng_split(&r, seed, 0xC11F);
    int C = tc->hidden;
    put_rand(ws, &r, 0, 1.f, 2, tc->vocab_size, C, 0, 0, "text_model.embeddings.token_embedding.weight");
    put_rand(ws, &r, 0, 0.1f, 2, tc->max_pos, C, 0, 0, "text_model.embeddings.position_embedding.weight");
    put_layers(ws, &r, "text_model", tc->layers, C, tc->intermediate);
    put_rand(ws, &r, 1, 0.1f, 1, C, 0, 0, 0, "text_model.final_layer_norm.weight");
    put_rand(ws, &r, 0, 0.1f, 1, C, 0, 0, 0, "text_model.final_layer_norm.bias");
    if (with_proj) put_rand(ws, &r, 0, 1.f / sqrtf((float)C), 2, tc->projection_dim, C, 0, 0, "text_projection.weight");
    if (!vc) return;
    int V = vc->hidden, p = vc->patch_size, np = (vc->image_size / p) * (vc->image_size / p);
    put_rand(ws, &r, 0, 1.f / sqrtf(3.f * p * p), 4, V, 3, p, p, "vision_model.embeddings.patch_embedding.weight");
    put_rand(ws, &r, 0, 1.f, 1, V, 0, 0, 0, "vision_model.embeddings.class_embedding");
    put_rand(ws, &r, 0, 0.1f, 2, np + 1, V, 0, 0, "vision_model.embeddings.position_embedding.weight");
    put_rand(ws, &r, 1, 0.1f, 1, V, 0, 0, 0, "vision_model.pre_layrnorm.weight");
    put_rand(ws, &r, 0, 0.1f, 1, V, 0, 0, 0, "vision_model.pre_layrnorm.bias");
    put_layers(ws, &r, "vision_model", vc->layers, V, vc->intermediate);
    put_rand(ws, &r, 1, 0.1f, 1, V, 0, 0, 0, "vision_model.post_layernorm.weight");
    put_rand(ws, &r, 0, 0.1f, 1, V, 0, 0, 0, "vision_model.post_layernorm.bias");
    put_rand(ws, &r, 0, 1.f / sqrtf((float)V), 2, vc->projection_dim, V, 0, 0, "visual_projection.weight");
    float ls = 2.6592f;
    int64_t one = 1;
    cd_weights_put(ws, "logit_scale", 1, &one, &ls);
}

static int save_weights(const cd_weights *ws, const char *path) {
    cd_st_writer *w = cd_st_writer_new();
    for (int i = 0; i < ws->n; i++)
        cd_st_writer_add(w, ws->w[i].name, CD_F32, ws->w[i].ndim, ws->w[i].shape, ws->w[i].data);
    cd_st_writer_meta(w, "format", "pt");
    int rc = cd_st_writer_save(w, path);
    cd_st_writer_free(w);
    return rc;
}

static cJSON *text_config_json(const cd_clip_text_config *c, int full) {
    cJSON *o = cJSON_CreateObject();
    if (full) {
        cJSON *a = cJSON_AddArrayToObject(o, "architectures");
        cJSON_AddItemToArray(a, cJSON_CreateString("CLIPTextModel"));
    }
    cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->heads);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_pos);
    cJSON_AddStringToObject(o, "hidden_act", c->act == CD_ACT_GELU ? "gelu" : "quick_gelu");
    cJSON_AddNumberToObject(o, "layer_norm_eps", c->eps);
    cJSON_AddNumberToObject(o, "projection_dim", c->projection_dim);
    cJSON_AddNumberToObject(o, "bos_token_id", c->bos_id);
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_id);
    cJSON_AddNumberToObject(o, "pad_token_id", c->pad_id);
    if (full) cJSON_AddStringToObject(o, "torch_dtype", "float32");
    return o;
}

int cd_tiny_text_encoder_write(const char *dir, uint64_t seed) {
    cd_clip_text_config tc;
    cd_tiny_text_config(&tc);
    CD_TRY(cd_mkdirs(dir));
    cd_weights ws;
    cd_weights_init(&ws, "tiny text encoder");
    cd_tiny_clip_weights(&ws, &tc, 0, NULL, seed);
    char *p = cd_path_join(dir, "model.safetensors");
    int rc = save_weights(&ws, p);
    free(p);
    cd_weights_free(&ws);
    cJSON *o = text_config_json(&tc, 1);
    p = cd_path_join(dir, "config.json");
    if (!rc) rc = cd_json_save(p, o);
    free(p); cJSON_Delete(o);
    return rc;
}

static int write_preproc(const char *dir, int size) {
    char *text = cd_fmt("{\n  \"crop_size\": {\"height\": %d, \"width\": %d},\n  \"do_center_crop\": true,\n"
                        "  \"do_normalize\": true,\n  \"do_resize\": true,\n  \"do_rescale\": true,\n"
                        "  \"rescale_factor\": 0.00392156862745098,\n  \"do_convert_rgb\": true,\n"
                        "  \"image_mean\": [0.48145466, 0.4578275, 0.40821073],\n"
                        "  \"image_std\": [0.26862954, 0.26130258, 0.27577711],\n  \"resample\": 3,\n"
                        "  \"size\": {\"shortest_edge\": %d},\n  \"image_processor_type\": \"CLIPImageProcessor\"\n}\n",
                        size, size, size);
    char *p = cd_path_join(dir, "preprocessor_config.json");
    int rc = cd_write_file_atomic(p, text, strlen(text));
    free(p); free(text);
    return rc;
}

int cd_tiny_clip_write(const char *dir, uint64_t seed) {
    cd_clip_text_config tc;
    cd_clip_vision_config vc;
    cd_tiny_text_config(&tc);
    cd_tiny_vision_config(&vc);
    CD_TRY(cd_mkdirs(dir));
    cd_weights ws;
    cd_weights_init(&ws, "tiny clip");
    cd_tiny_clip_weights(&ws, &tc, 1, &vc, seed ^ 0x5EED);
    char *p = cd_path_join(dir, "model.safetensors");
    int rc = save_weights(&ws, p);
    free(p);
    cd_weights_free(&ws);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "architectures"), cJSON_CreateString("CLIPModel"));
    cJSON_AddStringToObject(o, "model_type", "clip");
    cJSON_AddNumberToObject(o, "projection_dim", tc.projection_dim);
    cJSON_AddItemToObject(o, "text_config", text_config_json(&tc, 0));
    cJSON *v = cJSON_AddObjectToObject(o, "vision_config");
    cJSON_AddStringToObject(v, "model_type", "clip_vision_model");
    cJSON_AddNumberToObject(v, "hidden_size", vc.hidden);
    cJSON_AddNumberToObject(v, "intermediate_size", vc.intermediate);
    cJSON_AddNumberToObject(v, "num_hidden_layers", vc.layers);
    cJSON_AddNumberToObject(v, "num_attention_heads", vc.heads);
    cJSON_AddNumberToObject(v, "image_size", vc.image_size);
    cJSON_AddNumberToObject(v, "patch_size", vc.patch_size);
    cJSON_AddStringToObject(v, "hidden_act", "quick_gelu");
    cJSON_AddNumberToObject(v, "layer_norm_eps", vc.eps);
    cJSON_AddNumberToObject(v, "num_channels", 3);
    cJSON_AddNumberToObject(v, "projection_dim", vc.projection_dim);
    cJSON_AddNumberToObject(o, "logit_scale_init_value", 2.6592);
    p = cd_path_join(dir, "config.json");
    if (!rc) rc = cd_json_save(p, o);
    free(p); cJSON_Delete(o);
    if (!rc) rc = write_preproc(dir, vc.image_size);
    if (!rc) rc = cd_tiny_tokenizer_write(dir);
    return rc;
}
