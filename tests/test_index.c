// Index and retrieval: .npy parsing, the FAISS shim (incl. error paths), autofaiss's key
// choice, the LMDB metadata store, recall of approximate indexes against exact search, a
// synthetic caption corpus embedded with the golden tiny CLIP (customdiff-index +
// customdiff-retrieve), and remote mode against misbehaving servers (tests/httpd.h).
//   test_index --make-corpus DIR [N]   writes DIR/corpus.npy + DIR/corpus.jsonl (tiny CLIP
//                                      text embeddings of N captions) for tests/test_retrieve.sh
//   test_index --make-images DIR [N]   writes DIR/img<i>.png + img<i>.txt (synthetic images)
//   test_index --serve-files ROOT SEC  serves ROOT with tests/httpd.h on 127.0.0.1 for SEC
//                                      seconds, after printing "port P" (for image_url tests)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/err.h"
#include "core/faiss.h"
#include "core/fileio.h"
#include "core/idxmeta.h"
#include "core/json.h"
#include "core/npy.h"
#include "core/image.h"
#include "core/store.h"
#include "model/clip.h"
#include "tests/httpd.h"
#include "tests/testlib.h"

static const char *bin_dir(void) {
    static char buf[512];
    const char *b = getenv("BUILD");
    snprintf(buf, sizeof buf, "%s/bin", b ? b : "build");
    return buf;
}

