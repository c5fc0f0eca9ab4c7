// LMDB image store (schema: manifests/schema/store.md; API: core/store.h).
#include "core/store.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CD_VERSION
#define CD_VERSION "0"
#endif

enum { DB_RECORDS, DB_SHA, DB_MANIFEST, DB_META, DB_N };
static const char *db_names[DB_N] = {"records", "sha256", "manifest", "meta"};

typedef struct { int db; char *key; size_t klen; uint8_t *val; size_t vlen; } op;

struct cd_store {
    char *path;
    MDB_env *env;
    MDB_dbi dbi[DB_N];
    int writable;
    size_t mapsize;
    int growths;
    cd_store_info info;        // writer: the info written at each commit
    int64_t next_index;        // writer: index the next added record gets
    op *ops;
    int nops, capops;
};

// LMDB check: names file:line, the store and LMDB's message.
#define MDB_CHECK(s, call) do { int rc_ = (call); if (rc_ != MDB_SUCCESS) \
    return cd_err("%s:%d: %s: %s: %s", __FILE__, __LINE__, (s)->path, #call, mdb_strerror(rc_)); } while (0)

static int mdb_fail(cd_store *s, const char *file, int line, const char *what, int rc) {
    return cd_err("%s:%d: %s: %s: %s", file, line, s->path, what, mdb_strerror(rc));
}
#define MDB_FAIL(s, what, rc) mdb_fail((s), __FILE__, __LINE__, (what), (rc))

// Begin a read txn; a map grown by another process is adopted (MDB_MAP_RESIZED).
static int begin_read(cd_store *s, MDB_txn **txn) {
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(s->env, 0);
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    }
    if (rc) return MDB_FAIL(s, "mdb_txn_begin(read)", rc);
    return 0;
}

// ---- info (meta/"info" JSON) ----

static char *info_json(const cd_store_info *in) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "schema_version", in->schema_version);
    cJSON_AddNumberToObject(o, "resolution", in->resolution);
    cJSON_AddStringToObject(o, "resize_mode", in->resize_mode);
    cJSON_AddNumberToObject(o, "jpeg_quality", in->jpeg_quality);
    cJSON_AddNumberToObject(o, "count", (double)in->count);
    cJSON_AddStringToObject(o, "tool", in->tool);
    cJSON_AddStringToObject(o, "tool_version", in->tool_version);
    cJSON_AddStringToObject(o, "record_format", "CDR1");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int parse_info(const char *txt, size_t len, const char *what, cd_store_info *in) {
    cJSON *o;
    CD_TRY(cd_json_parse(txt, len, what, &o));
    memset(in, 0, sizeof *in);
    in->schema_version = cd_json_int(o, "schema_version", 0);
    in->resolution = cd_json_int(o, "resolution", 0);
    snprintf(in->resize_mode, sizeof in->resize_mode, "%s", cd_json_str(o, "resize_mode", ""));
    in->jpeg_quality = cd_json_int(o, "jpeg_quality", 0);
    in->count = (int64_t)cd_json_num(o, "count", 0);
    snprintf(in->tool, sizeof in->tool, "%s", cd_json_str(o, "tool", ""));
    snprintf(in->tool_version, sizeof in->tool_version, "%s", cd_json_str(o, "tool_version", ""));
    cJSON_Delete(o);
    return 0;
}

// ---- open / close ----

static int open_env(cd_store *s, unsigned flags, size_t mapsize) {
    MDB_CHECK(s, mdb_env_create(&s->env));
    MDB_CHECK(s, mdb_env_set_maxdbs(s->env, 8));
    MDB_CHECK(s, mdb_env_set_maxreaders(s->env, 256));
    if (mapsize) MDB_CHECK(s, mdb_env_set_mapsize(s->env, mapsize));
    MDB_CHECK(s, mdb_env_open(s->env, s->path, flags | MDB_NOTLS, 0644));
    MDB_envinfo ei;
    mdb_env_info(s->env, &ei);
    s->mapsize = ei.me_mapsize;
    return 0;
}

