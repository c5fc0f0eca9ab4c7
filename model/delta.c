// Custom Diffusion deltas: build, write, read (project, diffusers and textual-inversion
// layouts), fingerprint and apply. See model/delta.h and manifests/schema/delta.md.
#include "model/delta.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "core/sha256.h"
#include "kernels/kernels.h"

#define TOKEN_PREFIX "token_embedding."
#define SUFFIX_U ".delta_u"
#define SUFFIX_V ".delta_v"

void cd_delta_init(cd_delta *d, const char *mode) {
    memset(d, 0, sizeof *d);
    d->version = CD_DELTA_VERSION;
    d->layout = cd_strdup("customdiff");
    d->mode = mode ? cd_strdup(mode) : NULL;
}

void cd_delta_free(cd_delta *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->t[i].name); free(d->t[i].data); free(d->t[i].u); free(d->t[i].v);
    }
    free(d->t);
    for (int i = 0; i < d->ntok; i++) { free(d->tokens[i].tok); free(d->tokens[i].row); }
    free(d->tokens);
    cd_free_strv(d->meta_key, d->nmeta);
    cd_free_strv(d->meta_val, d->nmeta);
    free(d->path); free(d->layout); free(d->mode);
    memset(d, 0, sizeof *d);
}

int cd_delta_find(const cd_delta *d, const char *name) {
    for (int i = 0; i < d->n; i++) if (strcmp(d->t[i].name, name) == 0) return i;
    return -1;
}

int cd_delta_find_token(const cd_delta *d, const char *tok) {
    for (int i = 0; i < d->ntok; i++) if (strcmp(d->tokens[i].tok, tok) == 0) return i;
    return -1;
}

static cd_delta_tensor *slot(cd_delta *d, const char *name) {
    int i = cd_delta_find(d, name);
    if (i >= 0) {
        cd_delta_tensor *t = &d->t[i];
        free(t->data); free(t->u); free(t->v);
        t->data = t->u = t->v = NULL;
        t->rank = 0;
        return t;
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 32;
        d->t = cd_realloc(d->t, sizeof(cd_delta_tensor) * d->cap);
    }
    cd_delta_tensor *t = &d->t[d->n++];
    memset(t, 0, sizeof *t);
    t->name = cd_strdup(name);
    return t;
}

int cd_delta_add_tensor(cd_delta *d, const char *name, int ndim, const int64_t *shape, const float *data) {
    if (ndim < 1 || ndim > 2) return cd_err("delta: tensor '%s' has %d dims (1 or 2 expected)", name, ndim);
    cd_delta_tensor *t = slot(d, name);
    t->ndim = ndim;
    t->shape[0] = shape[0];
    t->shape[1] = ndim == 2 ? shape[1] : 1;
    int64_t n = t->shape[0] * t->shape[1];
    t->data = cd_malloc(sizeof(float) * (n ? n : 1));
    memcpy(t->data, data, sizeof(float) * n);
    return 0;
}

int cd_delta_add_lowrank(cd_delta *d, const char *name, int64_t out, int64_t in, int r,
                         const float *u, const float *v) {
    if (r < 1) return cd_err("delta: low-rank tensor '%s' needs rank >= 1 (got %d)", name, r);
    cd_delta_tensor *t = slot(d, name);
    t->ndim = 2;
    t->shape[0] = out;
    t->shape[1] = in;
    t->rank = r;
    t->u = cd_malloc(sizeof(float) * out * r);
    t->v = cd_malloc(sizeof(float) * r * in);
    memcpy(t->u, u, sizeof(float) * out * r);
    memcpy(t->v, v, sizeof(float) * r * in);
    return 0;
}

int cd_delta_add_token(cd_delta *d, const char *tok, const float *row, int dim) {
    if (!tok || !*tok) return cd_err("delta: empty token name");
    if (d->ntok && dim != d->tok_dim)
        return cd_err("delta: token '%s' has %d values, other tokens have %d", tok, dim, d->tok_dim);
    int i = cd_delta_find_token(d, tok);
    if (i < 0) {
        d->tokens = cd_realloc(d->tokens, sizeof(cd_delta_token) * (d->ntok + 1));
        i = d->ntok++;
        d->tokens[i].tok = cd_strdup(tok);
        d->tokens[i].row = NULL;
    }
    free(d->tokens[i].row);
    d->tokens[i].row = cd_malloc(sizeof(float) * dim);
    memcpy(d->tokens[i].row, row, sizeof(float) * dim);
    d->tok_dim = dim;
    return 0;
}

