// Standalone loopback server for the demo and the download benchmark:
//   httpd ROOT [PORT]   serves ROOT (see tests/httpd.h for the routes) on 127.0.0.1,
//   prints "port N" on stdout, and runs until SIGINT/SIGTERM or stdin closes with --stdin.
#include "tests/httpd.h"
#include "core/err.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: httpd ROOT [PORT]   (PORT 0 = ephemeral; prints \"port N\")\n");
        return argc < 2 ? 2 : 0;
    }
    th_server *s;
    if (th_start(argv[1], argc > 2 ? atoi(argv[2]) : 0, &s)) {
        fprintf(stderr, "httpd: %s\n", cd_errmsg());
        return 1;
    }
    printf("port %d\n", th_port(s));
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    while (!stop) pause();
    th_stop(s);
    return 0;
}
