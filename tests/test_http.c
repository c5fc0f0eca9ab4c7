// core/http: the blocking request and the multi downloader against the loopback server's
// fault routes; address policy, robots and Retry-After parsing; sha256 FIPS vectors.
#include "tests/testlib.h"
#include "tests/httpd.h"
#include "core/http.h"
#include "core/sha256.h"
#include "core/fileio.h"
#include "core/progress.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static th_server *srv;
static char *root;
static uint8_t payload[30000];

static void test_opts(cd_http_opts *o) {
    cd_http_opts_default(o);
    o->allow_loopback = 1;
    o->connect_timeout_s = 2;
    o->timeout_s = 2;
    o->retries = 1;
    o->backoff_s = 0.05;
    o->max_backoff_s = 2;
}

static int get(const cd_http_opts *o, const char *path, cd_http_response *r) {
    char *u = th_url(srv, path);
    int rc = cd_http_request(o, "GET", u, NULL, NULL, r);
    free(u);
    return rc;
}

TEST(sha256_fips_vectors) {
    char hex[65];
    cd_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    cd_sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cd_sha256_hex(m, strlen(m), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    // one million 'a', fed in uneven pieces
    cd_sha256_ctx c;
    cd_sha256_init(&c);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) { size_t k = left < 997 ? left : 997; cd_sha256_update(&c, a, k); left -= k; }
    uint8_t d[32];
    cd_sha256_final(&c, d);
    static const uint8_t want[8] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92};
    CHECK(!memcmp(d, want, 8));
}

TEST(address_policy) {
    struct { const char *a; int refused, refused_loop_ok; } v4[] = {
        {"127.0.0.1", 1, 0}, {"127.9.9.9", 1, 0}, {"10.0.0.1", 1, 1}, {"172.16.5.4", 1, 1},
        {"172.32.0.1", 0, 0}, {"192.168.1.1", 1, 1}, {"169.254.169.254", 1, 1},
        {"0.0.0.0", 1, 1}, {"224.0.0.1", 1, 1}, {"100.64.0.1", 1, 1}, {"8.8.8.8", 0, 0},
        {"93.184.216.34", 0, 0}};
    for (size_t i = 0; i < sizeof v4 / sizeof *v4; i++) {
        struct sockaddr_in s = {.sin_family = AF_INET};
        inet_pton(AF_INET, v4[i].a, &s.sin_addr);
        CHECKF(cd_http_addr_refused((struct sockaddr *)&s, 0) == v4[i].refused, "%s", v4[i].a);
        CHECKF(cd_http_addr_refused((struct sockaddr *)&s, 1) == v4[i].refused_loop_ok, "%s (loopback allowed)", v4[i].a);
    }
    struct { const char *a; int refused, refused_loop_ok; } v6[] = {
        {"::1", 1, 0}, {"::", 1, 1}, {"fd00::1", 1, 1}, {"fe80::1", 1, 1}, {"ff02::1", 1, 1},
        {"::ffff:10.1.2.3", 1, 1}, {"::ffff:127.0.0.1", 1, 0}, {"::ffff:8.8.8.8", 0, 0},
        {"2606:4700::1111", 0, 0}, {"64:ff9b::a9fe:a9fe", 1, 1}};
    for (size_t i = 0; i < sizeof v6 / sizeof *v6; i++) {
        struct sockaddr_in6 s = {.sin6_family = AF_INET6};
        inet_pton(AF_INET6, v6[i].a, &s.sin6_addr);
        CHECKF(cd_http_addr_refused((struct sockaddr *)&s, 0) == v6[i].refused, "%s", v6[i].a);
        CHECKF(cd_http_addr_refused((struct sockaddr *)&s, 1) == v6[i].refused_loop_ok, "%s (loopback allowed)", v6[i].a);
    }
    // Private ranges admitted only with CD_ADDR_PRIVATE (a LAN back end the user names);
    // link-local (cloud metadata) and multicast never.
    struct { const char *a; int refused_private_ok; } pv[] = {
        {"10.0.0.1", 0}, {"172.16.5.4", 0}, {"192.168.1.1", 0}, {"100.64.0.1", 0},
        {"169.254.169.254", 1}, {"224.0.0.1", 1}, {"0.0.0.0", 1}, {"127.0.0.1", 1}};
    for (size_t i = 0; i < sizeof pv / sizeof *pv; i++) {
        struct sockaddr_in s = {.sin_family = AF_INET};
        inet_pton(AF_INET, pv[i].a, &s.sin_addr);
        CHECKF(cd_http_addr_refused((struct sockaddr *)&s, CD_ADDR_PRIVATE) == pv[i].refused_private_ok, "%s (private allowed)", pv[i].a);
    }
    struct sockaddr_in6 u = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "fd00::1", &u.sin6_addr);
    CHECK(!cd_http_addr_refused((struct sockaddr *)&u, CD_ADDR_PRIVATE));
    inet_pton(AF_INET6, "fe80::1", &u.sin6_addr);
    CHECK(cd_http_addr_refused((struct sockaddr *)&u, CD_ADDR_PRIVATE | CD_ADDR_LOOPBACK));
}

