// customdiff-preprocess: instance photos and candidate URLs -> an LMDB store of processed
// JPEGs (manifests/schema/store.md), with manifest.jsonl, stats.json and contact.jpg in the
// store folder. --export STORE DIR writes a store back out in the Custom Diffusion layout.
#include "preprocess/pp.h"
#include "core/cli.h"
#include "core/err.h"
#include "core/log.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *summary =
    "Download, decode, resize and store images for training.\n"
    "  customdiff-preprocess --instance DIR --caption TEXT --out STORE\n"
    "  customdiff-preprocess --candidates FILE --num N --out STORE\n"
    "  customdiff-preprocess --export STORE DIR";

// "20MB", "512k", "1G", "1048576" -> bytes (binary multiples).
static int parse_size(const char *s, const char *opt, int64_t *out) {
    char *end;
    double v = strtod(s, &end);
    while (*end == ' ') end++;
    double m = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': m = 1024; break;
    case 'M': m = 1024 * 1024; break;
    case 'G': m = 1024.0 * 1024 * 1024; break;
    default: return cd_err("--%s: cannot read size '%s' (e.g. 20MB)", opt, s);
    }
    if (*end) { end++; if (toupper((unsigned char)*end) == 'I') end++; if (toupper((unsigned char)*end) == 'B') end++; }
    if (*end || !(v >= 0 && v < 1e18) || end == s) return cd_err("--%s: cannot read size '%s' (e.g. 20MB)", opt, s);
    *out = (int64_t)(v * m);
    return 0;
}

