// autofaiss-style index choice (AF:autofaiss/external/optimize.py get_optimal_index_keys_v2),
// size estimate (AF:external/metadata.py), training size, and search-parameter tuning to a
// target k-recall@k against exact search (our simplification of get_optimal_hyperparameters:
// the target is recall, not autofaiss's coverage + latency budget).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/faiss.h"
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// First cluster count autofaiss's get_optimal_nb_clusters proposes.
static int64_t nb_clusters(int64_t n) {
    if (n < 1000000) {
        double s = 4.0 * sqrt((double)n);
        return (int64_t)1 << (int)lround(log2(s));
    }
    if (n < 10000000) return 16384;
    if (n < 300000000) return 65536;
    return 131072;
}

// Number after `tag` in key ("IVF1024,Flat", "IVF" -> 1024); -1 when absent.
static long key_num(const char *key, const char *tag) {
    const char *p = strstr(key, tag);
    if (!p) return -1;
    p += strlen(tag);
    if (*p < '0' || *p > '9') return -1;
    return strtol(p, NULL, 10);
}

double cd_faiss_estimate_size(const char *key, int64_t n, int d) {
    double N = (double)n, D = d;
    long c = key_num(key, "IVF"), pq = key_num(key, ",PQ"), hnsw = key_num(key, "HNSW");
    if (strcmp(key, "Flat") == 0) return N * D * 4 + 16 * N;
    if (c < 0 && hnsw > 0) return N * D * 4 + N * hnsw * 2 * 4 + 16 * N;
    if (c > 0 && strstr(key, ",Flat")) return N * D * 4 + c * D * 4 + 8 * N;
    if (c > 0 && pq > 0) {
        long opq = key_num(key, "OPQ");
        const char *us = opq > 0 ? strchr(strstr(key, "OPQ"), '_') : NULL;
        long y = us ? strtol(us + 1, NULL, 10) : d;
        double s = N * (pq + 8) + c * (double)y * 4;
        if (strstr(key, "_HNSW")) s += c * 32.0 * 8;
        if (opq > 0) s += D * y * 4;
        return s;
    }
    return -1;
}

int cd_faiss_choose_key(int64_t n, int d, double max_mem, char *key, size_t cap) {
    if (n <= 0 || d <= 0) return cd_err("index choice: no vectors (n=%lld, d=%d)", (long long)n, d);
    if (n < 1000) { snprintf(key, cap, "Flat"); return 0; }
    if (n < 10000) { snprintf(key, cap, "HNSW15"); return 0; }
    long m = (long)floor((max_mem / (4.0 * n) - d) / 2);
    if (m >= 8) { snprintf(key, cap, "HNSW%ld", m < 32 ? m : 32); return 0; }
    int64_t c = nb_clusters(n);
    if (n < 1000000) {
        snprintf(key, cap, "IVF%lld,Flat", (long long)c);
        if (cd_faiss_estimate_size(key, n, d) <= max_mem) return 0;
    }
    double r = 4.0 * n * d / max_mem;
    static const int pqs[] = {256, 128, 64, 48, 32, 24, 16, 8, 4};
    for (size_t i = 0; i < sizeof pqs / sizeof pqs[0]; i++) {
        int pq = pqs[i];
        if (pq >= d || 4.0 * d / (pq + 8) < r) continue;
        int y = ((d / pq < 6 ? d / pq : 6) + 1) * pq;
        // autofaiss's keys, plus "np": without it FAISS's index_factory trains polysemous
        // codes, which only "ht" searches use (customdiff never sets ht) and which took
        // ~77% of a PQ build here (6x slower builds, identical results; bench/results/index-cpu.txt).
        if (c < 1000) snprintf(key, cap, "OPQ%d_%d,IVF%lld,PQ%dx8np", pq, y, (long long)c, pq);
        else snprintf(key, cap, "OPQ%d_%d,IVF%lld_HNSW32,PQ%dx8np", pq, y, (long long)c, pq);
        return 0;
    }
    return cd_err("index choice: %lld vectors of dimension %d cannot fit in %.3g GB; raise --max-index-memory",
                  (long long)n, d, max_mem / 1e9);
}

int64_t cd_faiss_train_size(const char *key, int64_t n) {
    long c = key_num(key, "IVF");
    int64_t t = 0;
    if (c > 0) t = 100 * (int64_t)c;
    if (strstr(key, "PQ") && t < 256 * 100) t = 256 * 100;   // PQ/OPQ codebooks: 256 centroids
    if (t == 0) return 0;
    return t < n ? t : n;
}

double cd_faiss_recall(const int64_t *ids, const int64_t *gt, int64_t nq, int k) {
    double hit = 0, tot = 0;
    for (int64_t q = 0; q < nq; q++) {
        const int64_t *a = ids + q * k, *b = gt + q * k;
        for (int j = 0; j < k; j++) {
            if (b[j] < 0) continue;
            tot++;
            for (int i = 0; i < k; i++)
                if (a[i] == b[j]) { hit++; break; }
        }
    }
    return tot > 0 ? hit / tot : 1.0;
}

// The parameter family of a key and the largest value worth trying.
typedef enum { FAM_NONE, FAM_HNSW, FAM_IVF, FAM_IVF_HNSW } family;

static family key_family(const char *key, long *maxv) {
    long c = key_num(key, "IVF");
    if (c > 0) {
        *maxv = c < 6144 ? c : 6144;
        return strstr(key, "_HNSW") ? FAM_IVF_HNSW : FAM_IVF;
    }
    if (strstr(key, "HNSW")) { *maxv = 16383; return FAM_HNSW; }
    *maxv = 0;
    return FAM_NONE;
}

