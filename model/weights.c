#include "model/weights.h"
#include "core/err.h"
#include "core/log.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void cd_weights_init(cd_weights *ws, const char *what) {
    memset(ws, 0, sizeof *ws);
    ws->what = cd_strdup(what ? what : "weights");
}

static int cmp_w(const void *a, const void *b) { return strcmp(((const cd_weight *)a)->name, ((const cd_weight *)b)->name); }

static cd_weight *find_slot(cd_weights *ws, const char *name) {
    int lo = 0, hi = ws->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(ws->w[mid].name, name);
        if (!c) return &ws->w[mid];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static cd_weight *push(cd_weights *ws) {
    if (ws->n == ws->cap) { ws->cap = ws->cap ? 2 * ws->cap : 256; ws->w = cd_realloc(ws->w, sizeof(cd_weight) * ws->cap); }
    cd_weight *w = &ws->w[ws->n++];
    memset(w, 0, sizeof *w);
    return w;
}

// A converted tensor's file pages are not needed any more: let the kernel drop them, so
// loading an fp16 file peaks near the fp32 size instead of fp32 + fp16 (the map is
// private and read-only; pages touched again are simply re-read from the file).
static void drop_pages(const void *p, size_t n) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + pg - 1) & ~(pg - 1),
              e = ((uintptr_t)p + n) & ~(pg - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

int cd_weights_load(cd_weights *ws, const char *path, const char *prefix, cd_rename_fn fn, void *ctx) {
    if (ws->nfiles == (int)(sizeof ws->files / sizeof ws->files[0])) return cd_err("%s: too many weight files", ws->what);
    cd_st_file *f = cd_calloc(1, sizeof *f);
    if (cd_st_open(f, path)) { free(f); return -1; }
    ws->files[ws->nfiles++] = f;
    size_t pl = prefix ? strlen(prefix) : 0;
    for (int i = 0; i < f->n; i++) {
        const cd_st_tensor *t = &f->t[i];
        if (pl && strncmp(t->name, prefix, pl)) continue;
        const char *key = t->name + pl;
        char *name = fn ? fn(key, ctx) : cd_strdup(key);
        if (!name) continue;
        cd_weight *old = find_slot(ws, name);   // replaces a previous tensor of that name
        if (old) { if (old->owned) free(old->data); free(old->name); *old = ws->w[--ws->n]; qsort(ws->w, ws->n, sizeof(cd_weight), cmp_w); }
        cd_weight *w = push(ws);
        w->name = name;
        w->ndim = t->ndim;
        memcpy(w->shape, t->shape, sizeof w->shape);
        w->numel = t->numel;
        w->disk_dtype = t->dtype;
        if (t->dtype == CD_F32 && ((uintptr_t)t->data & 3) == 0) w->data = (float *)t->data;
        else {
            if (t->dtype != CD_F32 && t->dtype != CD_F16 && t->dtype != CD_BF16 && t->dtype != CD_F64) {
                // integer buffers (e.g. position_ids) are kept as floats for uniformity
            }
            w->data = cd_malloc((size_t)t->numel * sizeof(float));
            cd_st_to_f32(t, w->data);
            w->owned = 1;
            drop_pages(t->data, t->nbytes);
        }
    }
    qsort(ws->w, ws->n, sizeof(cd_weight), cmp_w);
    return 0;
}

void cd_weights_put(cd_weights *ws, const char *name, int ndim, const int64_t *shape, const float *data) {
    cd_weight *w = find_slot(ws, name);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    if (w) { if (w->owned) free(w->data); }
    else { w = push(ws); w->name = cd_strdup(name); }
    w->ndim = ndim;
    memset(w->shape, 0, sizeof w->shape);
    memcpy(w->shape, shape, sizeof(int64_t) * ndim);
    w->numel = numel;
    w->disk_dtype = CD_F32;
    w->data = cd_malloc((size_t)numel * sizeof(float));
    memcpy(w->data, data, (size_t)numel * sizeof(float));
    w->owned = 1;
    qsort(ws->w, ws->n, sizeof(cd_weight), cmp_w);
}

cd_weight *cd_weights_find(cd_weights *ws, const char *name) {
    cd_weight *w = find_slot(ws, name);
    if (w) w->used = 1;
    return w;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++) o += snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

int cd_weights_get(cd_weights *ws, const char *name, int ndim, const int64_t *shape, float **out) {
    cd_weight *w = cd_weights_find(ws, name);
    if (!w) return cd_err("%s: tensor '%s' missing", ws->what, name);
    if (ndim >= 0) {
        int ok = w->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = w->shape[i] == shape[i];
        if (!ok) {
            char a[128], b[128];
            shape_str(a, sizeof a, w->ndim, w->shape);
            shape_str(b, sizeof b, ndim, shape);
            return cd_err("%s: tensor '%s' has shape %s, expected %s", ws->what, name, a, b);
        }
    }
    *out = w->data;
    return 0;
}

int cd_weights_getf(cd_weights *ws, float **out, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return cd_weights_get(ws, name, ndim, shape, out);
}

float *cd_weights_own(cd_weight *w) {
    if (!w->owned) {
        float *d = cd_malloc((size_t)w->numel * sizeof(float));
        memcpy(d, w->data, (size_t)w->numel * sizeof(float));
        w->data = d;
        w->owned = 1;
    }
    return w->data;
}

int cd_weights_unused(const cd_weights *ws, char ***names, int *n) {
    int c = 0;
    char **v = cd_calloc(ws->n ? ws->n : 1, sizeof(char *));
    for (int i = 0; i < ws->n; i++) if (!ws->w[i].used) v[c++] = cd_strdup(ws->w[i].name);
    *names = v; *n = c;
    return 0;
}

void cd_weights_free(cd_weights *ws) {
    for (int i = 0; i < ws->n; i++) { if (ws->w[i].owned) free(ws->w[i].data); free(ws->w[i].name); }
    free(ws->w);
    for (int i = 0; i < ws->nfiles; i++) { cd_st_close(ws->files[i]); free(ws->files[i]); }
    free(ws->what);
    memset(ws, 0, sizeof *ws);
}
