// customdiff-merge: several single-concept deltas -> one delta, by Custom Diffusion's
// closed-form constrained optimisation (src/diffusers_composenW.py): for every attn2 to_k /
// to_v layer, W = argmin ||(W - W0) Creg^T|| subject to W C^T = V^T, where Creg are the
// token features of regularisation captions, C the features of each concept's target
// prompts ("<new_n> category", "photo of a <new_n> category") and V their outputs under the
// concept's own fine-tuned weight. Concept n's modifier token becomes <new_n>.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/cli.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "model/delta.h"
#include "model/pipeline.h"
#include "merge/merge.h"

#define PROG "merge"
#define MAX_CONCEPTS 32

typedef struct { float *x; int n, cap, dim; int *owner; } rows_t;   // x [n, dim]

static void rows_push(rows_t *r, const float *row, int owner) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        r->x = cd_realloc(r->x, sizeof(float) * (size_t)r->cap * r->dim);
        r->owner = cd_realloc(r->owner, sizeof(int) * r->cap);
    }
    memcpy(r->x + (size_t)r->n * r->dim, row, sizeof(float) * r->dim);
    r->owner[r->n++] = owner;
}

// Token features of one prompt: positions 1 .. first EOS inclusive (4 .. when "photo of a"
// lies within the first 15 characters, as the reference drops "photo of a" too).
static int prompt_features(cd_pipeline *p, const char *prompt, rows_t *out, int owner) {
    int32_t ids[CD_CLIP_MAX_LEN];
    int used, C = out->dim;
    CD_TRY(cd_tokenizer_encode(p->tok, prompt, CD_CLIP_MAX_LEN, ids, &used));
    float *h = cd_malloc(sizeof(float) * CD_CLIP_MAX_LEN * C);
    int rc = cd_clip_text_forward(&p->text, ids, 1, CD_CLIP_MAX_LEN, h, NULL);
    const char *pa = strstr(prompt, "photo of a");
    int start = pa && (pa - prompt) + 10 <= 15 ? 4 : 1;
    for (int j = start; j < used && !rc; j++) rows_push(out, h + (size_t)j * C, owner);
    free(h);
    return rc;
}

static int read_captions(const char *path, int max, char ***out, int *n) {
    *out = NULL; *n = 0;
    if (!path) {
        int k = merge_default_ncaptions < max ? merge_default_ncaptions : max;
        *out = cd_malloc(sizeof(char *) * k);
        for (int i = 0; i < k; i++) (*out)[i] = cd_strdup(merge_default_captions[i]);
        *n = k;
        return 0;
    }
    char *text; size_t len;
    CD_TRY(cd_read_file(path, &text, &len, 256 << 20));
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l && *n < max; l = strtok_r(NULL, "\n", &save)) {
        size_t k = strlen(l);
        while (k && (l[k - 1] == '\r' || l[k - 1] == ' ')) l[--k] = 0;
        if (!k) continue;
        *out = cd_realloc(*out, sizeof(char *) * (*n + 1));
        (*out)[(*n)++] = cd_strdup(l);
    }
    free(text);
    return *n ? 0 : cd_err("%s: no captions", path);
}

// Remove exact duplicate target rows (mean |c_i - c_j| == 0), keeping the first.
static void dedupe(rows_t *r) {
    int k = 0;
    for (int i = 0; i < r->n; i++) {
        int dup = 0;
        for (int j = 0; j < k && !dup; j++)
            dup = memcmp(r->x + (size_t)i * r->dim, r->x + (size_t)j * r->dim, sizeof(float) * r->dim) == 0;
        if (dup) continue;
        memmove(r->x + (size_t)k * r->dim, r->x + (size_t)i * r->dim, sizeof(float) * r->dim);
        r->owner[k++] = r->owner[i];
    }
    if (k < r->n) cd_info("merge: %d duplicate target rows removed", r->n - k);
    r->n = k;
}

