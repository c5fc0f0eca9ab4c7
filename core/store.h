// The image store: one LMDB environment (a folder with data.mdb and lock.mdb) holding
// processed JPEGs with their captions and provenance. Schema (versioned, readable from
// Python's `lmdb` package): manifests/schema/store.md. In short:
//   sub-DB "records":  b"%010d" (0-based insertion index)   -> record value (below)
//   sub-DB "sha256":   64 lower-case hex chars of sha256(original bytes) -> b"%010d" key
//   sub-DB "manifest": b"%010d" (entry ordinal: the order the writer first saw each input,
//                      dense) -> one JSON object naming the input by its "id" (source)
//   sub-DB "meta":     b"info" -> JSON {schema_version, resolution, resize_mode, ...}
//   record value = b"CDR1" | uint32 little-endian n | n bytes UTF-8 JSON | JPEG bytes
// One writer process at a time (LMDB's writer lock); any number of readers, also while a
// writer runs (readers see the last committed batch). Do not open one store twice in one
// process (LMDB rule): a writer handle also serves reads.
#ifndef CD_STORE_H
#define CD_STORE_H
#include <stddef.h>
#include <stdint.h>

#define CD_STORE_SCHEMA_VERSION 2       // 2: manifest keyed by first-seen order, entries carry "id"
#define CD_STORE_KEY_FMT "%010lld"        // record and manifest keys: (long long) index

typedef struct {
    int schema_version;        // CD_STORE_SCHEMA_VERSION of the writer
    int resolution;            // target size in pixels (e.g. 512)
    char resize_mode[32];      // "center_crop", "keep_ratio", "border", "no"
    int jpeg_quality;          // e.g. 95
    int64_t count;             // records committed
    char tool[64];             // e.g. "customdiff-preprocess"
    char tool_version[32];     // e.g. "0.1.0"
} cd_store_info;

typedef struct {
    uint8_t *jpeg;             // processed JPEG bytes (heap in records returned by get)
    size_t jpeg_len;
    char *caption;             // UTF-8
    char *source;              // URL or file path the image came from
    char sha256[65];           // hex sha256 of the ORIGINAL (downloaded / file) bytes
    int width, height;         // stored (processed) image size
    int original_width, original_height;   // decoded size before resizing (after EXIF rotation)
    int64_t original_bytes;    // size of the original bytes
} cd_store_rec;

typedef struct cd_store cd_store;

// Open an existing store read-only (MDB_RDONLY | MDB_NOTLS: a handle may be shared by threads).
int cd_store_open(const char *path, cd_store **out);
// Open or create a store for writing. initial_map_bytes: LMDB map size to start with
// (0 = 256 MiB); the map doubles whenever LMDB reports it full.
int cd_store_open_write(const char *path, size_t initial_map_bytes, cd_store **out);
// Closes (a writer's uncommitted batch is dropped: call cd_store_commit first).
void cd_store_close(cd_store *s);

int64_t cd_store_count(cd_store *s);               // committed records (-1 on error)
int cd_store_get_info(cd_store *s, cd_store_info *info);
// Record i (0 <= i < count): every member is a fresh heap copy; free with cd_store_rec_free.
int cd_store_get(cd_store *s, int64_t i, cd_store_rec *r);
void cd_store_rec_free(cd_store_rec *r);
// Walk records in key order; fn returns nonzero to stop (that value is returned).
typedef int (*cd_store_iter_fn)(void *user, int64_t i, const cd_store_rec *r);
int cd_store_iter(cd_store *s, cd_store_iter_fn fn, void *user);

// Record value codec (exposed for tests and tools): encode to a heap buffer / decode a value.
int cd_store_encode_rec(const cd_store_rec *r, uint8_t **val, size_t *len);
int cd_store_decode_rec(const void *val, size_t len, const char *what, cd_store_rec *r);

// ---- writer: operations are batched in memory and written by cd_store_commit in one
// transaction (replayed after growing the map on MDB_MAP_FULL) ----
// Set resolution, resize mode, quality, tool (count and schema_version are kept by the store).
int cd_store_set_info(cd_store *s, const cd_store_info *info);
// Is an image with this original sha256 stored (committed or in the batch)? 1 yes (*index
// set), 0 no, -1 error.
int cd_store_find_sha(cd_store *s, const char *sha_hex, int64_t *index);
// Append a record (copied into the batch); *index gets its insertion index.
int cd_store_add(cd_store *s, const cd_store_rec *r, int64_t *index);
// Replace the caption of stored record i (same key, image and sha256; committed or in the
// batch). Used when a rerun gives an already stored input a new caption.
int cd_store_set_caption(cd_store *s, int64_t i, const char *caption);
// Manifest entries (the writing tool's per-input state), keyed by entry ordinal.
int cd_store_put_manifest(cd_store *s, int64_t ordinal, const char *json);
// 1 found (*json heap), 0 absent, -1 error. Sees the uncommitted batch too.
int cd_store_get_manifest(cd_store *s, int64_t ordinal, char **json);
typedef int (*cd_store_manifest_fn)(void *user, int64_t ordinal, const char *json);
int cd_store_iter_manifest(cd_store *s, cd_store_manifest_fn fn, void *user);   // committed only
int cd_store_commit(cd_store *s);
int cd_store_batch_ops(const cd_store *s);          // operations waiting for commit
size_t cd_store_map_size(const cd_store *s);        // current LMDB map size in bytes
int cd_store_map_growths(const cd_store *s);        // times the map was grown by this handle
#endif