static int open_dbs(cd_store *s, int create) {
    MDB_txn *txn;
    int rc;
    if (create) rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    else { CD_TRY(begin_read(s, &txn)); rc = 0; }
    if (rc) return MDB_FAIL(s, "mdb_txn_begin", rc);
    for (int i = 0; i < DB_N; i++) {
        rc = mdb_dbi_open(txn, db_names[i], create ? MDB_CREATE : 0, &s->dbi[i]);
        if (rc) {
            mdb_txn_abort(txn);
            if (rc == MDB_NOTFOUND)
                return cd_err("%s: not a customdiff store (sub-database '%s' missing)", s->path, db_names[i]);
            return MDB_FAIL(s, "mdb_dbi_open", rc);
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc) return MDB_FAIL(s, "mdb_txn_commit(open)", rc);
    return 0;
}

static void free_store(cd_store *s) {
    if (!s) return;
    for (int i = 0; i < s->nops; i++) { free(s->ops[i].key); free(s->ops[i].val); }
    free(s->ops);
    if (s->env) mdb_env_close(s->env);
    free(s->path);
    free(s);
}

int cd_store_open(const char *path, cd_store **out) {
    char *data = cd_path_join(path, "data.mdb");
    int ok = cd_path_exists(data);
    free(data);
    if (!ok) return cd_err("%s: no LMDB store here (data.mdb missing)", path);
    cd_store *s = cd_calloc(1, sizeof *s);
    s->path = cd_strdup(path);
    if (open_env(s, MDB_RDONLY, 0) || open_dbs(s, 0)) { free_store(s); return -1; }
    *out = s;
    return 0;
}

int cd_store_open_write(const char *path, size_t initial_map_bytes, cd_store **out) {
    if (cd_mkdirs(path)) return cd_errctx("store %s", path);
    cd_store *s = cd_calloc(1, sizeof *s);
    s->path = cd_strdup(path);
    s->writable = 1;
    if (open_env(s, 0, initial_map_bytes ? initial_map_bytes : (size_t)256 << 20) ||
        open_dbs(s, 1) || cd_store_get_info(s, &s->info)) {
        free_store(s);
        return -1;
    }
    if (s->info.schema_version > CD_STORE_SCHEMA_VERSION) {
        int v = s->info.schema_version;
        free_store(s);
        return cd_err("%s: store schema version %d is newer than this program's %d (written by a "
                      "newer customdiff: update this one, or write to a new --out)", path, v,
                      CD_STORE_SCHEMA_VERSION);
    }
    s->info.schema_version = CD_STORE_SCHEMA_VERSION;
    s->next_index = cd_store_count(s);
    if (s->next_index < 0) { free_store(s); return -1; }
    *out = s;
    return 0;
}

void cd_store_close(cd_store *s) { free_store(s); }

size_t cd_store_map_size(const cd_store *s) { return s->mapsize; }
int cd_store_map_growths(const cd_store *s) { return s->growths; }
int cd_store_batch_ops(const cd_store *s) { return s->nops; }

int64_t cd_store_count(cd_store *s) {
    MDB_txn *txn;
    MDB_stat st;
    if (begin_read(s, &txn)) return -1;
    int rc = mdb_stat(txn, s->dbi[DB_RECORDS], &st);
    mdb_txn_abort(txn);
    if (rc) return MDB_FAIL(s, "mdb_stat(records)", rc);
    return (int64_t)st.ms_entries;
}

int cd_store_get_info(cd_store *s, cd_store_info *info) {
    MDB_txn *txn;
    CD_TRY(begin_read(s, &txn));
    MDB_val k = {4, "info"}, v;
    int rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    int out = 0;
    if (rc == MDB_NOTFOUND) {
        memset(info, 0, sizeof *info);
        info->schema_version = CD_STORE_SCHEMA_VERSION;
    } else if (rc) {
        out = MDB_FAIL(s, "mdb_get(meta/info)", rc);
    } else {
        char *what = cd_fmt("%s: meta/info", s->path);
        out = parse_info(v.mv_data, v.mv_size, what, info);
        free(what);
    }
    mdb_txn_abort(txn);
    if (out) return out;
    MDB_stat st;
    if (!begin_read(s, &txn)) {               // the entry count is the truth for count
        if (!mdb_stat(txn, s->dbi[DB_RECORDS], &st)) info->count = (int64_t)st.ms_entries;
        mdb_txn_abort(txn);
    }
    return 0;
}

// ---- record codec ----

int cd_store_encode_rec(const cd_store_rec *r, uint8_t **val, size_t *len) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "caption", r->caption ? r->caption : "");
    cJSON_AddStringToObject(o, "source", r->source ? r->source : "");
    cJSON_AddStringToObject(o, "sha256", r->sha256);
    cJSON_AddNumberToObject(o, "width", r->width);
    cJSON_AddNumberToObject(o, "height", r->height);
    cJSON_AddNumberToObject(o, "original_width", r->original_width);
    cJSON_AddNumberToObject(o, "original_height", r->original_height);
    cJSON_AddNumberToObject(o, "original_bytes", (double)r->original_bytes);
    cJSON_AddStringToObject(o, "format", "jpeg");
    cJSON_AddNumberToObject(o, "image_bytes", (double)r->jpeg_len);
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = strlen(js);
    *len = 8 + n + r->jpeg_len;
    uint8_t *b = *val = cd_malloc(*len);
    memcpy(b, "CDR1", 4);
    b[4] = n & 255; b[5] = (n >> 8) & 255; b[6] = (n >> 16) & 255; b[7] = (n >> 24) & 255;
    memcpy(b + 8, js, n);
    if (r->jpeg_len) memcpy(b + 8 + n, r->jpeg, r->jpeg_len);
    free(js);
    return 0;
}

