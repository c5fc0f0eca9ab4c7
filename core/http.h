// HTTP client on libcurl: a concurrent downloader on the multi interface (one thread, no
// thread per request) and a simple blocking request for JSON APIs. Both apply the same
// safety rules:
//   - only http/https (file:// only with allow_file_urls), at most max_redirects hops, and
//     redirects only to http/https;
//   - every connection's actual peer address is checked at connect time (all redirect hops,
//     every address tried): private, loopback, link-local, unspecified, multicast, reserved,
//     IPv6 ULA/link-local and v4-mapped forms of those are refused (allow_loopback admits
//     127.0.0.0/8 and ::1 only); environment proxies are ignored so the check cannot be
//     bypassed;
//   - the body is capped at max_bytes (the transfer is aborted as soon as it is exceeded,
//     or at once when Content-Length says so);
//   - X-Robots-Tag opt-outs (noai, noimageai, noindex, noimageindex), with or without a
//     "<user-agent>:" prefix naming our token, refuse the response before its body is read
//     (as img2dataset's is_disallowed);
//   - the User-Agent names the project: "customdiff/<version> (+<project url>)".
// Retries: transient failures (timeouts, connect errors, resets, truncated bodies, HTTP 408,
// 429, 5xx) are retried up to `retries` extra times with exponential backoff
// (backoff_s * 2^(attempt-1), capped by max_backoff_s); Retry-After (seconds or an HTTP
// date) on 429/503 replaces the computed delay (also capped).
#ifndef CD_HTTP_H
#define CD_HTTP_H
#include <stddef.h>
#include <stdint.h>

#ifndef CD_PROJECT_URL
#define CD_PROJECT_URL "https://github.com/customdiff/customdiff"
#endif

typedef struct {
    int concurrency;            // transfers in flight (default 64)
    int max_host_conns;         // connections per host (default 16; 0 = no cap)
    double connect_timeout_s;   // default 10
    double timeout_s;           // whole transfer incl. redirects (default 30)
    int retries;                // extra attempts for transient failures (default 2)
    double backoff_s;           // first retry delay (default 1)
    double max_backoff_s;       // cap on any retry delay incl. Retry-After (default 30)
    int64_t max_bytes;          // body cap in bytes (default 20 MB = 20*1024*1024)
    int max_redirects;          // default 5
    int allow_loopback;         // admit 127.0.0.0/8 and ::1 (tests, demo)
    int allow_private;          // admit private ranges (10/8, 172.16/12, 192.168/16, CGNAT,
                                // fc00::/7): for endpoints the user names (a LAN back end)
    int allow_file_urls;        // admit file:// URLs
    int honour_robots;          // X-Robots-Tag opt-outs (default 1)
    const char *robots_token;   // our token in "token: noai" forms (default "customdiff")
    const char *user_agent;     // NULL: "customdiff/<version> (+CD_PROJECT_URL)"
    int verbose;                // curl's own debug output to stderr
} cd_http_opts;

void cd_http_opts_default(cd_http_opts *o);

// Outcome kinds. Names (cd_http_status_name) are the manifest's status strings.
typedef enum {
    CD_HTTP_OK = 0,           // 2xx (or a file:// read)
    CD_HTTP_ERROR,            // HTTP status >= 300 that was not followed (see http_code)
    CD_HTTP_TIMEOUT,          // connect or total timeout
    CD_HTTP_TOO_LARGE,        // body over max_bytes
    CD_HTTP_REFUSED_ADDRESS,  // peer address refused by policy (also after a redirect)
    CD_HTTP_ROBOTS_OPTOUT,    // X-Robots-Tag opt-out
    CD_HTTP_REDIRECT_LOOP,    // more than max_redirects hops
    CD_HTTP_CONNECT_ERROR,    // connection refused / unreachable
    CD_HTTP_DNS_ERROR,        // name did not resolve
    CD_HTTP_RESET,            // connection reset / closed with nothing or mid-transfer
    CD_HTTP_TRUNCATED,        // body shorter than Content-Length
    CD_HTTP_BAD_URL,          // malformed URL or protocol not allowed
    CD_HTTP_TLS_ERROR,        // certificate / handshake
    CD_HTTP_FILE_ERROR,       // file:// could not be read
    CD_HTTP_OTHER,            // anything else curl reports
    CD_HTTP_STATUS_COUNT
} cd_http_status;

