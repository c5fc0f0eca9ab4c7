// Inputs of customdiff-index (see inputs.h).
#include "index/inputs.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/image.h"
#include "core/json.h"
#include "core/log.h"
#include "core/npy.h"
#include "core/store.h"
#include "model/clip.h"

void ix_rows_free(ix_rows *r) {
    free(r->x);
    if (r->meta) cd_free_strv(r->meta, (int)r->n);
    memset(r, 0, sizeof *r);
}

static void rows_reserve(ix_rows *r, int64_t more) {
    if (r->n + more <= r->cap) return;
    int64_t cap = r->cap ? r->cap : 1024;
    while (cap < r->n + more) cap *= 2;
    r->x = cd_realloc(r->x, (size_t)cap * r->d * sizeof(float));
    r->meta = cd_realloc(r->meta, (size_t)cap * sizeof(char *));
    r->cap = cap;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

// Check the row object and print it compactly into a heap string.
static int finish_row(cJSON *o, const char *path, int64_t line, char **out) {
    const char *what = path;
    cJSON *url = cJSON_GetObjectItemCaseSensitive(o, "url");
    if (!cJSON_IsString(url)) url = cJSON_GetObjectItemCaseSensitive(o, "image_path");
    if (!cJSON_IsString(url)) return cd_err("%s:%lld: row has no string 'url' (or 'image_path')", what, (long long)line);
    cJSON *cap = cJSON_GetObjectItemCaseSensitive(o, "caption");
    if (!cap) cap = cJSON_GetObjectItemCaseSensitive(o, "text");
    if (!cJSON_IsString(cap)) return cd_err("%s:%lld: row has no string 'caption'", what, (long long)line);
    *out = cJSON_PrintUnformatted(o);
    return 0;
}

static void push_row(char ***rows, int64_t *n, int64_t *cap, char *s) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *rows = cd_realloc(*rows, (size_t)*cap * sizeof(char *));
    }
    (*rows)[(*n)++] = s;
}

static int read_jsonl(const char *path, char *buf, size_t len, char ***rows, int64_t *n) {
    int64_t cap = 0, line = 0;
    char *p = buf, *end = buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        line++;
        char *s = p;
        while (s < e && isspace((unsigned char)*s)) s++;
        if (s < e) {
            cJSON *o;
            char what[PATH_MAX + 32];
            snprintf(what, sizeof what, "%s:%lld", path, (long long)line);
            if (cd_json_parse(s, (size_t)(e - s), what, &o) != 0) return -1;
            char *row = NULL;
            int rc = cJSON_IsObject(o) ? finish_row(o, path, line, &row)
                                       : cd_err("%s: line is not a JSON object", what);
            cJSON_Delete(o);
            if (rc) return -1;
            push_row(rows, n, &cap, row);
        }
        p = nl ? nl + 1 : end;
    }
    return 0;
}

// One CSV/TSV field starting at *pp; quoted fields (CSV) may hold separators, newlines and
// doubled quotes. Sets *eol when the record ends after this field.
static char *next_field(char **pp, char *end, char sep, int quoting, int *eol) {
    char *p = *pp, *out = cd_malloc((size_t)(end - p) + 1);
    size_t n = 0;
    *eol = 0;
    if (quoting && p < end && *p == '"') {
        p++;
        while (p < end) {
            if (*p == '"') {
                if (p + 1 < end && p[1] == '"') { out[n++] = '"'; p += 2; continue; }
                p++;
                break;
            }
            out[n++] = *p++;
        }
    }
    while (p < end && *p != sep && *p != '\n') {
        if (*p != '\r') out[n++] = *p;
        p++;
    }
    if (p >= end || *p == '\n') *eol = 1;
    *pp = p < end ? p + 1 : end;
    out[n] = 0;
    return out;
}

static int read_table(const char *path, char *buf, size_t len, char sep, char ***rows, int64_t *n) {
    char *p = buf, *end = buf + len;
    int quoting = sep == ',';
    char **cols = NULL;
    int ncol = 0, eol = 0, rc = 0;
    int64_t cap = 0, line = 1;
    while (!eol && p < end) {   // header
        cols = cd_realloc(cols, (size_t)(ncol + 1) * sizeof(char *));
        cols[ncol++] = next_field(&p, end, sep, quoting, &eol);
    }
    if (ncol == 0) return cd_err("%s: empty table (no header row)", path);
    while (p < end && rc == 0) {
        line++;
        if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n')) { p += *p == '\n' ? 1 : 2; continue; }
        cJSON *o = cJSON_CreateObject();
        int c = 0;
        eol = 0;
        while (!eol) {
            char *f = next_field(&p, end, sep, quoting, &eol);
            if (c < ncol) cJSON_AddStringToObject(o, cols[c], f);
            c++;
            free(f);
        }
        if (c != ncol) rc = cd_err("%s:%lld: %d fields, the header has %d", path, (long long)line, c, ncol);
        char *row = NULL;
        if (rc == 0) rc = finish_row(o, path, line, &row);
        if (rc == 0) push_row(rows, n, &cap, row);
        cJSON_Delete(o);
    }
    cd_free_strv(cols, ncol);
    return rc;
}

