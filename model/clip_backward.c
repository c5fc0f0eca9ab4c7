// CLIP text encoder: training forward (keeps activations) and backward to the token
// embedding rows (weights frozen, as Custom Diffusion trains only the new token rows).
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "kernels/kernels.h"
#include "model/clip_internal.h"

static clip_layer_save layer_save(const cd_clip_text_acts *a, int i, int64_t n, int C, int I, int H) {
    clip_layer_save s = {
        a->ln1 + i * n * C, a->mean1 + i * n, a->rstd1 + i * n,
        a->q + i * n * C, a->k + i * n * C, a->v + i * n * C, a->att + i * n * C, a->lse + i * n * H,
        a->xmid + i * n * C, a->ln2 + i * n * C, a->mean2 + i * n, a->rstd2 + i * n, a->h1 + i * n * I,
    };
    return s;
}

void cd_clip_text_acts_free(cd_clip_text_acts *a) {
    free(a->ids); free(a->x0); free(a->xin);
    free(a->ln1); free(a->mean1); free(a->rstd1);
    free(a->q); free(a->k); free(a->v); free(a->att); free(a->lse);
    free(a->xmid); free(a->ln2); free(a->mean2); free(a->rstd2); free(a->h1);
    free(a->meanf); free(a->rstdf);
    memset(a, 0, sizeof(*a));
}

static void acts_alloc(cd_clip_text_acts *a, int nl, int64_t n, int C, int I, int H) {
    size_t f = sizeof(float), nl1 = nl > 0 ? nl : 1;
    a->x0 = cd_malloc(f * n * C);
    a->xin = cd_malloc(f * (nl + 1) * n * C);
    a->ln1 = cd_malloc(f * nl1 * n * C); a->mean1 = cd_malloc(f * nl1 * n); a->rstd1 = cd_malloc(f * nl1 * n);
    a->q = cd_malloc(f * nl1 * n * C); a->k = cd_malloc(f * nl1 * n * C); a->v = cd_malloc(f * nl1 * n * C);
    a->att = cd_malloc(f * nl1 * n * C); a->lse = cd_malloc(f * nl1 * n * H);
    a->xmid = cd_malloc(f * nl1 * n * C); a->ln2 = cd_malloc(f * nl1 * n * C);
    a->mean2 = cd_malloc(f * nl1 * n); a->rstd2 = cd_malloc(f * nl1 * n);
    a->h1 = cd_malloc(f * nl1 * n * I);
    a->meanf = cd_malloc(f * n); a->rstdf = cd_malloc(f * n);
}

int cd_clip_text_forward_train(const cd_clip_text *m, const int32_t *ids, int B, int L,
                               float *hidden, cd_clip_text_acts *a) {
    memset(a, 0, sizeof(*a));
    int C = m->cfg.hidden, I = m->cfg.intermediate, H = m->cfg.heads, nl = m->cfg.layers;
    if (B <= 0 || L <= 0 || L > m->cfg.max_pos) return cd_err("clip text: bad shape B=%d L=%d", B, L);
    for (int64_t i = 0; i < (int64_t)B * L; i++)
        if (ids[i] < 0 || ids[i] >= m->n_tok) return cd_err("clip text: token id %d outside the embedding (%d rows)", ids[i], m->n_tok);
    int64_t n = (int64_t)B * L;
    a->B = B; a->L = L;
    a->ids = cd_malloc(sizeof(int32_t) * n);
    memcpy(a->ids, ids, sizeof(int32_t) * n);
    acts_alloc(a, nl, n, C, I, H);
    cd_embedding_fwd(a->x0, ids, m->tok_emb, (int)n, C);
    for (int64_t r = 0; r < n; r++)
        for (int c = 0; c < C; c++) a->x0[r * C + c] += m->pos_emb[(r % L) * C + c];
    memcpy(a->xin, a->x0, sizeof(float) * n * C);
    clip_dims d = {B, L, C, H, I, m->cfg.eps, m->cfg.act, 1};
    for (int i = 0; i < nl; i++) {
        float *x = a->xin + (int64_t)(i + 1) * n * C;
        memcpy(x, a->xin + (int64_t)i * n * C, sizeof(float) * n * C);
        clip_layer_save s = layer_save(a, i, n, C, I, H);
        clip_layer_fwd(&m->L[i], &d, x, &s);
    }
    cd_layernorm_fwd(hidden, a->meanf, a->rstdf, a->xin + (int64_t)nl * n * C, m->lnf_g, m->lnf_b, (int)n, C, m->cfg.eps);
    return 0;
}

int cd_clip_text_backward(const cd_clip_text *m, const cd_clip_text_acts *a,
                          const float *dhidden, float *dx_out, float *dtok, const uint8_t *row_mask) {
    int C = m->cfg.hidden, I = m->cfg.intermediate, H = m->cfg.heads, nl = m->cfg.layers;
    if (!a->xin) return cd_err("clip text backward: no saved activations");
    int64_t n = (int64_t)a->B * a->L;
    float *dx = cd_malloc(sizeof(float) * n * C);
    cd_layernorm_bwd(dx, NULL, NULL, dhidden, a->xin + (int64_t)nl * n * C, a->meanf, a->rstdf, m->lnf_g, (int)n, C);
    clip_dims d = {a->B, a->L, C, H, I, m->cfg.eps, m->cfg.act, 1};
    for (int i = nl - 1; i >= 0; i--) {
        clip_layer_save s = layer_save(a, i, n, C, I, H);
        clip_layer_bwd(&m->L[i], &d, dx, a->xin + (int64_t)i * n * C, &s);
    }
    if (dtok) cd_embedding_bwd(dtok, dx, a->ids, (int)n, C, row_mask);
    if (dx_out) memcpy(dx_out, dx, sizeof(float) * n * C);
    free(dx);
    return 0;
}
