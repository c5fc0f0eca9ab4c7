// id -> JSON metadata in LMDB (see core/idxmeta.h).
#include "core/idxmeta.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"

#define MAP_SIZE ((size_t)64 << 30)   // address space only; the file grows as needed
#define BATCH 2000

struct cd_idxmeta {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;      // open write txn (writer) or NULL
    char *dir;
    int write, pending;
    int64_t len;       // largest id + 1 (writer)
};

#define MDB_CHECK(call, what)                                                            \
    do {                                                                                 \
        int rc_ = (call);                                                                \
        if (rc_ != 0) return cd_err("%s: LMDB %s: %s", m->dir, what, mdb_strerror(rc_)); \
    } while (0)

static int begin(cd_idxmeta *m) {
    if (m->txn) return 0;
    MDB_CHECK(mdb_txn_begin(m->env, NULL, 0, &m->txn), "txn_begin");
    return 0;
}

static int read_len(cd_idxmeta *m, MDB_txn *txn, int64_t *len) {
    MDB_val k = {7, (void *)"__len__"}, v;
    int rc = mdb_get(txn, m->dbi, &k, &v);
    *len = 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) return cd_err("%s: LMDB get __len__: %s", m->dir, mdb_strerror(rc));
    char buf[32];
    size_t n = v.mv_size < sizeof buf - 1 ? v.mv_size : sizeof buf - 1;
    memcpy(buf, v.mv_data, n);
    buf[n] = 0;
    *len = strtoll(buf, NULL, 10);
    return 0;
}

static int open_env(cd_idxmeta *m) {
    MDB_CHECK(mdb_env_create(&m->env), "env_create");
    MDB_CHECK(mdb_env_set_mapsize(m->env, MAP_SIZE), "set_mapsize");
    unsigned flags = m->write ? MDB_NOSYNC : (MDB_RDONLY | MDB_NOTLS);
    int rc = mdb_env_open(m->env, m->dir, flags, 0644);
    if (rc != 0) return cd_err("%s: LMDB open: %s", m->dir, mdb_strerror(rc));
    MDB_txn *txn;
    MDB_CHECK(mdb_txn_begin(m->env, NULL, m->write ? 0 : MDB_RDONLY, &txn), "txn_begin");
    rc = mdb_dbi_open(txn, NULL, 0, &m->dbi);
    if (rc == 0) rc = read_len(m, txn, &m->len) == 0 ? 0 : -1;
    if (rc == 0 && m->write) rc = mdb_txn_commit(txn);
    else mdb_txn_abort(txn);
    if (rc > 0) return cd_err("%s: LMDB dbi_open: %s", m->dir, mdb_strerror(rc));
    return rc;
}

int cd_idxmeta_open(cd_idxmeta **out, const char *dir, int write) {
    *out = NULL;
    if (write && cd_mkdirs(dir) != 0) return -1;
    if (!write && !cd_is_dir(dir)) return cd_err("%s: metadata store not found (an LMDB folder)", dir);
    cd_idxmeta *m = cd_calloc(1, sizeof *m);
    m->dir = cd_strdup(dir);
    m->write = write;
    if (open_env(m) != 0) {
        cd_idxmeta_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

void cd_idxmeta_close(cd_idxmeta *m) {
    if (!m) return;
    if (m->txn) mdb_txn_abort(m->txn);
    if (m->env) mdb_env_close(m->env);
    free(m->dir);
    free(m);
}

static void key_of(int64_t id, char *buf) { snprintf(buf, 16, "%012lld", (long long)id); }

int cd_idxmeta_put(cd_idxmeta *m, int64_t id, const char *json, size_t len) {
    if (!m->write) return cd_err("%s: metadata store opened read-only", m->dir);
    if (id < 0) return cd_err("%s: negative id %lld", m->dir, (long long)id);
    CD_TRY(begin(m));
    char kb[16];
    key_of(id, kb);
    MDB_val k = {12, kb}, v = {len, (void *)json};
    MDB_CHECK(mdb_put(m->txn, m->dbi, &k, &v, 0), "put");
    if (id + 1 > m->len) m->len = id + 1;
    if (++m->pending >= BATCH) {
        int rc = mdb_txn_commit(m->txn);
        m->txn = NULL;
        m->pending = 0;
        if (rc != 0) return cd_err("%s: LMDB commit: %s", m->dir, mdb_strerror(rc));
    }
    return 0;
}

int cd_idxmeta_commit(cd_idxmeta *m) {
    if (!m->write) return 0;
    CD_TRY(begin(m));
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)m->len);
    MDB_val k = {7, (void *)"__len__"}, v = {(size_t)n, buf};
    MDB_CHECK(mdb_put(m->txn, m->dbi, &k, &v, 0), "put __len__");
    int rc = mdb_txn_commit(m->txn);
    m->txn = NULL;
    m->pending = 0;
    if (rc != 0) return cd_err("%s: LMDB commit: %s", m->dir, mdb_strerror(rc));
    MDB_CHECK(mdb_env_sync(m->env, 1), "sync");
    return 0;
}

int cd_idxmeta_get(cd_idxmeta *m, int64_t id, char **json) {
    *json = NULL;
    MDB_txn *txn = m->txn;
    int own = 0;
    if (!txn) {
        MDB_CHECK(mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn), "txn_begin");
        own = 1;
    }
    char kb[16];
    key_of(id, kb);
    MDB_val k = {12, kb}, v;
    int rc = mdb_get(txn, m->dbi, &k, &v);
    if (rc == 0) {
        *json = cd_malloc(v.mv_size + 1);
        memcpy(*json, v.mv_data, v.mv_size);
        (*json)[v.mv_size] = 0;
    }
    if (own) mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND) return 1;
    if (rc != 0) return cd_err("%s: LMDB get id %lld: %s", m->dir, (long long)id, mdb_strerror(rc));
    return 0;
}

int64_t cd_idxmeta_count(cd_idxmeta *m) {
    if (m->write) return m->len;
    MDB_txn *txn;
    if (mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn) != 0) return 0;
    int64_t len = 0;
    read_len(m, txn, &len);
    mdb_txn_abort(txn);
    return len;
}
