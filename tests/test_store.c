// core/store: write/read round trip, dedup index, manifest entries, map growth from a tiny
// map, a reader in another process while writing, and an independent reader that follows
// manifests/schema/store.md with raw LMDB calls (plus Python's lmdb when installed).
#include "tests/testlib.h"
#include "core/store.h"
#include "core/sha256.h"
#include "core/fileio.h"
#include "core/json.h"
#include <lmdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// A fake "JPEG" payload of n bytes derived from i (the store does not decode images).
static uint8_t *payload(int i, size_t n) {
    uint8_t *p = cd_malloc(n);
    for (size_t k = 0; k < n; k++) p[k] = (uint8_t)(k * 31 + i * 7 + (k >> 8));
    p[0] = 0xFF; p[1] = 0xD8;
    return p;
}

static void make_rec(cd_store_rec *r, int i, size_t n, char *cap, char *src) {
    memset(r, 0, sizeof *r);
    r->jpeg = payload(i, n);
    r->jpeg_len = n;
    sprintf(cap, "a photo number %d, \"quoted\" é", i);
    sprintf(src, "http://example.com/img/%d.jpg", i);
    r->caption = cap;
    r->source = src;
    char orig[32];
    sprintf(orig, "original-%d", i);
    cd_sha256_hex(orig, strlen(orig), r->sha256);
    r->width = r->height = 64;
    r->original_width = 100 + i;
    r->original_height = 200 + i;
    r->original_bytes = 1000 + i;
}

static int write_n(const char *path, size_t map, int n, size_t bytes, int batch, int *growths) {
    cd_store *s;
    CD_TRY(cd_store_open_write(path, map, &s));
    cd_store_info in = {0};
    in.resolution = 64;
    snprintf(in.resize_mode, sizeof in.resize_mode, "center_crop");
    in.jpeg_quality = 95;
    snprintf(in.tool, sizeof in.tool, "test_store");
    snprintf(in.tool_version, sizeof in.tool_version, "t");
    CD_TRY(cd_store_set_info(s, &in));
    for (int i = 0; i < n; i++) {
        cd_store_rec r;
        char cap[64], src[64];
        make_rec(&r, i, bytes, cap, src);
        int64_t idx, dup;
        if (cd_store_find_sha(s, r.sha256, &dup) == 0) {
            if (cd_store_add(s, &r, &idx)) { free(r.jpeg); cd_store_close(s); return -1; }
            char *m = cd_fmt("{\"index\":%d,\"status\":\"success\"}", i);
            cd_store_put_manifest(s, i, m);
            free(m);
        }
        free(r.jpeg);
        if (cd_store_batch_ops(s) >= batch && cd_store_commit(s)) { cd_store_close(s); return -1; }
    }
    int rc = cd_store_commit(s);
    if (growths) *growths = cd_store_map_growths(s);
    cd_store_close(s);
    return rc;
}

TEST(roundtrip_and_dedup) {
    char *dir = tl_tmpdir("store"), *path = cd_path_join(dir, "s");
    CHECK_OK(write_n(path, 0, 20, 3000, 8, NULL));
    CHECK_OK(write_n(path, 0, 25, 3000, 8, NULL));          // 20 are duplicates by sha
    cd_store *s;
    CHECK_OK(cd_store_open(path, &s));
    CHECK(cd_store_count(s) == 25);
    cd_store_info in;
    CHECK_OK(cd_store_get_info(s, &in));
    CHECK(in.count == 25 && in.resolution == 64 && !strcmp(in.resize_mode, "center_crop"));
    CHECK(in.schema_version == CD_STORE_SCHEMA_VERSION && in.jpeg_quality == 95);
    cd_store_rec r;
    CHECK_OK(cd_store_get(s, 21, &r));
    uint8_t *want = payload(21, 3000);
    CHECK(r.jpeg_len == 3000 && !memcmp(r.jpeg, want, 3000));
    free(want);
    CHECK(!strcmp(r.caption, "a photo number 21, \"quoted\" é"));
    CHECK(!strcmp(r.source, "http://example.com/img/21.jpg"));
    CHECK(r.original_width == 121 && r.original_height == 221 && r.original_bytes == 1021);
    cd_store_rec_free(&r);
    CHECK_ERR(cd_store_get(s, 25, &r), "not found");
    char *m;
    CHECK(cd_store_get_manifest(s, 3, &m) == 1);
    CHECK(strstr(m, "\"index\":3"));
    free(m);
    CHECK(cd_store_get_manifest(s, 99, &m) == 0);
    cd_store_close(s);
    free(path); free(dir);
}

TEST(map_grows_from_tiny) {
    char *dir = tl_tmpdir("store"), *path = cd_path_join(dir, "s");
    int growths = 0;
    CHECK_OK(write_n(path, 64 * 1024, 60, 20000, 16, &growths));   // ~1.2 MB into a 64 KiB map
    CHECKF(growths >= 3, "map grew only %d times", growths);
    cd_store *s;
    CHECK_OK(cd_store_open(path, &s));
    CHECK(cd_store_count(s) == 60);
    cd_store_rec r;
    CHECK_OK(cd_store_get(s, 59, &r));
    uint8_t *want = payload(59, 20000);
    CHECK(r.jpeg_len == 20000 && !memcmp(r.jpeg, want, 20000));
    free(want);
    cd_store_rec_free(&r);
    cd_store_close(s);
    free(path); free(dir);
}

