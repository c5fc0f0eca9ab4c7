// Custom Diffusion deltas: what fine-tuning changed in a base model (manifests/schema/delta.md).
//
// The project's format is one safetensors file:
//   <UNet parameter name>              F32 [out, in] (or [out]): the full fine-tuned tensor,
//                                      e.g. down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight
//   <UNet parameter name>.delta_u      F32 [out, r]  } low-rank (compressed) form instead:
//   <UNet parameter name>.delta_v      F32 [r, in]   } W = W_base + delta_u @ delta_v
//   token_embedding.<token>            F32 [C]: the embedding row of a modifier token ("<new1>")
//   __metadata__: format "customdiff-delta", format_version "1", modifier_tokens (JSON array,
//   in id order), training_mode, base_fingerprint "sha256:<hex>", base_tensors (count),
//   compression_rank (compressed only), created_by, and free-form keys.
//
// Also read: diffusers' Custom Diffusion layout (…attn2.processor.to_k_custom_diffusion.weight,
// to_v_, to_q_, to_out_custom_diffusion.0.weight/bias), a folder holding
// pytorch_custom_diffusion_weights.safetensors and <token>.safetensors files, plain
// textual-inversion embeddings ({"<tok>": [C] or [1, C]}, or {"emb_params": [1, C]} named by
// the file stem), and plain UNet names without metadata. Those carry no fingerprint.
//
// The base fingerprint is SHA-256 over the base model's tensors that the delta replaces, in
// name order: for each, the name, a NUL byte, then its values as fp32 little-endian (as
// loaded, so F16 on disk hashes as its fp32 conversion).
#ifndef CD_DELTA_H
#define CD_DELTA_H
#include <stdint.h>
#include "model/weights.h"
#include "model/tokenizer.h"
#include "model/clip.h"

#define CD_DELTA_FORMAT "customdiff-delta"
#define CD_DELTA_VERSION 1

typedef struct {
    char *name;          // UNet parameter name (diffusers), e.g. ...attn2.to_k.weight
    int ndim;            // 1 or 2
    int64_t shape[2];    // of the full tensor
    float *data;         // full tensor [shape] (NULL while low-rank and not reconstructed)
    int rank;            // > 0: low-rank form u [out, rank], v [rank, in] over the base
    float *u, *v;
} cd_delta_tensor;

typedef struct {
    char *tok;           // "<new1>"
    float *row;          // [dim]
} cd_delta_token;

typedef struct {
    char *path;          // what it was read from (for messages)
    char *layout;        // "customdiff", "diffusers", "textual_inversion", "plain"
    int version;
    char *mode;          // training_mode ("crossattn_kv", "crossattn", "merged", ...) or NULL
    char fingerprint[80];   // "sha256:<64 hex>" or "" when unknown
    int base_tensors;    // count the fingerprint covers
    int compression_rank;   // 0: full tensors
    int n, cap;
    cd_delta_tensor *t;
    int ntok, tok_dim;
    cd_delta_token *tokens;
    int nmeta;
    char **meta_key, **meta_val;   // extra metadata (written as is)
} cd_delta;

// ---- building and writing (trainer, compress, merge) ---------------------------------------
void cd_delta_init(cd_delta *d, const char *mode);
void cd_delta_free(cd_delta *d);
// Add a full tensor (copied). Replaces a tensor of the same name.
int cd_delta_add_tensor(cd_delta *d, const char *name, int ndim, const int64_t *shape, const float *data);
// Add a low-rank tensor: W = base + u[out, r] @ v[r, in] (copied). r >= 1.
int cd_delta_add_lowrank(cd_delta *d, const char *name, int64_t out, int64_t in, int r,
                         const float *u, const float *v);
