// Progress for long work: on a TTY a one-line bar with count, rate and ETA redrawn at most
// 10 times a second; otherwise a plain line every `every_s` seconds (default 10) and at end.
#ifndef CD_PROGRESS_H
#define CD_PROGRESS_H
#include <stdint.h>
typedef struct {
    const char *what;
    int64_t total, done;
    double t0, last;
    int tty;
    double every_s;
} cd_progress;
void cd_progress_start(cd_progress *p, const char *what, int64_t total);
void cd_progress_update(cd_progress *p, int64_t done, const char *extra);  // extra may be NULL
void cd_progress_end(cd_progress *p, const char *extra);
double cd_now(void);   // monotonic seconds
#endif
