// Progress reporting: a redrawn bar on a TTY, plain periodic lines otherwise (stderr).
#include "core/progress.h"
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cd_progress_start(cd_progress *p, const char *what, int64_t total) {
    memset(p, 0, sizeof *p);
    p->what = what ? what : "";
    p->total = total;
    p->t0 = p->last = cd_now();
    p->tty = isatty(2);
    p->every_s = 10;
}

static void fmt_eta(double s, char *out, size_t n) {
    if (s < 0 || s > 1e7) { snprintf(out, n, "?"); return; }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%dh%02dm", t / 3600, t / 60 % 60);
    else snprintf(out, n, "%dm%02ds", t / 60, t % 60);
}

static void draw(cd_progress *p, const char *extra, int final) {
    double el = cd_now() - p->t0;
    double rate = el > 0 ? p->done / el : 0;
    char eta[32] = "";
    if (p->total > 0 && rate > 0) fmt_eta((p->total - p->done) / rate, eta, sizeof eta);
    if (p->tty) {
        char bar[31];
        int w = 30, fill = p->total > 0 ? (int)(w * (double)p->done / p->total) : 0;
        if (fill > w) fill = w;
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        if (p->total > 0)
            fprintf(stderr, "\r%s [%s] %lld/%lld %.1f/s ETA %s %s\033[K", p->what, bar,
                    (long long)p->done, (long long)p->total, rate, eta, extra ? extra : "");
        else
            fprintf(stderr, "\r%s %lld %.1f/s %s\033[K", p->what, (long long)p->done, rate,
                    extra ? extra : "");
        if (final) fputc('\n', stderr);
    } else {
        if (p->total > 0)
            fprintf(stderr, "%s: %lld/%lld (%.1f%%) %.1f/s%s%s%s%s\n", p->what, (long long)p->done,
                    (long long)p->total, 100.0 * p->done / p->total, rate, eta[0] ? " ETA " : "",
                    eta, extra ? " " : "", extra ? extra : "");
        else
            fprintf(stderr, "%s: %lld %.1f/s%s%s\n", p->what, (long long)p->done, rate,
                    extra ? " " : "", extra ? extra : "");
    }
    fflush(stderr);
}

void cd_progress_update(cd_progress *p, int64_t done, const char *extra) {
    p->done = done;
    double t = cd_now();
    double every = p->tty ? 0.1 : (p->every_s > 0 ? p->every_s : 10);
    if (t - p->last < every) return;
    p->last = t;
    draw(p, extra, 0);
}

void cd_progress_end(cd_progress *p, const char *extra) {
    draw(p, extra, 1);
}
