#include "core/log.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int cd_log_level = -1;
static const char *names[] = {"error", "warn", "info", "debug"};

void cd_log(int level, const char *fmt, ...) {
    if (cd_log_level < 0) {
        const char *e = getenv("CD_LOG_LEVEL");
        cd_log_level = e ? atoi(e) : 2;
    }
    if (level > cd_log_level) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[customdiff] %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}