static void family_params(family f, long v, int k, char *buf, size_t cap) {
    if (f == FAM_HNSW) snprintf(buf, cap, "efSearch=%ld", v);
    else if (f == FAM_IVF) snprintf(buf, cap, "nprobe=%ld", v);
    else if (f == FAM_IVF_HNSW) snprintf(buf, cap, "nprobe=%ld,efSearch=%ld", v, 2 * v > k ? 2 * v : k);
    else buf[0] = 0;
}

// Recall at parameter value v (sets the parameters on the index).
static int recall_at(cd_faiss *ix, family f, long v, const float *q, int64_t nq, const int64_t *gt,
                     int k, int64_t *ids, float *dist, double *rec) {
    char p[128];
    family_params(f, v, k, p, sizeof p);
    CD_TRY(cd_faiss_set_params(ix, p));
    CD_TRY(cd_faiss_search(ix, nq, cd_faiss_d(ix), q, k, dist, ids));
    *rec = cd_faiss_recall(ids, gt, nq, k);
    return 0;
}

static int tune_search(cd_faiss *ix, family f, long maxv, const float *q, int64_t nq, const int64_t *gt,
                       int k, double target, long *best, double *best_rec) {
    int64_t *ids = cd_malloc((size_t)(nq * k) * sizeof *ids);
    float *dist = cd_malloc((size_t)(nq * k) * sizeof *dist);
    long lo = 0, hi = -1, v = f == FAM_HNSW ? 16 : 1;   // lo: largest failing value, hi: smallest passing
    double r = 0, hi_rec = 0;
    int rc = 0;
    for (;;) {   // doubling until the target is reached or the range ends
        if (v > maxv) v = maxv;
        if ((rc = recall_at(ix, f, v, q, nq, gt, k, ids, dist, &r)) != 0) goto done;
        if (r >= target) { hi = v; hi_rec = r; break; }
        lo = v;
        if (v == maxv) break;
        v *= 2;
    }
    if (hi < 0) { *best = maxv; *best_rec = r; goto done; }   // target unreachable: the largest
    while (hi - lo > 1 && hi - lo > hi / 16) {   // binary search to ~6 %
        long mid = (lo + hi) / 2;
        if ((rc = recall_at(ix, f, mid, q, nq, gt, k, ids, dist, &r)) != 0) goto done;
        if (r >= target) { hi = mid; hi_rec = r; } else lo = mid;
    }
    *best = hi;
    *best_rec = hi_rec;
done:
    free(ids);
    free(dist);
    return rc;
}

int cd_faiss_tune(cd_faiss *ix, const char *key, const float *q, int64_t nq, const int64_t *gt,
                  int k, double target, cd_faiss_tuning *out) {
    memset(out, 0, sizeof *out);
    out->k = k;
    out->target = target;
    out->nq = nq;
    if (nq <= 0) return cd_err("tuning: no queries");
    long maxv, best = 0;
    family f = key_family(key, &maxv);
    double rec = 0;
    if (f == FAM_NONE) {
        int64_t *ids = cd_malloc((size_t)(nq * k) * sizeof *ids);
        float *dist = cd_malloc((size_t)(nq * k) * sizeof *dist);
        int rc = cd_faiss_search(ix, nq, cd_faiss_d(ix), q, k, dist, ids);
        if (rc == 0) rec = cd_faiss_recall(ids, gt, nq, k);
        free(ids);
        free(dist);
        CD_TRY(rc);
    } else {
        CD_TRY(tune_search(ix, f, maxv, q, nq, gt, k, target, &best, &rec));
    }
    family_params(f, best, k, out->params, sizeof out->params);
    CD_TRY(cd_faiss_set_params(ix, out->params));
    out->recall = rec;
    return cd_faiss_measure(ix, q, nq, k, 0.5, &out->avg_ms, &out->p99_ms, &out->qps);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cd_faiss_measure(const cd_faiss *ix, const float *q, int64_t nq, int k, double budget_s,
                     double *avg_ms, double *p99_ms, double *qps) {
    int d = cd_faiss_d(ix);
    int64_t cap = 100000, n = 0;
    double *t = cd_malloc((size_t)cap * sizeof *t);
    float *dist = cd_malloc((size_t)(nq > k ? nq : k) * k * sizeof *dist);
    int64_t *ids = cd_malloc((size_t)(nq > k ? nq : k) * k * sizeof *ids);
    double t0 = now_s(), sum = 0;
    int rc = 0, threads = cd_faiss_get_threads();
    cd_faiss_set_threads(1);
    while (n < cap && (n < 20 || now_s() - t0 < budget_s)) {
        double a = now_s();
        if ((rc = cd_faiss_search(ix, 1, d, q + (n % nq) * d, k, dist, ids)) != 0) break;
        t[n] = (now_s() - a) * 1e3;
        sum += t[n++];
    }
    cd_faiss_set_threads(threads);
    if (rc == 0) {
        qsort(t, (size_t)n, sizeof *t, cmp_double);
        *avg_ms = sum / n;
        *p99_ms = t[(int64_t)(0.99 * (n - 1))];
        double a = now_s();
        rc = cd_faiss_search(ix, nq, d, q, k, dist, ids);
        double el = now_s() - a;
        *qps = el > 0 ? nq / el : 0;
    }
    free(t);
    free(dist);
    free(ids);
    return rc;
}
