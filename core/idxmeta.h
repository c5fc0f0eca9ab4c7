// The id -> metadata store of an index folder: an LMDB environment (a directory holding
// data.mdb + lock.mdb, e.g. OUT/metadata.lmdb). Keys are ids as 12-digit zero-padded
// decimal ASCII (lexicographic = numeric, so bulk loads use MDB_APPEND); values are one
// JSON object per id ({"url": ..., "caption": ..., ...}). The key "__len__" holds the count.
// Shared by customdiff-index (writes) and customdiff-retrieve (reads).
#ifndef CD_IDXMETA_H
#define CD_IDXMETA_H
#include <stddef.h>
#include <stdint.h>

typedef struct cd_idxmeta cd_idxmeta;

// Open (write=1 creates the folder). A reader opens read-only without a lock file.
int cd_idxmeta_open(cd_idxmeta **out, const char *dir, int write);
void cd_idxmeta_close(cd_idxmeta *m);
// Buffered puts: committed every 2000 puts and by cd_idxmeta_commit (which also stores
// __len__ = the largest id + 1 seen so far, and syncs).
int cd_idxmeta_put(cd_idxmeta *m, int64_t id, const char *json, size_t len);
int cd_idxmeta_commit(cd_idxmeta *m);
// Fetch one id's JSON into a fresh heap string. Returns 1 (no error) when the id is absent.
int cd_idxmeta_get(cd_idxmeta *m, int64_t id, char **json);
// The stored count (__len__), 0 for an empty store.
int64_t cd_idxmeta_count(cd_idxmeta *m);
#endif
