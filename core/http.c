// HTTP policy (address checks, robots, size cap, classification) and the blocking request.
// The concurrent downloader is in core/http_multi.c; both share cd_xfer (core/http_xfer.h).
#include "core/http.h"
#include "core/http_xfer.h"
#include "core/err.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef CD_VERSION
#define CD_VERSION "0"
#endif

void cd_http_opts_default(cd_http_opts *o) {
    memset(o, 0, sizeof *o);
    o->concurrency = 64;
    o->max_host_conns = 16;
    o->connect_timeout_s = 10;
    o->timeout_s = 30;
    o->retries = 2;
    o->backoff_s = 1;
    o->max_backoff_s = 30;
    o->max_bytes = 20 * 1024 * 1024;
    o->max_redirects = 5;
    o->honour_robots = 1;
    o->robots_token = "customdiff";
}

static const char *status_names[CD_HTTP_STATUS_COUNT] = {
    "success", "http_error", "timeout", "too_large", "refused_address", "robots_optout",
    "redirect_loop", "connect_error", "dns_error", "reset", "truncated", "bad_url",
    "tls_error", "file_error", "error"};

const char *cd_http_status_name(cd_http_status s) {
    return (s >= 0 && s < CD_HTTP_STATUS_COUNT) ? status_names[s] : "error";
}

int cd_http_is_transient(cd_http_status s, int code) {
    switch (s) {
    case CD_HTTP_TIMEOUT: case CD_HTTP_CONNECT_ERROR: case CD_HTTP_DNS_ERROR:
    case CD_HTTP_RESET: case CD_HTTP_TRUNCATED: case CD_HTTP_OTHER:
        return 1;
    case CD_HTTP_ERROR:
        return code == 408 || code == 425 || code == 429 || code == 500 || code == 502 ||
               code == 503 || code == 504;
    default:
        return 0;
    }
}

void cd_http_response_free(cd_http_response *r) {
    if (!r) return;
    free(r->body); free(r->final_url); free(r->content_type); free(r->x_robots);
    memset(r, 0, sizeof *r);
}

// ---- address policy ----

// `allow` is a mask: CD_ADDR_LOOPBACK admits loopback, CD_ADDR_PRIVATE admits the
// private ranges (RFC 1918, CGNAT, IPv6 ULA). Link-local (cloud metadata) is never admitted.
static int v4_refused(uint32_t a, int allow) {   // a in host order
    uint8_t b0 = a >> 24, b1 = (a >> 16) & 255, b2 = (a >> 8) & 255;
    int priv = !(allow & CD_ADDR_PRIVATE);
    if (b0 == 127) return !(allow & CD_ADDR_LOOPBACK);    // loopback
    if (b0 == 0) return 1;                                // "this network"
    if (b0 == 10) return priv;                            // 10/8 private
    if (b0 == 100 && (b1 & 0xC0) == 64) return priv;      // 100.64/10 shared (CGNAT)
    if (b0 == 169 && b1 == 254) return 1;                 // link-local (cloud metadata)
    if (b0 == 172 && (b1 & 0xF0) == 16) return priv;      // 172.16/12
    if (b0 == 192 && b1 == 168) return priv;              // 192.168/16
    if (b0 == 192 && b1 == 0 && b2 == 0) return 1;        // 192.0.0/24 IETF
    if (b0 == 198 && (b1 & 0xFE) == 18) return 1;         // 198.18/15 benchmarking
    if (b0 >= 224) return 1;                              // multicast, reserved, broadcast
    return 0;
}

int cd_http_addr_refused(const struct sockaddr *sa, int allow) {
    if (!sa) return 1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        return v4_refused(ntohl(s->sin_addr.s_addr), allow);
    }
    if (sa->sa_family != AF_INET6) return 1;               // unix sockets etc.
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t zero10[10] = {0};
    int first10_zero = memcmp(a, zero10, 10) == 0;
    uint32_t v4 = ((uint32_t)a[12] << 24) | ((uint32_t)a[13] << 16) | ((uint32_t)a[14] << 8) | a[15];
    if (first10_zero && a[10] == 0xff && a[11] == 0xff)    // ::ffff:a.b.c.d (v4-mapped)
        return v4_refused(v4, allow);
    if (first10_zero && a[10] == 0 && a[11] == 0) {        // ::, ::1, ::a.b.c.d (compat)
        int i, rest_zero = 1;
        for (i = 12; i < 15; i++) if (a[i]) rest_zero = 0;
        if (rest_zero && a[15] == 1) return !(allow & CD_ADDR_LOOPBACK);   // ::1
        return 1;                                           // :: and deprecated compat
    }
    if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b)   // 64:ff9b::/96 NAT64
        return v4_refused(v4, allow);
    if ((a[0] & 0xFE) == 0xFC) return !(allow & CD_ADDR_PRIVATE);   // fc00::/7 unique local
    if (a[0] == 0xFE && (a[1] & 0xC0) == 0x80) return 1;   // fe80::/10 link-local
    if (a[0] == 0xFE && (a[1] & 0xC0) == 0xC0) return 1;   // fec0::/10 site-local (old)
    if (a[0] == 0xFF) return 1;                            // multicast
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return 1;  // documentation
    return 0;
}

