// Files regenerated from the store after a run (manifest.jsonl, stats.json, contact.jpg)
// and --export to the Custom Diffusion folder layout.
#include "preprocess/pp.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/store.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    FILE *fp;
    cJSON *counts;          // status -> count
    int64_t n, success, transient;
    const pp_stats *st;     // absent_ords: entries whose input this run did not list
    cJSON *absent;          // [{key, id, status}] of those entries
} man_ctx;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int man_line(void *u, int64_t ord, const char *json) {
    man_ctx *m = u;
    m->n++;
    cJSON *o;
    if (cd_json_parse(json, strlen(json), "manifest entry", &o)) return -1;
    if (m->st->absent && bsearch(&ord, m->st->absent_ords, m->st->absent, sizeof ord, cmp_i64)) {
        cJSON_AddBoolToObject(o, "absent_from_inputs", 1);
        char *line = cJSON_PrintUnformatted(o);
        fputs(line, m->fp);
        free(line);
        cJSON *a = cJSON_CreateObject();
        char kb[32];
        snprintf(kb, sizeof kb, CD_STORE_KEY_FMT, (long long)ord);
        cJSON_AddStringToObject(a, "manifest_key", kb);
        const char *id = cd_json_str(o, "id", NULL);
        if (!id) id = cd_json_str(o, "url", NULL);
        cJSON_AddStringToObject(a, "id", id ? id : cd_json_str(o, "path", ""));
        cJSON_AddStringToObject(a, "status", cd_json_str(o, "status", ""));
        cJSON_AddItemToArray(m->absent, a);
    } else {
        fputs(json, m->fp);
    }
    fputc('\n', m->fp);
    const char *s = cd_json_str(o, "status", "error");
    cJSON *c = cJSON_GetObjectItemCaseSensitive(m->counts, s);
    if (c) cJSON_SetNumberValue(c, c->valuedouble + 1);
    else cJSON_AddNumberToObject(m->counts, s, 1);
    if (!strcmp(s, "success")) m->success++;
    if (cd_json_bool(o, "transient", 0)) m->transient++;
    cJSON_Delete(o);
    return 0;
}

typedef struct { cd_image *ims; int n, cap; } sheet_ctx;

static int sheet_add(void *u, int64_t i, const cd_store_rec *r) {
    sheet_ctx *c = u;
    if (c->n >= c->cap) return 1;
    char what[32];
    snprintf(what, sizeof what, "record %lld", (long long)i);
    if (cd_image_decode(r->jpeg, r->jpeg_len, what, 0, 128, &c->ims[c->n]) == 0) c->n++;
    return 0;
}

static int contact_sheet(cd_store *s, const char *path) {
    sheet_ctx c = {cd_calloc(100, sizeof(cd_image)), 0, 100};
    int rc = cd_store_iter(s, sheet_add, &c);
    if (rc < 0) goto done;
    rc = 0;
    if (c.n) {
        cd_image grid = {0};
        int cols = c.n < 10 ? c.n : 10;
        rc = cd_image_grid(c.ims, c.n, cols, 128, &grid);
        if (!rc) rc = cd_image_save(path, &grid);
        cd_image_free(&grid);
    }
done:
    for (int i = 0; i < c.n; i++) cd_image_free(&c.ims[i]);
    free(c.ims);
    return rc;
}