int cd_store_decode_rec(const void *val, size_t len, const char *what, cd_store_rec *r) {
    const uint8_t *b = val;
    memset(r, 0, sizeof *r);
    if (len < 8 || memcmp(b, "CDR1", 4) != 0) return cd_err("%s: not a CDR1 record", what);
    size_t n = b[4] | (size_t)b[5] << 8 | (size_t)b[6] << 16 | (size_t)b[7] << 24;
    if (n > len - 8) return cd_err("%s: record header length %zu exceeds value (%zu bytes)", what, n, len);
    cJSON *o;
    CD_TRY(cd_json_parse((const char *)b + 8, n, what, &o));
    r->caption = cd_strdup(cd_json_str(o, "caption", ""));
    r->source = cd_strdup(cd_json_str(o, "source", ""));
    snprintf(r->sha256, sizeof r->sha256, "%s", cd_json_str(o, "sha256", ""));
    r->width = cd_json_int(o, "width", 0);
    r->height = cd_json_int(o, "height", 0);
    r->original_width = cd_json_int(o, "original_width", 0);
    r->original_height = cd_json_int(o, "original_height", 0);
    r->original_bytes = (int64_t)cd_json_num(o, "original_bytes", 0);
    double ib = cd_json_num(o, "image_bytes", -1);
    cJSON_Delete(o);
    r->jpeg_len = len - 8 - n;
    if (ib >= 0 && (size_t)ib != r->jpeg_len) {
        cd_store_rec_free(r);
        return cd_err("%s: image_bytes %.0f but %zu bytes follow the header", what, ib, len - 8 - n);
    }
    r->jpeg = cd_malloc(r->jpeg_len + 1);
    memcpy(r->jpeg, b + 8 + n, r->jpeg_len);
    return 0;
}

void cd_store_rec_free(cd_store_rec *r) {
    if (!r) return;
    free(r->jpeg); free(r->caption); free(r->source);
    memset(r, 0, sizeof *r);
}

// ---- reads ----

int cd_store_get(cd_store *s, int64_t i, cd_store_rec *r) {
    char key[32], what[64];
    int kl = snprintf(key, sizeof key, CD_STORE_KEY_FMT, (long long)i);
    MDB_txn *txn;
    CD_TRY(begin_read(s, &txn));
    MDB_val k = {(size_t)kl, key}, v;
    int rc = mdb_get(txn, s->dbi[DB_RECORDS], &k, &v);
    if (rc) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND) return cd_err("%s: record %lld not found", s->path, (long long)i);
        return MDB_FAIL(s, "mdb_get(records)", rc);
    }
    snprintf(what, sizeof what, "record %s", key);
    int out = cd_store_decode_rec(v.mv_data, v.mv_size, what, r);
    mdb_txn_abort(txn);
    return out ? cd_errctx("%s", s->path) : 0;
}

// Walk one sub-DB with a cursor in a single read txn.
typedef int (*kv_fn)(void *u, const MDB_val *k, const MDB_val *v);
static int walk(cd_store *s, int db, kv_fn fn, void *u) {
    MDB_txn *txn;
    MDB_cursor *c;
    CD_TRY(begin_read(s, &txn));
    int rc = mdb_cursor_open(txn, s->dbi[db], &c);
    if (rc) { mdb_txn_abort(txn); return MDB_FAIL(s, "mdb_cursor_open", rc); }
    MDB_val k, v;
    int out = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !out;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        out = fn(u, &k, &v);
    if (rc && rc != MDB_NOTFOUND && !out) out = MDB_FAIL(s, "mdb_cursor_get", rc);
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return out;
}

typedef struct { cd_store *s; cd_store_iter_fn fn; cd_store_manifest_fn mfn; void *u; } walk_ctx;