// ---- header parsing ----

double cd_http_parse_retry_after(const char *v) {
    if (!v) return -1;
    while (*v == ' ' || *v == '\t') v++;
    if (isdigit((unsigned char)*v)) {
        char *end;
        double s = strtod(v, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
        return *end ? -1 : s;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1) return -1;
    double d = difftime(t, time(NULL));
    return d < 0 ? 0 : d;
}

static void trim(char *s) {
    size_t n = strlen(s), i = 0;
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    while (isspace((unsigned char)s[i])) i++;
    if (i) memmove(s, s + i, n - i + 1);
}

int cd_http_robots_disallowed(const char *value, const char *token) {
    static const char *bad[] = {"noai", "noimageai", "noindex", "noimageindex"};
    char *v = cd_strdup(value ? value : ""), *dirs = v, *colon = strchr(v, ':');
    int out = 0;
    if (colon) {                       // "ua: directives": applies only to our token
        *colon = 0;
        char *ua = v;
        trim(ua);
        for (char *p = ua; *p; p++) *p = tolower((unsigned char)*p);
        if (!token || strcasecmp(ua, token) != 0) { free(v); return 0; }
        dirs = colon + 1;
    }
    char *save = NULL;
    for (char *d = strtok_r(dirs, ",", &save); d && !out; d = strtok_r(NULL, ",", &save)) {
        trim(d);
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
            if (strcasecmp(d, bad[i]) == 0) out = 1;
    }
    free(v);
    return out;
}

// ---- curl callbacks ----

static char *append_value(char *old, const char *v) {
    if (!old) return cd_strdup(v);
    char *s = cd_fmt("%s; %s", old, v);
    free(old);
    return s;
}

static void new_response(cd_xfer *x, const char *line) {
    x->code = 0;
    sscanf(line, "%*s %d", &x->code);
    free(x->ctype); free(x->xrobots);
    x->ctype = x->xrobots = NULL;
    x->retry_after = -1;
    x->clen = -1;
    x->len = 0;
}

// At the blank line ending a final (non-redirect) response's headers: policy checks.
static int headers_done(cd_xfer *x) {
    if (x->code >= 300 && x->code < 400) return 0;         // a hop; curl follows it
    if (x->o->honour_robots && x->xrobots) {
        char *all = cd_strdup(x->xrobots), *save = NULL;
        for (char *v = strtok_r(all, ";", &save); v; v = strtok_r(NULL, ";", &save))
            if (cd_http_robots_disallowed(v, x->o->robots_token)) x->robots = 1;
        free(all);
        if (x->robots) return -1;
    }
    if (x->o->max_bytes > 0 && x->clen > x->o->max_bytes) { x->too_large = 1; return -1; }
    return 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    cd_xfer *x = ud;
    size_t len = size * n;
    char line[2048];
    size_t m = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, p, m);
    line[m] = 0;
    if (strncmp(line, "HTTP/", 5) == 0) { new_response(x, line); return len; }
    if (line[0] == '\r' || line[0] == '\n') return headers_done(x) ? 0 : len;
    char *colon = strchr(line, ':');
    if (!colon) return len;
    *colon = 0;
    char *val = colon + 1;
    trim(val);
    if (strcasecmp(line, "content-type") == 0) { free(x->ctype); x->ctype = cd_strdup(val); }
    else if (strcasecmp(line, "x-robots-tag") == 0) x->xrobots = append_value(x->xrobots, val);
    else if (strcasecmp(line, "retry-after") == 0) x->retry_after = cd_http_parse_retry_after(val);
    else if (strcasecmp(line, "content-length") == 0) x->clen = strtoll(val, NULL, 10);
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    cd_xfer *x = ud;
    size_t len = size * n;
    if (x->robots) return 0;
    if (x->o->max_bytes > 0 && (int64_t)(x->len + len) > x->o->max_bytes) { x->too_large = 1; return 0; }
    if (x->len + len + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 65536;
        while (cap < x->len + len + 1) cap *= 2;
        x->buf = cd_realloc(x->buf, cap);
        x->cap = cap;
    }
    memcpy(x->buf + x->len, p, len);
    x->len += len;
    return len;
}