TEST(robots_and_retry_after_parsing) {
    CHECK(cd_http_robots_disallowed("noai", "customdiff"));
    CHECK(cd_http_robots_disallowed("noindex, nofollow", "customdiff"));
    CHECK(cd_http_robots_disallowed(" NoImageAI ", "customdiff"));
    CHECK(cd_http_robots_disallowed("customdiff: noimageindex", "customdiff"));
    CHECK(!cd_http_robots_disallowed("otherbot: noai", "customdiff"));
    CHECK(!cd_http_robots_disallowed("nofollow, noarchive", "customdiff"));
    CHECK(cd_http_parse_retry_after("7") == 7);
    CHECK(cd_http_parse_retry_after("abc") < 0);
    double d = cd_http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT");   // past -> 0
    CHECK(d == 0);
}

TEST(get_file_ok_and_user_agent) {
    cd_http_opts o; test_opts(&o);
    cd_http_response r;
    CHECK_OK(get(&o, "/files/a.bin", &r));
    CHECK(r.status == CD_HTTP_OK && r.http_code == 200);
    CHECK(r.len == sizeof payload && !memcmp(r.body, payload, r.len));
    cd_http_response_free(&r);
    CHECK_OK(get(&o, "/echo", &r));
    CHECKF(strstr((char *)r.body, "customdiff/") && strstr((char *)r.body, "+http"), "UA: %s", r.body);
    cd_http_response_free(&r);
}

TEST(post_json) {
    cd_http_opts o; test_opts(&o);
    cd_http_response r;
    char *u = th_url(srv, "/echo");
    CHECK_OK(cd_http_request(&o, "POST", u, "{\"text\":\"cat\"}", "application/json", &r));
    free(u);
    CHECKF(strstr((char *)r.body, "\"method\":\"POST\"") && strstr((char *)r.body, "\"body_len\":14") &&
           strstr((char *)r.body, "application/json"), "%s", r.body);
    cd_http_response_free(&r);
}

TEST(http_errors_not_retried) {
    cd_http_opts o; test_opts(&o);
    cd_http_response r;
    CHECK_ERR(get(&o, "/404", &r), "HTTP 404");
    CHECK(r.status == CD_HTTP_ERROR && r.http_code == 404 && r.attempts == 1);
    CHECK(!cd_http_is_transient(r.status, r.http_code));
    cd_http_response_free(&r);
    CHECK_ERR(get(&o, "/403", &r), "403");
    CHECK(r.http_code == 403 && r.attempts == 1);
    cd_http_response_free(&r);
}

TEST(retry_after_429_then_success) {
    cd_http_opts o; test_opts(&o);
    cd_http_response r;
    double t0 = cd_now();
    CHECK_OK(get(&o, "/429/a.bin", &r));
    double dt = cd_now() - t0;
    CHECK(r.status == CD_HTTP_OK && r.attempts == 2 && r.len == sizeof payload);
    CHECKF(dt >= 0.9, "Retry-After: 1 not honoured (%.2f s)", dt);
    CHECK(th_hits(srv, "/429/a.bin") == 2);
    cd_http_response_free(&r);
    CHECK_OK(get(&o, "/503/a.bin", &r));                       // 503 + Retry-After too
    CHECK(r.status == CD_HTTP_OK && r.attempts == 2);
    cd_http_response_free(&r);
    CHECK_OK(get(&o, "/500/a.bin", &r));                       // 500 then success, backoff
    CHECK(r.status == CD_HTTP_OK && r.attempts == 2);
    cd_http_response_free(&r);
    o.retries = 0;
    CHECK_ERR(get(&o, "/always503", &r), "503");
    CHECK(cd_http_is_transient(r.status, r.http_code));
    cd_http_response_free(&r);
}

