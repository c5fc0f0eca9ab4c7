#include "core/safetensors.h"
#include "core/err.h"
#include "core/half.h"
#include "core/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER ((uint64_t)100 << 20)

static const char *dtype_names[CD_DTYPE_COUNT] = {"F32", "F16", "BF16", "I32", "I64", "U8", "I8", "I16", "F64", "BOOL"};
static const size_t dtype_sizes[CD_DTYPE_COUNT] = {4, 2, 2, 4, 8, 1, 1, 2, 8, 1};

const char *cd_dtype_name(cd_dtype t) { return t < CD_DTYPE_COUNT ? dtype_names[t] : "?"; }
size_t cd_dtype_size(cd_dtype t) { return t < CD_DTYPE_COUNT ? dtype_sizes[t] : 0; }
int cd_dtype_parse(const char *s, cd_dtype *out) {
    for (int i = 0; i < CD_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_names[i])) { *out = (cd_dtype)i; return 0; }
    return cd_err("unsupported dtype '%s'", s);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const cd_st_tensor *)a)->name, ((const cd_st_tensor *)b)->name);
}
static int cmp_ptr(const void *a, const void *b) {
    const char *x = ((const cd_st_tensor *)a)->data, *y = ((const cd_st_tensor *)b)->data;
    return x < y ? -1 : x > y;
}

// Parse one tensor entry of the header into t; data points into `base` (the data section).
static int parse_entry(const cJSON *e, const char *what, const uint8_t *base, uint64_t dsize, cd_st_tensor *t) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return cd_err("%s: header entry '%s' is not an object", what, name);
    const char *dt = cd_json_str(e, "dtype", NULL);
    if (!dt) return cd_err("%s: tensor '%s' has no dtype", what, name);
    if (cd_dtype_parse(dt, &t->dtype)) return cd_errctx("%s: tensor '%s'", what, name);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsArray(shape)) return cd_err("%s: tensor '%s' has no shape array", what, name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) return cd_err("%s: tensor '%s' needs data_offsets [begin, end]", what, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > CD_MAX_DIMS) return cd_err("%s: tensor '%s' has %d dimensions (max %d)", what, name, nd, CD_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 || d->valuedouble != (double)(int64_t)d->valuedouble)
            return cd_err("%s: tensor '%s' has an invalid shape entry", what, name);
        t->shape[i] = (int64_t)d->valuedouble;
        if (t->shape[i] && numel > UINT64_MAX / 16 / (uint64_t)t->shape[i]) return cd_err("%s: tensor '%s' shape overflows", what, name);
        numel *= (uint64_t)t->shape[i];
    }
    double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) || b < 0 || en < b || en > (double)dsize)
        return cd_err("%s: tensor '%s' data_offsets [%.0f, %.0f] outside the data section (%llu bytes)", what, name, b, en, (unsigned long long)dsize);
    uint64_t nbytes = (uint64_t)en - (uint64_t)b;
    if (numel * cd_dtype_size(t->dtype) != nbytes)
        return cd_err("%s: tensor '%s' is %s with %llu elements but holds %llu bytes", what, name, dt,
                      (unsigned long long)numel, (unsigned long long)nbytes);
    t->numel = (int64_t)numel;
    t->nbytes = nbytes;
    t->data = base + (uint64_t)b;
    t->name = cd_strdup(name);
    return 0;
}

static int parse_meta(cd_st_file *f, const cJSON *m, const char *what) {
    if (!cJSON_IsObject(m)) return cd_err("%s: __metadata__ is not an object", what);
    int n = cJSON_GetArraySize(m), i = 0;
    f->meta_key = cd_calloc(n ? n : 1, sizeof(char *));
    f->meta_val = cd_calloc(n ? n : 1, sizeof(char *));
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsString(e)) return cd_err("%s: __metadata__ value '%s' is not a string", what, e->string);
        f->meta_key[i] = cd_strdup(e->string);
        f->meta_val[i] = cd_strdup(e->valuestring);
        f->nmeta = ++i;
    }
    return 0;
}

