// Tiny random CLIP models and a tokenizer of the project's own, in the real on-disk layouts
// (for customdiff-tiny-model, the demo and tests; no real weights are downloaded).
// Shapes follow the golden tiny-sd set: text width 32, 3 layers, 4 heads, MLP 128,
// quick_gelu, 77 positions; vision 64x64 images, patch 16, width 32, 2 layers; projection 16.
// The vocabulary is byte-level BPE learned from an embedded English text (OpenAI's order:
// 256 bytes, 256 bytes + "</w>", one piece per merge, <|startoftext|>, <|endoftext|>), so
// its size is CD_TINY_VOCAB and the ids differ from the real CLIP vocabulary.
#ifndef CD_CLIP_TINY_H
#define CD_CLIP_TINY_H
#include <stdint.h>
#include "model/clip.h"
#include "model/weights.h"

#define CD_TINY_VOCAB 1000

// Learn `nmerges` BPE merges from `corpus` (lower-cased, CLIP's pattern on ASCII) and write
// DIR/vocab.json, merges.txt, special_tokens_map.json (pad = pad_token), tokenizer_config.json.
// The pieces "ktn" and "pll" (the Custom Diffusion initializers) are always in the vocabulary.
int cd_bpe_learn_write(const char *dir, const char *corpus, int nmerges, const char *pad_token);
// The tokenizer of the tiny models (CD_TINY_VOCAB pieces) into DIR.
int cd_tiny_tokenizer_write(const char *dir);
// Configs of the tiny models.
void cd_tiny_text_config(cd_clip_text_config *c);
void cd_tiny_vision_config(cd_clip_vision_config *c);
// Random weights under transformers' names into ws: the text tower (and text_projection
// when with_proj), and the vision tower + visual_projection when vc != NULL.
void cd_tiny_clip_weights(cd_weights *ws, const cd_clip_text_config *tc, int with_proj,
                          const cd_clip_vision_config *vc, uint64_t seed);
// A pipeline's text_encoder/ (CLIPTextModel: config.json + model.safetensors) into DIR.
int cd_tiny_text_encoder_write(const char *dir, uint64_t seed);
// A CLIPModel folder (config, weights, preprocessor_config.json, tokenizer files) into DIR.
int cd_tiny_clip_write(const char *dir, uint64_t seed);
#endif
