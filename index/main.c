// customdiff-index: embeddings (.npy + metadata) or images (CLIP vision) -> a FAISS index
// (inner product on L2-normalised vectors), an id -> metadata LMDB and index.json.
//   OUT/index.faiss     FAISS index, ids = row numbers (0.. in input order; --append goes on)
//   OUT/metadata.lmdb/  id -> JSON metadata (core/idxmeta.h)
//   OUT/index.json      dimension, count, factory, model, recall, latency, search params
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <math.h>
#include "core/cli.h"
#include "core/err.h"
#include "core/faiss.h"
#include "core/fileio.h"
#include "core/idxmeta.h"
#include "core/json.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "index/build.h"
#include "index/inputs.h"
#include "model/clip.h"

static cd_strlist embeddings, metadata, images;
static const char *out_dir, *factory, *clip_dir, *model_name, *url_prefix, *store;
static int append, k_recall, tune_queries, threads, seed, batch;
static double target_recall, max_mem_gb, query_noise;

static cd_opt opts[] = {
    {"embeddings", CD_OPT_STRLIST, &embeddings, NULL, "embeddings .npy (float32/float16, N x D); repeatable"},
    {"metadata", CD_OPT_STRLIST, &metadata, NULL, "row-aligned metadata (.jsonl/.csv/.tsv with url, caption), one per --embeddings"},
    {"images", CD_OPT_STRLIST, &images, NULL, "folder of images to embed with --clip (captions from <stem>.txt); repeatable"},
    {"store", CD_OPT_STR, &store, NULL, "an image store (LMDB) from customdiff-preprocess, embedded with --clip"},
    {"clip", CD_OPT_STR, &clip_dir, NULL, "CLIP model folder (for --images; recorded as the model)"},
    {"url-prefix", CD_OPT_STR, &url_prefix, NULL, "for --images: url = PREFIX/<file name> instead of file://"},
    {"out", CD_OPT_STR, &out_dir, "index", "output folder"},
    {"factory", CD_OPT_STR, &factory, NULL, "FAISS factory string (default: chosen like autofaiss)"},
    {"append", CD_OPT_FLAG, &append, "0", "add to the index already in --out"},
    {"max-index-memory", CD_OPT_FLOAT, &max_mem_gb, "4", "memory budget of the index in GiB (for the choice)"},
    {"recall", CD_OPT_FLOAT, &target_recall, "0.95", "target k-recall@k when tuning nprobe / efSearch"},
    {"k", CD_OPT_INT, &k_recall, "20", "k of the recall target"},
    {"tune-queries", CD_OPT_INT, &tune_queries, "200", "held-out queries for tuning"},
    {"query-noise", CD_OPT_FLOAT, &query_noise, "0.5", "tuning queries = normalise(x + noise * N(0, I/D))"},
    {"model", CD_OPT_STR, &model_name, NULL, "model name recorded in index.json (default: --clip)"},
    {"batch", CD_OPT_INT, &batch, "16", "images per CLIP batch"},
    {"threads", CD_OPT_INT, &threads, "0", "FAISS threads (0: all cores)"},
    {"seed", CD_OPT_INT, &seed, "0", "seed of the training sample and tuning queries"},
    {0}};

static void load_inputs(ix_rows *rows) {
    if (embeddings.n != metadata.n) {
        cd_err("%d --embeddings but %d --metadata: give one metadata file per embeddings file", embeddings.n, metadata.n);
        cd_die("index", 2);
    }
    if (!(target_recall > 0 && target_recall <= 1) || k_recall < 1 || batch < 1 || tune_queries < 0 || threads < 0 ||
        !(max_mem_gb > 0 && isfinite(max_mem_gb)) || !isfinite(query_noise) || query_noise < 0) {
        cd_err("--recall must be in (0, 1], --k and --batch >= 1, --tune-queries and --threads >= 0, "
               "--max-index-memory > 0, --query-noise >= 0");
        cd_die("index", 2);
    }
    if (embeddings.n == 0 && images.n == 0 && !store) {
        cd_err("nothing to index: give --embeddings + --metadata, --images or --store (see --help)");
        cd_die("index", 2);
    }
    for (int i = 0; i < embeddings.n; i++)
        if (ix_add_embeddings(rows, embeddings.v[i], metadata.v[i]) != 0) cd_die("index", 1);
    if ((images.n || store) && !clip_dir) {
        cd_err("--images and --store need --clip MODEL (the CLIP folder to embed with)");
        cd_die("index", 2);
    }
    for (int i = 0; i < images.n; i++)
        if (ix_add_images(rows, images.v[i], clip_dir, url_prefix, batch) != 0) cd_die("index", 1);
    if (store && ix_add_store(rows, store, clip_dir, batch) != 0) cd_die("index", 1);
}

int main(int argc, char **argv) {
    int r = cd_cli_parse("index", "build a FAISS index + id->metadata store from embeddings or images", opts,
                         argc, argv, NULL, NULL);
    if (r == 1) return 0;
    if (r < 0) cd_die("index", 2);
    cd_faiss_set_threads(threads);
    ix_rows rows;
    memset(&rows, 0, sizeof rows);
    load_inputs(&rows);
    ix_build_opts bo = {
        .out_dir = out_dir, .factory = factory, .append = append, .max_mem = max_mem_gb * (1 << 30),
        .target_recall = target_recall, .k = k_recall, .tune_queries = tune_queries,
        .query_noise = query_noise, .seed = (uint64_t)seed,
        .model = model_name ? model_name : clip_dir ? clip_dir : "unknown"};
    bo.sources = cd_calloc((size_t)(embeddings.n + images.n) + 2, sizeof(char *));
    for (int i = 0; i < embeddings.n; i++) bo.sources[bo.nsources++] = embeddings.v[i];
    for (int i = 0; i < images.n; i++) bo.sources[bo.nsources++] = images.v[i];
    if (store) bo.sources[bo.nsources++] = store;
    ix_build_result res;
    if (ix_build(&bo, &rows, &res) != 0) cd_die("index", 1);
    printf("customdiff-index: wrote %s/index.faiss (%s, %lld vectors of dimension %d, recall@%d %.3f at '%s', %.3f ms/query), "
           "%s/metadata.lmdb, %s/index.json\n",
           out_dir, res.factory, (long long)res.count, res.d, res.tuning.k, res.tuning.recall, res.tuning.params,
           res.tuning.avg_ms, out_dir, out_dir);
    free(bo.sources);
    ix_rows_free(&rows);
    return 0;
}