int pp_write_reports(const char *store, const pp_stats *st) {
    cd_store *s;
    CD_TRY(cd_store_open(store, &s));
    char *mpath = cd_path_join(store, "manifest.jsonl"), *spath = cd_path_join(store, "stats.json");
    char *cpath = cd_path_join(store, "contact.jpg");
    cd_atomic a;
    man_ctx m = {0};
    m.counts = cJSON_CreateObject();
    m.st = st;
    m.absent = cJSON_CreateArray();
    int rc = cd_atomic_open(&a, mpath);
    if (!rc) {
        m.fp = a.fp;
        rc = cd_store_iter_manifest(s, man_line, &m);
        if (rc) cd_atomic_abort(&a); else rc = cd_atomic_commit(&a);
    }
    cd_store_info info;
    if (!rc) rc = cd_store_get_info(s, &info);
    if (!rc) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "store", store);
        cJSON_AddNumberToObject(o, "count", (double)info.count);
        cJSON_AddNumberToObject(o, "resolution", info.resolution);
        cJSON_AddStringToObject(o, "resize_mode", info.resize_mode);
        cJSON_AddNumberToObject(o, "inputs", (double)st->inputs);
        cJSON_AddNumberToObject(o, "inputs_done", (double)m.n);
        cJSON_AddNumberToObject(o, "successes", (double)m.success);
        cJSON_AddNumberToObject(o, "failed", (double)(m.n - m.success));
        cJSON_AddNumberToObject(o, "transient_failures", (double)m.transient);
        cJSON_AddItemToObject(o, "status", m.counts);
        m.counts = NULL;
        cJSON_AddNumberToObject(o, "inputs_absent", (double)st->absent);
        cJSON_AddItemToObject(o, "absent_from_inputs", m.absent);
        m.absent = NULL;
        cJSON *r = cJSON_AddObjectToObject(o, "this_run");
        cJSON_AddNumberToObject(r, "processed", (double)st->processed);
        cJSON_AddNumberToObject(r, "resumed_skipped", (double)st->skipped);
        cJSON_AddNumberToObject(r, "caption_updated", (double)st->caption_updated);
        cJSON_AddNumberToObject(r, "stored", (double)(st->stored - st->stored_before));
        cJSON_AddNumberToObject(r, "bytes_downloaded", (double)st->bytes_downloaded);
        cJSON_AddNumberToObject(r, "bytes_stored", (double)st->bytes_stored);
        cJSON_AddNumberToObject(r, "seconds", st->seconds);
        cJSON_AddNumberToObject(r, "images_per_s", st->seconds > 0 ? st->processed / st->seconds : 0);
        rc = cd_json_save(spath, o);
        cJSON_Delete(o);
    }
    if (!rc) rc = contact_sheet(s, cpath);
    cJSON_Delete(m.counts);
    cJSON_Delete(m.absent);
    cd_store_close(s);
    free(mpath); free(spath); free(cpath);
    return rc;
}

// ---- export ----

typedef struct { const char *dir; char *imgdir; FILE *cap, *img, *url; int64_t n; } exp_ctx;

static void one_line(FILE *fp, const char *s) {
    for (; *s; s++) fputc(*s == '\n' || *s == '\r' ? ' ' : *s, fp);
    fputc('\n', fp);
}

static int export_one(void *u, int64_t i, const cd_store_rec *r) {
    exp_ctx *e = u;
    char name[32];
    snprintf(name, sizeof name, "%lld.jpg", (long long)i);
    char *p = cd_path_join(e->imgdir, name);
    int rc = cd_write_file_atomic(p, r->jpeg, r->jpeg_len);
    if (!rc) { one_line(e->cap, r->caption); one_line(e->img, p); one_line(e->url, r->source); e->n++; }
    free(p);
    return rc;
}

int pp_export(const char *store, const char *dir, int64_t *n) {
    cd_store *s;
    CD_TRY(cd_store_open(store, &s));
    exp_ctx e = {dir, cd_path_join(dir, "images"), NULL, NULL, NULL, 0};
    cd_atomic ac, ai, au;
    char *pc = cd_path_join(dir, "caption.txt"), *pi = cd_path_join(dir, "images.txt");
    char *pu = cd_path_join(dir, "urls.txt");
    int rc = cd_mkdirs(e.imgdir);
    int oc = !rc && !cd_atomic_open(&ac, pc), oi = oc && !cd_atomic_open(&ai, pi);
    int ou = oi && !cd_atomic_open(&au, pu);
    if (!ou) rc = -1;
    if (!rc) {
        e.cap = ac.fp; e.img = ai.fp; e.url = au.fp;
        rc = cd_store_iter(s, export_one, &e);
    }
    if (!rc) rc = cd_atomic_commit(&ac) || cd_atomic_commit(&ai) || cd_atomic_commit(&au) ? -1 : 0;
    else { if (oc) cd_atomic_abort(&ac); if (oi) cd_atomic_abort(&ai); if (ou) cd_atomic_abort(&au); }
    if (n) *n = e.n;
    cd_store_close(s);
    free(e.imgdir); free(pc); free(pi); free(pu);
    return rc;
}
