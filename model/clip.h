// CLIP text and vision transformers (transformers' CLIPTextModel / CLIPModel), CPU fp32.
// Parameter names are transformers' keys ("text_model.encoder.layers.0.self_attn.q_proj.weight",
// "vision_model.embeddings.patch_embedding.weight", "text_projection.weight", ...).
//
// Shapes: ids [B, L] int32 with L <= max_position_embeddings (77); hidden [B, L, C];
// pooled [B, C]; projected embeddings [B, P] (P = projection_dim).
// Pixels [B, 3, S, S] normalised as CLIPImageProcessor does (S = vision image_size).
#ifndef CD_CLIP_H
#define CD_CLIP_H
#include <stdint.h>
#include <cjson/cJSON.h>
#include "model/weights.h"
#include "model/tokenizer.h"
#include "core/image.h"

typedef enum { CD_ACT_QUICK_GELU = 0, CD_ACT_GELU = 1 } cd_clip_act;

typedef struct {
    float *ln1_g, *ln1_b;              // layer_norm1 [C]
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;   // self_attn.*_proj [C,C], [C]
    float *ln2_g, *ln2_b;              // layer_norm2 [C]
    float *fc1_w, *fc1_b;              // mlp.fc1 [I,C], [I]
    float *fc2_w, *fc2_b;              // mlp.fc2 [C,I], [C]
} cd_clip_layer;

typedef struct {
    int vocab_size, hidden, intermediate, layers, heads, max_pos, projection_dim;
    cd_clip_act act;
    float eps;
    int bos_id, eos_id, pad_id;        // from config.json (eos_token_id)
    int pool_argmax;                   // 1: pooled row = argmax(ids) (legacy configs, eos_token_id == 2);
                                       // 0: first position whose id == eos_id (newer transformers)
} cd_clip_text_config;

typedef struct {
    int hidden, intermediate, layers, heads, image_size, patch_size, channels, projection_dim;
    cd_clip_act act;
    float eps;
} cd_clip_vision_config;

typedef struct {
    cd_clip_text_config cfg;
    int n_tok;                         // rows in tok_emb (vocab_size + added tokens)
    float *tok_emb;                    // embeddings.token_embedding.weight [n_tok, C]
    float *pos_emb;                    // embeddings.position_embedding.weight [max_pos, C]
    cd_clip_layer *L;                  // [layers]
    float *lnf_g, *lnf_b;              // final_layer_norm [C]
    float *proj;                       // text_projection.weight [P, C]; NULL in CLIPTextModel
    float *tok_own;                    // heap copy of tok_emb after cd_clip_text_resize_tokens
} cd_clip_text;

typedef struct {
    cd_clip_vision_config cfg;
    float *patch_w;                    // embeddings.patch_embedding.weight [C, 3, p, p] (no bias)
    float *cls;                        // embeddings.class_embedding [C]
    float *pos_emb;                    // embeddings.position_embedding.weight [1 + (S/p)^2, C]
    float *pre_g, *pre_b;              // pre_layrnorm [C]
    cd_clip_layer *L;
    float *post_g, *post_b;            // post_layernorm [C]
    float *proj;                       // visual_projection.weight [P, C]
} cd_clip_vision;

// preprocessor_config.json (CLIPImageProcessor)
typedef struct {
    int do_resize, shortest_edge, do_center_crop, crop_h, crop_w, do_rescale, do_normalize;
    int resample;                      // PIL code: 3 = bicubic (the only one CLIP uses; 2 bilinear)
    float rescale, mean[3], std[3];
} cd_clip_preproc;

// A CLIPModel folder (clip/: text + vision + projections + tokenizer + preprocessor), or a
// pipeline's text_encoder/ (text only; then has_vision = 0 and text.proj = NULL).
typedef struct {
    cd_weights ws;                     // owns the tensors that the pointers below use
    int has_text, has_vision;
    cd_clip_text text;
    cd_clip_vision vision;
    cd_clip_preproc prep;
    cd_tokenizer *tok;                 // NULL when the folder has no tokenizer files
} cd_clip;

// Configs from config.json objects (CLIPTextConfig / CLIPVisionConfig, or a CLIPConfig's
// text_config / vision_config with projection_dim inherited). Missing keys get the
// transformers defaults.
int cd_clip_text_config_parse(const cJSON *o, const char *what, cd_clip_text_config *c);
int cd_clip_vision_config_parse(const cJSON *o, const char *what, cd_clip_vision_config *c);
// ViT-L/14 text config (SD v1.x single-file checkpoints carry no config).
void cd_clip_text_config_vit_l14(cd_clip_text_config *c);