// Add a modifier token's embedding row (copied); all rows must have the same dim.
int cd_delta_add_token(cd_delta *d, const char *tok, const float *row, int dim);
void cd_delta_set_meta(cd_delta *d, const char *key, const char *val);
const char *cd_delta_get_meta(const cd_delta *d, const char *key);   // extra keys only
// Fingerprint of the base tensors `names` (n) in ws: "sha256:<hex>" into out[80]. Missing
// tensor -> error naming it. The trainer calls this before training changes the weights.
int cd_delta_fingerprint(cd_weights *base, const char *const *names, int n, char out[80]);
// Set d->fingerprint from base over d's own tensor names.
int cd_delta_set_base(cd_delta *d, cd_weights *base);
// Write the project format atomically (F32). A delta without a fingerprint is written with
// an empty base_fingerprint (readers then skip the check) and a warning.
int cd_delta_save(const cd_delta *d, const char *path);

// ---- reading -------------------------------------------------------------------------
// Read any supported layout (a file or a folder, see above); d is initialised by the call.
// A .bin/.ckpt/.pt pickle is an error that says how to convert it.
int cd_delta_read(cd_delta *d, const char *path);
// Index of a tensor / token, or -1.
int cd_delta_find(const cd_delta *d, const char *name);
int cd_delta_find_token(const cd_delta *d, const char *tok);
// Check the fingerprint against base (skipped, with an info line, when d has none).
// Mismatch -> "delta X was made for another base model" error.
int cd_delta_check_base(const cd_delta *d, cd_weights *base);
// Materialise the low-rank tensors: data = base + u @ v (the base tensor must exist with the
// right shape). Full tensors are left as they are.
int cd_delta_reconstruct(cd_delta *d, cd_weights *base);

// ---- applying to a loaded model --------------------------------------------------------
// Apply n deltas at once: every fingerprint is checked against the untouched base (unless
// check_base == 0), shapes are checked, two deltas replacing the same tensor is an error
// (merge them with customdiff-merge), then the UNet tensors are laid into unet_w
// (cd_weights_put) and each delta's tokens are added to the tokenizer (tok) and the text
// encoder's embedding table (text, grown as needed). The caller rebinds the UNet
// (cd_unet_rebind) afterwards. tok/text may be NULL only when no delta carries tokens.
int cd_delta_apply(cd_delta *const *ds, int n, cd_weights *unet_w, cd_tokenizer *tok,
                   cd_clip_text *text, int check_base);

// ---- compression (Custom Diffusion's src/compress.py), model/delta_ops.c -----------------
// Number of leading singular values S[n] (descending) that Custom Diffusion keeps: the ones
// before the first i where sum(S[0..i]) / sum(S) > ratio (that component is excluded, so
// the rank can be 0).
int cd_svd_rank_for_ratio(const float *S, int n, double ratio);
// Replace every 2-D tensor whose name contains "to_k" or "to_v" by the low-rank form of its
// difference from base: SVD(W - W_base) = U S V^T (LAPACKE sgesdd), u = U[:, :r] S[:r],
// v = V^T[:r]. r = rank when rank > 0 (capped at min(out, in)), else the ratio rule above.
// A tensor whose r is 0 is dropped (W = W_base). Other tensors and tokens are kept; the
// fingerprint is recomputed over the remaining tensors. *max_rank (may be NULL) gets the
// largest r kept.
int cd_delta_compress(cd_delta *d, cd_weights *base, int rank, double ratio, int *max_rank);

// ---- merge (Custom Diffusion's closed-form constrained optimisation, §11) ------------------
// Layer-independent part: M = Creg^T Creg [in, in] (+ ridge * I), P[s, in] =
// (C M^-1 C^T)^-1 C M^-1 for regularisation features Creg [m, in] and target features
// C [s, in] (double precision LU). Errors when M or C M^-1 C^T is singular.
int cd_merge_prepare(const float *Creg, int m, const float *C, int s, int in, double ridge, float *P);
// One layer: W[out, in] = W0 + (V^T - W0 C^T) P, so that W C^T = V^T exactly (V [s, out]:
// the targets' outputs W_n c under each concept's own weights) while W stays closest to W0
// on the regularisation features.
void cd_merge_apply(float *W, const float *W0, const float *C, const float *V, const float *P,
                    int s, int out, int in);
#endif
