// safetensors read (mmap, validated header) and write (atomic).
// Format: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"k": "v"}}, then the data; offsets are relative to the data start.
// Validation: header length capped (100 MB), JSON an object, dtypes known, offsets inside
// the file, no two tensors overlapping, product(shape) * dtype size == end - begin.
#ifndef CD_SAFETENSORS_H
#define CD_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "core/fileio.h"

typedef enum { CD_F32 = 0, CD_F16, CD_BF16, CD_I32, CD_I64, CD_U8, CD_I8, CD_I16, CD_F64, CD_BOOL, CD_DTYPE_COUNT } cd_dtype;
const char *cd_dtype_name(cd_dtype t);   // "F32", ...
size_t cd_dtype_size(cd_dtype t);
int cd_dtype_parse(const char *s, cd_dtype *out);

#define CD_MAX_DIMS 8
typedef struct {
    char *name;
    cd_dtype dtype;
    int ndim;
    int64_t shape[CD_MAX_DIMS];
    int64_t numel;
    const void *data;   // points into the map (may be unaligned for its type)
    size_t nbytes;
} cd_st_tensor;

typedef struct {
    char *path;
    cd_map map;
    int n;
    cd_st_tensor *t;       // sorted by name
    int nmeta;
    char **meta_key, **meta_val;   // __metadata__ (string values)
} cd_st_file;

int cd_st_open(cd_st_file *f, const char *path);
// Validate a safetensors image in memory (also used by the fuzzer); f->map is not owned.
int cd_st_parse(cd_st_file *f, const void *data, size_t size, const char *what);
void cd_st_close(cd_st_file *f);
const cd_st_tensor *cd_st_find(const cd_st_file *f, const char *name);
const char *cd_st_meta(const cd_st_file *f, const char *key);   // NULL when absent
// Convert a tensor to fp32 into dst (numel floats). Float and integer dtypes convert.
void cd_st_to_f32(const cd_st_tensor *t, float *dst);
// Find + check the element count + convert; error names the file and tensor.
int cd_st_read_f32(const cd_st_file *f, const char *name, float *dst, int64_t numel);
// Find + convert into a fresh heap array; optional shape check (ndim<0 skips it).
int cd_st_load_f32(const cd_st_file *f, const char *name, float **out, int64_t *numel);
// Same for integer tensors (I32, I64, U8...) into int64.
int cd_st_load_i64(const cd_st_file *f, const char *name, int64_t **out, int64_t *numel);

// Writer: collect tensors (data is copied unless ref=1) then save atomically.
typedef struct cd_st_writer cd_st_writer;
cd_st_writer *cd_st_writer_new(void);
void cd_st_writer_add(cd_st_writer *w, const char *name, cd_dtype dtype, int ndim, const int64_t *shape, const void *data);
// Add fp32 data stored as dtype (F32, F16 or BF16), converting.
void cd_st_writer_add_f32(cd_st_writer *w, const char *name, cd_dtype dtype, int ndim, const int64_t *shape, const float *data);
void cd_st_writer_meta(cd_st_writer *w, const char *key, const char *val);
int cd_st_writer_save(cd_st_writer *w, const char *path);
void cd_st_writer_free(cd_st_writer *w);
#endif
