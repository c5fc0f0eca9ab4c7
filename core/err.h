// Errors: library code returns 0 on success and -1 on failure, after recording a message
// in a thread-local buffer that names the file, key or URL and what was wrong. Callers add
// context on the way up with cd_errctx; only a stage's main prints it and decides to exit.
#ifndef CD_ERR_H
#define CD_ERR_H
#include <stddef.h>

// Record an error message (printf-style). Always returns -1.
int cd_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prepend context: "ctx: previous message". Always returns -1.
int cd_errctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Record errno's text after a message: "msg: strerror(errno)". Always returns -1.
int cd_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// The current thread's last message ("" when none).
const char *cd_errmsg(void);
void cd_errclear(void);

// Propagate a failure: CD_TRY(call) returns -1 from the enclosing function when call fails.
#define CD_TRY(x) do { if ((x) != 0) return -1; } while (0)

// Allocation that never returns NULL: out of memory is the one thing we abort on.
void *cd_malloc(size_t n);
void *cd_calloc(size_t n, size_t size);
void *cd_realloc(void *p, size_t n);
char *cd_strdup(const char *s);
// snprintf into a fresh heap string.
char *cd_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// For a stage's main: print "customdiff-<prog>: error: <msg>" to stderr and exit(code).
void cd_die(const char *prog, int code) __attribute__((noreturn));
#endif