typedef struct {
    const char **paths; int nd;
    char *cats[MAX_CONCEPTS]; int ncat;
    const char *reg, *out;
    int max_reg, check_base;
    double ridge;
    cd_pipeline p;
    cd_delta d[MAX_CONCEPTS];
    rows_t creg, tgt;
} merge_run;

static int split_plus(const char *s, char **out, int *n) {
    *n = 0;
    for (const char *p = s; p && *p;) {
        const char *e = strchr(p, '+');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (*n == MAX_CONCEPTS) return cd_err("--categories: more than %d", MAX_CONCEPTS);
        out[*n] = cd_malloc(l + 1);
        memcpy(out[*n], p, l); out[*n][l] = 0;
        (*n)++;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static int load_inputs(merge_run *M) {
    for (int n = 0; n < M->nd; n++) {
        CD_TRY(cd_delta_read(&M->d[n], M->paths[n]));
        if (M->check_base) CD_TRY(cd_delta_check_base(&M->d[n], &M->p.unet_w));
        CD_TRY(cd_delta_reconstruct(&M->d[n], &M->p.unet_w));
        if (M->d[n].ntok > 1) cd_warn("%s: %d tokens; only the first (%s) is merged", M->paths[n], M->d[n].ntok, M->d[n].tokens[0].tok);
    }
    return 0;
}

// Register concept n's token as <new{n+1}> (text table grown) and collect the features.
static int collect_features(merge_run *M) {
    int C = M->p.text.cfg.hidden;
    M->creg.dim = M->tgt.dim = C;
    char *targets[MAX_CONCEPTS];
    for (int n = 0; n < M->nd; n++) {
        int has = M->d[n].ntok > 0;
        targets[n] = has ? cd_fmt("<new%d> %s", n + 1, M->cats[n]) : cd_strdup(M->cats[n]);
        if (!has) continue;
        if (M->d[n].tok_dim != C) return cd_err("%s: token rows are %d wide, the text encoder %d", M->paths[n], M->d[n].tok_dim, C);
        char tok[32];
        snprintf(tok, sizeof tok, "<new%d>", n + 1);
        int id;
        CD_TRY(cd_tokenizer_add_token(M->p.tok, tok, &id));
        CD_TRY(cd_clip_text_resize_tokens(&M->p.text, cd_tokenizer_size(M->p.tok)));
        memcpy(M->p.text.tok_emb + (size_t)id * C, M->d[n].tokens[0].row, sizeof(float) * C);
    }
    int rc = 0;
    for (int n = 0; n < M->nd && !rc; n++) {
        char *second = cd_fmt("%s%s", strstr(targets[n], "art") ? "painting in the style of " : "photo of a ", targets[n]);
        rc = prompt_features(&M->p, targets[n], &M->tgt, n);
        if (!rc) rc = prompt_features(&M->p, second, &M->tgt, n);
        free(second);
    }
    for (int n = 0; n < M->nd; n++) free(targets[n]);
    CD_TRY(rc);
    dedupe(&M->tgt);
    char **caps; int ncap;
    CD_TRY(read_captions(M->reg, M->max_reg, &caps, &ncap));
    for (int i = 0; i < ncap && !rc; i++) rc = prompt_features(&M->p, caps[i], &M->creg, -1);
    cd_free_strv(caps, ncap);
    cd_info("merge: %d regularisation feature rows from %d captions, %d target rows", M->creg.n, ncap, M->tgt.n);
    return rc;
}

// Merge one layer into out; returns the worst relative constraint residual in *res.
static int merge_layer(merge_run *M, const char *name, const float *P, cd_delta *out, double *res) {
    int64_t sh[2] = {0, M->tgt.dim};
    cd_weight *bw = cd_weights_find(&M->p.unet_w, name);
    if (!bw || bw->ndim != 2 || bw->shape[1] != M->tgt.dim) return cd_err("base model: '%s' missing or not [out, %d]", name, M->tgt.dim);
    int O = (int)bw->shape[0], I = M->tgt.dim, S = M->tgt.n;
    sh[0] = O;
    for (int k = 0; k < M->nd; k++) {   // every delta's tensor must be [O, I] like the base's
        int j = cd_delta_find(&M->d[k], name);
        const cd_delta_tensor *t = j >= 0 ? &M->d[k].t[j] : NULL;
        if (t && (t->ndim != 2 || t->shape[0] != O || t->shape[1] != I))
            return cd_err("%s: tensor '%s' has shape [%lld, %lld], the base model's [%d, %d]", M->paths[k], name,
                          (long long)t->shape[0], (long long)(t->ndim == 2 ? t->shape[1] : 1), O, I);
    }
    float *V = cd_malloc(sizeof(float) * (size_t)S * O), *W = cd_malloc(sizeof(float) * (size_t)O * I);
    for (int s = 0; s < S; s++) {   // V[s] = W_owner c_s
        const cd_delta *d = &M->d[M->tgt.owner[s]];
        int k = cd_delta_find(d, name);
        const float *Wn = k >= 0 ? d->t[k].data : bw->data;
        const float *c = M->tgt.x + (size_t)s * I;
        for (int o = 0; o < O; o++) {
            double acc = 0;
            for (int i = 0; i < I; i++) acc += (double)Wn[(size_t)o * I + i] * c[i];
            V[(size_t)s * O + o] = (float)acc;
        }
    }
    cd_merge_apply(W, bw->data, M->tgt.x, V, P, S, O, I);
    double worst = 0, vmax = 0;
    for (int s = 0; s < S; s++)
        for (int o = 0; o < O; o++) {
            double acc = 0;
            for (int i = 0; i < I; i++) acc += (double)W[(size_t)o * I + i] * M->tgt.x[(size_t)s * I + i];
            double e = acc - V[(size_t)s * O + o];
            if (e < 0) e = -e;
            if (e > worst) worst = e;
            double a = V[(size_t)s * O + o] < 0 ? -V[(size_t)s * O + o] : V[(size_t)s * O + o];
            if (a > vmax) vmax = a;
        }
    *res = vmax > 0 ? worst / vmax : worst;
    int rc = cd_delta_add_tensor(out, name, 2, sh, W);
    free(V); free(W);
    return rc;
}

static int merge_all(merge_run *M) {
    CD_TRY(load_inputs(M));
    CD_TRY(collect_features(M));
    float *P = cd_malloc(sizeof(float) * (size_t)M->tgt.n * M->tgt.dim);
    int rc = cd_merge_prepare(M->creg.x, M->creg.n, M->tgt.x, M->tgt.n, M->tgt.dim, M->ridge, P);
    cd_delta out;
    cd_delta_init(&out, "merged");
    double worst = 0;
    for (int n = 0; n < M->nd && !rc; n++)
        for (int i = 0; i < M->d[n].n && !rc; i++) {
            const char *name = M->d[n].t[i].name;
            if (cd_delta_find(&out, name) >= 0) continue;
            if (!strstr(name, "attn2.to_k") && !strstr(name, "attn2.to_v")) {
                cd_warn("%s: '%s' is not a cross-attention K/V tensor; not merged (dropped)", M->paths[n], name);
                continue;
            }
            double res = 0;
            rc = merge_layer(M, name, P, &out, &res);
            if (res > worst) worst = res;
        }
    free(P);
    for (int n = 0; n < M->nd && !rc; n++)
        if (M->d[n].ntok > 0) {
            char tok[32];
            snprintf(tok, sizeof tok, "<new%d>", n + 1);
            rc = cd_delta_add_token(&out, tok, M->d[n].tokens[0].row, M->d[n].tok_dim);
        }
    if (!rc) rc = cd_delta_set_base(&out, &M->p.unet_w);
    if (!rc) {
        char *from = cd_strdup(""), *cats = cd_strdup(""), buf[32];
        for (int n = 0; n < M->nd; n++) {
            char *f2 = cd_fmt("%s%s%s", from, n ? "+" : "", M->paths[n]), *c2 = cd_fmt("%s%s%s", cats, n ? "+" : "", M->cats[n]);
            free(from); free(cats); from = f2; cats = c2;
        }
        cd_delta_set_meta(&out, "merged_from", from);
        cd_delta_set_meta(&out, "categories", cats);
        snprintf(buf, sizeof buf, "%d", M->creg.n);
        cd_delta_set_meta(&out, "regularisation_rows", buf);
        free(from); free(cats);
        rc = cd_delta_save(&out, M->out);
    }
    if (!rc) printf("customdiff-merge: wrote %s (%d concepts, %d tensors, %d target rows, max constraint residual %.2e)\n",
                    M->out, M->nd, out.n, M->tgt.n, worst);
    cd_delta_free(&out);
    return rc;
}

int main(int argc, char **argv) {
    static const char *model, *tokenizer, *config, *categories, *reg, *out;
    static cd_strlist deltas;
    static int max_reg, no_check;
    static double ridge;
    cd_opt opts[] = {
        {"delta", CD_OPT_STRLIST, &deltas, NULL, "a single-concept delta (repeat once per concept)"},
        {"categories", CD_OPT_STR, &categories, NULL, "one category per delta, '+'-separated, e.g. \"wooden pot+cat\" (required)"},
        {"model", CD_OPT_STR, &model, NULL, "the base model (required)"},
        {"tokenizer", CD_OPT_STR, &tokenizer, NULL, "tokenizer folder (for a single-file model)"},
        {"config", CD_OPT_STR, &config, NULL, "diffusers folder whose configs describe a single-file model"},
        {"reg-captions", CD_OPT_STR, &reg, NULL, "regularisation captions, one per line (default: a built-in set)"},
        {"max-reg", CD_OPT_INT, &max_reg, "200", "use the first N regularisation captions"},
        {"ridge", CD_OPT_FLOAT, &ridge, "0", "added to the diagonal of Creg^T Creg (0: none, as the reference)"},
        {"out", CD_OPT_STR, &out, "merged.safetensors", "output delta"},
        {"no-check-base", CD_OPT_FLAG, &no_check, "0", "skip the base fingerprint checks"},
        {0}};
    int npos; char **pos;
    int r = cd_cli_parse(PROG, "merge single-concept deltas by closed-form constrained optimisation", opts, argc, argv, &npos, &pos);
    if (r == 1) return 0;
    if (r < 0) cd_die(PROG, 2);
    if (!model || !categories || deltas.n < 1) { cd_err("--model, --categories and at least one --delta are required"); cd_die(PROG, 2); }
    if (deltas.n > MAX_CONCEPTS) { cd_err("at most %d deltas", MAX_CONCEPTS); cd_die(PROG, 2); }
    if (!(ridge >= 0) || !isfinite(ridge) || max_reg < 1) { cd_err("--ridge must be a finite number >= 0 and --max-reg >= 1"); cd_die(PROG, 2); }
    merge_run M;
    memset(&M, 0, sizeof M);
    M.paths = deltas.v; M.nd = deltas.n; M.reg = reg; M.out = out; M.max_reg = max_reg;
    M.check_base = !no_check; M.ridge = ridge;
    if (split_plus(categories, M.cats, &M.ncat)) cd_die(PROG, 2);
    if (M.ncat != M.nd) { cd_err("%d deltas but %d categories in --categories '%s'", M.nd, M.ncat, categories); cd_die(PROG, 2); }
    if (cd_pipeline_load(&M.p, model, tokenizer, config, CD_LOAD_UNET | CD_LOAD_TEXT | CD_LOAD_TOKENIZER)) cd_die(PROG, 1);
    if (merge_all(&M)) cd_die(PROG, 1);
    for (int n = 0; n < M.nd; n++) { cd_delta_free(&M.d[n]); free(M.cats[n]); }
    free(M.creg.x); free(M.creg.owner); free(M.tgt.x); free(M.tgt.owner);
    cd_pipeline_free(&M.p);
    return 0;
}
