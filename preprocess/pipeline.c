// The preprocess run loop. One thread drives the downloads (core/http multi) and commits;
// a worker pool decodes. Results are committed to the store strictly in input order
// (a reorder window of 2 x concurrency inputs), so the store is a function of the inputs:
// a kill -9 at any moment followed by a rerun gives the same store as one uninterrupted
// run. Each input's outcome is written to the store's "manifest" sub-DB in the same
// transaction as its record, so the store alone says what a rerun must redo: inputs with
// no entry and inputs whose entry is a transient failure. Inputs are matched to entries by
// identity (source), not position (resume.c): a rerun with more inputs adds only the new
// ones, under the next manifest and record keys.
#include "preprocess/pp.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/store.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { S_TODO = 0, S_BUSY, S_DONE, S_SKIP, S_DUPURL };

typedef struct {
    const pp_opts *o;
    const pp_inputs *in;
    pp_stats *st;
    cd_store *s;
    cd_http *h;
    pp_pool *pool;
    uint8_t *state;             // per input
    pp_job **done;              // per input: finished, waiting for its turn to commit
    pp_job **jobs;              // per input: the job while it is with the downloader
    uint8_t *with_http;         // per input: 1 while its job is owned by the downloader
    int64_t *dup_url_of;        // per input: earlier ordinal with the same URL, or -1
    int64_t *man_of;            // per input: its manifest key (resume.c), or -1 until committed
    int *occ;                   // per input: occurrence of its identity (1 = first)
    int64_t next_man;           // manifest key the next new input gets
    int64_t cursor, next, stored, window;
    int uncommitted;            // manifest entries in the current batch
    double last_commit;
    int failed;                 // a store error happened (message in cd_err)
} pp_runstate;

static pp_runstate *g_run;      // for the download callback (one run per process)

// ---- input bookkeeping ----

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

// dup_url_of[i] = first earlier input with the same URL (open addressing on the URL hash).
static void mark_duplicate_urls(pp_runstate *R) {
    int64_t n = R->in->n, cap = 16;
    while (cap < 2 * n) cap *= 2;
    int64_t *tab = malloc(cap * sizeof *tab);
    for (int64_t i = 0; i < cap; i++) tab[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        R->dup_url_of[i] = -1;
        const char *u = R->in->v[i].url;
        if (!u) continue;
        for (uint64_t k = fnv(u) & (cap - 1);; k = (k + 1) & (cap - 1)) {
            if (tab[k] < 0) { tab[k] = i; break; }
            if (!strcmp(R->in->v[tab[k]].url, u)) { R->dup_url_of[i] = tab[k]; break; }
        }
    }
    free(tab);
}

// ---- starting work ----

static void wake(void *arg) { cd_http_wakeup(arg); }

static void on_download(void *user, const char *url, cd_http_response *r) {
    pp_job *j = user;
    pp_runstate *R = g_run;
    R->with_http[j->ord] = 0;
    if (r->status == CD_HTTP_OK) {
        j->bytes = r->body; j->len = r->len;
        r->body = NULL;
        R->st->bytes_downloaded += (int64_t)j->len;
        pp_pool_push(R->pool, j);
        return;
    }
    snprintf(j->status, sizeof j->status, "%s", cd_http_status_name(r->status));
    snprintf(j->error, sizeof j->error, "%s", r->error);
    j->transient = cd_http_is_transient(r->status, r->http_code);
    j->http_status = r->http_code;
    R->done[j->ord] = j;
    R->state[j->ord] = S_DONE;
}

static void start(pp_runstate *R, int64_t i) {
    if (R->state[i] == S_SKIP) return;
    if (R->dup_url_of[i] >= 0) { R->state[i] = S_DUPURL; return; }
    pp_job *j = cd_calloc(1, sizeof *j);
    j->ord = i;
    j->in = &R->in->v[i];
    j->dup_of = -1;
    R->state[i] = S_BUSY;
    if (j->in->url) {
        R->jobs[i] = j;
        R->with_http[i] = 1;
        cd_http_submit(R->h, j->in->url, j);
    } else {
        pp_pool_push(R->pool, j);
    }
}

// ---- committing ----

