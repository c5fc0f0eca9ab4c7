// Per-image work on a worker thread: hash, sniff, pixel-count check, decode, resize, encode.
#include "preprocess/pp.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/sha256.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pp_job_free(pp_job *j) {
    if (!j) return;
    free(j->bytes);
    free(j->jpeg);
    free(j);
}

static void fail(pp_job *j, const char *status, int transient, const char *msg) {
    snprintf(j->status, sizeof j->status, "%s", status);
    snprintf(j->error, sizeof j->error, "%s", msg);
    j->transient = transient;
}

static const char *name_of(const pp_job *j) { return j->in->url ? j->in->url : j->in->path; }

void pp_process(const pp_opts *o, pp_job *j) {
    const char *what = name_of(j);
    cd_errclear();
    if (!j->bytes) {                                   // a local file
        char *d;
        size_t n;
        if (cd_read_file(j->in->path, &d, &n, (size_t)o->http.max_bytes)) {
            fail(j, "read_error", 0, cd_errmsg());
            return;
        }
        j->bytes = (uint8_t *)d;
        j->len = n;
    }
    j->orig_bytes = (int64_t)j->len;
    cd_sha256_hex(j->bytes, j->len, j->sha);
    cd_imgfmt f = cd_image_sniff(j->bytes, j->len);
    char msg[400];
    if (f == CD_FMT_UNKNOWN || f == CD_FMT_HTML) {
        snprintf(msg, sizeof msg, "%s: not an image (%s, %zu bytes)", what,
                 f == CD_FMT_HTML ? "HTML" : "unknown magic bytes", j->len);
        fail(j, "not_an_image", 0, msg);
        return;
    }
    int w = 0, h = 0;
    if (cd_image_probe(j->bytes, j->len, what, &f, &w, &h)) {
        fail(j, "decode_error", 0, cd_errmsg());
        return;
    }
    if (o->max_pixels > 0 && (int64_t)w * h > o->max_pixels) {
        snprintf(msg, sizeof msg, "%s: %dx%d = %lld pixels exceeds --max-pixels %lld (not decoded)",
                 what, w, h, (long long)w * h, (long long)o->max_pixels);
        fail(j, "too_many_pixels", 0, msg);
        return;
    }
    cd_image im = {0}, out = {0};
    int min_side = o->mode == CD_RESIZE_NO ? 0 : o->resolution;
    if (cd_image_decode(j->bytes, j->len, what, o->max_pixels, min_side, &im)) {
        fail(j, "decode_error", 0, cd_errmsg());
        return;
    }
    j->ow = w; j->oh = h;                            // header size, EXIF-rotated below
    if (w != h && (w > h) != (im.w > im.h)) { j->ow = h; j->oh = w; }   // rotated
    if (cd_image_resize(&im, o->resolution, o->mode, &out) ||
        cd_image_encode_jpeg(&out, o->quality, &j->jpeg, &j->jpeg_len)) {
        fail(j, "decode_error", 0, cd_errmsg());
        cd_image_free(&im); cd_image_free(&out);
        return;
    }
    j->w = out.w; j->h = out.h;
    cd_image_free(&im);
    cd_image_free(&out);
    snprintf(j->status, sizeof j->status, "success");
    j->error[0] = 0;
}
