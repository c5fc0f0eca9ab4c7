// CLIP text transformer forward: embeddings, causal encoder, final LayerNorm, pooling,
// projection. Shapes in model/clip.h.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "kernels/kernels.h"
#include "model/clip_internal.h"

static int check_ids(const cd_clip_text *m, const int32_t *ids, int B, int L) {
    if (B <= 0) return cd_err("clip text: batch %d", B);
    if (L <= 0 || L > m->cfg.max_pos) return cd_err("clip text: %d tokens, the model takes 1..%d", L, m->cfg.max_pos);
    for (int64_t i = 0; i < (int64_t)B * L; i++)
        if (ids[i] < 0 || ids[i] >= m->n_tok)
            return cd_err("clip text: token id %d at position %lld is outside the embedding (%d rows)",
                          ids[i], (long long)(i % L), m->n_tok);
    return 0;
}

// x [B,L,C] = token_embedding[ids] + position_embedding[0..L)
static void embed(const cd_clip_text *m, const int32_t *ids, int B, int L, float *x) {
    int C = m->cfg.hidden;
    cd_embedding_fwd(x, ids, m->tok_emb, B * L, C);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < B * L; r++) {
        const float *p = m->pos_emb + (int64_t)(r % L) * C;
        float *xr = x + (int64_t)r * C;
        for (int c = 0; c < C; c++) xr[c] += p[c];
    }
}

static clip_dims text_dims(const cd_clip_text *m, int B, int L) {
    clip_dims d = {B, L, m->cfg.hidden, m->cfg.heads, m->cfg.intermediate, m->cfg.eps, m->cfg.act, 1};
    return d;
}

// Position of the pooled token in row ids[L].
static int pool_pos(const cd_clip_text *m, const int32_t *ids, int L) {
    int best = 0;
    if (m->cfg.pool_argmax) {
        for (int j = 1; j < L; j++) if (ids[j] > ids[best]) best = j;
        return best;
    }
    for (int j = 0; j < L; j++) if (ids[j] == m->cfg.eos_id) return j;
    return 0;   // as torch's argmax of an all-false mask
}

int cd_clip_text_forward(const cd_clip_text *m, const int32_t *ids, int B, int L,
                         float *hidden, float *pooled) {
    CD_TRY(check_ids(m, ids, B, L));
    int C = m->cfg.hidden;
    int64_t n = (int64_t)B * L;
    float *x = cd_malloc(sizeof(float) * n * C);
    embed(m, ids, B, L, x);
    clip_dims d = text_dims(m, B, L);
    for (int i = 0; i < m->cfg.layers; i++) clip_layer_fwd(&m->L[i], &d, x, NULL);
    cd_layernorm_fwd(hidden, NULL, NULL, x, m->lnf_g, m->lnf_b, (int)n, C, m->cfg.eps);
    free(x);
    if (pooled) cd_clip_text_pool(m, ids, B, L, hidden, pooled);
    return 0;
}

void cd_clip_text_pool(const cd_clip_text *m, const int32_t *ids, int B, int L, const float *hidden,
                       float *pooled) {
    int C = m->cfg.hidden;
    for (int b = 0; b < B; b++)
        memcpy(pooled + (int64_t)b * C, hidden + ((int64_t)b * L + pool_pos(m, ids + (int64_t)b * L, L)) * C,
               sizeof(float) * C);
}

int cd_clip_text_project(const cd_clip_text *m, const float *pooled, int B, float *emb, int normalize) {
    if (!m->proj) return cd_err("clip text: this model has no text_projection (a CLIPTextModel); load a CLIPModel folder");
    int C = m->cfg.hidden, P = m->cfg.projection_dim;
    cd_linear_fwd(emb, pooled, m->proj, NULL, B, C, P);
    if (normalize) cd_l2_normalize(emb, B, P);
    return 0;
}

void cd_l2_normalize(float *x, int n, int d) {
    for (int i = 0; i < n; i++) {
        float *r = x + (int64_t)i * d;
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
        if (s <= 0) continue;
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < d; j++) r[j] *= inv;
    }
}

int cd_clip_text_embed(const cd_clip_text *m, const int32_t *ids, int B, int L, float *emb,
                       int normalize) {
    if (!m->proj) return cd_err("clip text: this model has no text_projection (a CLIPTextModel); load a CLIPModel folder");
    int C = m->cfg.hidden;
    float *hid = cd_malloc(sizeof(float) * (size_t)B * L * C), *pooled = cd_malloc(sizeof(float) * (size_t)B * C);
    int rc = cd_clip_text_forward(m, ids, B, L, hid, pooled);
    if (!rc) rc = cd_clip_text_project(m, pooled, B, emb, normalize);
    free(hid); free(pooled);
    return rc;
}

int cd_clip_embed_prompts(const cd_clip *m, const char *const *prompts, int n, float *emb,
                          int normalize) {
    if (!m->has_text) return cd_err("clip: no text tower loaded");
    if (!m->tok) return cd_err("clip: no tokenizer files (vocab.json, merges.txt) in the CLIP folder");
    if (n <= 0) return 0;
    int L = m->text.cfg.max_pos < CD_CLIP_MAX_LEN ? m->text.cfg.max_pos : CD_CLIP_MAX_LEN;
    int32_t *ids = cd_malloc(sizeof(int32_t) * (size_t)n * L);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = cd_tokenizer_encode(m->tok, prompts[i], L, ids + (int64_t)i * L, NULL);
    // batches of 64 prompts bound the activation memory
    for (int b0 = 0; b0 < n && !rc; b0 += 64) {
        int nb = n - b0 < 64 ? n - b0 : 64;
        rc = cd_clip_text_embed(&m->text, ids + (int64_t)b0 * L, nb, L, emb + (int64_t)b0 * m->text.cfg.projection_dim, normalize);
    }
    free(ids);
    return rc;
}