void cd_delta_set_meta(cd_delta *d, const char *key, const char *val) {
    for (int i = 0; i < d->nmeta; i++)
        if (strcmp(d->meta_key[i], key) == 0) { free(d->meta_val[i]); d->meta_val[i] = cd_strdup(val); return; }
    d->meta_key = cd_realloc(d->meta_key, sizeof(char *) * (d->nmeta + 1));
    d->meta_val = cd_realloc(d->meta_val, sizeof(char *) * (d->nmeta + 1));
    d->meta_key[d->nmeta] = cd_strdup(key);
    d->meta_val[d->nmeta++] = cd_strdup(val);
}

const char *cd_delta_get_meta(const cd_delta *d, const char *key) {
    for (int i = 0; i < d->nmeta; i++) if (strcmp(d->meta_key[i], key) == 0) return d->meta_val[i];
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cd_delta_fingerprint(cd_weights *base, const char *const *names, int n, char out[80]) {
    const char **sorted = cd_malloc(sizeof(char *) * (n ? n : 1));
    memcpy(sorted, names, sizeof(char *) * n);
    qsort(sorted, n, sizeof(char *), cmp_str);
    cd_sha256_ctx c;
    cd_sha256_init(&c);
    for (int i = 0; i < n; i++) {
        cd_weight *w = cd_weights_find(base, sorted[i]);
        if (!w) {
            int rc = cd_err("%s: base tensor '%s' (replaced by the delta) is missing", base->what, sorted[i]);
            free(sorted);
            return rc;
        }
        cd_sha256_update(&c, sorted[i], strlen(sorted[i]) + 1);
        cd_sha256_update(&c, w->data, sizeof(float) * (size_t)w->numel);   // x86: little-endian
    }
    free(sorted);
    uint8_t h[32];
    cd_sha256_final(&c, h);
    strcpy(out, "sha256:");
    for (int i = 0; i < 32; i++) snprintf(out + 7 + 2 * i, 3, "%02x", h[i]);
    return 0;
}

int cd_delta_set_base(cd_delta *d, cd_weights *base) {
    const char **names = cd_malloc(sizeof(char *) * (d->n ? d->n : 1));
    for (int i = 0; i < d->n; i++) names[i] = d->t[i].name;
    int rc = cd_delta_fingerprint(base, names, d->n, d->fingerprint);
    free(names);
    if (rc == 0) d->base_tensors = d->n;
    return rc;
}

static char *tokens_json(const cd_delta *d) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < d->ntok; i++) cJSON_AddItemToArray(a, cJSON_CreateString(d->tokens[i].tok));
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

