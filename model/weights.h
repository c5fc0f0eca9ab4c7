// A named set of fp32 tensors loaded from safetensors files. F32 data is used in place from
// the memory map when aligned (no copy); F16/BF16 are converted once into owned buffers.
// Names are the diffusers/transformers checkpoint keys; a loader may strip a prefix and
// rename keys (the single-file layouts) in one place, model/names.c.
#ifndef CD_WEIGHTS_H
#define CD_WEIGHTS_H
#include <stdint.h>
#include "core/safetensors.h"

typedef struct {
    char *name;
    int ndim;
    int64_t shape[CD_MAX_DIMS];
    int64_t numel;
    cd_dtype disk_dtype;
    float *data;       // fp32
    int owned;         // data is a heap buffer (else it points into a map)
    int used;          // set by cd_weights_get: unknown tensors are the ones never used
} cd_weight;

typedef struct {
    int n, cap;
    cd_weight *w;      // sorted by name after load
    int nfiles;
    cd_st_file *files[8];
    char *what;        // for messages: the file or folder these came from
} cd_weights;

// Rename callback: given a key, return a heap string with the new name, or NULL to drop.
typedef char *(*cd_rename_fn)(const char *key, void *ctx);

void cd_weights_init(cd_weights *ws, const char *what);
// Load every tensor of a file whose key starts with `prefix` (NULL = all), with the
// prefix removed, then renamed by fn (NULL = keep).
int cd_weights_load(cd_weights *ws, const char *path, const char *prefix, cd_rename_fn fn, void *ctx);
// Add a tensor (copied). Replaces an existing one of the same name.
void cd_weights_put(cd_weights *ws, const char *name, int ndim, const int64_t *shape, const float *data);
// Find by name (NULL when absent); marks it used.
cd_weight *cd_weights_find(cd_weights *ws, const char *name);
// Find and check the shape; error "<what>: tensor 'name' missing" or
// "<what>: tensor 'name' has shape [a,b], expected [c,d]".
int cd_weights_get(cd_weights *ws, const char *name, int ndim, const int64_t *shape, float **out);
// Same with printf-style name.
int cd_weights_getf(cd_weights *ws, float **out, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
// Make a tensor writable (copy out of the map if needed), e.g. before training it.
float *cd_weights_own(cd_weight *w);
// Names of tensors never used by a model: listed as a warning by the loaders.
int cd_weights_unused(const cd_weights *ws, char ***names, int *n);
void cd_weights_free(cd_weights *ws);
#endif
