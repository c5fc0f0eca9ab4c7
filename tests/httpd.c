// Loopback HTTP/1.1 test server with fault routes (see tests/httpd.h).
#include "tests/httpd.h"
#include "core/err.h"
#include "core/fileio.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TH_MAXCONN 512
#define TH_MAXPATHS 256

struct th_server {
    char *root;
    int lfd, port;
    volatile int stopping;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int conns[TH_MAXCONN];      // open client sockets (-1 = free slot)
    int nthreads;               // connection threads alive
    char *paths[TH_MAXPATHS];   // per-path hit counters
    int hits[TH_MAXPATHS];
    int total;
};

typedef struct { th_server *s; int fd, slot; } th_conn;

static int count_hit(th_server *s, const char *path) {
    pthread_mutex_lock(&s->mu);
    int i, n = -1;
    s->total++;
    for (i = 0; i < TH_MAXPATHS && s->paths[i]; i++)
        if (strcmp(s->paths[i], path) == 0) break;
    if (i < TH_MAXPATHS) {
        if (!s->paths[i]) s->paths[i] = cd_strdup(path);
        n = ++s->hits[i];
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

int th_hits(th_server *s, const char *path) {
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < TH_MAXPATHS && s->paths[i]; i++)
        if (strcmp(s->paths[i], path) == 0) n = s->hits[i];
    pthread_mutex_unlock(&s->mu);
    return n;
}

int th_total_requests(th_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->total;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int th_port(const th_server *s) { return s->port; }
char *th_url(const th_server *s, const char *path) {
    return cd_fmt("http://127.0.0.1:%d%s", s->port, path);
}

// ---- sending ----

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k; n -= (size_t)k;
    }
    return 0;
}

static int send_fmt(int fd, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return send_all(fd, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}

// Status line + standard headers + extra header lines ("" or "Name: v\r\n...") + body.
static int respond(int fd, int code, const char *ctype, const char *extra,
                   const void *body, size_t len) {
    const char *reason = code == 200 ? "OK" : code == 302 ? "Found" : code == 403 ? "Forbidden"
                       : code == 404 ? "Not Found" : code == 429 ? "Too Many Requests"
                       : code == 500 ? "Internal Server Error" : code == 503 ? "Service Unavailable" : "X";
    if (send_fmt(fd, "HTTP/1.1 %d %s\r\nServer: customdiff-test\r\nContent-Type: %s\r\n"
                 "Content-Length: %zu\r\n%s\r\n", code, reason, ctype, len, extra ? extra : ""))
        return -1;
    return len ? send_all(fd, body, len) : 0;
}

static int respond_text(int fd, int code, const char *extra, const char *text) {
    return respond(fd, code, "text/html; charset=utf-8", extra, text, strlen(text));
}

static const char *ctype_of(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) return "image/jpeg";
    if (!strcasecmp(dot, ".png")) return "image/png";
    if (!strcasecmp(dot, ".webp")) return "image/webp";
    if (!strcasecmp(dot, ".txt")) return "text/plain";
    return "application/octet-stream";
}

// Read root/name (no "..", no absolute paths). 0 / -1.
static int load(th_server *s, const char *name, char **data, size_t *len) {
    if (!*name || strstr(name, "..") || name[0] == '/') return -1;
    char *p = cd_path_join(s->root, name);
    int rc = cd_read_file(p, data, len, 0);
    free(p);
    return rc;
}

static int serve_file(th_server *s, int fd, const char *name, const char *ct, const char *extra) {
    char *d; size_t n;
    if (load(s, name, &d, &n)) return respond_text(fd, 404, NULL, "<html>not found</html>");
    int rc = respond(fd, 200, ct ? ct : ctype_of(name), extra, d, n);
    free(d);
    return rc;
}

static void sleep_ms(th_server *s, int ms) {
    for (int t = 0; t < ms && !s->stopping; t += 10) usleep(10000);
}

// ---- routes ----

typedef struct { char method[16]; char path[1024]; char query[512]; char ua[256];
                 char ctype[128]; char *body; size_t blen; int close; } th_req;