static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    cd_xfer *x = ud;
    if (cd_http_addr_refused(&a->addr, (x->o->allow_loopback ? CD_ADDR_LOOPBACK : 0) |
                                         (x->o->allow_private ? CD_ADDR_PRIVATE : 0))) {
        x->refused = 1;
        char host[INET6_ADDRSTRLEN] = "?";
        if (a->family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&a->addr)->sin_addr, host, sizeof host);
        else if (a->family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&a->addr)->sin6_addr, host, sizeof host);
        snprintf(x->refused_addr, sizeof x->refused_addr, "%s", host);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

// ---- transfers ----

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void global_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }
void cd_http_global_init(void) { pthread_once(&g_once, global_init_once); }

static const char *default_ua(void) {
    return "customdiff/" CD_VERSION " (+" CD_PROJECT_URL ")";
}

int cd_xfer_setup(cd_xfer *x, const cd_http_opts *o) {
    cd_http_global_init();
    x->o = o;
    x->retry_after = -1;
    x->clen = -1;
    CURL *e = x->e = curl_easy_init();
    if (!e) return cd_err("%s: curl_easy_init failed", x->url);
    const char *protos = o->allow_file_urls ? "http,https,file" : "http,https";
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protos);
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)o->max_redirects);
    curl_easy_setopt(e, CURLOPT_PROXY, "");              // env proxies would bypass the check
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(o->timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent ? o->user_agent : default_ua());
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    if (o->max_bytes > 0) curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    if (o->verbose) curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    return 0;
}

void cd_xfer_reset(cd_xfer *x) {
    if (x->e) curl_easy_cleanup(x->e);
    if (x->hdrs) curl_slist_free_all(x->hdrs);
    free(x->buf); free(x->ctype); free(x->xrobots);
    x->e = NULL; x->hdrs = NULL; x->buf = NULL; x->ctype = x->xrobots = NULL;
    x->len = x->cap = 0;
    x->refused = x->robots = x->too_large = 0;
    x->refused_addr[0] = 0;
    x->code = 0;
    x->retry_after = -1;
    x->clen = -1;
    x->errbuf[0] = 0;
}

void cd_xfer_free(cd_xfer *x) {
    cd_xfer_reset(x);
    free(x->url);
    x->url = NULL;
}

static cd_http_status status_of(cd_xfer *x, CURLcode rc, long code, int is_file) {
    if (x->robots) return CD_HTTP_ROBOTS_OPTOUT;
    if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) return CD_HTTP_TOO_LARGE;
    if (x->refused && (rc == CURLE_COULDNT_CONNECT || rc != CURLE_OK)) return CD_HTTP_REFUSED_ADDRESS;
    switch (rc) {
    case CURLE_OK:
        if ((code >= 200 && code < 300) || (is_file && code == 0)) return CD_HTTP_OK;
        return CD_HTTP_ERROR;
    case CURLE_OPERATION_TIMEDOUT: return CD_HTTP_TIMEOUT;
    case CURLE_TOO_MANY_REDIRECTS: return CD_HTTP_REDIRECT_LOOP;
    case CURLE_COULDNT_CONNECT: return CD_HTTP_CONNECT_ERROR;
    case CURLE_COULDNT_RESOLVE_HOST: return CD_HTTP_DNS_ERROR;
    case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING: return CD_HTTP_RESET;
    case CURLE_PARTIAL_FILE: return CD_HTTP_TRUNCATED;
    case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_URL_MALFORMAT: return CD_HTTP_BAD_URL;
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE:
        return CD_HTTP_TLS_ERROR;
    case CURLE_FILE_COULDNT_READ_FILE: case CURLE_READ_ERROR: return CD_HTTP_FILE_ERROR;
    default: return CD_HTTP_OTHER;
    }
}

