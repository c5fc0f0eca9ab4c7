// Training logs: RUN/train.log (one line per optimizer step), RUN/metrics.json and
// RUN/loss.png (loss curve) at the end. On resume, train.log lines past the checkpoint's
// step are dropped so the history matches the resumed run.
#include "train/train.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/progress.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void push(cd_trainlog *l, int64_t step, double loss, double li, double lp, double gn,
                 double lr, double ms) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->step = cd_realloc(l->step, sizeof(int64_t) * l->cap);
        double **arr[] = {&l->loss, &l->loss_inst, &l->loss_prior, &l->gnorm, &l->lr, &l->ms};
        for (int i = 0; i < 6; i++) *arr[i] = cd_realloc(*arr[i], sizeof(double) * l->cap);
    }
    l->step[l->n] = step;
    l->loss[l->n] = loss;
    l->loss_inst[l->n] = li;
    l->loss_prior[l->n] = lp;
    l->gnorm[l->n] = gn;
    l->lr[l->n] = lr;
    l->ms[l->n] = ms;
    l->n++;
}

#define LINE_FMT "step %lld loss %.6f instance %.6f prior %.6f lr %.6g grad_norm %.6f ms %.1f images/s %.2f\n"

// Re-read an existing train.log up to max_step (resume), then rewrite it.
static void reload(cd_trainlog *l, const char *path, int64_t max_step) {
    char *text = NULL;
    size_t len;
    if (cd_read_file(path, &text, &len, 256 << 20)) { cd_errclear(); return; }
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        long long s;
        double lo, li, lp, lr, gn, ms, ips;
        if (sscanf(line, "step %lld loss %lf instance %lf prior %lf lr %lf grad_norm %lf ms %lf images/s %lf",
                   &s, &lo, &li, &lp, &lr, &gn, &ms, &ips) == 8 && s <= max_step)
            push(l, s, lo, li, lp, gn, lr, ms);
    }
    free(text);
}

int cd_trainlog_open(cd_trainlog *l, const char *run_dir, int64_t resume_step) {
    memset(l, 0, sizeof *l);
    l->run_dir = cd_strdup(run_dir);
    l->t0 = cd_now();
    char *path = cd_path_join(run_dir, "train.log");
    if (resume_step > 0) reload(l, path, resume_step);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        int rc = cd_errno("%s", path);
        free(path);
        return rc;
    }
    for (int i = 0; i < l->n; i++)
        fprintf(fp, LINE_FMT, (long long)l->step[i], l->loss[i], l->loss_inst[i], l->loss_prior[i],
                l->lr[i], l->gnorm[i], l->ms[i], 0.0);
    fflush(fp);
    l->fp = fp;
    free(path);
    return 0;
}

void cd_trainlog_add(cd_trainlog *l, int64_t step, const cd_step_stats *st, int batch_images) {
    push(l, step, st->loss, st->loss_inst, st->loss_prior, st->grad_norm, st->lr, st->ms);
    double ips = st->ms > 0 ? st->images / (st->ms / 1000.0) : 0;
    if (l->fp) {
        fprintf(l->fp, LINE_FMT, (long long)step, st->loss, st->loss_inst, st->loss_prior, st->lr,
                st->grad_norm, st->ms, ips);
        fflush(l->fp);
    }
}

// ---- loss-curve plot -------------------------------------------------------------------

static void px_set(cd_image *im, int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->rgb + ((size_t)y * im->w + x) * 3, c, 3);
}

static void line(cd_image *im, int x0, int y0, int x1, int y1, const uint8_t c[3]) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        px_set(im, x0, y0, c);
        px_set(im, x0, y0 + 1, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) { err += dy; x0 += sx; }
        if (e2 <= dx) { err += dx; y0 += sy; }
    }
}

static void polyline(cd_image *im, const double *y, int n, double lo, double hi, int m,
                     const uint8_t c[3]) {
    int w = im->w - 2 * m, h = im->h - 2 * m;
    int px = -1, py = -1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) continue;
        int x = m + (n > 1 ? (int)((double)i * (w - 1) / (n - 1)) : w / 2);
        int yy = m + h - 1 - (int)((y[i] - lo) / (hi - lo) * (h - 1));
        if (px >= 0) line(im, px, py, x, yy, c);
        else px_set(im, x, yy, c);
        px = x;
        py = yy;
    }
}

