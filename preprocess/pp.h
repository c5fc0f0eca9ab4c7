// customdiff-preprocess internals: the per-input job, the worker pool, the run loop, reports.
#ifndef CD_PP_H
#define CD_PP_H
#include <stddef.h>
#include <stdint.h>
#include "core/http.h"
#include "core/image.h"
#include "core/store.h"
#include "preprocess/inputs.h"

typedef struct {
    const char *out;            // store folder
    int resolution;             // target size (px)
    cd_resize_mode mode;
    int quality;                // JPEG quality
    int64_t max_pixels;         // refuse originals with more pixels (header check)
    int64_t num;                // stop when the store holds this many records (0 = all inputs)
    int workers;                // decode/resize threads
    int batch;                  // records per LMDB transaction
    size_t map_size;            // initial LMDB map size (bytes)
    cd_http_opts http;
} pp_opts;

// One input's work and outcome. Filled by the download callback and a worker thread.
typedef struct pp_job {
    int64_t ord;                // input ordinal
    const pp_input *in;
    uint8_t *bytes;             // original bytes (downloaded); NULL: read in->path
    size_t len;
    char status[24];            // "success" or an error kind
    char error[300];            // error message ("" on success)
    int transient;              // a rerun retries it
    int http_status;            // for http_error
    char sha[65];               // of the original bytes ("" when none)
    int64_t orig_bytes;
    int ow, oh, w, h;           // original and stored sizes
    uint8_t *jpeg;              // processed JPEG (heap)
    size_t jpeg_len;
    int64_t dup_of;             // "duplicate": the record index holding the same bytes
    struct pp_job *next;
} pp_job;

void pp_job_free(pp_job *j);
// Decode, check, resize and encode j->bytes (or the file j->in->path). Thread-safe.
void pp_process(const pp_opts *o, pp_job *j);

// Worker pool: jobs pushed are processed by pp_process on `n` threads; finished jobs are
// collected with pp_pool_take (non-blocking). `notify` runs after each job finishes.
typedef struct pp_pool pp_pool;
pp_pool *pp_pool_new(const pp_opts *o, int n, void (*notify)(void *), void *arg);
void pp_pool_push(pp_pool *p, pp_job *j);
pp_job *pp_pool_take(pp_pool *p);        // a finished job or NULL
int pp_pool_busy(pp_pool *p);            // queued + running
void pp_pool_free(pp_pool *p);           // stops the threads; frees jobs not collected

typedef struct {
    int64_t inputs, processed, stored_before, stored, skipped;
    int64_t bytes_downloaded, bytes_stored;
    double seconds;
    int64_t caption_updated;    // stored inputs whose caption changed and was rewritten
    int64_t absent;             // manifest entries whose input is not in this run's inputs
    int64_t *absent_ords;       // their manifest keys, ascending (heap; free with pp_stats_free)
} pp_stats;

void pp_stats_free(pp_stats *st);

// Incremental reruns (resume.c). The identity of an input across runs: its url, or a local
// file's path relative to its folder.
const char *pp_input_id(const pp_input *p);
// Match the inputs to the store's manifest entries by (identity, occurrence): man_of[i] = the
// entry's key or -1 (new input), occ[i] = 1 + earlier inputs with the same identity,
// skip[i] = 1 when its entry is final (st->skipped counted). Changed captions and schema-1
// entries are rewritten in the store's batch; unmatched entries go to st->absent_ords.
// *next_man = the key a new entry gets next.
int pp_resume_match(cd_store *s, const pp_inputs *in, const char *out, int64_t *man_of,
                    int *occ, uint8_t *skip, pp_stats *st, int64_t *next_man);

// The whole run: resume from the store, download/process, commit in input order.
int pp_run(const pp_opts *o, const pp_inputs *in, pp_stats *st);
// manifest.jsonl, stats.json and contact.jpg inside the store folder.
int pp_write_reports(const char *store, const pp_stats *st);
// --export: images + caption.txt, images.txt, urls.txt (Custom Diffusion layout).
int pp_export(const char *store, const char *dir, int64_t *n);
#endif
