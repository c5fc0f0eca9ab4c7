// Index construction: choose (autofaiss) or take the factory key, train on a random sample,
// add with ids, tune nprobe/efSearch to the target recall against exact search, write
// metadata (LMDB, transactional), index.faiss and index.json (atomic; index.json last).
#include "index/build.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/idxmeta.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rng.h"

static void normalize_rows(float *x, int64_t n, int d) {
    for (int64_t i = 0; i < n; i++) {
        float *r = x + i * d;
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)r[j] * r[j];
        if (s <= 0) continue;
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < d; j++) r[j] *= inv;
    }
}

// m distinct row numbers out of n (partial Fisher-Yates), sorted is not needed.
static int64_t *sample_rows(int64_t n, int64_t m, cd_rng *rng) {
    int64_t *p = cd_malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = 0; i < m; i++) {
        int64_t j = i + (int64_t)(cd_rng_uniform(rng) * (double)(n - i));
        if (j >= n) j = n - 1;
        int64_t t = p[i]; p[i] = p[j]; p[j] = t;
    }
    return p;
}

static int train_index(cd_faiss *ix, const char *key, const ix_rows *rows, cd_rng *rng) {
    int64_t t = cd_faiss_train_size(key, rows->n);
    if (t == 0 || cd_faiss_is_trained(ix)) return 0;
    int64_t *p = sample_rows(rows->n, t, rng);
    float *x = cd_malloc((size_t)t * rows->d * sizeof(float));
    for (int64_t i = 0; i < t; i++) memcpy(x + i * rows->d, rows->x + p[i] * rows->d, (size_t)rows->d * sizeof(float));
    cd_info("training %s on %lld of %lld vectors", key, (long long)t, (long long)rows->n);
    int rc = cd_faiss_train(ix, t, x);
    free(x);
    free(p);
    return rc;
}

static int add_rows(cd_faiss *ix, const ix_rows *rows, int64_t start) {
    const int64_t chunk = 65536;
    int64_t *ids = cd_malloc((size_t)chunk * sizeof *ids);
    int rc = 0;
    for (int64_t i = 0; i < rows->n && rc == 0; i += chunk) {
        int64_t m = rows->n - i < chunk ? rows->n - i : chunk;
        for (int64_t j = 0; j < m; j++) ids[j] = start + i + j;
        rc = cd_faiss_add(ix, m, rows->x + i * rows->d, ids);
        if (rows->n > chunk) cd_info("added %lld / %lld vectors", (long long)(i + m), (long long)rows->n);
    }
    free(ids);
    return rc;
}

// Tuning queries: normalise(x_i + noise * g / sqrt(d)) for a random sample of the new rows.
static float *make_queries(const ix_rows *rows, int64_t nq, double noise, cd_rng *rng) {
    int d = rows->d;
    int64_t *p = sample_rows(rows->n, nq, rng);
    float *q = cd_malloc((size_t)nq * d * sizeof(float)), *g = cd_malloc((size_t)d * sizeof(float));
    for (int64_t i = 0; i < nq; i++) {
        cd_rng_normal(rng, g, (size_t)d);
        for (int j = 0; j < d; j++) q[i * d + j] = rows->x[p[i] * d + j] + (float)(noise / sqrt(d)) * g[j];
    }
    normalize_rows(q, nq, d);
    free(g);
    free(p);
    return q;
}