int cd_delta_save(const cd_delta *d, const char *path) {
    if (!d->fingerprint[0])
        cd_warn("%s: writing a delta without a base fingerprint (it cannot be checked against a base model)", path);
    cd_st_writer *w = cd_st_writer_new();
    int maxr = 0;
    for (int i = 0; i < d->n; i++) {
        const cd_delta_tensor *t = &d->t[i];
        if (t->rank > 0) {
            int64_t su[2] = {t->shape[0], t->rank}, sv[2] = {t->rank, t->shape[1]};
            char *nu = cd_fmt("%s%s", t->name, SUFFIX_U), *nv = cd_fmt("%s%s", t->name, SUFFIX_V);
            cd_st_writer_add_f32(w, nu, CD_F32, 2, su, t->u);
            cd_st_writer_add_f32(w, nv, CD_F32, 2, sv, t->v);
            free(nu); free(nv);
            if (t->rank > maxr) maxr = t->rank;
        } else {
            if (!t->data) { cd_st_writer_free(w); return cd_err("%s: tensor '%s' has no data", path, t->name); }
            cd_st_writer_add_f32(w, t->name, CD_F32, t->ndim, t->shape, t->data);
        }
    }
    for (int i = 0; i < d->ntok; i++) {
        char *k = cd_fmt(TOKEN_PREFIX "%s", d->tokens[i].tok);
        int64_t s[1] = {d->tok_dim};
        cd_st_writer_add_f32(w, k, CD_F32, 1, s, d->tokens[i].row);
        free(k);
    }
    char buf[32], *tj = tokens_json(d);
    cd_st_writer_meta(w, "format", CD_DELTA_FORMAT);
    snprintf(buf, sizeof buf, "%d", CD_DELTA_VERSION);
    cd_st_writer_meta(w, "format_version", buf);
    cd_st_writer_meta(w, "modifier_tokens", tj);
    free(tj);
    cd_st_writer_meta(w, "training_mode", d->mode ? d->mode : "");
    cd_st_writer_meta(w, "base_fingerprint", d->fingerprint);
    snprintf(buf, sizeof buf, "%d", d->fingerprint[0] ? d->n : 0);
    cd_st_writer_meta(w, "base_tensors", buf);
    if (maxr > 0) { snprintf(buf, sizeof buf, "%d", maxr); cd_st_writer_meta(w, "compression_rank", buf); }
    cd_st_writer_meta(w, "created_by", "customdiff " CD_VERSION);
    for (int i = 0; i < d->nmeta; i++) cd_st_writer_meta(w, d->meta_key[i], d->meta_val[i]);
    int rc = cd_st_writer_save(w, path);
    cd_st_writer_free(w);
    return rc ? cd_errctx("writing delta %s", path) : 0;
}

// ---- reading ------------------------------------------------------------------------------

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int load_f32(const cd_st_file *f, const cd_st_tensor *t, float **out) {
    int64_t n;
    return cd_st_load_f32(f, t->name, out, &n);
}

static int read_token_tensor(cd_delta *d, const cd_st_file *f, const cd_st_tensor *t, const char *tok) {
    int64_t dim = t->ndim == 1 ? t->shape[0] : (t->ndim == 2 && t->shape[0] == 1) ? t->shape[1] : -1;
    if (dim <= 0)
        return cd_err("%s: token embedding '%s' has %d dims (shape [%lld, ...]); one vector [C] or "
                      "[1, C] expected (multi-vector embeddings are not supported)", f->path, t->name,
                      t->ndim, (long long)t->shape[0]);
    float *row;
    CD_TRY(load_f32(f, t, &row));
    int rc = cd_delta_add_token(d, tok, row, (int)dim);
    free(row);
    return rc ? cd_errctx("%s", f->path) : 0;
}

