// Deltas against a base model: fingerprint check, low-rank reconstruction, and applying
// several deltas at once to a loaded model (UNet tensors, tokenizer, token embedding table).
#include "model/delta.h"
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/log.h"
#include "kernels/kernels.h"

int cd_delta_check_base(const cd_delta *d, cd_weights *base) {
    const char *what = d->path ? d->path : "delta";
    for (int i = 0; i < d->n; i++) {
        const cd_delta_tensor *t = &d->t[i];
        cd_weight *w = cd_weights_find(base, t->name);
        if (!w)
            return cd_err("%s: tensor '%s' is not in the base model %s (a delta for another "
                          "architecture?)", what, t->name, base->what);
        int64_t n = t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
        if (w->ndim != t->ndim || w->numel != n || w->shape[0] != t->shape[0])
            return cd_err("%s: tensor '%s' has shape [%lld, %lld] but the base model's has [%lld, %lld]: "
                          "this delta was made for another base model", what, t->name,
                          (long long)t->shape[0], (long long)(t->ndim == 2 ? t->shape[1] : 1),
                          (long long)w->shape[0], (long long)(w->ndim == 2 ? w->shape[1] : 1));
    }
    if (!d->fingerprint[0]) {
        cd_info("%s: %s layout carries no base fingerprint; not checked", what, d->layout ? d->layout : "delta");
        return 0;
    }
    if (d->n == 0) return 0;
    char fp[80];
    const char **names = cd_malloc(sizeof(char *) * d->n);
    for (int i = 0; i < d->n; i++) names[i] = d->t[i].name;
    int rc = cd_delta_fingerprint(base, names, d->n, fp);
    free(names);
    CD_TRY(rc);
    if (strcmp(fp, d->fingerprint) != 0)
        return cd_err("%s: delta was made for another base model: its base fingerprint %.19s... "
                      "differs from %s's %.19s... over the %d tensors it replaces", what,
                      d->fingerprint, base->what, fp, d->n);
    return 0;
}

int cd_delta_reconstruct(cd_delta *d, cd_weights *base) {
    for (int i = 0; i < d->n; i++) {
        cd_delta_tensor *t = &d->t[i];
        if (t->rank <= 0 || t->data) continue;
        int64_t sh[2] = {t->shape[0], t->shape[1]};
        float *w;
        if (cd_weights_get(base, t->name, 2, sh, &w))
            return cd_errctx("%s: reconstructing low-rank '%s'", d->path ? d->path : "delta", t->name);
        int64_t n = sh[0] * sh[1];
        t->data = cd_malloc(sizeof(float) * n);
        memcpy(t->data, w, sizeof(float) * n);
        // data[out, in] += u[out, r] @ v[r, in]
        cd_gemm(0, 0, (int)sh[0], (int)sh[1], t->rank, 1.0f, t->u, t->rank, t->v, (int)sh[1],
                1.0f, t->data, (int)sh[1]);
    }
    return 0;
}

// Two deltas replacing one tensor or adding one token cannot be applied together.
static int check_conflicts(cd_delta *const *ds, int n) {
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            for (int i = 0; i < ds[a]->n; i++)
                if (cd_delta_find(ds[b], ds[a]->t[i].name) >= 0)
                    return cd_err("deltas %s and %s both replace '%s': combine them with "
                                  "customdiff-merge first", ds[a]->path, ds[b]->path, ds[a]->t[i].name);
            for (int i = 0; i < ds[a]->ntok; i++)
                if (cd_delta_find_token(ds[b], ds[a]->tokens[i].tok) >= 0)
                    return cd_err("deltas %s and %s both define token %s: merge them with "
                                  "customdiff-merge (which renames tokens) or retrain with distinct tokens",
                                  ds[a]->path, ds[b]->path, ds[a]->tokens[i].tok);
        }
    return 0;
}

static int add_tokens(const cd_delta *d, cd_tokenizer *tok, cd_clip_text *text) {
    if (d->ntok == 0) return 0;
    if (!tok || !text) return cd_err("%s: the delta adds tokens but no tokenizer/text encoder is loaded", d->path);
    if (d->tok_dim != text->cfg.hidden)
        return cd_err("%s: token rows have %d values but the text encoder is %d wide: this delta "
                      "was made for another base model", d->path, d->tok_dim, text->cfg.hidden);
    for (int i = 0; i < d->ntok; i++) {
        int id;
        if (cd_tokenizer_add_token(tok, d->tokens[i].tok, &id))
            return cd_errctx("%s: adding token %s", d->path, d->tokens[i].tok);
        if (cd_tokenizer_size(tok) > text->n_tok)
            CD_TRY(cd_clip_text_resize_tokens(text, cd_tokenizer_size(tok)));
        if (!text->tok_own) CD_TRY(cd_clip_text_resize_tokens(text, text->n_tok));
        memcpy(text->tok_emb + (int64_t)id * d->tok_dim, d->tokens[i].row, sizeof(float) * d->tok_dim);
        cd_info("%s: token %s -> id %d", d->path, d->tokens[i].tok, id);
    }
    return 0;
}

int cd_delta_apply(cd_delta *const *ds, int n, cd_weights *unet_w, cd_tokenizer *tok,
                   cd_clip_text *text, int check_base) {
    CD_TRY(check_conflicts(ds, n));
    for (int k = 0; k < n; k++) {   // every check against the untouched base first
        if (check_base) CD_TRY(cd_delta_check_base(ds[k], unet_w));
        CD_TRY(cd_delta_reconstruct(ds[k], unet_w));
    }
    for (int k = 0; k < n; k++) {
        const cd_delta *d = ds[k];
        for (int i = 0; i < d->n; i++) {
            const cd_delta_tensor *t = &d->t[i];
            cd_weight *w = cd_weights_find(unet_w, t->name);
            if (!w) return cd_err("%s: tensor '%s' is not in the base model", d->path, t->name);
            if (w->numel != t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1) || w->shape[0] != t->shape[0])
                return cd_err("%s: tensor '%s' has shape [%lld, %lld] (%lld values), the base model's [%lld, ...] "
                              "(%lld values): this delta was made for another base model", d->path, t->name,
                              (long long)t->shape[0], (long long)(t->ndim == 2 ? t->shape[1] : 1),
                              (long long)(t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1)),
                              (long long)w->shape[0], (long long)w->numel);
            int64_t shape[CD_MAX_DIMS];
            memcpy(shape, w->shape, sizeof shape);
            cd_weights_put(unet_w, t->name, w->ndim, shape, t->data);
        }
        CD_TRY(add_tokens(d, tok, text));
    }
    return 0;
}