static int tune(cd_faiss *ix, const char *key, const ix_rows *rows, int64_t start, const ix_build_opts *o,
                cd_rng *rng, cd_faiss_tuning *t) {
    int d = rows->d;
    int64_t total = start + rows->n;
    const float *all = rows->x;
    float *buf = NULL;
    if (start > 0) {   // appended: the earlier vectors as stored (approximate for PQ indexes)
        buf = cd_malloc((size_t)total * d * sizeof(float));
        for (int64_t i = 0; i < start; i++)
            if (cd_faiss_reconstruct(ix, i, buf + i * d) != 0) { free(buf); return -1; }
        memcpy(buf + start * d, rows->x, (size_t)rows->n * d * sizeof(float));
        all = buf;
    }
    int64_t nq = o->tune_queries < rows->n ? o->tune_queries : rows->n;
    int k = o->k < total ? o->k : (int)total;
    float *q = make_queries(rows, nq, o->query_noise, rng);
    float *dist = cd_malloc((size_t)nq * k * sizeof(float));
    int64_t *gt = cd_malloc((size_t)nq * k * sizeof(int64_t));
    int rc = cd_faiss_knn_exact(q, nq, all, total, d, k, dist, gt);
    if (rc == 0) rc = cd_faiss_tune(ix, key, q, nq, gt, k, o->target_recall, t);
    if (rc == 0 && t->recall < o->target_recall)
        cd_warn("index %s reaches recall@%d %.3f at most (target %.3f)", key, k, t->recall, o->target_recall);
    free(q);
    free(dist);
    free(gt);
    free(buf);
    return rc;
}

static int write_metadata(const char *dir, const ix_rows *rows, int64_t start) {
    cd_idxmeta *m;
    CD_TRY(cd_idxmeta_open(&m, dir, 1));
    int rc = 0;
    for (int64_t i = 0; i < rows->n && rc == 0; i++) rc = cd_idxmeta_put(m, start + i, rows->meta[i], strlen(rows->meta[i]));
    if (rc == 0) rc = cd_idxmeta_commit(m);
    cd_idxmeta_close(m);
    return rc;
}

// Remove an LMDB folder (data.mdb, lock.mdb, the folder).
static void remove_env(const char *dir) {
    char *a = cd_path_join(dir, "data.mdb"), *b = cd_path_join(dir, "lock.mdb");
    unlink(a);
    unlink(b);
    rmdir(dir);
    free(a);
    free(b);
}

// A fresh build's store was written beside the old one (tmp); swap it into place.
static int swap_in(const char *tmp, const char *dir) {
    char *old = cd_fmt("%s.old.%d", dir, (int)getpid());
    int rc = 0;
    if (cd_is_dir(dir) && rename(dir, old) != 0) rc = cd_errno("rename %s", dir);
    if (rc == 0 && rename(tmp, dir) != 0) rc = cd_errno("rename %s to %s", tmp, dir);
    remove_env(old);
    free(old);
    return rc;
}

static int write_info(const char *path, const ix_build_opts *o, const char *key, int d, int64_t count,
                      const cd_faiss_tuning *t, const char *index_path, const cJSON *old) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "customdiff-index/1");
    cJSON_AddNumberToObject(j, "dimension", d);
    cJSON_AddNumberToObject(j, "count", (double)count);
    cJSON_AddStringToObject(j, "factory", key);
    cJSON_AddStringToObject(j, "metric", "inner_product");
    cJSON_AddBoolToObject(j, "normalized", 1);
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddStringToObject(j, "search_params", t->params);
    cJSON *r = cJSON_AddObjectToObject(j, "recall");
    cJSON_AddNumberToObject(r, "k", t->k);
    cJSON_AddNumberToObject(r, "target", t->target);
    cJSON_AddNumberToObject(r, "value", t->recall);
    cJSON_AddNumberToObject(r, "queries", (double)t->nq);
    cJSON_AddNumberToObject(r, "query_noise", o->query_noise);
    cJSON *l = cJSON_AddObjectToObject(j, "latency_ms");
    cJSON_AddNumberToObject(l, "avg", t->avg_ms);
    cJSON_AddNumberToObject(l, "p99", t->p99_ms);
    cJSON_AddNumberToObject(j, "qps", t->qps);
    struct stat st;
    cJSON_AddNumberToObject(j, "size_bytes", stat(index_path, &st) == 0 ? (double)st.st_size : 0);
    cJSON_AddStringToObject(j, "index", "index.faiss");
    cJSON_AddStringToObject(j, "metadata", "metadata.lmdb");
    cJSON *src = cJSON_AddArrayToObject(j, "sources");
    const cJSON *os = old ? cJSON_GetObjectItemCaseSensitive(old, "sources") : NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, os) cJSON_AddItemToArray(src, cJSON_Duplicate(e, 1));
    for (int i = 0; i < o->nsources; i++) cJSON_AddItemToArray(src, cJSON_CreateString(o->sources[i]));
    time_t now = time(NULL);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(j, "updated", ts);
    int rc = cd_json_save(path, j);
    cJSON_Delete(j);
    return rc;
}

