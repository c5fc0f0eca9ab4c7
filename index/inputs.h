// Inputs of customdiff-index: embeddings (.npy) with row-aligned metadata (JSONL, CSV, TSV),
// or images (a folder) embedded with CLIP's vision tower.
#ifndef CD_INDEX_INPUTS_H
#define CD_INDEX_INPUTS_H
#include <stdint.h>

typedef struct {
    int64_t n;      // rows
    int d;          // dimension (0 until the first file)
    float *x;       // [n, d] fp32 (not yet normalised)
    char **meta;    // [n] JSON object text per row (heap)
    int64_t cap;
} ix_rows;

void ix_rows_free(ix_rows *r);

// Metadata rows of one file as JSON object texts: .jsonl/.json (one object per line),
// .csv (RFC 4180, header row) or .tsv (header row, tab-separated, no quoting). Every row
// must have "url" and "caption" (image_path may stand in for url). *rows is heap.
int ix_read_metadata(const char *path, char ***rows, int64_t *n);

// Append one .npy (float32/float16/float64, [N, D]) and its metadata file to r.
int ix_add_embeddings(ix_rows *r, const char *npy_path, const char *meta_path);

// Embed the images of a folder (jpg/png/webp, sorted by name) with the CLIP vision tower of
// the model folder clip_dir; caption from <stem>.txt beside the image when present; url is
// url_prefix + "/" + name when url_prefix is given, else file://<absolute path>.
int ix_add_images(ix_rows *r, const char *dir, const char *clip_dir, const char *url_prefix, int batch);
// Embed the images of a preprocess store (core/store.h); url = the record's source,
// caption = its caption.
int ix_add_store(ix_rows *r, const char *path, const char *clip_dir, int batch);
#endif
