// Index benchmark: query latency, QPS and recall@10 of the index customdiff-index would
// choose (autofaiss rules, tuned to the recall target) against exact search (IndexFlatIP)
// over the same synthetic normalised vectors, in the same run.
// The issue asks for 1M x 768; on small machines scale down with --n (default 200000).
//   build/bench/bench_index [--n 200000] [--d 768] [--nq 1000] [--factory KEY] [--train N] [--out FILE]
// --factory runs another index than the chooser's (whose pick is still printed, with its size
// estimate), e.g. IVF4096,Flat where the chosen OPQ/IVF_HNSW/PQ index takes too long to build.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

extern char *openblas_get_corename(void) __attribute__((weak));

#include "core/cli.h"
#include "core/err.h"
#include "core/faiss.h"
#include "core/rng.h"

static int64_t n, ntrain;
static int d, nq, k, threads, intrinsic;
static double target, mem_gb, noise;
static const char *factory, *out;

static cd_opt opts[] = {
    {"n", CD_OPT_I64, &n, "200000", "vectors in the index (the issue's size is 1000000)"},
    {"d", CD_OPT_INT, &d, "768", "dimension"},
    {"nq", CD_OPT_INT, &nq, "1000", "queries"},
    {"k", CD_OPT_INT, &k, "10", "k of recall@k"},
    {"recall", CD_OPT_FLOAT, &target, "0.95", "tuning target for the approximate index"},
    {"intrinsic", CD_OPT_INT, &intrinsic, "32", "intrinsic dimension of the synthetic data (0: isotropic Gaussian)"},
    {"noise", CD_OPT_FLOAT, &noise, "0.3", "isotropic noise added to the low-dimensional part"},
    {"factory", CD_OPT_STR, &factory, NULL, "index to compare (default: customdiff-index's choice)"},
    {"train", CD_OPT_I64, &ntrain, "0", "training sample size (0: cd_faiss_train_size of the key)"},
    {"max-index-memory", CD_OPT_FLOAT, &mem_gb, "4", "GiB budget for the choice"},
    {"threads", CD_OPT_INT, &threads, "0", "FAISS threads (0: all)"},
    {"out", CD_OPT_STR, &out, NULL, "also append the report to this file"},
    {0}};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// Unit vectors of low intrinsic dimension, like CLIP embeddings: x = normalise(P z + noise g)
// with z ~ N(0, I_r), P a fixed random d x r map, g ~ N(0, I_d / d); r = 0 gives isotropic
// Gaussian vectors (the worst case for any approximate index).
static void synth(float *x, int64_t m, uint64_t seed, const float *P) {
    cd_rng r;
    cd_rng_seed(&r, seed);
    cd_rng_normal(&r, x, (size_t)m * d);
    if (P) {
        float *z = malloc((size_t)m * intrinsic * sizeof(float));
        cd_rng_normal(&r, z, (size_t)m * intrinsic);
        // x = noise/sqrt(d) * g + z P^T / sqrt(r)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, d, intrinsic, 1.0f / sqrtf((float)intrinsic), z,
                    intrinsic, P, intrinsic, (float)(noise / sqrt(d)), x, d);
        free(z);
    }
    for (int64_t i = 0; i < m; i++) {
        float *v = x + i * d;
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)v[j] * v[j];
        for (int j = 0; j < d; j++) v[j] /= (float)sqrt(s);
    }
}

