// Loopback HTTP/1.1 test server (raw sockets, an accept thread plus a thread per
// connection, keep-alive). Tests start it on an ephemeral 127.0.0.1 port.
// Routes (NAME is a file under the root folder):
//   /files/NAME            the file (Content-Type from the extension; ?ct=TYPE overrides)
//   /404, /403             that status with a small HTML body
//   /429/NAME, /503/NAME   first request of that exact path: the status with Retry-After: 1;
//                          later ones: the file
//   /500/NAME              first request: 500; later ones: the file
//   /always503             always 503 with Retry-After: 1
//   /slow/MS/NAME          waits MS milliseconds, then the file
//   /reset                 headers (Content-Length 1000000), 4 KiB, then an RST (SO_LINGER 0)
//   /truncated/NAME        Content-Length larger than the file, the file, then close
//   /garbage               4 KiB of pseudo-random bytes as image/jpeg
//   /html                  an HTML page, status 200, Content-Type image/jpeg is NOT claimed
//   /big/N                 N bytes with Content-Length; /bigchunked/N: N bytes chunked
//   /loop/K                302 to /loop/K+1 forever
//   /redirect/NAME         302 to /files/NAME
//   /redirect-private      302 to http://10.0.0.1/x.jpg
//   /redirect-metadata     302 to http://169.254.169.254/latest/meta-data/
//   /robots/noai/NAME      the file with X-Robots-Tag: noai
//   /robots/ua/NAME        the file with X-Robots-Tag: customdiff: noimageai, nofollow
//   /robots/other/NAME     the file with X-Robots-Tag: otherbot: noai (allowed for us)
//   /echo                  JSON {"method","path","user_agent","content_type","body"}
#ifndef CD_TESTS_HTTPD_H
#define CD_TESTS_HTTPD_H

typedef struct th_server th_server;

// Start serving root on 127.0.0.1:port (0 = ephemeral). 0 / -1 (cd_err).
int th_start(const char *root, int port, th_server **out);
int th_port(const th_server *s);
// "http://127.0.0.1:PORT" + path (heap string).
char *th_url(const th_server *s, const char *path);
// How many requests have arrived for this exact path (query string excluded).
int th_hits(th_server *s, const char *path);
int th_total_requests(th_server *s);
// Stop: closes the listener and every connection, waits for the threads.
void th_stop(th_server *s);
#endif