static char *manifest_json(pp_runstate *R, int64_t i, const pp_job *j, int64_t key) {
    const pp_input *p = &R->in->v[i];
    cJSON *o = cJSON_CreateObject();
    char kb[32];
    cJSON_AddNumberToObject(o, "index", (double)i);
    cJSON_AddStringToObject(o, "id", pp_input_id(p));
    if (R->occ[i] > 1) cJSON_AddNumberToObject(o, "occurrence", R->occ[i]);
    if (key >= 0) { snprintf(kb, sizeof kb, CD_STORE_KEY_FMT, (long long)key); cJSON_AddStringToObject(o, "key", kb); }
    else cJSON_AddNullToObject(o, "key");
    if (p->url) cJSON_AddStringToObject(o, "url", p->url);
    else cJSON_AddStringToObject(o, "path", p->path);
    if (p->origin_url) cJSON_AddStringToObject(o, "origin_url", p->origin_url);
    cJSON_AddStringToObject(o, "caption", p->caption);
    if (p->has_similarity) cJSON_AddNumberToObject(o, "similarity", p->similarity);
    if (!j) {                                     // duplicate URL
        cJSON_AddStringToObject(o, "status", "duplicate_url");
        char *m = cd_fmt("same URL as input %lld", (long long)R->dup_url_of[i]);
        cJSON_AddStringToObject(o, "error_message", m);
        free(m);
        cJSON_AddBoolToObject(o, "transient", 0);
    } else {
        cJSON_AddStringToObject(o, "status", j->status);
        if (!p->url && j->error[0] && strcmp(j->status, "success"))   // a local photo: say which and why
            cd_warn("skipped (%s): %s", j->status, j->error);
        if (j->error[0]) cJSON_AddStringToObject(o, "error_message", j->error);
        else cJSON_AddNullToObject(o, "error_message");
        cJSON_AddBoolToObject(o, "transient", j->transient);
        if (j->http_status) cJSON_AddNumberToObject(o, "http_status", j->http_status);
        if (j->sha[0]) cJSON_AddStringToObject(o, "sha256", j->sha);
        if (j->dup_of >= 0) {
            snprintf(kb, sizeof kb, CD_STORE_KEY_FMT, (long long)j->dup_of);
            cJSON_AddStringToObject(o, "duplicate_of", kb);
        }
        if (j->w) { cJSON_AddNumberToObject(o, "width", j->w); cJSON_AddNumberToObject(o, "height", j->h); }
        if (j->ow) { cJSON_AddNumberToObject(o, "original_width", j->ow); cJSON_AddNumberToObject(o, "original_height", j->oh); }
        if (j->orig_bytes) cJSON_AddNumberToObject(o, "bytes", (double)j->orig_bytes);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int commit_one(pp_runstate *R, int64_t i) {
    pp_job *j = R->state[i] == S_DONE ? R->done[i] : NULL;
    int64_t key = -1;
    if (j && !strcmp(j->status, "success")) {
        int64_t dup;
        int f = cd_store_find_sha(R->s, j->sha, &dup);
        if (f < 0) return -1;
        if (f) {
            snprintf(j->status, sizeof j->status, "duplicate");
            snprintf(j->error, sizeof j->error, "same image bytes as record " CD_STORE_KEY_FMT, (long long)dup);
            j->dup_of = dup;
        } else {
            const pp_input *p = &R->in->v[i];
            cd_store_rec rec = {0};
            rec.jpeg = j->jpeg; rec.jpeg_len = j->jpeg_len;
            rec.caption = p->caption;
            rec.source = p->url ? p->url : p->origin_url ? p->origin_url : p->path;
            memcpy(rec.sha256, j->sha, 65);
            rec.width = j->w; rec.height = j->h;
            rec.original_width = j->ow; rec.original_height = j->oh;
            rec.original_bytes = j->orig_bytes;
            CD_TRY(cd_store_add(R->s, &rec, &key));
            R->stored++;
            R->st->bytes_stored += (int64_t)j->jpeg_len;
        }
    }
    char *m = manifest_json(R, i, j, key);
    if (R->man_of[i] < 0) R->man_of[i] = R->next_man++;      // a new input: the next key
    int rc = cd_store_put_manifest(R->s, R->man_of[i], m);
    free(m);
    R->uncommitted++;
    R->st->processed++;
    if (j) { pp_job_free(j); R->done[i] = NULL; }
    R->state[i] = S_SKIP;
    return rc;
}

static int maybe_commit(pp_runstate *R, int force) {
    double t = cd_now();
    if (!R->uncommitted || (!force && R->uncommitted < R->o->batch && t - R->last_commit < 2.0)) return 0;
    CD_TRY(cd_store_commit(R->s));
    R->uncommitted = 0;
    R->last_commit = t;
    return 0;
}

static int reached_num(const pp_runstate *R) { return R->o->num > 0 && R->stored >= R->o->num; }

// Commit every finished input at the cursor, in order.
static int advance(pp_runstate *R) {
    while (R->cursor < R->next && !reached_num(R)) {
        uint8_t s = R->state[R->cursor];
        if (s == S_DONE || s == S_DUPURL) CD_TRY(commit_one(R, R->cursor));
        else if (s != S_SKIP) break;
        R->cursor++;
    }
    return maybe_commit(R, 0);
}

// ---- the loop ----

static int run_loop(pp_runstate *R) {
    cd_progress prog;
    int64_t total = R->in->n - R->st->skipped;
    cd_progress_start(&prog, "preprocess", total);
    char extra[64];
    while (R->cursor < R->in->n && !reached_num(R)) {
        while (R->next < R->in->n && R->next - R->cursor < R->window) start(R, R->next++);
        pp_job *j;
        while ((j = pp_pool_take(R->pool))) {
            if (j->bytes) { free(j->bytes); j->bytes = NULL; }
            R->done[j->ord] = j;
            R->state[j->ord] = S_DONE;
        }
        CD_TRY(advance(R));
        snprintf(extra, sizeof extra, "stored %lld", (long long)R->stored);
        cd_progress_update(&prog, R->st->processed, extra);
        if (R->cursor >= R->in->n || reached_num(R)) break;
        CD_TRY(cd_http_step(R->h, 0.05));
    }
    CD_TRY(maybe_commit(R, 1));
    snprintf(extra, sizeof extra, "stored %lld", (long long)R->stored);
    cd_progress_end(&prog, extra);
    return 0;
}

static int check_info(pp_runstate *R) {
    cd_store_info have, want = {0};
    CD_TRY(cd_store_get_info(R->s, &have));
    const char *mode = cd_resize_mode_name(R->o->mode);
    if (have.count > 0 && (have.resolution != R->o->resolution || strcmp(have.resize_mode, mode)))
        return cd_err("%s: the store holds %d px %s images; this run asks for %d px %s (use a new --out)",
                      R->o->out, have.resolution, have.resize_mode, R->o->resolution, mode);
    want.resolution = R->o->resolution;
    snprintf(want.resize_mode, sizeof want.resize_mode, "%s", mode);
    want.jpeg_quality = R->o->quality;
    snprintf(want.tool, sizeof want.tool, "customdiff-preprocess");
    snprintf(want.tool_version, sizeof want.tool_version, "%s", CD_VERSION);
    CD_TRY(cd_store_set_info(R->s, &want));
    return cd_store_commit(R->s);                 // a fresh store gets its info at once
}

int pp_run(const pp_opts *o, const pp_inputs *in, pp_stats *st) {
    pp_runstate R = {0};
    memset(st, 0, sizeof *st);
    double t0 = cd_now();
    R.o = o; R.in = in; R.st = st;
    st->inputs = in->n;
    R.window = 2 * (o->http.concurrency > 0 ? o->http.concurrency : 1);
    if (R.window < 4 * o->workers) R.window = 4 * o->workers;
    R.state = cd_calloc(in->n + 1, 1);
    R.done = cd_calloc(in->n + 1, sizeof *R.done);
    R.dup_url_of = cd_calloc(in->n + 1, sizeof *R.dup_url_of);
    R.jobs = cd_calloc(in->n + 1, sizeof *R.jobs);
    R.with_http = cd_calloc(in->n + 1, 1);
    R.man_of = cd_calloc(in->n + 1, sizeof *R.man_of);
    R.occ = cd_calloc(in->n + 1, sizeof *R.occ);
    uint8_t *skip = cd_calloc(in->n + 1, 1);
    int rc = cd_store_open_write(o->out, o->map_size, &R.s);
    if (!rc) rc = check_info(&R);
    if (!rc) rc = pp_resume_match(R.s, in, o->out, R.man_of, R.occ, skip, st, &R.next_man);
    for (int64_t i = 0; !rc && i < in->n; i++) if (skip[i]) R.state[i] = S_SKIP;
    if (!rc && cd_store_batch_ops(R.s)) rc = cd_store_commit(R.s);   // captions, schema-1 entries
    if (!rc) {
        R.stored = st->stored_before = cd_store_count(R.s);
        mark_duplicate_urls(&R);
        rc = cd_http_new(&o->http, on_download, &R.h);
    }
    if (!rc) {
        g_run = &R;
        R.pool = pp_pool_new(o, o->workers, wake, R.h);
        R.last_commit = cd_now();
        if (st->skipped) cd_info("%s: resuming: %lld of %d inputs already done, %lld records stored",
                                 o->out, (long long)st->skipped, in->n, (long long)R.stored);
        rc = run_loop(&R);
        pp_pool_free(R.pool);
        cd_http_free(R.h);           // cancels downloads beyond --num (no callbacks)
        for (int64_t i = 0; i < in->n; i++)
            if (R.with_http[i]) pp_job_free(R.jobs[i]);
        g_run = NULL;
    }
    for (int64_t i = 0; i < in->n; i++) pp_job_free(R.done[i]);
    if (R.s) {
        st->stored = cd_store_count(R.s);
        cd_store_close(R.s);
    }
    free(R.state); free(R.done); free(R.dup_url_of); free(R.jobs); free(R.with_http);
    free(R.man_of); free(R.occ); free(skip);
    st->seconds = cd_now() - t0;
    return rc;
}