static int64_t key_index(const MDB_val *k) {
    char buf[32];
    size_t n = k->mv_size < sizeof buf - 1 ? k->mv_size : sizeof buf - 1;
    memcpy(buf, k->mv_data, n);
    buf[n] = 0;
    return strtoll(buf, NULL, 10);
}

static int rec_cb(void *u, const MDB_val *k, const MDB_val *v) {
    walk_ctx *w = u;
    cd_store_rec r;
    char what[64];
    snprintf(what, sizeof what, "record %.*s", (int)(k->mv_size < 20 ? k->mv_size : 20), (char *)k->mv_data);
    if (cd_store_decode_rec(v->mv_data, v->mv_size, what, &r)) return -1;
    int rc = w->fn(w->u, key_index(k), &r);
    cd_store_rec_free(&r);
    return rc;
}

int cd_store_iter(cd_store *s, cd_store_iter_fn fn, void *user) {
    walk_ctx w = {s, fn, NULL, user};
    return walk(s, DB_RECORDS, rec_cb, &w);
}

static int man_cb(void *u, const MDB_val *k, const MDB_val *v) {
    walk_ctx *w = u;
    char *js = cd_malloc(v->mv_size + 1);
    memcpy(js, v->mv_data, v->mv_size);
    js[v->mv_size] = 0;
    int rc = w->mfn(w->u, key_index(k), js);
    free(js);
    return rc;
}

int cd_store_iter_manifest(cd_store *s, cd_store_manifest_fn fn, void *user) {
    walk_ctx w = {s, NULL, fn, user};
    return walk(s, DB_MANIFEST, man_cb, &w);
}

// ---- writer ----

static void push_op(cd_store *s, int db, const void *key, size_t klen, const void *val, size_t vlen, int take_val) {
    if (s->nops == s->capops) {
        s->capops = s->capops ? 2 * s->capops : 64;
        s->ops = cd_realloc(s->ops, s->capops * sizeof *s->ops);
    }
    op *o = &s->ops[s->nops++];
    o->db = db;
    o->key = cd_malloc(klen + 1);
    memcpy(o->key, key, klen);
    o->key[klen] = 0;
    o->klen = klen;
    if (take_val) o->val = (uint8_t *)val;
    else { o->val = cd_malloc(vlen + 1); memcpy(o->val, val, vlen); }
    o->vlen = vlen;
}

int cd_store_set_info(cd_store *s, const cd_store_info *info) {
    if (!s->writable) return cd_err("%s: store opened read-only", s->path);
    int64_t count = s->info.count;
    s->info = *info;
    s->info.schema_version = CD_STORE_SCHEMA_VERSION;
    s->info.count = count;
    return 0;
}

int cd_store_find_sha(cd_store *s, const char *sha_hex, int64_t *index) {
    size_t kl = strlen(sha_hex);
    for (int i = s->nops - 1; i >= 0; i--)
        if (s->ops[i].db == DB_SHA && s->ops[i].klen == kl && !memcmp(s->ops[i].key, sha_hex, kl)) {
            *index = strtoll((char *)s->ops[i].val, NULL, 10);
            return 1;
        }
    MDB_txn *txn;
    CD_TRY(begin_read(s, &txn));
    MDB_val k = {kl, (void *)sha_hex}, v;
    int rc = mdb_get(txn, s->dbi[DB_SHA], &k, &v);
    if (rc == 0) *index = key_index(&v);
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return MDB_FAIL(s, "mdb_get(sha256)", rc);
    return 1;
}

int cd_store_add(cd_store *s, const cd_store_rec *r, int64_t *index) {
    if (!s->writable) return cd_err("%s: store opened read-only", s->path);
    if (strlen(r->sha256) != 64) return cd_err("%s: record without a sha256", s->path);
    uint8_t *val;
    size_t vlen;
    CD_TRY(cd_store_encode_rec(r, &val, &vlen));
    char key[32];
    int kl = snprintf(key, sizeof key, CD_STORE_KEY_FMT, (long long)s->next_index);
    push_op(s, DB_RECORDS, key, (size_t)kl, val, vlen, 1);
    push_op(s, DB_SHA, r->sha256, 64, key, (size_t)kl, 0);
    if (index) *index = s->next_index;
    s->next_index++;
    return 0;
}