int main(int argc, char **argv) {
    const char *instance, *caption, *candidates, *out, *mode, *max_bytes, *map_size, *export_store;
    int resolution, quality, concurrency, retries, workers, batch, host_conns;
    int allow_loopback, allow_file_urls, robots, num;
    double timeout, connect_timeout;
    int64_t max_pixels;
    cd_opt opts[] = {
        {"instance", CD_OPT_STR, &instance, NULL, "folder of instance photos (jpg, png, webp); NAME.txt overrides the caption of NAME.jpg"},
        {"caption", CD_OPT_STR, &caption, NULL, "caption of the instance photos (e.g. \"photo of a <new1> cat\")"},
        {"candidates", CD_OPT_STR, &candidates, NULL, "retrieve's candidates.jsonl, a CSV/TSV with url and caption columns, or a folder with images.txt, caption.txt, urls.txt"},
        {"num", CD_OPT_INT, &num, "0", "walk the candidates in order until the store holds N records (0 = all); records of earlier runs count, so a rerun with a larger N adds only the difference"},
        {"out", CD_OPT_STR, &out, NULL, "store folder (LMDB); manifest.jsonl, stats.json and contact.jpg are written inside it"},
        {"resolution", CD_OPT_INT, &resolution, "512", "output size in pixels"},
        {"resize-mode", CD_OPT_STR, &mode, "center_crop", "no, keep_ratio, center_crop or border (img2dataset's modes)"},
        {"jpeg-quality", CD_OPT_INT, &quality, "95", "JPEG quality of the stored images"},
        {"concurrency", CD_OPT_INT, &concurrency, "64", "downloads in flight"},
        {"max-host-conns", CD_OPT_INT, &host_conns, "16", "connections per host"},
        {"timeout", CD_OPT_FLOAT, &timeout, "10", "seconds per download attempt (whole transfer)"},
        {"connect-timeout", CD_OPT_FLOAT, &connect_timeout, "10", "seconds to connect"},
        {"retries", CD_OPT_INT, &retries, "2", "extra attempts for transient failures (backoff, Retry-After honoured)"},
        {"max-bytes", CD_OPT_STR, &max_bytes, "20MB", "largest download or file accepted"},
        {"max-pixels", CD_OPT_I64, &max_pixels, "89478485", "refuse images with more pixels (read from the header, before decoding)"},
        {"workers", CD_OPT_INT, &workers, "0", "decode/resize threads (0 = one per CPU)"},
        {"batch", CD_OPT_INT, &batch, "64", "inputs per LMDB transaction"},
        {"map-size", CD_OPT_STR, &map_size, "256MB", "initial LMDB map size (grows when full)"},
        {"allow-loopback", CD_OPT_FLAG, &allow_loopback, "0", "allow 127.0.0.0/8 and ::1 (tests, the demo's server)"},
        {"allow-file-urls", CD_OPT_FLAG, &allow_file_urls, "0", "accept file:// URLs in candidates"},
        {"robots", CD_OPT_FLAG, &robots, "1", "honour X-Robots-Tag noai/noimageai/noindex/noimageindex (--no-robots to ignore)"},
        {"export", CD_OPT_STR, &export_store, NULL, "write STORE out as DIR/images/*.jpg + caption.txt, images.txt, urls.txt"},
        {0}};
    int npos;
    char **pos;
    int rc = cd_cli_parse("preprocess", summary, opts, argc, argv, &npos, &pos);
    if (rc > 0) return 0;
    if (rc < 0) cd_die("preprocess", 2);

    if (export_store) {
        if (npos != 1) { cd_err("--export STORE DIR: give the output folder DIR"); cd_die("preprocess", 2); }
        int64_t n = 0;
        if (pp_export(export_store, pos[0], &n)) cd_die("preprocess", 1);
        printf("customdiff-preprocess: wrote %lld images + caption.txt, images.txt, urls.txt to %s\n", (long long)n, pos[0]);
        free(pos);
        return 0;
    }
    free(pos);
    pos = NULL;
    if (!out) { cd_err("--out STORE is required"); cd_die("preprocess", 2); }
    if (!instance && !candidates) { cd_err("give --instance DIR or --candidates FILE"); cd_die("preprocess", 2); }

    pp_opts o = {0};
    o.out = out;
    o.resolution = resolution;
    o.quality = quality;
    o.max_pixels = max_pixels;
    o.num = num;
    o.batch = batch > 0 ? batch : 64;
    o.workers = workers > 0 ? workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o.workers < 1) o.workers = 1;
    int64_t mb, ms;
    if (cd_resize_mode_parse(mode, &o.mode) || parse_size(max_bytes, "max-bytes", &mb) ||
        parse_size(map_size, "map-size", &ms))
        cd_die("preprocess", 2);
    if (resolution < 8 || resolution > 8192 || quality < 1 || quality > 100 || concurrency < 1) {
        cd_err("--resolution must be 8..8192, --jpeg-quality 1..100, --concurrency >= 1");
        cd_die("preprocess", 2);
    }
    if (workers < 0 || num < 0 || batch < 0 || retries < 0 || host_conns < 1 || max_pixels < 1 || mb < 1 || ms < 1 ||
        !(timeout > 0 && timeout < 1e6) || !(connect_timeout > 0 && connect_timeout < 1e6)) {
        cd_err("--workers, --num, --batch and --retries must be >= 0, --max-host-conns, --max-pixels, --max-bytes and "
               "--map-size >= 1, --timeout and --connect-timeout positive seconds");
        cd_die("preprocess", 2);
    }
    o.map_size = (size_t)ms;
    cd_http_opts_default(&o.http);
    o.http.concurrency = concurrency;
    o.http.max_host_conns = host_conns;
    o.http.timeout_s = timeout;
    o.http.connect_timeout_s = connect_timeout < timeout ? connect_timeout : timeout;
    o.http.retries = retries;
    o.http.max_bytes = mb;
    o.http.allow_loopback = allow_loopback;
    o.http.allow_file_urls = allow_file_urls;
    o.http.honour_robots = robots;

    pp_inputs in = {0};
    if (instance && pp_inputs_instance(instance, caption, &in)) cd_die("preprocess", 1);
    if (candidates && pp_inputs_candidates(candidates, &in)) cd_die("preprocess", 1);
    pp_stats st;
    if (pp_run(&o, &in, &st)) cd_die("preprocess", 1);
    if (pp_write_reports(out, &st)) cd_die("preprocess", 1);
    if (st.stored == 0 && st.processed > 0) {
        cd_err("%s: none of the %lld inputs could be stored (the reasons are in %s/manifest.jsonl)",
               instance ? instance : candidates, (long long)st.processed, out);
        cd_die("preprocess", 1);
    }
    printf("customdiff-preprocess: wrote %s: %lld records (%lld new from %lld inputs processed in %.1f s); "
           "manifest.jsonl, stats.json, contact.jpg inside\n", out, (long long)st.stored,
           (long long)(st.stored - st.stored_before), (long long)st.processed, st.seconds);
    pp_inputs_free(&in);
    pp_stats_free(&st);
    free(pos);
    return 0;
}
