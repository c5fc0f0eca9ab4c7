#include "core/err.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CD_ERR_CAP 2048
static _Thread_local char err_buf[CD_ERR_CAP];

int cd_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int cd_errctx(const char *fmt, ...) {
    char ctx[CD_ERR_CAP], old[CD_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    if (old[0]) snprintf(err_buf, sizeof err_buf, "%s: %s", ctx, old);
    else snprintf(err_buf, sizeof err_buf, "%s", ctx);
    return -1;
}

int cd_errno(const char *fmt, ...) {
    int e = errno;
    char msg[CD_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err_buf, sizeof err_buf, "%s: %s", msg, strerror(e));
    return -1;
}

const char *cd_errmsg(void) { return err_buf; }
void cd_errclear(void) { err_buf[0] = 0; }

static void oom(size_t n) {
    fprintf(stderr, "customdiff: out of memory allocating %zu bytes\n", n);
    exit(3);   // a clear failure, not a crash (abort's 134): the caller has nothing to free
}
void *cd_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}
void *cd_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}
void *cd_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}
char *cd_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = cd_malloc(n);
    memcpy(d, s, n);
    return d;
}
char *cd_fmt(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = cd_malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

void cd_die(const char *prog, int code) {
    fprintf(stderr, "customdiff-%s: error: %s\n", prog, err_buf[0] ? err_buf : "unknown error");
    exit(code);
}