// Project format: full tensors, low-rank pairs, token rows; metadata checked.
static int read_project(cd_delta *d, const cd_st_file *f) {
    const char *v = cd_st_meta(f, "format_version");
    d->version = v ? atoi(v) : 0;
    if (d->version < 1 || d->version > CD_DELTA_VERSION)
        return cd_err("%s: delta format_version '%s' is not supported (this build reads 1..%d)",
                      f->path, v ? v : "(missing)", CD_DELTA_VERSION);
    const char *m = cd_st_meta(f, "training_mode");
    free(d->mode);
    d->mode = m && *m ? cd_strdup(m) : NULL;
    const char *fp = cd_st_meta(f, "base_fingerprint");
    snprintf(d->fingerprint, sizeof d->fingerprint, "%s", fp ? fp : "");
    const char *bt = cd_st_meta(f, "base_tensors");
    d->base_tensors = bt ? atoi(bt) : 0;
    const char *cr = cd_st_meta(f, "compression_rank");
    d->compression_rank = cr ? atoi(cr) : 0;
    for (int i = 0; i < f->n; i++) {
        const cd_st_tensor *t = &f->t[i];
        if (strncmp(t->name, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) == 0) {
            CD_TRY(read_token_tensor(d, f, t, t->name + strlen(TOKEN_PREFIX)));
        } else if (ends_with(t->name, SUFFIX_U)) {
            size_t bl = strlen(t->name) - strlen(SUFFIX_U);
            char *base = cd_strdup(t->name);
            base[bl] = 0;
            char *vn = cd_fmt("%s%s", base, SUFFIX_V);
            const cd_st_tensor *tv = cd_st_find(f, vn);
            int rc = 0;
            if (!tv || t->ndim != 2 || tv->ndim != 2 || tv->shape[0] != t->shape[1])
                rc = cd_err("%s: low-rank tensor '%s' needs '%s' of shape [%lld, in]", f->path, t->name,
                            vn, (long long)t->shape[t->ndim > 1 ? 1 : 0]);
            float *u = NULL, *vv = NULL;
            if (!rc) rc = load_f32(f, t, &u);
            if (!rc) rc = load_f32(f, tv, &vv);
            if (!rc) rc = cd_delta_add_lowrank(d, base, t->shape[0], tv->shape[1], (int)t->shape[1], u, vv);
            free(u); free(vv); free(base); free(vn);
            CD_TRY(rc);
        } else if (ends_with(t->name, SUFFIX_V)) {
            continue;   // read with its _u
        } else {
            float *x;
            CD_TRY(load_f32(f, t, &x));
            int rc = cd_delta_add_tensor(d, t->name, t->ndim, t->shape, x);
            free(x);
            if (rc) return cd_errctx("%s", f->path);
        }
    }
    // modifier_tokens gives the id order; rows must all be present.
    const char *mt = cd_st_meta(f, "modifier_tokens");
    cJSON *a = mt ? cJSON_Parse(mt) : NULL;
    if (mt && !cJSON_IsArray(a)) { cJSON_Delete(a); return cd_err("%s: metadata modifier_tokens is not a JSON array", f->path); }
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        int i = cJSON_IsString(e) ? cd_delta_find_token(d, e->valuestring) : -1;
        if (i < 0) { cJSON_Delete(a); return cd_err("%s: modifier token %s listed but its row '" TOKEN_PREFIX "%s' is missing", f->path, cJSON_IsString(e) ? e->valuestring : "?", cJSON_IsString(e) ? e->valuestring : "?"); }
        cd_delta_token tmp = d->tokens[k]; d->tokens[k] = d->tokens[i]; d->tokens[i] = tmp;
        k++;
    }
    cJSON_Delete(a);
    static const char *known[] = {"format", "format_version", "modifier_tokens", "training_mode",
                                  "base_fingerprint", "base_tensors", "compression_rank"};
    for (int i = 0; i < f->nmeta; i++) {
        int skip = 0;
        for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) skip |= strcmp(f->meta_key[i], known[j]) == 0;
        if (!skip) cd_delta_set_meta(d, f->meta_key[i], f->meta_val[i]);
    }
    return 0;
}

// diffusers' X.attn2.processor.to_k_custom_diffusion.weight -> X.attn2.to_k.weight
static char *diffusers_to_unet_name(const char *key) {
    const char *p = strstr(key, "processor.");
    const char *c = strstr(key, "_custom_diffusion");
    if (!p || !c || c < p) return NULL;
    size_t n = strlen(key);
    char *o = cd_malloc(n + 1), *w = o;
    memcpy(w, key, p - key); w += p - key;
    const char *s = p + strlen("processor.");
    memcpy(w, s, c - s); w += c - s;
    strcpy(w, c + strlen("_custom_diffusion"));
    return o;
}

static int read_diffusers(cd_delta *d, const cd_st_file *f) {
    for (int i = 0; i < f->n; i++) {
        const cd_st_tensor *t = &f->t[i];
        char *name = diffusers_to_unet_name(t->name);
        if (!name) return cd_err("%s: key '%s' is not a Custom Diffusion processor weight", f->path, t->name);
        float *x;
        int rc = load_f32(f, t, &x);
        if (!rc) rc = cd_delta_add_tensor(d, name, t->ndim, t->shape, x);
        if (!rc) free(x);
        free(name);
        if (rc) return cd_errctx("%s", f->path);
    }
    return 0;
}

// Token name from a file stem: "new1.safetensors" -> "new1" (kept as the user named it).
static char *file_stem(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    char *s = cd_strdup(b);
    char *dot = strrchr(s, '.');
    if (dot) *dot = 0;
    return s;
}

