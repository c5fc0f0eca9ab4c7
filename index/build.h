// Building, appending to and tuning an index folder (see index/main.c for the layout).
#ifndef CD_INDEX_BUILD_H
#define CD_INDEX_BUILD_H
#include <stdint.h>
#include "core/faiss.h"
#include "index/inputs.h"

typedef struct {
    const char *out_dir;
    const char *factory;     // NULL: autofaiss's choice
    int append;
    double max_mem;          // bytes
    double target_recall;
    int k, tune_queries;
    double query_noise;
    uint64_t seed;
    const char *model;
    const char **sources;
    int nsources;
} ix_build_opts;

typedef struct {
    char factory[256];
    int64_t count;           // vectors in the index after this run
    int d;
    cd_faiss_tuning tuning;
} ix_build_result;

// rows->x is L2-normalised in place.
int ix_build(const ix_build_opts *o, ix_rows *rows, ix_build_result *res);
#endif