// ---- npy ----
static void put_npy(const char *path, int major, const char *dict, const void *data, size_t n) {
    char hdr[256];
    size_t hl = strlen(dict);
    FILE *f = fopen(path, "wb");
    memcpy(hdr, "\x93NUMPY", 6);
    hdr[6] = (char)major;
    hdr[7] = 0;
    fwrite(hdr, 1, 8, f);
    if (major == 1) { unsigned char l[2] = {hl & 255, hl >> 8}; fwrite(l, 1, 2, f); }
    else { unsigned char l[4] = {hl & 255, (hl >> 8) & 255, 0, 0}; fwrite(l, 1, 4, f); }
    fwrite(dict, 1, hl, f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

TEST(npy_roundtrip_f32) {
    char *d = tl_tmpdir("npy"), *p = cd_path_join(d, "a.npy");
    float x[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    int64_t sh[2] = {2, 3};
    CHECK_OK(cd_npy_write_f32(p, x, 2, sh));
    cd_npy a;
    CHECK_OK(cd_npy_read(p, &a));
    CHECK(a.dtype == CD_F32 && a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3 && a.numel == 6);
    CHECK(memcmp(a.data, x, sizeof x) == 0);
    // numpy pads the whole header to a multiple of 64 bytes
    struct stat st;
    stat(p, &st);
    CHECK((st.st_size - 24) % 64 == 0);
    cd_npy_free(&a);
    free(p);
    free(d);
}

TEST(npy_versions_and_dtypes) {
    char *d = tl_tmpdir("npy"), *p = cd_path_join(d, "b.npy");
    uint16_t h[3] = {0x3c00, 0xc000, 0x3800};   // 1, -2, 0.5 in fp16
    put_npy(p, 2, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }\n", h, sizeof h);
    cd_npy a;
    float *f;
    CHECK_OK(cd_npy_read(p, &a));
    CHECK(a.dtype == CD_F16 && a.ndim == 1 && a.shape[0] == 3);
    CHECK_OK(cd_npy_to_f32(&a, &f));
    CHECK(f[0] == 1 && f[1] == -2 && f[2] == 0.5f);
    free(f);
    cd_npy_free(&a);
    double dd[2] = {0.25, -4};
    put_npy(p, 3, "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (1, 2)}\n", dd, sizeof dd);
    CHECK_OK(cd_npy_read(p, &a));
    CHECK(a.dtype == CD_F64 && a.shape[1] == 2);
    CHECK_OK(cd_npy_to_f32(&a, &f));
    CHECK(f[0] == 0.25f && f[1] == -4);
    free(f);
    cd_npy_free(&a);
    int64_t i8[2] = {5, -6};
    put_npy(p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", i8, sizeof i8);
    CHECK_OK(cd_npy_read(p, &a));
    CHECK(a.dtype == CD_I64 && ((int64_t *)a.data)[1] == -6);
    CHECK_ERR(cd_npy_to_f32(&a, &f), "float");
    cd_npy_free(&a);
    uint8_t u = 200;
    put_npy(p, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (), }", &u, 1);
    CHECK_OK(cd_npy_read(p, &a));
    CHECK(a.dtype == CD_U8 && a.ndim == 0 && a.numel == 1 && ((uint8_t *)a.data)[0] == 200);
    cd_npy_free(&a);
    int32_t i4[4] = {1, 2, 3, 4};
    put_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", i4, sizeof i4);
    CHECK_OK(cd_npy_read(p, &a));
    CHECK(a.dtype == CD_I32 && a.numel == 4);
    cd_npy_free(&a);
    free(p);
    free(d);
}

static int parse_str(const char *dict, size_t data_bytes, int major) {
    static unsigned char buf[4096];
    size_t hl = strlen(dict), off = major == 1 ? 10 : 12;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = hl & 255;
    buf[9] = hl >> 8;
    buf[10] = buf[11] = 0;
    memcpy(buf + off, dict, hl);
    memset(buf + off + hl, 0, data_bytes);
    cd_npy a;
    int rc = cd_npy_parse(buf, off + hl + data_bytes, "t.npy", &a);
    if (rc == 0) cd_npy_free(&a);
    return rc;
}

TEST(npy_errors) {
    cd_npy a;
    CHECK_ERR(cd_npy_parse("NOTNUMPY....", 12, "x.npy", &a), "bad magic");
    CHECK_ERR(parse_str("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, 4), "version 4.0");
    CHECK_ERR(parse_str("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8, 1), "Fortran");
    CHECK_ERR(parse_str("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, 1), "big-endian");
    CHECK_ERR(parse_str("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, 1), "not supported");
    CHECK_ERR(parse_str("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 7, 1), "truncated");
    CHECK_ERR(parse_str("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 9, 1), "trailing");
    CHECK_ERR(parse_str("{'descr': '<f4', 'fortran_order': False, 'shape': (2, }", 8, 1), "shape");
    CHECK_ERR(parse_str("{'descr': '<f4', 'shape': (2,), }", 8, 1), "fortran_order");
    CHECK_ERR(parse_str("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, 1), "structured");
    CHECK_ERR(parse_str("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 9999999), }", 0, 1), "too large");
    CHECK_ERR(parse_str("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 0, 1), "shape");
    unsigned char shorthdr[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 200, 0, '{', '}'};
    CHECK_ERR(cd_npy_parse(shorthdr, sizeof shorthdr, "s.npy", &a), "truncated in its header");
    CHECK_ERR(cd_npy_read("/nonexistent/x.npy", &a), "x.npy");
}

// ---- FAISS shim ----
// n unit vectors of dimension d around nc random centres (clustered, like CLIP embeddings);
// the centres depend on nc only, so queries drawn with another seed share the distribution.
static float *clustered(int n, int d, int nc, uint32_t seed) {
    float *c = cd_malloc((size_t)nc * d * sizeof(float)), *x = cd_malloc((size_t)n * d * sizeof(float));
    tl_rand(c, (int64_t)nc * d, 1234u + (uint32_t)nc);
    tl_rand(x, (int64_t)n * d, seed + 1);
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * d, s = 0;
        for (int j = 0; j < d; j++) { r[j] = c[((i + seed) % nc) * d + j] + 0.6f * r[j]; s += r[j] * r[j]; }
        for (int j = 0; j < d; j++) r[j] /= sqrtf(s);
    }
    free(c);
    return x;
}

TEST(faiss_flat_roundtrip) {
    int n = 300, d = 16;
    float *x = clustered(n, d, 10, 7);
    cd_faiss *ix, *iy;
    CHECK_OK(cd_faiss_new(&ix, d, "Flat"));
    CHECK_OK(cd_faiss_add(ix, n, x, NULL));
    CHECK(cd_faiss_ntotal(ix) == n && cd_faiss_d(ix) == d);
    float dist[5], rec[16];
    int64_t ids[5];
    CHECK_OK(cd_faiss_search(ix, 1, d, x + 42 * d, 5, dist, ids));
    CHECK(ids[0] == 42 && fabsf(dist[0] - 1) < 1e-5f && dist[1] <= dist[0]);
    char *dir = tl_tmpdir("faiss"), *p = cd_path_join(dir, "a.faiss");
    CHECK_OK(cd_faiss_write(ix, p));
    CHECK_OK(cd_faiss_read(&iy, p, 0));
    CHECK(cd_faiss_ntotal(iy) == n);
    CHECK_OK(cd_faiss_reconstruct(iy, 42, rec));
    CHECK(memcmp(rec, x + 42 * d, sizeof rec) == 0);
    // custom ids through the IDMap2 wrapper
    int64_t myid = 1000000007;
    CHECK_OK(cd_faiss_add(iy, 1, x, &myid));
    CHECK_OK(cd_faiss_search(iy, 1, d, x, 2, dist, ids));
    CHECK((ids[0] == 0 || ids[0] == myid) && (ids[1] == 0 || ids[1] == myid) && ids[0] != ids[1]);
    cd_faiss_free(iy);
    cd_faiss_free(ix);
    free(p);
    free(dir);
    free(x);
}

TEST(faiss_errors) {
    int d = 16;
    float q[32] = {0}, dist[2];
    int64_t ids[2];
    cd_faiss *ix;
    CHECK_ERR(cd_faiss_new(&ix, d, "NoSuchIndex99"), "NoSuchIndex99");
    CHECK_OK(cd_faiss_new(&ix, d, "IVF4,Flat"));
    CHECK_ERR(cd_faiss_add(ix, 1, q, NULL), "not trained");
    cd_faiss_free(ix);
    CHECK_OK(cd_faiss_new(&ix, d, "Flat"));
    CHECK_OK(cd_faiss_add(ix, 1, q, NULL));
    CHECK_ERR(cd_faiss_search(ix, 1, 32, q, 1, dist, ids), "does not match the index dimension 16");
    CHECK_ERR(cd_faiss_set_params(ix, "nprobe=4"), "nprobe");
    char *dir = tl_tmpdir("faiss"), *p = cd_path_join(dir, "bad.faiss"), *m = cd_path_join(dir, "missing.faiss");
    CHECK_ERR(cd_faiss_read(&ix, m, 0), "missing.faiss");
    CHECK_OK(cd_write_file_atomic(p, "IxF2 this is not a faiss index at all......", 44));
    CHECK_ERR(cd_faiss_read(&ix, p, 0), "bad.faiss");
    CHECK(ix == NULL);
    CHECK_OK(cd_write_file_atomic(p, "", 0));
    CHECK_ERR(cd_faiss_read(&ix, p, 0), "bad.faiss");
    char *sub = cd_path_join(dir, "nodir/x.faiss");
    cd_faiss *ok;
    CHECK_OK(cd_faiss_new(&ok, d, "Flat"));
    CHECK_ERR(cd_faiss_write(ok, sub), "nodir");
    cd_faiss_free(ok);
    free(sub);
    free(p);
    free(m);
    free(dir);
}

TEST(autofaiss_key_choice) {
    char k[128];
    CHECK_OK(cd_faiss_choose_key(500, 768, 4.0 * (1 << 30), k, sizeof k));
    CHECK(strcmp(k, "Flat") == 0);
    CHECK_OK(cd_faiss_choose_key(5000, 768, 4.0 * (1 << 30), k, sizeof k));
    CHECK(strcmp(k, "HNSW15") == 0);
    CHECK_OK(cd_faiss_choose_key(1000000, 768, 4.0 * (1 << 30), k, sizeof k));
    CHECK(strcmp(k, "HNSW32") == 0);
    // worked examples of retrieval-pipeline.md §2.3
    CHECK_OK(cd_faiss_choose_key(10000000, 768, 4.0 * (1 << 30), k, sizeof k));
    CHECKF(strcmp(k, "OPQ256_1024,IVF65536_HNSW32,PQ256x8np") == 0, "10M: %s", k);
    CHECK_OK(cd_faiss_choose_key(5500000000LL, 768, 800.0 * (1 << 30), k, sizeof k));
    CHECKF(strcmp(k, "OPQ128_896,IVF131072_HNSW32,PQ128x8np") == 0, "5.5B: %s", k);
    // 2M at d=512 fits HNSW32 under 4G (bound ~2.03M), 3M does not
    CHECK_OK(cd_faiss_choose_key(2000000, 512, 4.0 * (1 << 30), k, sizeof k));
    CHECK(strncmp(k, "HNSW", 4) == 0);
    CHECK_OK(cd_faiss_choose_key(3000000, 512, 4.0 * (1 << 30), k, sizeof k));
    CHECK(strncmp(k, "OPQ", 3) == 0);
    CHECK_ERR(cd_faiss_choose_key(0, 768, 1e9, k, sizeof k), "no vectors");
}

// An approximate index tuned to a target reaches that recall on fresh queries too.
static void check_recall(const char *key) {
    int n = 4000, d = 32, nq = 200, k = 10;
    float *x = clustered(n, d, 50, 11), *q = clustered(nq, d, 50, 11 + 977), *q2 = clustered(nq, d, 50, 5000);
    int64_t *gt = cd_malloc((size_t)nq * k * sizeof *gt), *ids = cd_malloc((size_t)nq * k * sizeof *ids);
    float *dist = cd_malloc((size_t)nq * k * sizeof *dist);
    cd_faiss *ix;
    CHECK_OK(cd_faiss_new(&ix, d, key));
    CHECK_OK(cd_faiss_train(ix, n, x));
    CHECK_OK(cd_faiss_add(ix, n, x, NULL));
    CHECK_OK(cd_faiss_knn_exact(q, nq, x, n, d, k, dist, gt));
    cd_faiss_tuning t;
    CHECK_OK(cd_faiss_tune(ix, key, q, nq, gt, k, 0.9, &t));
    CHECKF(t.recall >= 0.9 && t.params[0], "%s: recall %.3f at '%s'", key, t.recall, t.params);
    // fresh queries with the parameters as tuned
    CHECK_OK(cd_faiss_knn_exact(q2, nq, x, n, d, k, dist, gt));
    CHECK_OK(cd_faiss_search(ix, nq, d, q2, k, dist, ids));
    double r = cd_faiss_recall(ids, gt, nq, k);
    CHECKF(r >= t.recall - 0.05, "%s: recall %.3f on fresh queries, %.3f recorded", key, r, t.recall);
    // and a smaller parameter really is worse (the tuning did something)
    cd_faiss_free(ix);
    free(x); free(q); free(q2); free(gt); free(ids); free(dist);
}

TEST(hnsw_reaches_recorded_recall) { check_recall("HNSW16"); }
TEST(ivf_reaches_recorded_recall) { check_recall("IVF64,Flat"); }

TEST(recall_measure) {
    int64_t gt[4] = {1, 2, 3, 4}, a[4] = {2, 1, 9, 4};
    CHECK(fabs(cd_faiss_recall(a, gt, 2, 2) - 0.75) < 1e-12);
}

TEST(idxmeta_store) {
    char *d = tl_tmpdir("meta"), *p = cd_path_join(d, "m.lmdb");
    cd_idxmeta *m;
    CHECK_OK(cd_idxmeta_open(&m, p, 1));
    for (int i = 0; i < 5000; i++) {
        char js[64];
        int n = snprintf(js, sizeof js, "{\"url\":\"u%d\",\"caption\":\"c\"}", i);
        CHECK_OK(cd_idxmeta_put(m, i, js, (size_t)n));
    }
    CHECK_OK(cd_idxmeta_commit(m));
    cd_idxmeta_close(m);
    CHECK_OK(cd_idxmeta_open(&m, p, 0));
    CHECK(cd_idxmeta_count(m) == 5000);
    char *js;
    CHECK_OK(cd_idxmeta_get(m, 4321, &js));
    CHECK(strstr(js, "\"u4321\""));
    free(js);
    CHECK(cd_idxmeta_get(m, 5000, &js) == 1 && js == NULL);
    CHECK_ERR(cd_idxmeta_put(m, 1, "{}", 2), "read-only");
    cd_idxmeta_close(m);
    CHECK_ERR(cd_idxmeta_open(&m, "/nonexistent/meta.lmdb", 0), "not found");
    free(p);
    free(d);
}

// ---- synthetic corpus with the tiny CLIP ----
static const char *colors[] = {"red", "blue", "green", "black", "white", "orange", "purple", "yellow", "grey", "brown"};
static const char *things[] = {"cat", "dog", "car", "house", "tree", "boat", "chair", "bird", "horse", "lamp"};
static const char *places[] = {"on a beach", "in a garden", "at night", "in the snow", "on a table"};

static char *caption(int i) {
    return cd_fmt("a photo of a %s %s %s", colors[i % 10], things[(i / 10) % 10], places[(i / 100) % 5]);
}

// dir/corpus.npy [n, P] (normalised tiny-CLIP text embeddings) + dir/corpus.jsonl.
static int make_corpus(const char *clip_dir, const char *dir, int n) {
    cd_clip clip;
    memset(&clip, 0, sizeof clip);
    CD_TRY(cd_clip_load(&clip, clip_dir));
    int P = clip.text.cfg.projection_dim;
    float *emb = cd_malloc((size_t)n * P * sizeof(float));
    char **caps = cd_malloc((size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) caps[i] = caption(i);
    int rc = cd_clip_embed_prompts(&clip, (const char *const *)caps, n, emb, 1);
    char *npy = cd_path_join(dir, "corpus.npy"), *jl = cd_path_join(dir, "corpus.jsonl");
    int64_t sh[2] = {n, P};
    if (rc == 0) rc = cd_npy_write_f32(npy, emb, 2, sh);
    FILE *f = rc == 0 ? fopen(jl, "w") : NULL;
    for (int i = 0; f && i < n; i++) fprintf(f, "{\"url\": \"http://img.example/%d.jpg\", \"caption\": \"%s\"}\n", i, caps[i]);
    if (f) fclose(f);
    cd_free_strv(caps, n);
    free(emb);
    free(npy);
    free(jl);
    cd_clip_free(&clip);
    return rc;
}

static char *first_candidate(const char *path) {
    char *buf;
    size_t len;
    if (cd_read_file(path, &buf, &len, 0) != 0) return NULL;
    char *nl = strchr(buf, '\n');
    char *line2 = nl ? nl + 1 : NULL, *e = line2 ? strchr(line2, '\n') : NULL;
    if (e) *e = 0;
    char *r = line2 ? cd_strdup(line2) : NULL;
    free(buf);
    return r;
}

TEST(corpus_query_returns_itself) {
    const char *g = tl_golden();
    if (!g) return;
    char *clip = tl_golden_path("tiny-sd/clip"), *d = tl_tmpdir("corpus");
    CHECK_OK(make_corpus(clip, d, 300));
    char *cmd = cd_fmt("%s/customdiff-index --embeddings %s/corpus.npy --metadata %s/corpus.jsonl --out %s/ix "
                       "--model tiny-clip --threads 1 >%s/log 2>&1", bin_dir(), d, d, d, d);
    CHECK(system(cmd) == 0);
    free(cmd);
    char *want = caption(137);
    cmd = cd_fmt("%s/customdiff-retrieve --index %s/ix --clip %s --prompt '%s' --num 10 --near-dup 1.01 "
                 "--out %s/cand.jsonl --threads 1 >>%s/log 2>&1", bin_dir(), d, clip, want, d, d);
    CHECK(system(cmd) == 0);
    free(cmd);
    char *out = cd_fmt("%s/cand.jsonl", d), *line = first_candidate(out);
    CHECK(line);
    cJSON *j;
    CHECK_OK(cd_json_parse(line, strlen(line), "candidate", &j));
    CHECKF(strcmp(cd_json_str(j, "caption", ""), want) == 0, "first: %s", line);
    CHECKF(cd_json_num(j, "similarity", 0) > 0.999, "similarity %g", cd_json_num(j, "similarity", 0));
    CHECK(cd_json_int(j, "id", -1) == 137 && cd_json_int(j, "rank", 0) == 1);
    CHECK(strcmp(cd_json_str(j, "url", ""), "http://img.example/137.jpg") == 0);
    cJSON_Delete(j);
    free(line); free(out); free(want); free(clip); free(d);
}

// index.json of an approximate index built by customdiff-index records a recall that
// searching the written file with the recorded parameters reproduces.
TEST(cli_hnsw_records_true_recall) {
    char *d = tl_tmpdir("cli"), *npy = cd_path_join(d, "x.npy"), *jl = cd_path_join(d, "x.jsonl");
    int n = 3000, dd = 32, nq = 200, k = 20;
    float *x = clustered(n, dd, 40, 3);
    int64_t sh[2] = {n, dd};
    CHECK_OK(cd_npy_write_f32(npy, x, 2, sh));
    FILE *f = fopen(jl, "w");
    for (int i = 0; i < n; i++) fprintf(f, "{\"url\":\"http://x/%d\",\"caption\":\"c%d\"}\n", i, i);
    fclose(f);
    char *cmd = cd_fmt("%s/customdiff-index --embeddings %s --metadata %s --out %s/ix --factory HNSW8 --threads 1 "
                       "--recall 0.9 --k %d >%s/log 2>&1", bin_dir(), npy, jl, d, k, d);
    CHECK(system(cmd) == 0);
    free(cmd);
    char *jp = cd_fmt("%s/ix/index.json", d), *ip = cd_fmt("%s/ix/index.faiss", d);
    cJSON *info;
    CHECK_OK(cd_json_load(jp, &info));
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(info, "recall");
    double recorded = cd_json_num(rec, "value", 0);
    CHECK(recorded >= 0.9 && cd_json_int(info, "count", 0) == n && cd_json_int(info, "dimension", 0) == dd);
    CHECK(strncmp(cd_json_str(info, "search_params", ""), "efSearch=", 9) == 0);
    cd_faiss *ix;
    CHECK_OK(cd_faiss_read(&ix, ip, 0));
    CHECK_OK(cd_faiss_set_params(ix, cd_json_str(info, "search_params", "")));
    float *q = clustered(nq, dd, 40, 3 + 977), *dist = cd_malloc((size_t)nq * k * sizeof(float));
    int64_t *gt = cd_malloc((size_t)nq * k * 8), *ids = cd_malloc((size_t)nq * k * 8);
    CHECK_OK(cd_faiss_knn_exact(q, nq, x, n, dd, k, dist, gt));
    CHECK_OK(cd_faiss_search(ix, nq, dd, q, k, dist, ids));
    double r = cd_faiss_recall(ids, gt, nq, k);
    CHECKF(r >= recorded - 0.05, "measured %.3f, recorded %.3f", r, recorded);
    // --append with a wrong dimension is refused with a clear message
    float *y = clustered(10, 16, 2, 9);
    int64_t sh2[2] = {10, 16};
    CHECK_OK(cd_npy_write_f32(npy, y, 2, sh2));
    f = fopen(jl, "w");
    for (int i = 0; i < 10; i++) fprintf(f, "{\"url\":\"http://y/%d\",\"caption\":\"c\"}\n", i);
    fclose(f);
    cmd = cd_fmt("%s/customdiff-index --embeddings %s --metadata %s --out %s/ix --append >%s/log2 2>&1", bin_dir(), npy, jl, d, d);
    CHECK(system(cmd) != 0);
    free(cmd);
    char *log = cd_fmt("%s/log2", d), *lb;
    size_t ll;
    CHECK_OK(cd_read_file(log, &lb, &ll, 0));
    CHECKF(strstr(lb, "dimension 16") && strstr(lb, "dimension 32"), "log: %s", lb);
    free(lb); free(log);
    cd_faiss_free(ix);
    cJSON_Delete(info);
    free(q); free(dist); free(gt); free(ids); free(x); free(y);
    free(jp); free(ip); free(npy); free(jl); free(d);
}

// CSV (RFC 4180 quoting) and TSV metadata through customdiff-index into the LMDB store.
TEST(index_csv_tsv_metadata) {
    char *d = tl_tmpdir("csv"), *npy = cd_path_join(d, "x.npy"), *csv = cd_path_join(d, "x.csv"), *tsv = cd_path_join(d, "y.tsv");
    float x[3 * 4];
    tl_rand(x, 12, 5);
    int64_t sh[2] = {3, 4};
    CHECK_OK(cd_npy_write_f32(npy, x, 2, sh));
    const char *c = "caption,url,extra\r\n\"a, \"\"quoted\"\" one\",http://a/0,1\r\n\"two\nlines\",http://a/1,2\r\nplain,http://a/2,3\r\n";
    CHECK_OK(cd_write_file_atomic(csv, c, strlen(c)));
    const char *t = "url\tcaption\nhttp://b/0\tzero\nhttp://b/1\tone, with comma\nhttp://b/2\t\n";
    CHECK_OK(cd_write_file_atomic(tsv, t, strlen(t)));
    char *cmd = cd_fmt("%s/customdiff-index --embeddings %s --metadata %s --embeddings %s --metadata %s --out %s/ix "
                       "--threads 1 >%s/log 2>&1", bin_dir(), npy, csv, npy, tsv, d, d);
    CHECK(system(cmd) == 0);
    free(cmd);
    char *mp = cd_fmt("%s/ix/metadata.lmdb", d), *js;
    cd_idxmeta *m;
    CHECK_OK(cd_idxmeta_open(&m, mp, 0));
    CHECK(cd_idxmeta_count(m) == 6);
    const char *want[6] = {"\"caption\":\"a, \\\"quoted\\\" one\"", "\"caption\":\"two\\nlines\"", "\"extra\":\"3\"",
                           "\"caption\":\"zero\"", "\"caption\":\"one, with comma\"", "\"url\":\"http://b/2\""};
    for (int i = 0; i < 6; i++) {
        CHECK_OK(cd_idxmeta_get(m, i, &js));
        CHECKF(strstr(js, want[i]), "id %d: %s lacks %s", i, js, want[i]);
        free(js);
    }
    cd_idxmeta_close(m);
    // a row without a url is refused with the file and line
    const char *bad = "{\"url\":\"http://a\",\"caption\":\"x\"}\n{\"caption\":\"no url\"}\n{\"url\":\"u\",\"caption\":\"\"}\n";
    char *jl = cd_path_join(d, "bad.jsonl");
    CHECK_OK(cd_write_file_atomic(jl, bad, strlen(bad)));
    cmd = cd_fmt("%s/customdiff-index --embeddings %s --metadata %s --out %s/ix2 >%s/log2 2>&1", bin_dir(), npy, jl, d, d);
    CHECK(system(cmd) != 0);
    free(cmd);
    char *lp = cd_fmt("%s/log2", d), *lb;
    size_t ll;
    CHECK_OK(cd_read_file(lp, &lb, &ll, 0));
    CHECKF(strstr(lb, "bad.jsonl:2") && strstr(lb, "url"), "%s", lb);
    free(lb); free(lp); free(jl); free(mp); free(npy); free(csv); free(tsv); free(d);
}

// ---- from images: a folder (with <stem>.txt captions) and a preprocess store ----
static void make_image(cd_image *im, int i) {
    im->w = 80 + 8 * i;
    im->h = 64;
    im->rgb = cd_malloc((size_t)im->w * im->h * 3);
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++) {
            uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
            p[0] = (uint8_t)(40 * i + x);
            p[1] = (uint8_t)(255 - 30 * i + y);
            p[2] = (uint8_t)((x * y * (i + 1)) & 255);
        }
}

static int make_images(const char *dir, int n) {
    CD_TRY(cd_mkdirs(dir));
    for (int i = 0; i < n; i++) {
        cd_image im;
        make_image(&im, i);
        char *p = cd_fmt("%s/img%d.png", dir, i), *t = cd_fmt("%s/img%d.txt", dir, i), *c = cd_fmt("photo number %d\n", i);
        int rc = cd_image_save(p, &im);
        if (rc == 0) rc = cd_write_file_atomic(t, c, strlen(c));
        cd_image_free(&im);
        free(p); free(t); free(c);
        if (rc) return rc;
    }
    return 0;
}

// Base64: RFC 4648 test vectors (fixed strings, not our own output), padding, whitespace,
// data: prefix, URL-safe alphabet, and the errors.
TEST(base64_vectors_and_errors) {
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        size_t n;
        char *e = cd_base64_encode(plain[i], strlen(plain[i]), &n);
        CHECKF(strcmp(e, enc[i]) == 0 && n == strlen(enc[i]), "encode '%s' -> '%s'", plain[i], e);
        free(e);
        uint8_t *d;
        CHECK_OK(cd_base64_decode(enc[i], strlen(enc[i]), "t", &d, &n));
        CHECKF(n == strlen(plain[i]) && memcmp(d, plain[i], n) == 0, "decode '%s'", enc[i]);
        free(d);
    }
    static const char *ok[] = {"Zm9vYg", "Zm9v\nYmFy\r\n", "data:image/png;base64,Zm9vYmFy", "-_8="};
    static const char *want[] = {"foob", "foobar", "foobar", "\xfb\xff"};
    for (int i = 0; i < 4; i++) {
        uint8_t *d;
        size_t n;
        CHECK_OK(cd_base64_decode(ok[i], strlen(ok[i]), "t", &d, &n));
        CHECKF(n == strlen(want[i]) && memcmp(d, want[i], n) == 0, "decode '%s' (%zu bytes)", ok[i], n);
        free(d);
    }
    static const char *bad[] = {"Zm9v!", "Zg=", "Zg===", "Zm9vY", "Zg==Zg==", "data:xx"};
    for (int i = 0; i < 6; i++) {
        uint8_t *d = (uint8_t *)"x";
        size_t n;
        CHECK_ERR(cd_base64_decode(bad[i], strlen(bad[i]), "bad-input", &d, &n), "bad-input");
        CHECK(d == NULL);
    }
}

TEST(index_from_images_and_store) {
    const char *g = tl_golden();
    if (!g) return;
    char *clip = tl_golden_path("tiny-sd/clip"), *d = tl_tmpdir("images"), *imd = cd_path_join(d, "imgs");
    char *stp = cd_path_join(d, "store");
    CHECK_OK(cd_mkdirs(imd));
    cd_store *st;
    CHECK_OK(cd_store_open_write(stp, 0, &st));
    for (int i = 0; i < 6; i++) {
        cd_image im;
        make_image(&im, i);
        char *p = cd_fmt("%s/img%d.png", imd, i), *t = cd_fmt("%s/img%d.txt", imd, i), *c = cd_fmt("photo number %d\n", i);
        CHECK_OK(cd_image_save(p, &im));
        if (i != 3) CHECK_OK(cd_write_file_atomic(t, c, strlen(c)));
        cd_store_rec r;
        memset(&r, 0, sizeof r);
        CHECK_OK(cd_image_encode_jpeg(&im, 90, &r.jpeg, &r.jpeg_len));
        r.caption = c;
        r.source = p;
        snprintf(r.sha256, sizeof r.sha256, "%064d", i);
        r.width = r.original_width = im.w;
        r.height = r.original_height = im.h;
        int64_t idx;
        CHECK_OK(cd_store_add(st, &r, &idx));
        free(r.jpeg);
        cd_image_free(&im);
        free(p); free(t); free(c);
    }
    CHECK_OK(cd_store_commit(st));
    cd_store_close(st);
    char *notes = cd_fmt("%s/notes.md", imd);
    CHECK_OK(cd_write_file_atomic(notes, "not an image", 12));   // not an image name: ignored
    free(notes);
    char *cmd = cd_fmt("%s/customdiff-index --images %s --clip %s --url-prefix http://127.0.0.1:9/photos --out %s/ix "
                       "--threads 1 >%s/log 2>&1", bin_dir(), imd, clip, d, d);
    CHECK(system(cmd) == 0);
    free(cmd);
    cd_idxmeta *m;
    char *mp = cd_fmt("%s/ix/metadata.lmdb", d), *js;
    CHECK_OK(cd_idxmeta_open(&m, mp, 0));
    CHECK(cd_idxmeta_count(m) == 6);
    CHECK_OK(cd_idxmeta_get(m, 2, &js));
    CHECKF(strstr(js, "\"url\":\"http://127.0.0.1:9/photos/img2.png\"") && strstr(js, "\"caption\":\"photo number 2\""), "%s", js);
    free(js);
    CHECK_OK(cd_idxmeta_get(m, 3, &js));
    CHECKF(strstr(js, "\"caption\":\"\""), "no sidecar: %s", js);
    free(js);
    cd_idxmeta_close(m);
    // the store: same images (JPEG) -> embeddings close to the PNG ones; append to the index
    cmd = cd_fmt("%s/customdiff-index --store %s --clip %s --out %s/ix --append --threads 1 >>%s/log 2>&1", bin_dir(), stp, clip, d, d);
    CHECK(system(cmd) == 0);
    free(cmd);
    CHECK_OK(cd_idxmeta_open(&m, mp, 0));
    CHECK(cd_idxmeta_count(m) == 12);
    CHECK_OK(cd_idxmeta_get(m, 6 + 4, &js));
    CHECKF(strstr(js, "img4.png") && strstr(js, "\"store_index\":4"), "%s", js);
    free(js);
    cd_idxmeta_close(m);
    cd_faiss *ix;
    char *ip = cd_fmt("%s/ix/index.faiss", d);
    CHECK_OK(cd_faiss_read(&ix, ip, 0));
    float a[16], b[16], dist[1];
    int64_t id[1];
    CHECK(cd_faiss_d(ix) == 16);
    CHECK_OK(cd_faiss_reconstruct(ix, 4, a));
    CHECK_OK(cd_faiss_search(ix, 1, 16, a, 1, dist, id));
    CHECK(id[0] == 4 || id[0] == 10);
    CHECK_OK(cd_faiss_reconstruct(ix, 10, b));
    double ip2 = 0;
    for (int j = 0; j < 16; j++) ip2 += a[j] * b[j];
    CHECKF(ip2 > 0.99, "PNG vs JPEG embedding cosine %.4f", ip2);
    cd_faiss_free(ix);
    free(ip); free(mp); free(clip); free(d); free(imd); free(stp);
}

// ---- remote mode against misbehaving servers ----
static int run_remote(const char *endpoint, const char *dir, const char *extra, char **log) {
    char *cmd = cd_fmt("%s/customdiff-retrieve --endpoint '%s' --index-name x --prompt cat --num 2 --retries 1 "
                       "--backoff 0.1 --timeout 2 %s --out %s/r.jsonl >%s/rlog 2>&1", bin_dir(), endpoint, extra, dir, dir);
    int rc = system(cmd);
    free(cmd);
    char *p = cd_fmt("%s/rlog", dir);
    size_t n;
    if (cd_read_file(p, log, &n, 0) != 0) *log = cd_strdup("");
    free(p);
    return rc;
}

TEST(remote_misbehaving_servers) {
    char *root = tl_tmpdir("remote");
    char *ok = cd_path_join(root, "answer.json"), *tr = cd_path_join(root, "trunc.json"), *em = cd_path_join(root, "empty.json");
    const char *ans = "[{\"url\":\"http://a/1.jpg\",\"caption\":\"a cat\",\"id\":3,\"similarity\":0.31},"
                      "{\"url\":\"http://a/2.jpg\",\"caption\":\"cat 2\",\"id\":4,\"similarity\":0.30},"
                      "{\"url\":\"http://a/1.jpg\",\"caption\":\"dup url\",\"id\":5,\"similarity\":0.29}]";
    CHECK_OK(cd_write_file_atomic(ok, ans, strlen(ans)));
    CHECK_OK(cd_write_file_atomic(tr, ans, 60));
    CHECK_OK(cd_write_file_atomic(em, "[]", 2));
    th_server *s;
    CHECK_OK(th_start(root, 0, &s));
    char *log = NULL, *u;
    // 500 once, then the answer: succeeds after a retry; duplicate URL dropped
    u = th_url(s, "/500/answer.json");
    CHECK(run_remote(u, root, "", &log) == 0);
    CHECKF(th_hits(s, "/500/answer.json") == 2, "hits %d", th_hits(s, "/500/answer.json"));
    char *rp = cd_fmt("%s/r.jsonl", root), *buf;
    size_t len;
    CHECK_OK(cd_read_file(rp, &buf, &len, 0));
    CHECKF(strstr(buf, "http://a/2.jpg") && !strstr(buf, "dup url"), "%s", buf);
    free(buf); free(u); free(log);
    struct { const char *path, *needle; } bad[] = {
        {"/always503", "503"}, {"/html", "HTML"}, {"/files/trunc.json", "not valid JSON"},
        {"/files/empty.json", "empty answer"}, {"/slow/4000/answer.json", "imed out"}, {"/404", "404"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        u = th_url(s, bad[i].path);
        int rc = run_remote(u, root, "", &log);
        CHECKF(rc != 0, "%s: succeeded", bad[i].path);
        CHECKF(strstr(log, bad[i].needle) || (i == 4 && strstr(log, "timeout")), "%s: log: %s", bad[i].path, log);
        free(u); free(log);
    }
    th_stop(s);
    free(rp); free(ok); free(tr); free(em); free(root);
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--make-images") == 0) {
        int rc = make_images(argv[2], argc >= 4 ? atoi(argv[3]) : 6);
        if (rc) fprintf(stderr, "make-images: %s\n", cd_errmsg());
        return rc ? 1 : 0;
    }
    if (argc >= 4 && strcmp(argv[1], "--serve-files") == 0) {
        th_server *s;
        if (th_start(argv[2], 0, &s) != 0) { fprintf(stderr, "serve-files: %s\n", cd_errmsg()); return 1; }
        printf("port %d\n", th_port(s));
        fflush(stdout);
        sleep((unsigned)atoi(argv[3]));
        th_stop(s);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "--make-corpus") == 0) {
        char *clip = tl_golden_path("tiny-sd/clip");
        int rc = make_corpus(clip, argv[2], argc >= 4 ? atoi(argv[3]) : 300);
        if (rc) fprintf(stderr, "make-corpus: %s\n", cd_errmsg());
        free(clip);
        return rc ? 1 : 0;
    }
    cd_faiss_set_threads(1);   // 2 shared cores: OpenMP spinning costs more than it gains here
    RUN(base64_vectors_and_errors);
    RUN(npy_roundtrip_f32);
    RUN(npy_versions_and_dtypes);
    RUN(npy_errors);
    RUN(faiss_flat_roundtrip);
    RUN(faiss_errors);
    RUN(autofaiss_key_choice);
    RUN(recall_measure);
    RUN(hnsw_reaches_recorded_recall);
    RUN(ivf_reaches_recorded_recall);
    RUN(idxmeta_store);
    RUN(corpus_query_returns_itself);
    RUN(cli_hnsw_records_true_recall);
    RUN(index_csv_tsv_metadata);
    RUN(index_from_images_and_store);
    RUN(remote_misbehaving_servers);
    return tl_done();
}