int ix_read_metadata(const char *path, char ***rows, int64_t *n) {
    *rows = NULL;
    *n = 0;
    char *buf;
    size_t len;
    CD_TRY(cd_read_file(path, &buf, &len, 0));
    int rc;
    if (ends_with(path, ".jsonl") || ends_with(path, ".json") || ends_with(path, ".ndjson"))
        rc = read_jsonl(path, buf, len, rows, n);
    else if (ends_with(path, ".csv")) rc = read_table(path, buf, len, ',', rows, n);
    else if (ends_with(path, ".tsv") || ends_with(path, ".txt")) rc = read_table(path, buf, len, '\t', rows, n);
    else if (ends_with(path, ".parquet"))
        rc = cd_err("%s: parquet is not read here (no Debian library); convert it with "
                    "python3 -c \"import pandas as p; p.read_parquet('%s').to_json('out.jsonl', orient='records', lines=True)\"",
                    path, path);
    else rc = cd_err("%s: unknown metadata format (use .jsonl, .csv or .tsv)", path);
    free(buf);
    if (rc) {
        cd_free_strv(*rows, (int)*n);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

int ix_add_embeddings(ix_rows *r, const char *npy_path, const char *meta_path) {
    cd_npy a;
    CD_TRY(cd_npy_read(npy_path, &a));
    int rc = 0;
    float *x = NULL;
    char **meta = NULL;
    int64_t nm = 0;
    if (a.ndim != 2 || a.shape[1] <= 0 || a.shape[1] > 65536) {
        rc = cd_err("%s: embeddings must be a 2-D array N x D, got %d dimensions", npy_path, a.ndim);
        goto out;
    }
    if (r->d && a.shape[1] != r->d) {
        rc = cd_err("%s: dimension %lld does not match %d of the earlier files", npy_path, (long long)a.shape[1], r->d);
        goto out;
    }
    if ((rc = cd_npy_to_f32(&a, &x)) != 0) { cd_errctx("%s", npy_path); goto out; }
    if ((rc = ix_read_metadata(meta_path, &meta, &nm)) != 0) goto out;
    if (nm != a.shape[0]) {
        rc = cd_err("%s has %lld rows but %s has %lld: they must be row-aligned", meta_path, (long long)nm,
                    npy_path, (long long)a.shape[0]);
        goto out;
    }
    r->d = (int)a.shape[1];
    rows_reserve(r, nm);
    memcpy(r->x + r->n * r->d, x, (size_t)nm * r->d * sizeof(float));
    memcpy(r->meta + r->n, meta, (size_t)nm * sizeof(char *));
    r->n += nm;
    free(meta);
    meta = NULL;
    nm = 0;
out:
    if (meta) cd_free_strv(meta, (int)nm);
    free(x);
    cd_npy_free(&a);
    return rc;
}


// Caption from <stem>.txt beside the image ("" when absent), whitespace-trimmed.
static char *sidecar_caption(const char *dir, const char *name) {
    char *stem = cd_strdup(name), *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    char *txt = cd_fmt("%s/%s.txt", dir, stem);
    char *buf = NULL;
    size_t len = 0;
    if (cd_path_exists(txt) && cd_read_file(txt, &buf, &len, 1 << 20) == 0) {
        while (len && isspace((unsigned char)buf[len - 1])) buf[--len] = 0;
    } else {
        buf = cd_strdup("");
    }
    free(txt);
    free(stem);
    return buf;
}

static char *image_row(const char *dir, const char *name, const char *url_prefix) {
    char abs[PATH_MAX];
    char *path = cd_path_join(dir, name);
    if (!realpath(path, abs)) snprintf(abs, sizeof abs, "%s", path);
    cJSON *o = cJSON_CreateObject();
    char *url = url_prefix ? cd_fmt("%s/%s", url_prefix, name) : cd_fmt("file://%s", abs);
    char *cap = sidecar_caption(dir, name);
    cJSON_AddStringToObject(o, "url", url);
    cJSON_AddStringToObject(o, "caption", cap);
    cJSON_AddStringToObject(o, "image_path", abs);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(url);
    free(cap);
    free(path);
    return s;
}

// Embed one batch of decoded images and append them.
static int embed_batch(ix_rows *r, const cd_clip *clip, cd_image *ims, char **rows, int nb) {
    int P = clip->vision.cfg.projection_dim;
    if (r->d && r->d != P) return cd_err("CLIP projection dimension %d does not match %d of the other inputs", P, r->d);
    r->d = P;
    rows_reserve(r, nb);
    CD_TRY(cd_clip_embed_images(clip, ims, nb, r->x + r->n * P, 1));
    memcpy(r->meta + r->n, rows, (size_t)nb * sizeof(char *));
    r->n += nb;
    return 0;
}

int ix_add_images(ix_rows *r, const char *dir, const char *clip_dir, const char *url_prefix, int batch) {
    char **names;
    int nn;
    CD_TRY(cd_list_dir(dir, &names, &nn));
    cd_clip clip;
    memset(&clip, 0, sizeof clip);
    if (cd_clip_load(&clip, clip_dir) != 0) {
        cd_free_strv(names, nn);
        return -1;
    }
    int rc = 0, nb = 0, nimg = 0;
    if (!clip.has_vision) rc = cd_err("%s: this CLIP folder has no vision tower", clip_dir);
    if (batch < 1) batch = 1;
    cd_image *ims = cd_calloc((size_t)batch, sizeof *ims);
    char **rows = cd_calloc((size_t)batch, sizeof *rows);
    for (int i = 0; i < nn && rc == 0; i++) {
        if (!cd_image_name_supported(names[i])) continue;
        char *path = cd_path_join(dir, names[i]);
        if (cd_image_load(path, 100000000, &ims[nb]) != 0) {
            cd_warn("skipping %s: %s", path, cd_errmsg());
            free(path);
            continue;
        }
        free(path);
        rows[nb++] = image_row(dir, names[i], url_prefix);
        nimg++;
        if (nb == batch || i == nn - 1) {
            rc = embed_batch(r, &clip, ims, rows, nb);
            for (int j = 0; j < nb; j++) cd_image_free(&ims[j]);
            if (rc) for (int j = 0; j < nb; j++) free(rows[j]);
            nb = 0;
        }
    }
    if (rc == 0 && nb) rc = embed_batch(r, &clip, ims, rows, nb);
    for (int j = 0; j < nb; j++) cd_image_free(&ims[j]);
    if (rc && nb) for (int j = 0; j < nb; j++) free(rows[j]);
    if (rc == 0 && nimg == 0) rc = cd_err("%s: no images (" CD_IMAGE_EXTS ") found", dir);
    if (rc == 0) cd_info("embedded %d images from %s", nimg, dir);
    free(ims);
    free(rows);
    cd_clip_free(&clip);
    cd_free_strv(names, nn);
    return rc;
}

// ---- a preprocess store: records hold processed JPEGs with caption and source URL ----
typedef struct {
    ix_rows *r;
    const cd_clip *clip;
    const char *path;
    cd_image *ims;
    char **rows;
    int nb, batch;
    int64_t n;
} store_walk;

static int store_flush(store_walk *w) {
    int rc = w->nb ? embed_batch(w->r, w->clip, w->ims, w->rows, w->nb) : 0;
    for (int j = 0; j < w->nb; j++) {
        cd_image_free(&w->ims[j]);
        if (rc) free(w->rows[j]);
    }
    w->nb = 0;
    return rc;
}

static int store_rec(void *user, int64_t i, const cd_store_rec *rec) {
    store_walk *w = user;
    char what[64];
    snprintf(what, sizeof what, "record %lld", (long long)i);
    if (cd_image_decode(rec->jpeg, rec->jpeg_len, what, 100000000, 0, &w->ims[w->nb]) != 0) {
        cd_warn("%s: skipping %s: %s", w->path, what, cd_errmsg());
        return 0;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "url", rec->source ? rec->source : "");
    cJSON_AddStringToObject(o, "caption", rec->caption ? rec->caption : "");
    cJSON_AddStringToObject(o, "sha256", rec->sha256);
    cJSON_AddNumberToObject(o, "store_index", (double)i);
    w->rows[w->nb++] = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    w->n++;
    return w->nb == w->batch ? (store_flush(w) ? -1 : 0) : 0;
}

int ix_add_store(ix_rows *r, const char *path, const char *clip_dir, int batch) {
    cd_store *st;
    CD_TRY(cd_store_open(path, &st));
    cd_clip clip;
    memset(&clip, 0, sizeof clip);
    if (cd_clip_load(&clip, clip_dir) != 0) { cd_store_close(st); return -1; }
    if (batch < 1) batch = 1;
    store_walk w = {r, &clip, path, cd_calloc((size_t)batch, sizeof(cd_image)), cd_calloc((size_t)batch, sizeof(char *)), 0, batch, 0};
    int rc = clip.has_vision ? 0 : cd_err("%s: this CLIP folder has no vision tower", clip_dir);
    if (rc == 0) rc = cd_store_iter(st, store_rec, &w) != 0 ? -1 : 0;
    if (rc == 0) rc = store_flush(&w);
    else for (int j = 0; j < w.nb; j++) { cd_image_free(&w.ims[j]); free(w.rows[j]); }
    if (rc == 0 && w.n == 0) rc = cd_err("%s: the store holds no images", path);
    if (rc == 0) cd_info("embedded %lld images from the store %s", (long long)w.n, path);
    free(w.ims);
    free(w.rows);
    cd_clip_free(&clip);
    cd_store_close(st);
    return rc;
}