TEST(timeout_reset_truncated) {
    cd_http_opts o; test_opts(&o);
    o.retries = 0;
    o.timeout_s = 0.5;
    cd_http_response r;
    CHECK_ERR(get(&o, "/slow/3000/a.bin", &r), "timeout");
    CHECK(r.status == CD_HTTP_TIMEOUT && cd_http_is_transient(r.status, 0));
    cd_http_response_free(&r);
    o.timeout_s = 3;
    CHECK(get(&o, "/reset", &r) != 0);
    CHECKF(r.status == CD_HTTP_RESET || r.status == CD_HTTP_TRUNCATED, "reset gave %s", cd_http_status_name(r.status));
    cd_http_response_free(&r);
    CHECK(get(&o, "/truncated/a.bin", &r) != 0);
    CHECKF(r.status == CD_HTTP_TRUNCATED, "truncated gave %s", cd_http_status_name(r.status));
    cd_http_response_free(&r);
}

TEST(too_large_aborts) {
    cd_http_opts o; test_opts(&o);
    o.max_bytes = 100000;
    cd_http_response r;
    CHECK_ERR(get(&o, "/big/50000000", &r), "larger than");
    CHECK(r.status == CD_HTTP_TOO_LARGE && r.body == NULL);
    cd_http_response_free(&r);
    double t0 = cd_now();
    CHECK_ERR(get(&o, "/bigchunked/500000000", &r), "larger than");   // no Content-Length
    CHECK(r.status == CD_HTTP_TOO_LARGE);
    CHECKF(cd_now() - t0 < 1.5, "abort was not immediate");
    cd_http_response_free(&r);
}

TEST(redirects) {
    cd_http_opts o; test_opts(&o);
    cd_http_response r;
    CHECK_OK(get(&o, "/redirect/a.bin", &r));
    CHECK(strstr(r.final_url, "/files/a.bin") && r.len == sizeof payload);
    cd_http_response_free(&r);
    CHECK_ERR(get(&o, "/loop/0", &r), "redirects");
    CHECK(r.status == CD_HTTP_REDIRECT_LOOP);
    cd_http_response_free(&r);
    CHECK_ERR(get(&o, "/redirect-private", &r), "refused address 10.0.0.1");
    CHECK(r.status == CD_HTTP_REFUSED_ADDRESS);
    cd_http_response_free(&r);
    CHECK_ERR(get(&o, "/redirect-metadata", &r), "169.254.169.254");
    CHECK(r.status == CD_HTTP_REFUSED_ADDRESS);
    cd_http_response_free(&r);
}

TEST(loopback_refused_by_default) {
    cd_http_opts o; test_opts(&o);
    o.allow_loopback = 0;
    cd_http_response r;
    CHECK_ERR(get(&o, "/files/a.bin", &r), "refused address 127.0.0.1");
    CHECK(r.status == CD_HTTP_REFUSED_ADDRESS);
    cd_http_response_free(&r);
    char *u = cd_fmt("http://localhost:%d/files/a.bin", th_port(srv));   // by name too
    CHECK(cd_http_request(&o, "GET", u, NULL, NULL, &r) != 0);
    free(u);
    CHECK(r.status == CD_HTTP_REFUSED_ADDRESS);
    cd_http_response_free(&r);
}

TEST(robots_optout) {
    cd_http_opts o; test_opts(&o);
    cd_http_response r;
    CHECK_ERR(get(&o, "/robots/noai/a.bin", &r), "X-Robots-Tag");
    CHECK(r.status == CD_HTTP_ROBOTS_OPTOUT && r.body == NULL && r.attempts == 1);
    cd_http_response_free(&r);
    CHECK(get(&o, "/robots/ua/a.bin", &r) != 0 && r.status == CD_HTTP_ROBOTS_OPTOUT);
    cd_http_response_free(&r);
    CHECK_OK(get(&o, "/robots/other/a.bin", &r));
    cd_http_response_free(&r);
    o.honour_robots = 0;
    CHECK_OK(get(&o, "/robots/noai/a.bin", &r));
    cd_http_response_free(&r);
}

TEST(protocols) {
    cd_http_opts o; test_opts(&o);
    cd_http_response r;
    char *rel = cd_path_join(root, "a.bin"), path[4096];
    CHECK(realpath(rel, path));
    free(rel);
    char *fu = cd_fmt("file://%s", path);
    CHECK(cd_http_request(&o, "GET", fu, NULL, NULL, &r) != 0 && r.status == CD_HTTP_BAD_URL);
    cd_http_response_free(&r);
    o.allow_file_urls = 1;
    CHECK_OK(cd_http_request(&o, "GET", fu, NULL, NULL, &r));
    CHECK(r.len == sizeof payload);
    cd_http_response_free(&r);
    CHECK(cd_http_request(&o, "GET", "ftp://127.0.0.1/x", NULL, NULL, &r) != 0 && r.status == CD_HTTP_BAD_URL);
    cd_http_response_free(&r);
    free(fu);
}

