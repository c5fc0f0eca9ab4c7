// Internal to core/http*.c: one transfer attempt (an easy handle plus its callbacks' state).
#ifndef CD_HTTP_XFER_H
#define CD_HTTP_XFER_H
#include <curl/curl.h>
#include "core/http.h"

typedef struct cd_xfer {
    const cd_http_opts *o;
    CURL *e;
    char *url;                 // owned
    struct curl_slist *hdrs;
    uint8_t *buf;              // body of the current response
    size_t len, cap;
    int refused;               // the connect-time address check refused a peer
    char refused_addr[64];
    int robots;                // an X-Robots-Tag opt-out was seen on a final response
    int too_large;             // body cap exceeded (or announced by Content-Length)
    int code;                  // current response's status code (from its status line)
    char *ctype, *xrobots;     // current response's headers (heap)
    double retry_after;        // -1 when absent
    int64_t clen;              // Content-Length, -1 when absent
    char errbuf[CURL_ERROR_SIZE];
    // multi bookkeeping
    void *user;
    int attempts;
    double t_start, not_before;
    struct cd_xfer *next;
} cd_xfer;

void cd_http_global_init(void);
// Make x->e for x->url with every policy option set (GET). 0 / -1 (cd_err).
int cd_xfer_setup(cd_xfer *x, const cd_http_opts *o);
// Reset per-attempt state (body, headers, flags) before a retry; keeps url/user/attempts.
void cd_xfer_reset(cd_xfer *x);
void cd_xfer_free(cd_xfer *x);          // frees members, not x
// Turn a finished attempt into a response (moves the body out of x).
void cd_xfer_finish(cd_xfer *x, CURLcode rc, cd_http_response *r);
// Delay before retry number `attempt` (1-based attempt that just failed); <0: do not retry.
double cd_xfer_retry_delay(const cd_http_opts *o, const cd_http_response *r, int attempt);
#endif