const char *cd_http_status_name(cd_http_status s);
// Worth retrying later (this run or a rerun)? http_code matters for CD_HTTP_ERROR.
int cd_http_is_transient(cd_http_status s, int http_code);

typedef struct {
    cd_http_status status;
    int http_code;            // last response's status code (0 if none)
    uint8_t *body;            // heap (free()), NUL-terminated for convenience; may be NULL
    size_t len;               // body bytes (excluding the NUL)
    char *final_url;          // heap: URL after redirects (or the request URL)
    char *content_type;       // heap or NULL: final response's Content-Type
    char *x_robots;           // heap or NULL: final response's X-Robots-Tag values, "; "-joined
    double retry_after_s;     // final response's Retry-After (-1 when absent)
    int attempts;             // 1 + retries made
    double seconds;           // wall time over all attempts incl. backoff
    char error[256];          // human-readable cause ("" on success), names the URL
} cd_http_response;

void cd_http_response_free(cd_http_response *r);   // frees members, zeroes r

// Blocking request with the same checks and retries. method: "GET" or "POST" (any verb);
// body: NUL-terminated request body or NULL; content_type: its type (e.g.
// "application/json") or NULL. Returns 0 on a 2xx response; otherwise -1 with cd_err naming
// the URL and the cause. *response is filled in both cases (free it with
// cd_http_response_free).
int cd_http_request(const cd_http_opts *opts, const char *method, const char *url,
                    const char *body, const char *content_type, cd_http_response *response);

// ---- Concurrent downloader (GET) ----
// The callback runs on the thread that calls cd_http_step/cd_http_run, once per submitted
// job, after its final attempt. It may take ownership of r->body (set r->body = NULL) and
// may submit new jobs. The response is freed after it returns.
typedef void (*cd_http_done_fn)(void *user, const char *url, cd_http_response *r);
typedef struct cd_http cd_http;

int cd_http_new(const cd_http_opts *opts, cd_http_done_fn done, cd_http **out);
void cd_http_free(cd_http *h);           // cancels what is still queued or in flight (no callbacks)
// Queue a GET of url (copied); user is passed back to the callback.
int cd_http_submit(cd_http *h, const char *url, void *user);
// Jobs not yet completed (queued + waiting to retry + in flight).
int cd_http_pending(const cd_http *h);
// Drive transfers: wait up to max_wait_s for activity, progress them, run callbacks for
// completed jobs. Returns 0, or -1 on a curl multi failure (cd_err).
int cd_http_step(cd_http *h, double max_wait_s);
// Step until no job is pending.
int cd_http_run(cd_http *h);
// Wake a cd_http_step that is waiting (thread-safe; e.g. from a worker thread).
void cd_http_wakeup(cd_http *h);
// Counters since cd_http_new.
typedef struct { int64_t completed, ok, retried, bytes; } cd_http_counters;
void cd_http_get_counters(const cd_http *h, cd_http_counters *c);

// Address policy used at connect time (exposed for tests): 1 when sa must be refused.
struct sockaddr;
#define CD_ADDR_LOOPBACK 1
#define CD_ADDR_PRIVATE 2
// Is this address refused under the `allow` mask (CD_ADDR_*)? Link-local never passes.
int cd_http_addr_refused(const struct sockaddr *sa, int allow);
// Parse Retry-After (delta seconds or an HTTP date); -1 when unparsable.
double cd_http_parse_retry_after(const char *v);
// X-Robots-Tag check on one header value: 1 when it opts out for token (img2dataset rules).
int cd_http_robots_disallowed(const char *value, const char *token);
#endif
