// A small C API over FAISS (libfaiss.a, C++): Debian's libfaiss-dev ships the C API headers
// but not the compiled C API, so this project has its own extern "C" shim (core/faiss_shim.cpp).
// Every FAISS/C++ exception is caught and turned into -1 + a cd_err message.
// Vectors are fp32, row-major [n, d]; ids are int64; the metric is always inner product
// (callers L2-normalise so that it is cosine similarity).
#ifndef CD_FAISS_H
#define CD_FAISS_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct cd_faiss cd_faiss;   // opaque: one faiss::Index (plus its id map if wrapped)

// index_factory(d, factory, METRIC_INNER_PRODUCT). Indexes that cannot take ids themselves
// (Flat, HNSW, ...) are wrapped in IndexIDMap2 so that add_with_ids and reconstruct by id work;
// IVF indexes get a hash-table direct map (reconstruct by id).
int cd_faiss_new(cd_faiss **out, int d, const char *factory);
void cd_faiss_free(cd_faiss *ix);

int cd_faiss_d(const cd_faiss *ix);
int64_t cd_faiss_ntotal(const cd_faiss *ix);
int cd_faiss_is_trained(const cd_faiss *ix);
// The factory string this index was made from ("" for indexes read from files not ours).
const char *cd_faiss_factory(const cd_faiss *ix);

// Train on n vectors x [n, d] (a no-op for indexes that need no training).
int cd_faiss_train(cd_faiss *ix, int64_t n, const float *x);
// Add n vectors x [n, d] with ids [n] (ids NULL: sequential from ntotal).
int cd_faiss_add(cd_faiss *ix, int64_t n, const float *x, const int64_t *ids);
// k-NN of nq queries q [nq, d]: dist [nq, k] (inner products, best first), ids [nq, k]
// (-1 padding when fewer than k results). dim is the queries' dimension (checked).
int cd_faiss_search(const cd_faiss *ix, int64_t nq, int dim, const float *q, int k,
                    float *dist, int64_t *ids);
// Like search, and also the stored (possibly quantised) vectors of the results: rec [nq, k, d]
// (zeros for -1 ids). Fails for index types that cannot reconstruct.
int cd_faiss_search_rec(const cd_faiss *ix, int64_t nq, int dim, const float *q, int k,
                        float *dist, int64_t *ids, float *rec);
// The stored vector of one id: out [d].
int cd_faiss_reconstruct(const cd_faiss *ix, int64_t id, float *out);

// Search-time parameters through faiss::ParameterSpace, e.g. "nprobe=16", "efSearch=64",
// "nprobe=32,efSearch=64,ht=2048"; "" does nothing.
int cd_faiss_set_params(cd_faiss *ix, const char *params);

// Write atomically (PATH.tmp.<pid> then rename). Read: flags 0 (fully in RAM) or
// CD_FAISS_IO_MMAP (memory-mapped, read-only).
int cd_faiss_write(const cd_faiss *ix, const char *path);
#define CD_FAISS_IO_MMAP 0x646f0008
int cd_faiss_read(cd_faiss **out, const char *path, int io_flags);

// Number of OpenMP threads FAISS uses (0: leave as is).
void cd_faiss_set_threads(int n);
int cd_faiss_get_threads(void);

// Exact k-NN by inner product of q [nq, d] against x [n, d] (BLAS, no copy of x):
// dist [nq, k] best first, ids [nq, k] row numbers of x (-1 past n).
int cd_faiss_knn_exact(const float *q, int64_t nq, const float *x, int64_t n, int d, int k,
                       float *dist, int64_t *ids);

// ---- autofaiss-style choice and tuning (core/faiss_auto.c) ----
// The factory key autofaiss's get_optimal_index_keys_v2 picks for n vectors of dimension d
// under max_mem bytes (not memory-mappable): Flat (<1000), HNSW15 (<10000), HNSW{m<=32} when
// vectors + graph fit, IVF{c},Flat (<1M), else OPQ{pq}_{y},IVF{c}[_HNSW32],PQ{pq}x8.
int cd_faiss_choose_key(int64_t n, int d, double max_mem, char *key, size_t cap);
// Estimated index size in bytes for a key (autofaiss's estimate); <0 when unknown.
double cd_faiss_estimate_size(const char *key, int64_t n, int d);
// How many training vectors a key wants (100 per IVF list, at least 31·lists... capped at n);
// 0 when the key needs no training.
int64_t cd_faiss_train_size(const char *key, int64_t n);

// Mean k-recall@k of approximate results ids [nq, k] against exact ones gt [nq, k].
double cd_faiss_recall(const int64_t *ids, const int64_t *gt, int64_t nq, int k);

typedef struct {
    char params[128];    // the chosen search parameters ("" for Flat)
    double recall;       // measured k-recall@k at those parameters
    int k;
    double target;
    double avg_ms, p99_ms;   // single-query latency at those parameters
    double qps;              // batched queries per second
    int64_t nq;
} cd_faiss_tuning;

// Tune nprobe / efSearch: the smallest value whose k-recall@k on queries q [nq, d] against
// the exact neighbours gt [nq, k] reaches target (the largest tried when none does); the
// chosen parameters are left set on the index, then latency is measured.
int cd_faiss_tune(cd_faiss *ix, const char *key, const float *q, int64_t nq, const int64_t *gt,
                  int k, double target, cd_faiss_tuning *out);
// Latency and throughput of the index as it is set: single-query searches on one thread
// (as a server answers one request) for about budget_s seconds (avg and p99 ms), and one
// batched search of all nq queries on every thread (qps).
int cd_faiss_measure(const cd_faiss *ix, const float *q, int64_t nq, int k, double budget_s,
                     double *avg_ms, double *p99_ms, double *qps);
#ifdef __cplusplus
}
#endif
#endif