// ---- multi downloader ----
typedef struct { int n, ok; int by_status[CD_HTTP_STATUS_COUNT]; int64_t bytes; } tally;
static void on_done(void *user, const char *url, cd_http_response *r) {
    tally *t = user;
    t->n++;
    t->by_status[r->status]++;
    if (r->status == CD_HTTP_OK) { t->ok++; t->bytes += r->len; }
}

TEST(multi_mixed_faults) {
    cd_http_opts o; test_opts(&o);
    o.concurrency = 16;
    o.timeout_s = 1;
    o.max_bytes = 1 << 20;
    cd_http *h;
    tally t = {0};
    CHECK_OK(cd_http_new(&o, on_done, &h));
    const char *paths[] = {"/files/a.bin", "/404", "/429/b.bin", "/500/b.bin", "/slow/2500/a.bin",
                           "/reset", "/truncated/a.bin", "/big/5000000", "/loop/0",
                           "/redirect-private", "/robots/noai/a.bin", "/garbage", "/html"};
    int np = sizeof paths / sizeof *paths;
    for (int i = 0; i < np; i++) { char *u = th_url(srv, paths[i]); cd_http_submit(h, u, &t); free(u); }
    for (int i = 0; i < 100; i++) { char *u = th_url(srv, "/files/a.bin"); cd_http_submit(h, u, &t); free(u); }
    double t0 = cd_now();
    CHECK_OK(cd_http_run(h));
    double dt = cd_now() - t0;
    cd_http_free(h);
    CHECK(t.n == np + 100);
    CHECKF(t.ok == 100 + 5, "ok=%d", t.ok);   // a.bin x101, 429, 500 (then ok), garbage, html
    CHECK(t.by_status[CD_HTTP_ERROR] == 1 && t.by_status[CD_HTTP_TIMEOUT] == 1);
    CHECK(t.by_status[CD_HTTP_TOO_LARGE] == 1 && t.by_status[CD_HTTP_REDIRECT_LOOP] == 1);
    CHECK(t.by_status[CD_HTTP_REFUSED_ADDRESS] == 1 && t.by_status[CD_HTTP_ROBOTS_OPTOUT] == 1);
    CHECK(t.by_status[CD_HTTP_RESET] + t.by_status[CD_HTTP_TRUNCATED] == 2);
    CHECKF(dt < 6, "took %.1f s", dt);
}

// 8 slow requests to one host with 2 connections per host take >= 4 rounds.
TEST(per_host_connection_cap) {
    cd_http_opts o; test_opts(&o);
    o.concurrency = 16;
    o.max_host_conns = 2;
    cd_http *h;
    tally t = {0};
    CHECK_OK(cd_http_new(&o, on_done, &h));
    for (int i = 0; i < 8; i++) { char *u = th_url(srv, "/slow/200/b.bin"); cd_http_submit(h, u, &t); free(u); }
    double t0 = cd_now();
    CHECK_OK(cd_http_run(h));
    double capped = cd_now() - t0;
    cd_http_free(h);
    CHECK(t.ok == 8);
    CHECKF(capped >= 0.75, "8 x 200 ms over 2 connections took only %.2f s", capped);
    o.max_host_conns = 16;
    CHECK_OK(cd_http_new(&o, on_done, &h));
    for (int i = 0; i < 8; i++) { char *u = th_url(srv, "/slow/200/b.bin"); cd_http_submit(h, u, &t); free(u); }
    t0 = cd_now();
    CHECK_OK(cd_http_run(h));
    double free_run = cd_now() - t0;
    cd_http_free(h);
    CHECKF(free_run < capped * 0.75, "uncapped %.2f s vs capped %.2f s", free_run, capped);
}

int main(void) {
    root = tl_tmpdir("http");
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 7 + 3);
    char *p = cd_path_join(root, "a.bin");
    cd_write_file_atomic(p, payload, sizeof payload);
    free(p);
    p = cd_path_join(root, "b.bin");
    cd_write_file_atomic(p, payload, 1000);
    free(p);
    if (th_start(root, 0, &srv)) { printf("FAIL httpd_start: %s\n", cd_errmsg()); return 1; }
    RUN(sha256_fips_vectors);
    RUN(address_policy);
    RUN(robots_and_retry_after_parsing);
    RUN(get_file_ok_and_user_agent);
    RUN(post_json);
    RUN(http_errors_not_retried);
    RUN(retry_after_429_then_success);
    RUN(timeout_reset_truncated);
    RUN(too_large_aborts);
    RUN(redirects);
    RUN(loopback_refused_by_default);
    RUN(robots_optout);
    RUN(protocols);
    RUN(multi_mixed_faults);
    RUN(per_host_connection_cap);
    th_stop(srv);
    return tl_done();
}