int cd_st_parse(cd_st_file *f, const void *data, size_t size, const char *what) {
    memset(f, 0, sizeof *f);
    f->path = cd_strdup(what);
    if (size < 8) { cd_err("%s: %zu bytes is too short for a safetensors file", what, size); goto fail; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | ((const uint8_t *)data)[i];
    if (hlen > ST_MAX_HEADER) { cd_err("%s: header length %llu exceeds the %llu byte cap (not a safetensors file?)", what, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER); goto fail; }
    if (hlen > size - 8) { cd_err("%s: header length %llu runs past the end of the file (%zu bytes): truncated?", what, (unsigned long long)hlen, size); goto fail; }
    cJSON *h = NULL;
    if (cd_json_parse((const char *)data + 8, hlen, what, &h)) { cd_errctx("%s: bad safetensors header", what); goto fail; }
    if (!cJSON_IsObject(h)) { cJSON_Delete(h); cd_err("%s: safetensors header is not a JSON object", what); goto fail; }
    int cap = cJSON_GetArraySize(h);
    f->t = cd_calloc(cap ? cap : 1, sizeof(cd_st_tensor));
    const uint8_t *base = (const uint8_t *)data + 8 + hlen;
    uint64_t dsize = size - 8 - hlen;
    const cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (!strcmp(e->string, "__metadata__")) {
            if (parse_meta(f, e, what)) { cJSON_Delete(h); goto fail; }
            continue;
        }
        if (parse_entry(e, what, base, dsize, &f->t[f->n])) { cJSON_Delete(h); goto fail; }
        f->n++;
    }
    cJSON_Delete(h);
    // No two tensors may overlap.
    qsort(f->t, f->n, sizeof *f->t, cmp_ptr);
    for (int i = 1; i < f->n; i++) {
        const char *pe = (const char *)f->t[i - 1].data + f->t[i - 1].nbytes;
        if ((const char *)f->t[i].data < pe && f->t[i].nbytes && f->t[i - 1].nbytes) {
            cd_err("%s: tensors '%s' and '%s' overlap", what, f->t[i - 1].name, f->t[i].name);
            goto fail;
        }
    }
    qsort(f->t, f->n, sizeof *f->t, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->t[i].name, f->t[i - 1].name)) { cd_err("%s: tensor '%s' appears twice", what, f->t[i].name); goto fail; }
    return 0;
fail:
    cd_st_close(f);
    return -1;
}

int cd_st_open(cd_st_file *f, const char *path) {
    cd_map m;
    memset(f, 0, sizeof *f);
    CD_TRY(cd_map_file(&m, path));
    if (cd_st_parse(f, m.data, m.size, path)) { cd_unmap(&m); return -1; }
    f->map = m;
    return 0;
}

void cd_st_close(cd_st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    for (int i = 0; i < f->nmeta; i++) { free(f->meta_key[i]); free(f->meta_val[i]); }
    free(f->meta_key); free(f->meta_val);
    free(f->path);
    cd_unmap(&f->map);
    memset(f, 0, sizeof *f);
}

const cd_st_tensor *cd_st_find(const cd_st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(f->t[mid].name, name);
        if (!c) return &f->t[mid];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

const char *cd_st_meta(const cd_st_file *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++) if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
    return NULL;
}

void cd_st_to_f32(const cd_st_tensor *t, float *dst) {
    const uint8_t *s = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case CD_F32: memcpy(dst, s, (size_t)n * 4); break;
    case CD_F16: for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = cd_f16_to_f32(h); } break;
    case CD_BF16: for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = cd_bf16_to_f32(h); } break;
    case CD_F64: for (int64_t i = 0; i < n; i++) { double d; memcpy(&d, s + 8 * i, 8); dst[i] = (float)d; } break;
    case CD_I32: for (int64_t i = 0; i < n; i++) { int32_t v; memcpy(&v, s + 4 * i, 4); dst[i] = (float)v; } break;
    case CD_I64: for (int64_t i = 0; i < n; i++) { int64_t v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; } break;
    case CD_I16: for (int64_t i = 0; i < n; i++) { int16_t v; memcpy(&v, s + 2 * i, 2); dst[i] = (float)v; } break;
    case CD_I8: for (int64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)s[i]; break;
    case CD_U8: case CD_BOOL: for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; break;
    default: memset(dst, 0, (size_t)n * 4);
    }
}

int cd_st_read_f32(const cd_st_file *f, const char *name, float *dst, int64_t numel) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t) return cd_err("%s: tensor '%s' not found", f->path, name);
    if (t->numel != numel) return cd_err("%s: tensor '%s' has %lld elements, expected %lld", f->path, name, (long long)t->numel, (long long)numel);
    cd_st_to_f32(t, dst);
    return 0;
}

int cd_st_load_f32(const cd_st_file *f, const char *name, float **out, int64_t *numel) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t) return cd_err("%s: tensor '%s' not found", f->path, name);
    *out = cd_malloc((size_t)t->numel * sizeof(float));
    cd_st_to_f32(t, *out);
    if (numel) *numel = t->numel;
    return 0;
}