int cd_plot_curve(const double *y, const double *y2, int n, int w, int h, cd_image *out) {
    if (w < 32 || h < 32) return cd_err("plot: %dx%d is too small", w, h);
    out->w = w;
    out->h = h;
    out->rgb = cd_malloc((size_t)w * h * 3);
    memset(out->rgb, 255, (size_t)w * h * 3);
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < 2; k++) {
        const double *v = k ? y2 : y;
        for (int i = 0; v && i < n; i++)
            if (isfinite(v[i])) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i]; }
    }
    if (!(hi > lo)) { lo = isfinite(lo) ? lo - 1 : 0; hi = lo + 2; }
    int m = 16;
    const uint8_t axis[3] = {0, 0, 0}, grid[3] = {225, 225, 225}, c1[3] = {31, 119, 180}, c2[3] = {255, 127, 14};
    for (int g = 1; g < 4; g++) {
        int yy = m + (h - 2 * m) * g / 4;
        for (int x = m; x < w - m; x++) px_set(out, x, yy, grid);
    }
    line(out, m, m, m, h - m, axis);
    line(out, m, h - m, w - m, h - m, axis);
    if (y2) polyline(out, y2, n, lo, hi, m, c2);
    polyline(out, y, n, lo, hi, m, c1);
    return 0;
}

// Mean of v over [a, b).
static double mean_range(const double *v, int a, int b) {
    double s = 0;
    int k = 0;
    for (int i = a; i < b; i++)
        if (isfinite(v[i])) { s += v[i]; k++; }
    return k ? s / k : NAN;
}

int cd_trainlog_finish(cd_trainlog *l, const cd_train_args *a, int64_t steps, double seconds) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "steps", (double)steps);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    int n = l->n, k = n >= 10 ? n / 10 : (n ? 1 : 0);
    if (n) {
        cJSON_AddNumberToObject(o, "loss_first", l->loss[0]);
        cJSON_AddNumberToObject(o, "loss_last", l->loss[n - 1]);
        cJSON_AddNumberToObject(o, "loss_first_10pct_mean", mean_range(l->loss, 0, k));
        cJSON_AddNumberToObject(o, "loss_last_10pct_mean", mean_range(l->loss, n - k, n));
        cJSON_AddNumberToObject(o, "ms_per_step_mean", mean_range(l->ms, 0, n));
        double ms = mean_range(l->ms, 0, n);
        int imgs = a->batch * (a->with_prior ? 2 : 1) * (a->accum > 0 ? a->accum : 1);
        cJSON_AddNumberToObject(o, "images_per_second", ms > 0 ? imgs / (ms / 1000.0) : 0);
    }
    cJSON *hist = cJSON_AddArrayToObject(o, "history");
    for (int i = 0; i < n; i++) {
        cJSON *h = cJSON_CreateObject();
        cJSON_AddNumberToObject(h, "step", (double)l->step[i]);
        cJSON_AddNumberToObject(h, "loss", l->loss[i]);
        cJSON_AddNumberToObject(h, "loss_instance", l->loss_inst[i]);
        cJSON_AddNumberToObject(h, "loss_prior", l->loss_prior[i]);
        cJSON_AddNumberToObject(h, "lr", l->lr[i]);
        cJSON_AddNumberToObject(h, "grad_norm", l->gnorm[i]);
        cJSON_AddNumberToObject(h, "ms", l->ms[i]);
        cJSON_AddItemToArray(hist, h);
    }
    char *mp = cd_path_join(l->run_dir, "metrics.json"), *pp = cd_path_join(l->run_dir, "loss.png");
    int rc = cd_json_save(mp, o);
    cJSON_Delete(o);
    if (rc == 0 && n > 0) {
        // Loss and its running mean over ~5% of the run.
        double *smooth = cd_malloc(sizeof(double) * n);
        int win = n / 20 > 1 ? n / 20 : 1;
        for (int i = 0; i < n; i++) smooth[i] = mean_range(l->loss, i + 1 > win ? i + 1 - win : 0, i + 1);
        cd_image im;
        rc = cd_plot_curve(smooth, l->loss, n, 640, 360, &im);
        if (rc == 0) rc = cd_image_save(pp, &im);
        if (rc == 0) cd_image_free(&im);
        free(smooth);
    }
    free(mp);
    free(pp);
    return rc;
}

void cd_trainlog_close(cd_trainlog *l) {
    if (l->fp) fclose(l->fp);
    free(l->run_dir);
    free(l->step);
    free(l->loss);
    free(l->loss_inst);
    free(l->loss_prior);
    free(l->gnorm);
    free(l->lr);
    free(l->ms);
    memset(l, 0, sizeof *l);
}