static int looks_unet_name(const char *k) {
    return (strncmp(k, "down_blocks.", 12) == 0 || strncmp(k, "up_blocks.", 10) == 0 ||
            strncmp(k, "mid_block.", 10) == 0) && (ends_with(k, ".weight") || ends_with(k, ".bias"));
}

static int read_file_into(cd_delta *d, const char *path) {
    cd_st_file f;
    if (cd_st_open(&f, path)) return cd_errctx("reading delta %s", path);
    int rc = 0, diff = 0, unet = 0;
    const char *fmt = cd_st_meta(&f, "format");
    for (int i = 0; i < f.n; i++) {
        diff += strstr(f.t[i].name, "custom_diffusion") != NULL;
        unet += looks_unet_name(f.t[i].name);
    }
    const char *layout;
    if (fmt && strcmp(fmt, CD_DELTA_FORMAT) == 0) { layout = "customdiff"; rc = read_project(d, &f); }
    else if (diff > 0) { layout = "diffusers"; rc = read_diffusers(d, &f); }
    else if (unet > 0 && unet == f.n) {
        layout = "plain";
        for (int i = 0; i < f.n && !rc; i++) {
            float *x;
            rc = load_f32(&f, &f.t[i], &x);
            if (!rc) { rc = cd_delta_add_tensor(d, f.t[i].name, f.t[i].ndim, f.t[i].shape, x); free(x); }
        }
    } else if (f.n == 1 || cd_st_find(&f, "emb_params")) {
        layout = "textual_inversion";
        const cd_st_tensor *t = cd_st_find(&f, "emb_params");
        char *stem = file_stem(path);
        rc = read_token_tensor(d, &f, t ? t : &f.t[0], t ? stem : f.t[0].name);
        free(stem);
    } else {
        layout = NULL;
        rc = cd_err("%s: not a delta: no customdiff metadata, no Custom Diffusion processor keys, "
                    "no UNet parameter names and not a single-token embedding (%d tensors)", path, f.n);
    }
    if (!rc && layout) {
        if (!d->layout || strcmp(d->layout, "customdiff") != 0 || strcmp(layout, "customdiff") == 0) {
            free(d->layout);
            d->layout = cd_strdup(layout);
        }
    }
    cd_st_close(&f);
    return rc;
}

static int is_pickle_name(const char *p) {
    return ends_with(p, ".bin") || ends_with(p, ".ckpt") || ends_with(p, ".pt") || ends_with(p, ".pth");
}

static int read_dir(cd_delta *d, const char *dir) {
    char **names; int n;
    CD_TRY(cd_list_dir(dir, &names, &n));
    int rc = 0, used = 0;
    for (int i = 0; i < n && !rc; i++) {
        const char *nm = names[i];
        int weights = strcmp(nm, "pytorch_custom_diffusion_weights.safetensors") == 0 ||
                      strcmp(nm, "delta.safetensors") == 0;
        int token = nm[0] == '<' && ends_with(nm, ".safetensors");
        if (!weights && !token) continue;
        char *p = cd_path_join(dir, nm);
        rc = read_file_into(d, p);
        free(p);
        used++;
    }
    if (!rc && !used) {
        int pickle = 0;
        for (int i = 0; i < n; i++) pickle |= is_pickle_name(names[i]);
        rc = cd_err("%s: no delta found (expected pytorch_custom_diffusion_weights.safetensors, "
                    "delta.safetensors or <token>.safetensors)%s", dir,
                    pickle ? "; .bin pickles are not read: convert them to safetensors first" : "");
    }
    cd_free_strv(names, n);
    return rc;
}

int cd_delta_read(cd_delta *d, const char *path) {
    cd_delta_init(d, NULL);
    free(d->layout);
    d->layout = NULL;
    d->path = cd_strdup(path);
    int rc;
    if (cd_is_dir(path)) rc = read_dir(d, path);
    else if (is_pickle_name(path))
        rc = cd_err("%s: PyTorch pickles are not read (unsafe); convert it to safetensors, e.g. "
                    "safetensors.torch.save_file(torch.load(path)['unet'], 'delta.safetensors')", path);
    else rc = read_file_into(d, path);
    if (rc) { cd_delta_free(d); return -1; }
    if (!d->layout) d->layout = cd_strdup("customdiff");
    return 0;
}