int cd_st_load_i64(const cd_st_file *f, const char *name, int64_t **out, int64_t *numel) {
    const cd_st_tensor *t = cd_st_find(f, name);
    if (!t) return cd_err("%s: tensor '%s' not found", f->path, name);
    int64_t *d = cd_malloc((size_t)t->numel * sizeof(int64_t));
    const uint8_t *s = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case CD_I64: memcpy(&d[i], s + 8 * i, 8); break;
        case CD_I32: { int32_t v; memcpy(&v, s + 4 * i, 4); d[i] = v; } break;
        case CD_I16: { int16_t v; memcpy(&v, s + 2 * i, 2); d[i] = v; } break;
        case CD_I8: d[i] = (int8_t)s[i]; break;
        case CD_U8: case CD_BOOL: d[i] = s[i]; break;
        default: free(d); return cd_err("%s: tensor '%s' is %s, expected an integer dtype", f->path, name, cd_dtype_name(t->dtype));
        }
    }
    *out = d;
    if (numel) *numel = t->numel;
    return 0;
}

// ---- writer ---------------------------------------------------------------------------
typedef struct { char *name; cd_dtype dtype; int ndim; int64_t shape[CD_MAX_DIMS]; void *data; size_t nbytes; } wt;
struct cd_st_writer { int n, cap; wt *t; cJSON *meta; };

cd_st_writer *cd_st_writer_new(void) { return cd_calloc(1, sizeof(cd_st_writer)); }

static wt *writer_slot(cd_st_writer *w, const char *name, cd_dtype dtype, int ndim, const int64_t *shape) {
    if (w->n == w->cap) { w->cap = w->cap ? 2 * w->cap : 16; w->t = cd_realloc(w->t, sizeof(wt) * w->cap); }
    wt *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = cd_strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) { t->shape[i] = shape[i]; numel *= (size_t)shape[i]; }
    t->nbytes = numel * cd_dtype_size(dtype);
    t->data = cd_malloc(t->nbytes);
    return t;
}

void cd_st_writer_add(cd_st_writer *w, const char *name, cd_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    wt *t = writer_slot(w, name, dtype, ndim, shape);
    if (t->nbytes) memcpy(t->data, data, t->nbytes);
}

void cd_st_writer_add_f32(cd_st_writer *w, const char *name, cd_dtype dtype, int ndim, const int64_t *shape, const float *data) {
    wt *t = writer_slot(w, name, dtype, ndim, shape);
    size_t n = t->nbytes / cd_dtype_size(dtype);
    uint16_t *h = t->data;
    if (dtype == CD_F16) for (size_t i = 0; i < n; i++) h[i] = cd_f32_to_f16(data[i]);
    else if (dtype == CD_BF16) for (size_t i = 0; i < n; i++) h[i] = cd_f32_to_bf16(data[i]);
    else if (n) memcpy(t->data, data, t->nbytes);
}

void cd_st_writer_meta(cd_st_writer *w, const char *key, const char *val) {
    if (!w->meta) w->meta = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
    cJSON_AddStringToObject(w->meta, key, val);
}

static int cmp_wt(const void *a, const void *b) { return strcmp(((const wt *)a)->name, ((const wt *)b)->name); }

int cd_st_writer_save(cd_st_writer *w, const char *path) {
    qsort(w->t, w->n, sizeof(wt), cmp_wt);
    for (int i = 1; i < w->n; i++)
        if (!strcmp(w->t[i].name, w->t[i - 1].name)) return cd_err("%s: tensor '%s' added twice", path, w->t[i].name);
    cJSON *h = cJSON_CreateObject();
    if (w->meta) cJSON_AddItemToObject(h, "__metadata__", cJSON_Duplicate(w->meta, 1));
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", cd_dtype_name(w->t[i].dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < w->t[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)w->t[i].shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += w->t[i].nbytes;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToObject(h, w->t[i].name, e);
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;   // 8-byte aligned data start
    cd_atomic a;
    if (cd_atomic_open(&a, path)) { free(js); return -1; }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, a.fp) == 8 && fwrite(js, 1, jl, a.fp) == jl;
    for (size_t i = jl; ok && i < padded; i++) ok = fputc(' ', a.fp) != EOF;
    for (int i = 0; ok && i < w->n; i++) ok = !w->t[i].nbytes || fwrite(w->t[i].data, 1, w->t[i].nbytes, a.fp) == w->t[i].nbytes;
    free(js);
    if (!ok) { cd_errno("write error on %s", a.tmp); cd_atomic_abort(&a); return -1; }
    return cd_atomic_commit(&a);
}

void cd_st_writer_free(cd_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) { free(w->t[i].name); free(w->t[i].data); }
    free(w->t);
    if (w->meta) cJSON_Delete(w->meta);
    free(w);
}