// Load a CLIPModel folder (config.json with text_config/vision_config, model.safetensors,
// preprocessor_config.json, tokenizer files) or a CLIPTextModel folder (text_encoder/).
// Tensors may be F32, F16 or BF16 on disk.
int cd_clip_load(cd_clip *m, const char *dir);
// Bind a text model to tensors already in `ws` (keys "text_model.*", optionally
// "text_projection.weight"), e.g. renamed from a single-file checkpoint. The pointers
// point into ws, which must outlive m.
int cd_clip_text_bind(cd_clip_text *m, const cd_clip_text_config *cfg, cd_weights *ws);
int cd_clip_vision_bind(cd_clip_vision *m, const cd_clip_vision_config *cfg, cd_weights *ws);
void cd_clip_text_release(cd_clip_text *m);   // frees tok_own and the layer table
void cd_clip_vision_release(cd_clip_vision *m);
void cd_clip_free(cd_clip *m);

// Grow the token embedding to n_tok rows (new rows zero) into an owned copy, e.g. after
// cd_tokenizer_add_token; rows are then set with cd_clip_text_set_row.
int cd_clip_text_resize_tokens(cd_clip_text *m, int n_tok);
// Copy row `src` to row `dst` of the token embedding (initialise <new1> from "ktn").
int cd_clip_text_copy_row(cd_clip_text *m, int dst, int src);

// ---- Text forward ---------------------------------------------------------------------
// ids [B,L] -> hidden [B,L,C] (last_hidden_state, after final_layer_norm), pooled [B,C]
// (may be NULL): the row at the eos token (see pool_argmax). Ids must be < n_tok.
int cd_clip_text_forward(const cd_clip_text *m, const int32_t *ids, int B, int L,
                         float *hidden, float *pooled);
// The pooled rows [B,C] of hidden [B,L,C] (what cd_clip_text_forward's pooled gives).
void cd_clip_text_pool(const cd_clip_text *m, const int32_t *ids, int B, int L, const float *hidden,
                       float *pooled);
// emb [B,P] = pooled @ text_projection^T, L2-normalised when normalize (error without a projection).
int cd_clip_text_project(const cd_clip_text *m, const float *pooled, int B, float *emb, int normalize);
// ids [B,L] -> text_embeds [B,P] = pooled @ text_projection^T; L2-normalised when normalize.
int cd_clip_text_embed(const cd_clip_text *m, const int32_t *ids, int B, int L, float *emb,
                       int normalize);
// Prompts -> embeddings [n,P] (tokenized with m->tok to 77 ids).
int cd_clip_embed_prompts(const cd_clip *m, const char *const *prompts, int n, float *emb,
                          int normalize);

// ---- Vision forward -------------------------------------------------------------------
// CLIPImageProcessor: RGB8 image -> pixels [3, crop_h, crop_w] (resize shortest edge with
// PIL bicubic, centre crop, x rescale, (x - mean)/std).
int cd_clip_preprocess(const cd_clip_preproc *p, const cd_image *im, float *pixels);
// pixels [B,3,S,S] -> pooled [B,C] (post_layernorm of the class token; may be NULL) and
// image_embeds [B,P] (pooled @ visual_projection^T; may be NULL), L2-normalised when normalize.
int cd_clip_vision_forward(const cd_clip_vision *m, const float *pixels, int B, float *pooled,
                           float *emb, int normalize);
// Images -> embeddings [n,P] (preprocess + forward).
int cd_clip_embed_images(const cd_clip *m, const cd_image *ims, int n, float *emb, int normalize);
// Row-wise L2 normalisation of x[n,d] in place (a zero row stays zero).
void cd_l2_normalize(float *x, int n, int d);

// ---- Text backward (for training the token embeddings) ---------------------------------
// Activations saved by the training forward for the backward pass.
typedef struct {
    int B, L;
    int32_t *ids;        // [B,L]
    float *x0;           // embeddings output [B,L,C] (token + position)
    float *xin;          // [layers+1][B,L,C] residual stream entering each layer (and the last output)
    float *ln1, *mean1, *rstd1;   // [layers][B,L,C], [layers][B*L] x2
    float *q, *k, *v, *att, *lse; // [layers][B,L,C] x4, [layers][B,H,L]
    float *xmid;         // [layers][B,L,C] residual after attention
    float *ln2, *mean2, *rstd2;
    float *h1;           // [layers][B,L,I] fc1 output (before the activation)
    float *meanf, *rstdf;         // final layer norm stats [B*L]
} cd_clip_text_acts;

// Forward that keeps what backward needs; hidden [B,L,C] as cd_clip_text_forward.
int cd_clip_text_forward_train(const cd_clip_text *m, const int32_t *ids, int B, int L,
                               float *hidden, cd_clip_text_acts *acts);
// d(last_hidden_state) [B,L,C] -> d(input embeddings) dx [B,L,C] (may be NULL), and
// accumulated (+=) into dtok [n_tok, C] (may be NULL) the rows of the ids whose
// row_mask[id] is set (row_mask NULL: every id). Weights are frozen: no weight gradients.
int cd_clip_text_backward(const cd_clip_text *m, const cd_clip_text_acts *acts,
                          const float *dhidden, float *dx, float *dtok, const uint8_t *row_mask);
void cd_clip_text_acts_free(cd_clip_text_acts *a);
#endif
