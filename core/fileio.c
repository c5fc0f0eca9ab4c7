#include "core/fileio.h"
#include "core/err.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int cd_read_file(const char *path, char **data, size_t *len, size_t max_bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return cd_errno("cannot open %s", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0) { fclose(f); return cd_errno("cannot stat %s", path); }
    if (S_ISDIR(st.st_mode)) { fclose(f); return cd_err("%s is a directory, expected a file", path); }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 4096, n = 0;
    if (max_bytes && (size_t)st.st_size > max_bytes) {
        fclose(f);
        return cd_err("%s is %lld bytes, more than the limit of %zu", path, (long long)st.st_size, max_bytes);
    }
    char *buf = cd_malloc(cap + 1);
    for (;;) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            if (max_bytes && cap >= max_bytes) { free(buf); fclose(f); return cd_err("%s is larger than the limit of %zu bytes", path, max_bytes); }
            cap *= 2;
            buf = cd_realloc(buf, cap + 1);
        }
    }
    if (ferror(f)) { free(buf); fclose(f); return cd_errno("read error on %s", path); }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return 0;
}

int cd_atomic_open(cd_atomic *a, const char *path) {
    a->path = cd_strdup(path);
    a->tmp = cd_fmt("%s.tmp.%d", path, (int)getpid());
    a->fp = fopen(a->tmp, "wb");
    if (!a->fp) {
        cd_errno("cannot create %s", a->tmp);
        free(a->path); free(a->tmp);
        a->path = a->tmp = NULL;
        return -1;
    }
    return 0;
}

int cd_atomic_commit(cd_atomic *a) {
    FILE *f = a->fp;
    int rc = 0;
    if (fflush(f) != 0 || ferror(f)) rc = cd_errno("write error on %s", a->tmp);
    else if (fsync(fileno(f)) != 0) rc = cd_errno("fsync failed on %s", a->tmp);
    if (fclose(f) != 0 && rc == 0) rc = cd_errno("close failed on %s", a->tmp);
    if (rc == 0 && rename(a->tmp, a->path) != 0) rc = cd_errno("cannot rename %s to %s", a->tmp, a->path);
    if (rc != 0) unlink(a->tmp);
    free(a->path); free(a->tmp);
    a->path = a->tmp = NULL; a->fp = NULL;
    return rc;
}

void cd_atomic_abort(cd_atomic *a) {
    if (a->fp) fclose(a->fp);
    if (a->tmp) unlink(a->tmp);
    free(a->path); free(a->tmp);
    a->path = a->tmp = NULL; a->fp = NULL;
}

int cd_write_file_atomic(const char *path, const void *data, size_t len) {
    cd_atomic a;
    CD_TRY(cd_atomic_open(&a, path));
    if (len && fwrite(data, 1, len, a.fp) != len) {
        cd_errno("write error on %s", a.tmp);
        cd_atomic_abort(&a);
        return -1;
    }
    return cd_atomic_commit(&a);
}

int cd_map_file(cd_map *m, const char *path) {
    m->data = NULL; m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cd_errno("cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return cd_errno("cannot stat %s", path); }
    if (S_ISDIR(st.st_mode)) { close(fd); return cd_err("%s is a directory, expected a file", path); }
    if (st.st_size == 0) { close(fd); return 0; }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return cd_errno("cannot mmap %s", path);
    m->data = p; m->size = (size_t)st.st_size;
    return 0;
}

void cd_unmap(cd_map *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL; m->size = 0;
}

int cd_mkdirs(const char *path) {
    char *p = cd_strdup(path);
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) { cd_errno("cannot create directory %s", p); free(p); return -1; }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    if (!cd_is_dir(path)) return cd_err("%s exists and is not a directory", path);
    return 0;
}

int cd_path_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }
int cd_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }

char *cd_path_join(const char *a, const char *b) {
    size_t la = strlen(a);
    if (la && a[la - 1] == '/') return cd_fmt("%s%s", a, b);
    return cd_fmt("%s/%s", a, b);
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

int cd_list_dir(const char *dir, char ***names, int *n) {
    DIR *d = opendir(dir);
    if (!d) return cd_errno("cannot open directory %s", dir);
    int cap = 16, cnt = 0;
    char **v = cd_malloc(sizeof(char *) * cap);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *full = cd_path_join(dir, e->d_name);
        struct stat st;
        int reg = stat(full, &st) == 0 && S_ISREG(st.st_mode);
        free(full);
        if (!reg) continue;
        if (cnt == cap) { cap *= 2; v = cd_realloc(v, sizeof(char *) * cap); }
        v[cnt++] = cd_strdup(e->d_name);
    }
    closedir(d);
    qsort(v, cnt, sizeof(char *), cmp_str);
    *names = v; *n = cnt;
    return 0;
}

void cd_free_strv(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}
