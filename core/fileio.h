// Files: whole-file reads with a size cap, atomic writes (temp file + fsync + rename),
// read-only memory maps, directories.
#ifndef CD_FILEIO_H
#define CD_FILEIO_H
#include <stddef.h>
#include <stdint.h>

// Read a whole file into a NUL-terminated heap buffer (*len excludes the NUL).
// Fails if the file is larger than max_bytes (0 = no cap).
int cd_read_file(const char *path, char **data, size_t *len, size_t max_bytes);
// Write atomically: PATH.tmp.<pid> is written, fsynced, then renamed over path.
int cd_write_file_atomic(const char *path, const void *data, size_t len);
// Open a temp file beside path for an atomic write; cd_atomic_commit renames it into place.
typedef struct { char *path; char *tmp; void *fp; } cd_atomic;
int cd_atomic_open(cd_atomic *a, const char *path);   // a->fp is a FILE*
int cd_atomic_commit(cd_atomic *a);                   // fflush+fsync+close+rename
void cd_atomic_abort(cd_atomic *a);                   // close+unlink the temp file

// Read-only mmap of a whole file. An empty file maps to data=NULL,size=0.
typedef struct { void *data; size_t size; } cd_map;
int cd_map_file(cd_map *m, const char *path);
void cd_unmap(cd_map *m);

int cd_mkdirs(const char *path);          // mkdir -p
int cd_path_exists(const char *path);
int cd_is_dir(const char *path);
// Join two path parts with one '/'. Returns a heap string.
char *cd_path_join(const char *a, const char *b);
// List the regular files of a folder (not recursive), sorted by name; names only.
int cd_list_dir(const char *dir, char ***names, int *n);
void cd_free_strv(char **v, int n);
#endif