int cd_store_set_caption(cd_store *s, int64_t i, const char *caption) {
    if (!s->writable) return cd_err("%s: store opened read-only", s->path);
    char key[32], what[64];
    int kl = snprintf(key, sizeof key, CD_STORE_KEY_FMT, (long long)i);
    snprintf(what, sizeof what, "%s: record %s", s->path, key);
    cd_store_rec r;
    int found = 0;
    for (int k = s->nops - 1; k >= 0 && !found; k--)      // the batch first
        if (s->ops[k].db == DB_RECORDS && s->ops[k].klen == (size_t)kl && !memcmp(s->ops[k].key, key, kl)) {
            CD_TRY(cd_store_decode_rec(s->ops[k].val, s->ops[k].vlen, what, &r));
            found = 1;
        }
    if (!found) CD_TRY(cd_store_get(s, i, &r));
    free(r.caption);
    r.caption = cd_strdup(caption ? caption : "");
    uint8_t *val;
    size_t vlen;
    int rc = cd_store_encode_rec(&r, &val, &vlen);
    cd_store_rec_free(&r);
    if (rc) return -1;
    push_op(s, DB_RECORDS, key, (size_t)kl, val, vlen, 1);   // later ops win at commit
    return 0;
}

int cd_store_put_manifest(cd_store *s, int64_t ordinal, const char *json) {
    if (!s->writable) return cd_err("%s: store opened read-only", s->path);
    char key[32];
    int kl = snprintf(key, sizeof key, CD_STORE_KEY_FMT, (long long)ordinal);
    push_op(s, DB_MANIFEST, key, (size_t)kl, json, strlen(json), 0);
    return 0;
}

int cd_store_get_manifest(cd_store *s, int64_t ordinal, char **json) {
    char key[32];
    int kl = snprintf(key, sizeof key, CD_STORE_KEY_FMT, (long long)ordinal);
    for (int i = s->nops - 1; i >= 0; i--)
        if (s->ops[i].db == DB_MANIFEST && s->ops[i].klen == (size_t)kl && !memcmp(s->ops[i].key, key, kl)) {
            *json = cd_strdup((char *)s->ops[i].val);
            return 1;
        }
    MDB_txn *txn;
    CD_TRY(begin_read(s, &txn));
    MDB_val k = {(size_t)kl, key}, v;
    int rc = mdb_get(txn, s->dbi[DB_MANIFEST], &k, &v);
    if (rc == 0) {
        *json = cd_malloc(v.mv_size + 1);
        memcpy(*json, v.mv_data, v.mv_size);
        (*json)[v.mv_size] = 0;
    }
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return MDB_FAIL(s, "mdb_get(manifest)", rc);
    return 1;
}

// One attempt at writing the batch. Returns 0, MDB_MAP_FULL (txn aborted), or -1.
static int write_batch(cd_store *s) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc) return MDB_FAIL(s, "mdb_txn_begin(write)", rc);
    for (int i = 0; i < s->nops && !rc; i++) {
        op *o = &s->ops[i];
        MDB_val k = {o->klen, o->key}, v = {o->vlen, o->val};
        rc = mdb_put(txn, s->dbi[o->db], &k, &v, 0);
    }
    MDB_stat st;
    if (!rc) rc = mdb_stat(txn, s->dbi[DB_RECORDS], &st);
    if (!rc) {
        cd_store_info in = s->info;
        in.count = (int64_t)st.ms_entries;
        char *js = info_json(&in);
        MDB_val k = {4, "info"}, v = {strlen(js), js};
        rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
        free(js);
        if (!rc) s->info.count = in.count;
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc == MDB_MAP_FULL ? MDB_MAP_FULL : MDB_FAIL(s, "mdb_put", rc);
    }
    rc = mdb_txn_commit(txn);
    if (rc == MDB_MAP_FULL) return MDB_MAP_FULL;
    if (rc) return MDB_FAIL(s, "mdb_txn_commit", rc);
    return 0;
}

int cd_store_commit(cd_store *s) {
    if (!s->writable) return cd_err("%s: store opened read-only", s->path);
    for (int tries = 0;; tries++) {
        int rc = write_batch(s);
        if (rc == 0) break;
        if (rc != MDB_MAP_FULL) return -1;
        if (tries > 40) return cd_err("%s: LMDB map still full after growing to %zu bytes", s->path, s->mapsize);
        size_t ns = s->mapsize * 2;
        int e = mdb_env_set_mapsize(s->env, ns);
        if (e) return MDB_FAIL(s, "mdb_env_set_mapsize", e);
        MDB_envinfo ei;
        mdb_env_info(s->env, &ei);
        s->mapsize = ei.me_mapsize;
        s->growths++;
    }
    for (int i = 0; i < s->nops; i++) { free(s->ops[i].key); free(s->ops[i].val); }
    s->nops = 0;
    return 0;
}