static void report(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(FILE *f, const char *fmt, ...) {
    va_list a;
    va_start(a, fmt);
    vprintf(fmt, a);
    va_end(a);
    if (f) { va_start(a, fmt); vfprintf(f, fmt, a); va_end(a); fflush(f); }
    fflush(stdout);
}

static void die(void) { fprintf(stderr, "bench_index: %s\n", cd_errmsg()); exit(1); }

int main(int argc, char **argv) {
    int r = cd_cli_parse("bench_index", "FAISS index vs exact search: latency, QPS, recall@k", opts, argc, argv, NULL, NULL);
    if (r) return r < 0 ? 2 : 0;
    cd_faiss_set_threads(threads);
    float *c = NULL;
    if (intrinsic > 0) {
        c = malloc((size_t)d * intrinsic * sizeof(float));
        cd_rng rr;
        cd_rng_seed(&rr, 7);
        cd_rng_normal(&rr, c, (size_t)d * intrinsic);
    }
    float *x = malloc((size_t)n * d * sizeof(float)), *q = malloc((size_t)nq * d * sizeof(float));
    synth(x, n, 1, c);
    synth(q, nq, 2, c);
    FILE *f = out ? fopen(out, "a") : NULL;
    char host[64] = "?";
    gethostname(host, sizeof host);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    report(f, "bench_index: n=%lld d=%d nq=%d k=%d intrinsic=%d noise=%.2f, %ld CPU cores on %s%s\n", (long long)n, d, nq, k,
           intrinsic, noise,
           ncpu, host, n < 1000000 ? " (scaled down from the issue's 1M: --n)" : "");
    const char *ct = getenv("OPENBLAS_CORETYPE"), *wp = getenv("OMP_WAIT_POLICY");
    report(f, "  OpenBLAS core %s (OPENBLAS_CORETYPE=%s), OMP_WAIT_POLICY=%s, FAISS threads %d\n",
           openblas_get_corename ? openblas_get_corename() : "?", ct ? ct : "unset", wp ? wp : "unset",
           cd_faiss_get_threads());
    // exact search
    cd_faiss *flat, *ix;
    if (cd_faiss_new(&flat, d, "Flat") || cd_faiss_add(flat, n, x, NULL)) die();
    float *dist = malloc((size_t)nq * k * sizeof(float));
    int64_t *gt = malloc((size_t)nq * k * 8), *ids = malloc((size_t)nq * k * 8);
    if (cd_faiss_knn_exact(q, nq, x, n, d, k, dist, gt)) die();
    double e_avg, e_p99, e_qps;
    if (cd_faiss_measure(flat, q, nq, k, 3.0, &e_avg, &e_p99, &e_qps)) die();
    cd_faiss_free(flat);
    report(f, "  %-40s build %7.1f s  1-query %8.3f ms (p99 %8.3f)  batch %9.1f QPS  recall@%d %.4f\n", "Flat (exact)",
           0.0, e_avg, e_p99, e_qps, k, 1.0);
    // the chosen index
    char key[256], chosen[256];
    double budget = mem_gb * (1 << 30);
    if (cd_faiss_choose_key(n, d, budget, chosen, sizeof chosen)) die();
    report(f, "  chooser (autofaiss rules, --max-index-memory %.3g GiB): %s, est. %.2f GiB (train %lld)%s\n", mem_gb,
           chosen, cd_faiss_estimate_size(chosen, n, d) / (1 << 30), (long long)cd_faiss_train_size(chosen, n),
           factory ? "; running --factory instead" : "");
    snprintf(key, sizeof key, "%s", factory ? factory : chosen);
    double t0 = now();
    if (cd_faiss_new(&ix, d, key)) die();
    int64_t ts = cd_faiss_train_size(key, n);
    if (ts && ntrain > 0) ts = ntrain < n ? ntrain : n;
    if (ts && cd_faiss_train(ix, ts, x)) die();
    if (cd_faiss_add(ix, n, x, NULL)) die();
    double build = now() - t0;
    printf("  (%s: trained on %lld, built in %.1f s)\n", key, (long long)ts, build);
    fflush(stdout);
    // tune on half the queries, report on the other half
    int h = nq / 2;
    cd_faiss_tuning t;
    if (cd_faiss_tune(ix, key, q, h, gt, k, target, &t)) die();
    if (cd_faiss_search(ix, nq - h, d, q + (int64_t)h * d, k, dist, ids)) die();
    double rec = cd_faiss_recall(ids, gt + (int64_t)h * k, nq - h, k);
    double a_avg, a_p99, a_qps;
    if (cd_faiss_measure(ix, q + (int64_t)h * d, nq - h, k, 3.0, &a_avg, &a_p99, &a_qps)) die();
    char label[300];
    snprintf(label, sizeof label, "%s %s", key, t.params);
    report(f, "  %-40s build %7.1f s  1-query %8.3f ms (p99 %8.3f)  batch %9.1f QPS  recall@%d %.4f (held-out)\n", label,
           build, a_avg, a_p99, a_qps, k, rec);
    report(f, "  speed-up vs exact: %.1fx single-query latency, %.1fx batch QPS, at recall@%d %.4f (target %.2f)\n",
           e_avg / a_avg, a_qps / e_qps, k, rec, target);
    if (f) fclose(f);
    cd_faiss_free(ix);
    free(x); free(q); free(c); free(dist); free(gt); free(ids);
    return 0;
}