static int route_fault(th_server *s, int fd, th_req *q, int *close_after) {
    const char *p = q->path;
    if (!strcmp(p, "/reset")) {
        send_fmt(fd, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n");
        char junk[4096];
        memset(junk, 0xAB, sizeof junk);
        send_all(fd, junk, sizeof junk);
        usleep(20000);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        *close_after = 1;
        return -1;                       // caller closes -> RST
    }
    if (!strncmp(p, "/truncated/", 11)) {
        char *d; size_t n;
        if (load(s, p + 11, &d, &n)) return respond_text(fd, 404, NULL, "no");
        send_fmt(fd, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                 ctype_of(p + 11), n + 5000);
        send_all(fd, d, n);
        free(d);
        *close_after = 1;
        return -1;
    }
    if (!strcmp(p, "/garbage")) {
        char g[4096];
        uint32_t x = 12345;
        for (size_t i = 0; i < sizeof g; i++) { x = x * 1103515245u + 12345u; g[i] = (char)(x >> 24); }
        return respond(fd, 200, "image/jpeg", NULL, g, sizeof g);
    }
    if (!strncmp(p, "/big/", 5) || !strncmp(p, "/bigchunked/", 12)) {
        int chunked = p[4] == 'c';
        long n = atol(p + (chunked ? 12 : 5));
        char blk[16384];
        memset(blk, 'z', sizeof blk);
        if (chunked) send_fmt(fd, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n");
        else send_fmt(fd, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %ld\r\n\r\n", n);
        for (long sent = 0; sent < n && !s->stopping;) {
            long k = n - sent < (long)sizeof blk ? n - sent : (long)sizeof blk;
            if (chunked && send_fmt(fd, "%lx\r\n", k)) return -1;
            if (send_all(fd, blk, (size_t)k)) return -1;
            if (chunked && send_all(fd, "\r\n", 2)) return -1;
            sent += k;
        }
        return chunked ? send_all(fd, "0\r\n\r\n", 5) : 0;
    }
    return 1;   // not a fault route
}

static int route_redirect(th_server *s, int fd, th_req *q) {
    const char *p = q->path;
    char hdr[1200];
    if (!strncmp(p, "/loop/", 6)) {
        snprintf(hdr, sizeof hdr, "Location: /loop/%d\r\n", atoi(p + 6) + 1);
        return respond_text(fd, 302, hdr, "loop");
    }
    if (!strncmp(p, "/redirect/", 10)) {
        snprintf(hdr, sizeof hdr, "Location: /files/%s\r\n", p + 10);
        return respond_text(fd, 302, hdr, "moved");
    }
    if (!strcmp(p, "/redirect-private"))
        return respond_text(fd, 302, "Location: http://10.0.0.1/x.jpg\r\n", "moved");
    if (!strcmp(p, "/redirect-metadata"))
        return respond_text(fd, 302, "Location: http://169.254.169.254/latest/meta-data/\r\n", "moved");
    return 1;
}

static int route(th_server *s, int fd, th_req *q, int *close_after) {
    const char *p = q->path;
    int hit = count_hit(s, p);
    char ct[128] = "";
    if (!strncmp(q->query, "ct=", 3)) snprintf(ct, sizeof ct, "%s", q->query + 3);
    if (!strncmp(p, "/files/", 7)) return serve_file(s, fd, p + 7, ct[0] ? ct : NULL, NULL);
    if (!strcmp(p, "/404")) return respond_text(fd, 404, NULL, "<html>not found</html>");
    if (!strcmp(p, "/403")) return respond_text(fd, 403, NULL, "<html>forbidden</html>");
    if (!strcmp(p, "/always503")) return respond_text(fd, 503, "Retry-After: 1\r\n", "busy");
    if (!strncmp(p, "/429/", 5) || !strncmp(p, "/503/", 5) || !strncmp(p, "/500/", 5)) {
        int code = atoi(p + 1);
        if (hit == 1) return respond_text(fd, code, code == 500 ? "" : "Retry-After: 1\r\n", "later");
        return serve_file(s, fd, p + 5, NULL, NULL);
    }
    if (!strncmp(p, "/slow/", 6)) {
        int ms = atoi(p + 6);
        const char *name = strchr(p + 6, '/');
        sleep_ms(s, ms);
        return serve_file(s, fd, name ? name + 1 : "", NULL, NULL);
    }
    if (!strcmp(p, "/html"))
        return respond_text(fd, 200, NULL, "<!DOCTYPE html><html><head><title>Not an image</title>"
                            "</head><body><p>hello</p></body></html>");
    if (!strncmp(p, "/robots/", 8)) {
        const char *kind = p + 8, *name = strchr(kind, '/');
        if (!name) return respond_text(fd, 404, NULL, "no");
        const char *h = !strncmp(kind, "noai/", 5) ? "X-Robots-Tag: noai\r\n"
                      : !strncmp(kind, "ua/", 3) ? "X-Robots-Tag: customdiff: noimageai, nofollow\r\n"
                      : "X-Robots-Tag: otherbot: noai\r\n";
        return serve_file(s, fd, name + 1, NULL, h);
    }
    if (!strcmp(p, "/echo")) {
        char *body = cd_fmt("{\"method\":\"%s\",\"path\":\"%s\",\"user_agent\":\"%s\","
                            "\"content_type\":\"%s\",\"body_len\":%zu}", q->method, q->path,
                            q->ua, q->ctype, q->blen);
        int rc = respond(fd, 200, "application/json", NULL, body, strlen(body));
        free(body);
        return rc;
    }
    int rc = route_fault(s, fd, q, close_after);
    if (rc != 1) return rc;
    rc = route_redirect(s, fd, q);
    if (rc != 1) return rc;
    return respond_text(fd, 404, NULL, "<html>no such route</html>");
}

// ---- connection handling ----

// Read one request (headers + Content-Length body). 0 ok, -1 closed/error.
static int read_request(int fd, char *buf, size_t cap, size_t *have, th_req *q) {
    char *end;
    while (!(end = memmem(buf, *have, "\r\n\r\n", 4))) {
        if (*have >= cap - 1) return -1;
        ssize_t k = recv(fd, buf + *have, cap - 1 - *have, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        *have += (size_t)k;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    buf[hlen - 2] = 0;
    memset(q, 0, sizeof *q);
    char target[1600] = "";
    if (sscanf(buf, "%15s %1599s", q->method, target) != 2) return -1;
    char *qm = strchr(target, '?');
    if (qm) { *qm = 0; snprintf(q->query, sizeof q->query, "%s", qm + 1); }
    snprintf(q->path, sizeof q->path, "%s", target);
    long clen = 0;
    for (char *line = strstr(buf, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (!strncasecmp(l, "Content-Length:", 15)) clen = atol(l + 15);
        else if (!strncasecmp(l, "User-Agent:", 11)) sscanf(l + 11, " %255[^\r]", q->ua);
        else if (!strncasecmp(l, "Content-Type:", 13)) sscanf(l + 13, " %127[^\r]", q->ctype);
        else if (!strncasecmp(l, "Connection: close", 17)) q->close = 1;
    }
    if (clen < 0 || clen > 1 << 20) return -1;
    q->body = cd_malloc((size_t)clen + 1);
    size_t got = *have - hlen < (size_t)clen ? *have - hlen : (size_t)clen;
    memcpy(q->body, buf + hlen, got);
    while (got < (size_t)clen) {
        ssize_t k = recv(fd, q->body + got, (size_t)clen - got, 0);
        if (k <= 0) { free(q->body); q->body = NULL; return -1; }
        got += (size_t)k;
    }
    q->body[clen] = 0;
    q->blen = (size_t)clen;
    size_t used = hlen + ((*have - hlen) < (size_t)clen ? (*have - hlen) : (size_t)clen);
    memmove(buf, buf + used, *have - used);
    *have -= used;
    return 0;
}

static void *conn_main(void *arg) {
    th_conn *c = arg;
    th_server *s = c->s;
    size_t cap = 32768, have = 0;
    char *buf = cd_malloc(cap);
    while (!s->stopping) {
        th_req q;
        if (read_request(c->fd, buf, cap, &have, &q)) break;
        int close_after = q.close;
        int rc = route(s, c->fd, &q, &close_after);
        free(q.body);
        if (rc || close_after) break;
    }
    free(buf);
    pthread_mutex_lock(&s->mu);
    s->conns[c->slot] = -1;
    close(c->fd);
    s->nthreads--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(c);
    return NULL;
}

static void *accept_main(void *arg) {
    th_server *s = arg;
    while (!s->stopping) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) { if (errno == EINTR) continue; if (s->stopping) break; usleep(1000); continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_mutex_lock(&s->mu);
        int slot = -1;
        for (int i = 0; i < TH_MAXCONN; i++) if (s->conns[i] < 0) { slot = i; break; }
        if (slot < 0 || s->stopping) { pthread_mutex_unlock(&s->mu); close(fd); continue; }
        s->conns[slot] = fd;
        s->nthreads++;
        pthread_mutex_unlock(&s->mu);
        th_conn *c = cd_calloc(1, sizeof *c);
        c->s = s; c->fd = fd; c->slot = slot;
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        if (pthread_create(&t, &at, conn_main, c)) {
            pthread_mutex_lock(&s->mu);
            s->conns[slot] = -1; s->nthreads--;
            pthread_mutex_unlock(&s->mu);
            close(fd); free(c);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

int th_start(const char *root, int port, th_server **out) {
    th_server *s = cd_calloc(1, sizeof *s);
    s->root = cd_strdup(root ? root : ".");
    for (int i = 0; i < TH_MAXCONN; i++) s->conns[i] = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) || listen(s->lfd, 256)) {
        int e = errno;
        close(s->lfd); free(s->root); free(s);
        errno = e;
        return cd_errno("test httpd: bind/listen 127.0.0.1:%d", port);
    }
    socklen_t al = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->acceptor, NULL, accept_main, s)) {
        close(s->lfd); free(s->root); free(s);
        return cd_err("test httpd: pthread_create failed");
    }
    *out = s;
    return 0;
}

void th_stop(th_server *s) {
    if (!s) return;
    s->stopping = 1;
    shutdown(s->lfd, SHUT_RDWR);
    close(s->lfd);
    pthread_join(s->acceptor, NULL);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < TH_MAXCONN; i++) if (s->conns[i] >= 0) shutdown(s->conns[i], SHUT_RDWR);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    while (s->nthreads > 0)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl)) break;
    int left = s->nthreads;
    pthread_mutex_unlock(&s->mu);
    if (left) return;          // a thread is stuck: leak rather than free memory in use
    for (int i = 0; i < TH_MAXPATHS; i++) free(s->paths[i]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->root);
    free(s);
}
