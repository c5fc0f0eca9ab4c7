// Loopback download throughput of core/http's multi downloader at 64 concurrent
// connections, against a baseline measured in the same run: the same files fetched one at
// a time with the blocking cd_http_request (a new connection each time, like a naive
// requests.get loop). The server is the test server (tests/httpd.c, compiled in here), one
// thread per connection, in this process.
//   bench_download [N_FILES] [KIB_PER_FILE] [ROUNDS]   (defaults 200 100 5)
#include "tests/httpd.c"
#include "core/http.h"
#include "core/progress.h"
#include <stdio.h>

typedef struct { int64_t ok, bad, bytes; } tally;
static void done(void *u, const char *url, cd_http_response *r) {
    tally *t = u;
    if (r->status == CD_HTTP_OK) { t->ok++; t->bytes += (int64_t)r->len; } else t->bad++;
}

// Fetch `n` URLs (path prefix + file i % nfiles) one at a time with cd_http_request.
static double run_seq(th_server *s, const cd_http_opts *o, const char *prefix, int n, int nfiles, int64_t *bytes) {
    double t0 = cd_now();
    for (int i = 0; i < n; i++) {
        char path[96];
        snprintf(path, sizeof path, "%sf%04d.bin", prefix, i % nfiles);
        char *u = th_url(s, path);
        cd_http_response r;
        if (cd_http_request(o, "GET", u, NULL, NULL, &r) == 0) *bytes += (int64_t)r.len;
        cd_http_response_free(&r);
        free(u);
    }
    return cd_now() - t0;
}

static double run_multi(th_server *s, const cd_http_opts *o, const char *prefix, int n, int nfiles, tally *t) {
    cd_http *h;
    if (cd_http_new(o, done, &h)) { fprintf(stderr, "%s\n", cd_errmsg()); exit(1); }
    double t0 = cd_now();
    for (int i = 0; i < n; i++) {
        char path[96];
        snprintf(path, sizeof path, "%sf%04d.bin", prefix, i % nfiles);
        char *u = th_url(s, path);
        cd_http_submit(h, u, t);
        free(u);
    }
    cd_http_run(h);
    double dt = cd_now() - t0;
    cd_http_free(h);
    return dt;
}

static int scenario(th_server *s, const cd_http_opts *o, const char *title, const char *prefix,
                    int nseq, int nmulti, int nfiles) {
    int64_t bb = 0;
    tally t = {0};
    double tb = run_seq(s, o, prefix, nseq, nfiles, &bb);
    double tm = run_multi(s, o, prefix, nmulti, nfiles, &t);
    double base_rps = nseq / tb, multi_rps = (t.ok + t.bad) / tm;
    printf("%s\n", title);
    printf("  baseline  sequential cd_http_request: %5d requests in %6.3f s = %8.1f req/s, %7.1f MB/s\n",
           nseq, tb, base_rps, bb / tb / 1e6);
    printf("  multi     %d concurrent (curl multi):  %5lld requests in %6.3f s = %8.1f req/s, %7.1f MB/s (%lld failed)\n",
           o->concurrency, (long long)(t.ok + t.bad), tm, multi_rps, t.bytes / tm / 1e6, (long long)t.bad);
    printf("  ratio multi/baseline: %.2fx requests per second\n", multi_rps / base_rps);
    return (int)t.bad;
}

int main(int argc, char **argv) {
    int nfiles = argc > 1 ? atoi(argv[1]) : 200, kib = argc > 2 ? atoi(argv[2]) : 100;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    char tmpl[] = "/tmp/bench-download-XXXXXX";
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 1; }
    uint8_t *buf = cd_malloc((size_t)kib * 1024);
    for (int i = 0; i < nfiles; i++) {
        for (size_t k = 0; k < (size_t)kib * 1024; k++) buf[k] = (uint8_t)(k * 131 + i);
        char name[64];
        snprintf(name, sizeof name, "%s/f%04d.bin", tmpl, i);
        cd_write_file_atomic(name, buf, (size_t)kib * 1024);
    }
    th_server *s;
    if (th_start(tmpl, 0, &s)) { fprintf(stderr, "%s\n", cd_errmsg()); return 1; }
    cd_http_opts o;
    cd_http_opts_default(&o);
    o.allow_loopback = 1;
    o.concurrency = getenv("CONC") ? atoi(getenv("CONC")) : 64;
    o.max_host_conns = o.concurrency;
    o.retries = 0;
    printf("bench_download: %d files x %d KiB on 127.0.0.1; test server in-process, thread per connection; %ld CPUs\n",
           nfiles, kib, sysconf(_SC_NPROCESSORS_ONLN));
    int bad = scenario(s, &o, "no added latency (CPU-bound: client + server share the cores)", "/files/",
                       nfiles < 200 ? nfiles : 200, nfiles * rounds, nfiles);
    bad += scenario(s, &o, "20 ms server latency per response (like a remote host)", "/slow/20/",
                    50, nfiles * rounds, nfiles);
    th_stop(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpl);
    if (system(cmd)) {}
    free(buf);
    return bad ? 1 : 0;
}