TEST(reader_while_writing) {
    char *dir = tl_tmpdir("store"), *path = cd_path_join(dir, "s");
    CHECK_OK(write_n(path, 64 * 1024, 1, 1000, 1, NULL));      // the store exists
    pid_t pid = fork();
    if (pid == 0) {            // child: a reader that must see the count grow to 200
        cd_store *s;
        if (cd_store_open(path, &s)) _exit(2);
        int64_t last = 0;
        for (int t = 0; t < 2000; t++) {
            int64_t c = cd_store_count(s);
            if (c < last) _exit(3);                          // never goes backwards
            if (c > 0) { cd_store_rec r; if (cd_store_get(s, c - 1, &r)) _exit(4); cd_store_rec_free(&r); }
            last = c;
            if (c >= 200) { cd_store_close(s); _exit(0); }
            usleep(2000);
        }
        _exit(5);
    }
    int rc = write_n(path, 0, 200, 2000, 10, NULL);           // grows the map while read
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(rc == 0);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reader exited with %d", WEXITSTATUS(st));
    free(path); free(dir);
}

// Independent reader: raw LMDB + the byte layout in manifests/schema/store.md.
TEST(read_back_by_schema_doc) {
    char *dir = tl_tmpdir("store"), *path = cd_path_join(dir, "s");
    CHECK_OK(write_n(path, 0, 12, 777, 5, NULL));
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi rec, meta;
    CHECK(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 4);
    CHECK(mdb_env_open(env, path, MDB_RDONLY, 0644) == 0);
    CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "records", 0, &rec) == 0 && mdb_dbi_open(txn, "meta", 0, &meta) == 0);
    MDB_val k = {4, "info"}, v;
    CHECK(mdb_get(txn, meta, &k, &v) == 0);
    cJSON *info;
    CHECK_OK(cd_json_parse(v.mv_data, v.mv_size, "info", &info));
    CHECK(cd_json_int(info, "schema_version", 0) == CD_STORE_SCHEMA_VERSION && cd_json_int(info, "count", 0) == 12);
    cJSON_Delete(info);
    MDB_cursor *c;
    CHECK(mdb_cursor_open(txn, rec, &c) == 0);
    int i = 0, bad = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), i++) {
        char key[16];
        snprintf(key, sizeof key, "%010d", i);
        const uint8_t *b = v.mv_data;
        uint32_t n = b[4] | b[5] << 8 | b[6] << 16 | (uint32_t)b[7] << 24;
        cJSON *h = NULL;
        if (k.mv_size != 10 || memcmp(k.mv_data, key, 10) || memcmp(b, "CDR1", 4) ||
            cd_json_parse((const char *)b + 8, n, "hdr", &h)) { bad++; continue; }
        uint8_t *want = payload(i, 777);
        char src[64];
        sprintf(src, "http://example.com/img/%d.jpg", i);
        if (v.mv_size - 8 - n != 777 || memcmp(b + 8 + n, want, 777) ||
            strcmp(cd_json_str(h, "source", ""), src) || cd_json_int(h, "image_bytes", 0) != 777) bad++;
        free(want);
        cJSON_Delete(h);
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    CHECK(i == 12 && bad == 0);
    if (system("python3 -c 'import lmdb' >/dev/null 2>&1") == 0) {   // the doc's own snippet
        char *cmd = cd_fmt("python3 - <<'EOF'\nimport json, struct, lmdb\nenv = lmdb.open('%s', readonly=True, max_dbs=4)\n"
                           "r = env.open_db(b'records', create=False)\nn = 0\nwith env.begin() as t:\n"
                           "  for k, v in t.cursor(db=r):\n    assert v[:4] == b'CDR1'\n"
                           "    (m,) = struct.unpack('<I', v[4:8]); h = json.loads(v[8:8+m]); assert len(v) - 8 - m == h['image_bytes']; n += 1\n"
                           "assert n == 12\nEOF", path);
        CHECK(system(cmd) == 0);
        free(cmd);
    }
    free(path); free(dir);
}

TEST(rejects_bad_values) {
    cd_store_rec r;
    CHECK_ERR(cd_store_decode_rec("XXXX\0\0\0\0", 8, "v", &r), "CDR1");
    CHECK_ERR(cd_store_decode_rec("CDR1\xff\0\0\0{}", 10, "v", &r), "exceeds");
    CHECK_ERR(cd_store_open("/nonexistent/store", NULL), "data.mdb");
}

int main(void) {
    RUN(roundtrip_and_dedup);
    RUN(map_grows_from_tiny);
    RUN(reader_while_writing);
    RUN(read_back_by_schema_doc);
    RUN(rejects_bad_values);
    return tl_done();
}
