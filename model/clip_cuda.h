// CLIP text encoder (forward, training forward + backward to token-embedding rows) and CLIP
// vision tower on an NVIDIA GPU through the CUDA twins (kernels/kernels_cuda.h): the math of
// model/clip_text.c, clip_layer.c, clip_backward.c and clip_vision.c, which stay the truth.
//
// Precision: fp32 by default. bf16 mode (cd_clip_*_cuda_set_bf16): the frozen weights get bf16
// copies; every Linear (forward and the backward's d(input) GEMMs) rounds its inputs to bf16 and
// accumulates in fp32; LayerNorm, softmax statistics, activations, residuals, the embedding
// lookups and the token table stay fp32. Both towers' attention runs the 16-bit tensor-core
// kernels: the text model's causal twin forward and backward (the backward rounds q, k, v, out
// and dout to 16 bits, as the forward saw them), the vision tower's plain one. Head dims the
// fused kernels lack (tiny models) are zero-padded to the next supported one (40, 64, 80, 160;
// exact: padded lanes add zeros); above 160 is an error. "bf16" is the process's 16-bit format
// (fp16 after cd_cuda_set_fp16, kernels/kernels_cuda.h).
//
// The text model does what cd_clip_text_forward does: token + position embedding, every layer of
// cfg.layers (SD v2's penultimate-layer choice is already in its config), final_layer_norm;
// no padding mask (causal only), quick_gelu or gelu as the config says.
//
// Plain C, no CUDA headers; with CUDA=0 every constructor fails with "built without CUDA".
#ifndef CD_CLIP_CUDA_H
#define CD_CLIP_CUDA_H
#include <stdint.h>
#include "model/clip.h"

typedef struct cd_clip_text_cuda cd_clip_text_cuda;

// t bound with cd_clip_text_bind (for training: token table already grown for the modifier
// tokens). Uploads t's weights and its token table [n_tok, C] once; t must outlive the handle and
// keep its n_tok. stream: a cudaStream_t or NULL.
int cd_clip_text_cuda_new(cd_clip_text_cuda **out, cd_clip_text *t, void *stream);
void cd_clip_text_cuda_free(cd_clip_text_cuda *g);
// bf16 on/off (see above); 0 or -1.
int cd_clip_text_cuda_set_bf16(cd_clip_text_cuda *g, int on);
// ids host [B,L] -> d_out device [B,L,C]: last_hidden_state as cd_clip_text_forward returns it.
// train = 1 keeps on the device what backward needs (until the next forward). Ids are checked
// on the host (same messages as the CPU). Asynchronous on the stream after the ids upload.
int cd_clip_text_cuda_forward(cd_clip_text_cuda *g, float *d_out, const int32_t *ids, int B, int L,
                              int train);
// Backward of the last train forward: d_dout [B,L,C] (device) -> += into d_rowgrad [nrows, C]
// (device) the gradient of token-embedding row row_ids[k] (the sum over positions whose id is
// row_ids[k]), as model/trainer.c's text_backward forms it from cd_clip_text_backward's dx.
// No position holding any of the row ids: returns 0 at once, d_rowgrad untouched.
int cd_clip_text_cuda_backward_rows(cd_clip_text_cuda *g, const float *d_dout, int nrows,
                                    const int32_t *row_ids, float *d_rowgrad);
// Device fp32 row `id` [C] of the token table (an optimizer updates it in place); NULL when out of range.
float *cd_clip_text_cuda_row_dev(cd_clip_text_cuda *g, int id);
// After an in-place row update: refresh derived copies. The token table has no bf16 copy (the
// lookup is fp32), so this only checks the sticky CUDA error; kept for the trainer's contract.
int cd_clip_text_cuda_rows_changed(cd_clip_text_cuda *g);
// Device rows -> t's host table (synchronous; gives t an owned table first when it points into
// the weights file), and host rows -> device (after a resume).
int cd_clip_text_cuda_rows_to_host(cd_clip_text_cuda *g, int nrows, const int32_t *row_ids);
int cd_clip_text_cuda_rows_from_host(cd_clip_text_cuda *g, int nrows, const int32_t *row_ids);
// Activation arena bytes (planned once per shape), weight bytes (fp32 + bf16 copies + token
// table), FLOPs (2 per MAC) of the last forward plus the backward that followed it.
int64_t cd_clip_text_cuda_arena_bytes(const cd_clip_text_cuda *g);
int64_t cd_clip_text_cuda_weight_bytes(const cd_clip_text_cuda *g);
double cd_clip_text_cuda_flops(const cd_clip_text_cuda *g);

// ---- vision tower ---------------------------------------------------------------------------
typedef struct cd_clip_vision_cuda cd_clip_vision_cuda;
// v bound with cd_clip_vision_bind (cd_clip_load); v must outlive the handle.
int cd_clip_vision_cuda_new(cd_clip_vision_cuda **out, const cd_clip_vision *v, void *stream);
void cd_clip_vision_cuda_free(cd_clip_vision_cuda *g);
int cd_clip_vision_cuda_set_bf16(cd_clip_vision_cuda *g, int on);
// As cd_clip_vision_forward, host in/out: pixels [B,3,S,S] -> pooled [B,C] (post_layernorm of
// the class token; may be NULL) and emb [B,P] (pooled @ visual_projection^T; may be NULL),
// L2-normalised when normalize. Synchronous.
int cd_clip_vision_cuda_forward(cd_clip_vision_cuda *g, float *pooled, float *emb, int normalize,
                                const float *pixels, int B);
#endif