static void describe(cd_xfer *x, CURLcode rc, cd_http_response *r) {
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    switch (r->status) {
    case CD_HTTP_OK: r->error[0] = 0; return;
    case CD_HTTP_ERROR:
        snprintf(r->error, sizeof r->error, "%s: HTTP %d", x->url, r->http_code); return;
    case CD_HTTP_TOO_LARGE:
        snprintf(r->error, sizeof r->error, "%s: body larger than %lld bytes", x->url,
                 (long long)x->o->max_bytes); return;
    case CD_HTTP_REFUSED_ADDRESS:
        snprintf(r->error, sizeof r->error, "%s: refused address %s (private, loopback, "
                 "link-local or reserved)", x->url, x->refused_addr); return;
    case CD_HTTP_ROBOTS_OPTOUT:
        snprintf(r->error, sizeof r->error, "%s: use of image disallowed by X-Robots-Tag "
                 "directive (%s)", x->url, x->xrobots ? x->xrobots : ""); return;
    case CD_HTTP_REDIRECT_LOOP:
        snprintf(r->error, sizeof r->error, "%s: more than %d redirects", x->url,
                 x->o->max_redirects); return;
    default:
        snprintf(r->error, sizeof r->error, "%s: %s: %s", x->url,
                 cd_http_status_name(r->status), detail);
    }
}

void cd_xfer_finish(cd_xfer *x, CURLcode rc, cd_http_response *r) {
    long code = 0;
    char *eff = NULL;
    curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(x->e, CURLINFO_EFFECTIVE_URL, &eff);
    int is_file = eff && strncasecmp(eff, "file:", 5) == 0;
    cd_http_response_free(r);
    r->http_code = (int)code;
    r->status = status_of(x, rc, code, is_file);
    r->final_url = cd_strdup(eff ? eff : x->url);
    r->content_type = x->ctype; x->ctype = NULL;
    r->x_robots = x->xrobots; x->xrobots = NULL;
    r->retry_after_s = x->retry_after;
    if (r->status == CD_HTTP_OK || r->status == CD_HTTP_ERROR) {
        if (!x->buf) x->buf = cd_malloc(1);
        x->buf[x->len] = 0;
        r->body = x->buf; r->len = x->len;
        x->buf = NULL; x->len = x->cap = 0;
    }
    describe(x, rc, r);
}

double cd_xfer_retry_delay(const cd_http_opts *o, const cd_http_response *r, int attempt) {
    if (attempt > o->retries || !cd_http_is_transient(r->status, r->http_code)) return -1;
    if (r->status == CD_HTTP_ERROR && (r->http_code == 429 || r->http_code == 503) &&
        r->retry_after_s >= 0)
        return r->retry_after_s > o->max_backoff_s ? -1 : r->retry_after_s;
    double d = o->backoff_s;
    for (int i = 1; i < attempt; i++) d *= 2;
    return d > o->max_backoff_s ? o->max_backoff_s : d;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int request_once(const cd_http_opts *o, cd_xfer *x, const char *method,
                        const char *body, const char *ctype, cd_http_response *r) {
    if (cd_xfer_setup(x, o)) return -1;
    if (strcasecmp(method, "GET") != 0) {
        if (strcasecmp(method, "POST") == 0) curl_easy_setopt(x->e, CURLOPT_POST, 1L);
        else curl_easy_setopt(x->e, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body) {
        curl_easy_setopt(x->e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        curl_easy_setopt(x->e, CURLOPT_POSTFIELDS, body);
    }
    if (ctype) {
        char *h = cd_fmt("Content-Type: %s", ctype);
        x->hdrs = curl_slist_append(x->hdrs, h);
        free(h);
    }
    x->hdrs = curl_slist_append(x->hdrs, "Accept: application/json, */*");
    curl_easy_setopt(x->e, CURLOPT_HTTPHEADER, x->hdrs);
    CURLcode rc = curl_easy_perform(x->e);
    cd_xfer_finish(x, rc, r);
    return 0;
}

int cd_http_request(const cd_http_opts *opts, const char *method, const char *url,
                    const char *body, const char *content_type, cd_http_response *r) {
    cd_http_opts def;
    if (!opts) { cd_http_opts_default(&def); opts = &def; }
    memset(r, 0, sizeof *r);
    if (!url || !method) return cd_err("cd_http_request: missing url or method");
    double t0 = now_s();
    cd_xfer x;
    memset(&x, 0, sizeof x);
    x.url = cd_strdup(url);
    for (int attempt = 1;; attempt++) {
        if (request_once(opts, &x, method, body, content_type, r)) { cd_xfer_free(&x); return -1; }
        r->attempts = attempt;
        double d = r->status == CD_HTTP_OK ? -1 : cd_xfer_retry_delay(opts, r, attempt);
        cd_xfer_reset(&x);
        if (d < 0) break;
        usleep((useconds_t)(d * 1e6));
    }
    cd_xfer_free(&x);
    r->seconds = now_s() - t0;
    if (r->status != CD_HTTP_OK) {
        if (r->status == CD_HTTP_ERROR && r->body && r->len)
            return cd_err("%s %s (body: %.200s)", method, r->error, (const char *)r->body);
        return cd_err("%s %s", method, r->error);
    }
    return 0;
}