// Open the existing index of an --append run; *old gets its index.json.
static int open_existing(const ix_build_opts *o, const char *ipath, const char *jpath, int d, cd_faiss **ix,
                         char *key, size_t cap, cJSON **old) {
    CD_TRY(cd_json_load(jpath, old));
    snprintf(key, cap, "%s", cd_json_str(*old, "factory", ""));
    CD_TRY(cd_faiss_read(ix, ipath, 0));
    if (cd_faiss_d(*ix) != d)
        return cd_err("--append: the new vectors have dimension %d but %s has dimension %d", d, ipath, cd_faiss_d(*ix));
    const char *model = cd_json_str(*old, "model", NULL);
    if (model && o->model && strcmp(model, o->model) != 0 && strcmp(o->model, "unknown") != 0)
        cd_warn("--append: index.json says model '%s', this run says '%s'", model, o->model);
    int64_t cnt = (int64_t)cd_json_num(*old, "count", -1);
    if (cnt != cd_faiss_ntotal(*ix))
        return cd_err("%s: count %lld does not match the %lld vectors of %s", jpath, (long long)cnt,
                      (long long)cd_faiss_ntotal(*ix), ipath);
    return 0;
}

int ix_build(const ix_build_opts *o, ix_rows *rows, ix_build_result *res) {
    memset(res, 0, sizeof *res);
    if (rows->n == 0) return cd_err("no vectors to index");
    int d = rows->d;
    normalize_rows(rows->x, rows->n, d);
    CD_TRY(cd_mkdirs(o->out_dir));
    char *ipath = cd_path_join(o->out_dir, "index.faiss"), *jpath = cd_path_join(o->out_dir, "index.json");
    char *mpath = cd_path_join(o->out_dir, "metadata.lmdb");
    cd_faiss *ix = NULL;
    cJSON *old = NULL;
    cd_rng rng;
    cd_rng_seed(&rng, o->seed);
    int64_t start = 0;
    int rc = 0;
    if (o->append) {
        rc = open_existing(o, ipath, jpath, d, &ix, res->factory, sizeof res->factory, &old);
        if (rc == 0) start = cd_faiss_ntotal(ix);
    } else {
        if (o->factory) snprintf(res->factory, sizeof res->factory, "%s", o->factory);
        else rc = cd_faiss_choose_key(rows->n, d, o->max_mem, res->factory, sizeof res->factory);
        if (rc == 0) cd_info("index %s for %lld vectors of dimension %d", res->factory, (long long)rows->n, d);
        if (rc == 0) rc = cd_faiss_new(&ix, d, res->factory);
        if (rc == 0) rc = train_index(ix, res->factory, rows, &rng);
    }
    if (rc == 0) rc = add_rows(ix, rows, start);
    if (rc == 0) rc = tune(ix, res->factory, rows, start, o, &rng, &res->tuning);
    // append: new ids go into the live store (transactional); fresh: a new store beside it
    char *mtmp = o->append ? cd_strdup(mpath) : cd_fmt("%s.tmp.%d", mpath, (int)getpid());
    if (rc == 0) rc = write_metadata(mtmp, rows, start);
    if (rc == 0) rc = cd_faiss_write(ix, ipath);
    if (rc == 0 && !o->append) rc = swap_in(mtmp, mpath);
    if (rc != 0 && !o->append) remove_env(mtmp);
    free(mtmp);
    if (rc == 0) {
        res->count = cd_faiss_ntotal(ix);
        res->d = d;
        rc = write_info(jpath, o, res->factory, d, res->count, &res->tuning, ipath, old);
    }
    cd_faiss_free(ix);
    cJSON_Delete(old);
    free(ipath);
    free(jpath);
    free(mpath);
    return rc;
}
