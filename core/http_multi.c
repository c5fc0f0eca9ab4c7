// Concurrent downloader on the libcurl multi interface: one thread drives every transfer.
// Jobs wait in a FIFO `ready` queue, start while fewer than `concurrency` are in flight,
// and on a transient failure go to a `delayed` list until their backoff has passed.
#include "core/http.h"
#include "core/http_xfer.h"
#include "core/err.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cd_http {
    cd_http_opts o;
    char *ua;                    // owned copies of the option strings
    char *token;
    cd_http_done_fn done;
    CURLM *m;
    cd_xfer *ready_head, *ready_tail;
    cd_xfer *delayed;            // unordered; scanned each step
    cd_xfer *active;             // in flight (unordered)
    int nready, ndelayed, nactive;
    cd_http_counters ctr;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cd_http_new(const cd_http_opts *opts, cd_http_done_fn done, cd_http **out) {
    cd_http_global_init();
    cd_http *h = cd_calloc(1, sizeof *h);
    if (opts) h->o = *opts; else cd_http_opts_default(&h->o);
    if (h->o.concurrency < 1) h->o.concurrency = 1;
    if (h->o.user_agent) h->o.user_agent = h->ua = cd_strdup(h->o.user_agent);
    if (h->o.robots_token) h->o.robots_token = h->token = cd_strdup(h->o.robots_token);
    h->done = done;
    h->m = curl_multi_init();
    if (!h->m) { free(h); return cd_err("curl_multi_init failed"); }
    curl_multi_setopt(h->m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)h->o.concurrency);
    curl_multi_setopt(h->m, CURLMOPT_MAXCONNECTS, (long)h->o.concurrency);
    if (h->o.max_host_conns > 0)
        curl_multi_setopt(h->m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)h->o.max_host_conns);
    *out = h;
    return 0;
}

static void free_list(cd_xfer *x) {
    while (x) {
        cd_xfer *n = x->next;
        cd_xfer_free(x);
        free(x);
        x = n;
    }
}

void cd_http_free(cd_http *h) {
    if (!h) return;
    for (cd_xfer *x = h->active; x; x = x->next) curl_multi_remove_handle(h->m, x->e);
    free_list(h->active);
    free_list(h->ready_head);
    free_list(h->delayed);
    curl_multi_cleanup(h->m);
    free(h->ua); free(h->token);
    free(h);
}

int cd_http_submit(cd_http *h, const char *url, void *user) {
    cd_xfer *x = cd_calloc(1, sizeof *x);
    x->url = cd_strdup(url ? url : "");
    x->user = user;
    x->retry_after = -1;
    x->clen = -1;
    x->t_start = now_s();
    if (h->ready_tail) h->ready_tail->next = x; else h->ready_head = x;
    h->ready_tail = x;
    h->nready++;
    return 0;
}

int cd_http_pending(const cd_http *h) { return h->nready + h->ndelayed + h->nactive; }

void cd_http_wakeup(cd_http *h) { if (h && h->m) curl_multi_wakeup(h->m); }

void cd_http_get_counters(const cd_http *h, cd_http_counters *c) { *c = h->ctr; }

static void complete(cd_http *h, cd_xfer *x, cd_http_response *r) {
    r->attempts = x->attempts;
    r->seconds = now_s() - x->t_start;
    h->ctr.completed++;
    if (r->status == CD_HTTP_OK) { h->ctr.ok++; h->ctr.bytes += r->len; }
    if (h->done) h->done(x->user, x->url, r);
    cd_http_response_free(r);
    cd_xfer_free(x);
    free(x);
}

// Start queued jobs while there is room. A setup failure completes the job as an error.
static void start_ready(cd_http *h) {
    while (h->ready_head && h->nactive < h->o.concurrency) {
        cd_xfer *x = h->ready_head;
        h->ready_head = x->next;
        if (!h->ready_head) h->ready_tail = NULL;
        h->nready--;
        x->next = NULL;
        x->attempts++;
        if (cd_xfer_setup(x, &h->o) || curl_multi_add_handle(h->m, x->e) != CURLM_OK) {
            cd_http_response r;
            memset(&r, 0, sizeof r);
            r.status = CD_HTTP_OTHER;
            snprintf(r.error, sizeof r.error, "%s: could not start transfer", x->url);
            complete(h, x, &r);
            continue;
        }
        x->next = h->active;
        h->active = x;
        h->nactive++;
    }
}

// Move delayed jobs whose time has come to the ready queue; return seconds to the next one.
static double release_delayed(cd_http *h) {
    double t = now_s(), next = 1e9;
    cd_xfer **pp = &h->delayed;
    while (*pp) {
        cd_xfer *x = *pp;
        if (x->not_before <= t) {
            *pp = x->next;
            x->next = NULL;
            h->ndelayed--;
            if (h->ready_tail) h->ready_tail->next = x; else h->ready_head = x;
            h->ready_tail = x;
            h->nready++;
        } else {
            if (x->not_before - t < next) next = x->not_before - t;
            pp = &x->next;
        }
    }
    return next;
}

static void finished(cd_http *h, CURL *e, CURLcode rc) {
    cd_xfer *x = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(h->m, e);
    for (cd_xfer **pp = &h->active; *pp; pp = &(*pp)->next)
        if (*pp == x) { *pp = x->next; break; }
    x->next = NULL;
    h->nactive--;
    cd_http_response r;
    memset(&r, 0, sizeof r);
    cd_xfer_finish(x, rc, &r);
    double d = r.status == CD_HTTP_OK ? -1 : cd_xfer_retry_delay(&h->o, &r, x->attempts);
    if (d < 0) { complete(h, x, &r); return; }
    h->ctr.retried++;
    cd_http_response_free(&r);
    cd_xfer_reset(x);
    x->not_before = now_s() + d;
    x->next = h->delayed;
    h->delayed = x;
    h->ndelayed++;
}

int cd_http_step(cd_http *h, double max_wait_s) {
    double next = 1e9;
    int64_t done0 = h->ctr.completed;
    // Drive until nothing new happens: completions free slots, new handles need a perform
    // before the poll can see their sockets.
    for (int iter = 0; iter < 16; iter++) {
        release_delayed(h);
        int64_t before = h->ctr.completed + h->ctr.retried;
        int added = h->nready > 0 && h->nactive < h->o.concurrency;
        start_ready(h);
        int running = 0;
        CURLMcode mc = curl_multi_perform(h->m, &running);
        if (mc != CURLM_OK) return cd_err("curl_multi_perform: %s", curl_multi_strerror(mc));
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(h->m, &left)))
            if (msg->msg == CURLMSG_DONE) finished(h, msg->easy_handle, msg->data.result);
        next = release_delayed(h);
        if (!added && h->ctr.completed + h->ctr.retried == before) break;
    }
    start_ready(h);
    if (h->ctr.completed != done0) return 0;     // callbacks ran: let the caller react first
    double wait = max_wait_s < next ? max_wait_s : next;
    if (wait < 0) wait = 0;
    // With nothing in flight this still waits (for max_wait_s or cd_http_wakeup).
    CURLMcode mc = curl_multi_poll(h->m, NULL, 0, (int)(wait * 1000 + 0.999), NULL);
    if (mc != CURLM_OK) return cd_err("curl_multi_poll: %s", curl_multi_strerror(mc));
    return 0;
}

int cd_http_run(cd_http *h) {
    while (cd_http_pending(h))
        CD_TRY(cd_http_step(h, 1.0));
    return 0;
}
