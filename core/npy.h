// NumPy .npy read/write (format 1.0/2.0/3.0, little-endian, C order).
#ifndef CD_NPY_H
#define CD_NPY_H
#include <stdint.h>
#include "core/safetensors.h"   // cd_dtype

typedef struct {
    cd_dtype dtype;     // F32, F16, F64, I32, I64, U8 ...
    int ndim;
    int64_t shape[CD_MAX_DIMS];
    int64_t numel;
    void *data;         // heap, owned
} cd_npy;

int cd_npy_read(const char *path, cd_npy *out);
int cd_npy_parse(const void *buf, size_t len, const char *what, cd_npy *out);   // fuzz target
// Convert to fp32 (F32, F16, F64, BF16 are accepted).
int cd_npy_to_f32(const cd_npy *a, float **out);
void cd_npy_free(cd_npy *a);
int cd_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);
#endif
