// customdiff-retrieve: class prompt(s) -> candidates.jsonl of regularization images, from a
// local index (CLIP text embedding + FAISS) or a remote clip-retrieval back end; or, with
// --serve, a local index over clip-retrieval's HTTP API.
// Output: first line {"query", "model", "index", "parameters", ...}; then one line per
// candidate {"id", "url", "caption", "similarity", "rank", "query"} by decreasing similarity.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/cli.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/image.h"
#include "core/json.h"
#include "core/log.h"
#include "retrieve/retrieve.h"

static cd_strlist prompts, images;
static const char *prompts_file, *out, *index_dir, *clip_dir, *endpoint, *index_name, *deny, *params, *modality, *host,
    *violence_file;
static int num, max_k, dedup_urls, deduplicate, safety, violence, aes_score, retries, serve, port, top, threads, allow_loopback;
static double oversample, min_sim, near_dup, aes_weight, timeout_s, serve_seconds, backoff, max_pixels;

static cd_opt opts[] = {
    {"prompt", CD_OPT_STRLIST, &prompts, NULL, "class prompt, e.g. \"cat\"; repeatable"},
    {"prompts-file", CD_OPT_STR, &prompts_file, NULL, "file with one prompt per line"},
    {"image", CD_OPT_STRLIST, &images, NULL, "query by example image FILE (local: --clip's vision tower; remote: sent as base64)"},
    {"num", CD_OPT_INT, &num, "200", "candidates wanted per prompt"},
    {"out", CD_OPT_STR, &out, "candidates.jsonl", "output JSONL"},
    {"index", CD_OPT_STR, &index_dir, NULL, "local index folder (from customdiff-index)"},
    {"clip", CD_OPT_STR, &clip_dir, NULL, "CLIP model folder for text embeddings (local mode, --serve)"},
    {"params", CD_OPT_STR, &params, NULL, "FAISS search parameters (default: those in index.json)"},
    {"endpoint", CD_OPT_STR, &endpoint, NULL, "remote clip-retrieval back end (URL of /knn-service or its base)"},
    {"index-name", CD_OPT_STR, &index_name, NULL, "remote: indice_name; --serve: the name served (default: folder name)"},
    {"modality", CD_OPT_STR, &modality, "image", "remote: which index of the back end (image or text)"},
    {"deduplicate", CD_OPT_FLAG, &deduplicate, "1", "remote: ask the back end to drop near duplicates"},
    {"use-safety-model", CD_OPT_FLAG, &safety, "1", "remote: ask the back end for its NSFW filter"},
    {"use-violence-detector", CD_OPT_FLAG, &violence, "1", "remote: ask the back end for its violence filter; local: apply --violence-detector"},
    {"violence-detector", CD_OPT_STR, &violence_file, NULL, "local index and --serve: LAION's violence_detection_vit_*.npy ([n, d] prompt embeddings; a result whose best row is row 1 is dropped)"},
    {"aesthetic-score", CD_OPT_INT, &aes_score, "-1", "remote: aesthetic_score 0..9 (-1: not sent)"},
    {"aesthetic-weight", CD_OPT_FLOAT, &aes_weight, "-1", "remote: aesthetic_weight (-1: not sent)"},
    {"retries", CD_OPT_INT, &retries, "3", "remote: extra attempts after a failure"},
    {"backoff", CD_OPT_FLOAT, &backoff, "1", "remote: first retry delay in seconds (doubles)"},
    {"timeout", CD_OPT_FLOAT, &timeout_s, "60", "remote: seconds per request"},
    {"oversample", CD_OPT_FLOAT, &oversample, "1.5", "ask for this many times --num, growing 1.5x until enough"},
    {"max-k", CD_OPT_INT, &max_k, "10000", "cap on the k-NN request size"},
    {"min-similarity", CD_OPT_FLOAT, &min_sim, "-2", "drop candidates below this cosine similarity"},
    {"near-dup", CD_OPT_FLOAT, &near_dup, "0.94", "drop a candidate whose embedding has IP above this with a kept one"},
    {"dedup-urls", CD_OPT_FLAG, &dedup_urls, "1", "drop repeated URLs"},
    {"deny", CD_OPT_STR, &deny, NULL, "drop candidates whose url or caption matches this POSIX regex (case-insensitive)"},
    {"top", CD_OPT_INT, &top, "5", "candidates to print"},
    {"threads", CD_OPT_INT, &threads, "0", "FAISS threads (0: all cores)"},
    {"serve", CD_OPT_FLAG, &serve, "0", "serve --index over HTTP (/knn-service, /metadata, /indices-list)"},
    {"host", CD_OPT_STR, &host, "127.0.0.1", "--serve: address to bind (loopback by default)"},
    {"port", CD_OPT_INT, &port, "1234", "--serve: port"},
    {"serve-seconds", CD_OPT_FLOAT, &serve_seconds, "0", "--serve: stop after this many seconds (0: until a signal)"},
    {"allow-loopback", CD_OPT_FLAG, &allow_loopback, "0", "--serve: let image_url name 127.0.0.0/8 and ::1 (tests; private ranges stay refused)"},
    {"max-pixels", CD_OPT_FLOAT, &max_pixels, "89478485", "largest query image in pixels (decompression-bomb cap)"},
    {0}};

static void read_prompts(cd_strlist *l) {
    if (!prompts_file) return;
    char *buf;
    size_t len;
    if (cd_read_file(prompts_file, &buf, &len, 16 << 20) != 0) cd_die("retrieve", 1);
    for (char *s = strtok(buf, "\r\n"); s; s = strtok(NULL, "\r\n")) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) continue;
        l->v = cd_realloc(l->v, (size_t)(l->n + 1) * sizeof(char *));
        l->v[l->n++] = cd_strdup(s);
    }
    free(buf);   // prompts were copied
}

static void truncate_list(rt_list *l, int n) {
    for (int i = n; i < l->n; i++) {
        cJSON_Delete(l->v[i].meta);
        free(l->v[i].vec);
    }
    if (l->n > n) l->n = n;
}

// The query vector [L->d] of a prompt or (is_image) an image file, through --clip.
static int local_query(rt_local *L, const char *query, int is_image, float *q) {
    if (!is_image) return rt_local_embed(L, query, q) ? cd_errctx("prompt '%s'", query) : 0;
    cd_image im = {0};
    int rc = cd_image_load(query, (int64_t)max_pixels, &im);
    if (rc == 0) rc = rt_local_embed_image(L, &im, q);
    cd_image_free(&im);
    return rc ? cd_errctx("image '%s'", query) : 0;
}

// One remote k-NN request for a prompt or an image file (sent as base64 `image`).
static int remote_query(const rt_remote *R, const char *query, int is_image, const char *b64, int k, rt_list *raw) {
    return is_image ? rt_remote_query_image(R, b64, query, k, raw) : rt_remote_query(R, query, k, raw);
}

// One query (a prompt, or an image path when is_image): k = oversample*num, grow 1.5x until
// num candidates pass the filters, k reaches max_k, or the source has no more. Appends to kept.
static int run_prompt(rt_local *L, const rt_remote *R, const rt_filter *f, const char *prompt, int is_image, rt_list *kept) {
    int base = kept->n;
    int k = (int)ceil(oversample * num);
    if (k < num) k = num;
    float *q = NULL;
    char *b64 = NULL;
    if (L) {
        q = cd_malloc((size_t)L->d * sizeof(float));
        if (local_query(L, prompt, is_image, q) != 0) { free(q); return -1; }
    } else if (is_image) {
        char *buf;
        size_t len;
        if (cd_read_file(prompt, &buf, &len, (size_t)256 << 20) != 0) return cd_errctx("image '%s'", prompt);
        b64 = cd_base64_encode(buf, len, NULL);
        free(buf);
    }
    for (;;) {
        if (k > max_k) k = max_k;
        rt_list raw = {0};
        int rc = L ? rt_local_knn(L, q, k, -1, &raw) : remote_query(R, prompt, is_image, b64, k, &raw);
        if (rc != 0) { rt_list_free(&raw); free(q); free(b64); return -1; }
        for (int i = 0; i < raw.n; i++) raw.v[i].query = prompt;
        int got = raw.n;
        truncate_list(kept, base);
        rt_filter_apply(f, &raw, kept);
        int exhausted = got < k || (L && k >= cd_faiss_ntotal(L->ix));
        cd_info("'%s': k=%d gave %d results, %d kept", prompt, k, got, kept->n - base);
        if (kept->n - base >= num || k >= max_k || exhausted) break;
        k = (int)(k * 1.5);
    }
    truncate_list(kept, base + num);
    if (kept->n - base < num) cd_warn("'%s': only %d of %d candidates", prompt, kept->n - base, num);
    free(q);
    free(b64);
    return 0;
}

static int by_sim(const void *a, const void *b) {
    const rt_cand *x = a, *y = b;
    return x->sim > y->sim ? -1 : x->sim < y->sim;
}

static cJSON *header(const cd_strlist *pl, int n) {
    cJSON *h = cJSON_CreateObject();
    if (pl->n == 1) cJSON_AddStringToObject(h, "query", pl->v[0]);
    else cJSON_AddItemToObject(h, "query", cJSON_CreateStringArray(pl->v, pl->n));
    cJSON_AddStringToObject(h, "mode", endpoint ? "remote" : "local");
    if (clip_dir) cJSON_AddStringToObject(h, "model", clip_dir); else cJSON_AddNullToObject(h, "model");
    cJSON_AddStringToObject(h, "index", endpoint ? endpoint : index_dir);
    if (index_name) cJSON_AddStringToObject(h, "index_name", index_name);
    cJSON_AddNumberToObject(h, "count", n);
    cJSON *p = cJSON_AddObjectToObject(h, "parameters");
    cJSON_AddNumberToObject(p, "num", num);
    cJSON_AddNumberToObject(p, "oversample", oversample);
    cJSON_AddNumberToObject(p, "max_k", max_k);
    cJSON_AddNumberToObject(p, "min_similarity", min_sim);
    cJSON_AddNumberToObject(p, "near_dup", near_dup);
    cJSON_AddBoolToObject(p, "dedup_urls", dedup_urls);
    if (deny) cJSON_AddStringToObject(p, "deny", deny);
    if (params) cJSON_AddStringToObject(p, "search_params", params);
    if (endpoint) {
        cJSON_AddStringToObject(p, "modality", modality);
        cJSON_AddBoolToObject(p, "deduplicate", deduplicate);
        cJSON_AddBoolToObject(p, "use_safety_model", safety);
        cJSON_AddBoolToObject(p, "use_violence_detector", violence);
        if (aes_score >= 0) cJSON_AddNumberToObject(p, "aesthetic_score", aes_score);
        if (aes_weight >= 0) cJSON_AddNumberToObject(p, "aesthetic_weight", aes_weight);
    }
    return h;
}

static int write_out(const cd_strlist *pl, rt_list *kept) {
    qsort(kept->v, (size_t)kept->n, sizeof *kept->v, by_sim);
    cd_atomic a;
    CD_TRY(cd_atomic_open(&a, out));
    FILE *fp = a.fp;
    cJSON *h = header(pl, kept->n);
    char *s = cJSON_PrintUnformatted(h);
    fprintf(fp, "%s\n", s);
    free(s);
    cJSON_Delete(h);
    for (int i = 0; i < kept->n; i++) {
        const rt_cand *c = &kept->v[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)c->id);
        cJSON_AddStringToObject(o, "url", rt_url(c));
        cJSON_AddStringToObject(o, "caption", rt_caption(c));
        cJSON_AddNumberToObject(o, "similarity", c->sim);
        cJSON_AddNumberToObject(o, "rank", i + 1);
        cJSON_AddStringToObject(o, "query", c->query ? c->query : "");
        s = cJSON_PrintUnformatted(o);
        fprintf(fp, "%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
    if (ferror(fp)) { cd_atomic_abort(&a); return cd_err("%s: write failed", out); }
    return cd_atomic_commit(&a);
}

static const char *base_name(const char *p) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s", p);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    const char *s = strrchr(buf, '/');
    return s ? s + 1 : buf;
}

// --violence-detector for the local index L: its rows must match the index's dimension, and the
// filter needs each result's stored vector (an index that reconstructs them).
static int load_violence(rt_local *L, float **P, int *n) {
    if (!L->can_rec)
        return cd_err("--violence-detector: index '%s' does not return stored vectors (its FAISS type cannot "
                      "reconstruct), so results cannot be scored", index_dir);
    CD_TRY(rt_violence_load(violence_file, L->d, P, n));
    cd_info("violence detector %s: %d rows of %d", violence_file, *n, L->d);
    return 0;
}

// --serve: the local index over HTTP until --serve-seconds or a signal.
static int serve_main(void) {
    if (!index_dir) { cd_err("--serve needs --index DIR"); cd_die("retrieve", 2); }
    rt_local L;
    float *viol = NULL;
    int nviol = 0;
    if (rt_local_open(&L, index_dir, clip_dir, params) != 0) cd_die("retrieve", 1);
    if (violence_file && load_violence(&L, &viol, &nviol) != 0) cd_die("retrieve", 1);
    rt_serve_opts so;
    rt_serve_opts_default(&so);
    so.allow_loopback = allow_loopback;
    so.max_pixels = (int64_t)max_pixels;
    so.violence = viol;
    so.nviol = nviol;
    if (rt_serve(&L, host, port, index_name ? index_name : base_name(index_dir), serve_seconds, &so) != 0)
        cd_die("retrieve", 1);
    rt_local_close(&L);
    free(viol);
    return 0;
}

int main(int argc, char **argv) {
    int r = cd_cli_parse("retrieve", "class prompt -> candidate regularization images (local index or remote back end)",
                         opts, argc, argv, NULL, NULL);
    if (r == 1) return 0;
    if (r < 0) cd_die("retrieve", 2);
    if (top < 0 || max_k < 1 || threads < 0 || retries < 0 || port < 1 || port > 65535 || !(oversample >= 1) ||
        !isfinite(oversample) || !isfinite(min_sim) || !isfinite(near_dup) || !(timeout_s > 0) || !isfinite(timeout_s) ||
        !(backoff >= 0) || !isfinite(backoff) || !(serve_seconds >= 0) || !isfinite(serve_seconds)) {
        cd_err("--top, --threads and --retries must be >= 0, --max-k >= 1, --port 1..65535, --oversample >= 1, "
               "--timeout > 0, --backoff and --serve-seconds >= 0, --min-similarity and --near-dup finite");
        cd_die("retrieve", 2);
    }
    cd_faiss_set_threads(threads);
    if (violence_file && !index_dir) {
        cd_err("--violence-detector filters a local --index (a remote back end runs its own: --use-violence-detector)");
        cd_die("retrieve", 2);
    }
    if (serve) return serve_main();
    rt_local L;
    float *viol = NULL;
    int nviol = 0;
    cd_strlist pl = {0};
    for (int i = 0; i < prompts.n; i++) {
        pl.v = cd_realloc(pl.v, (size_t)(pl.n + 1) * sizeof(char *));
        pl.v[pl.n++] = prompts.v[i];
    }
    read_prompts(&pl);
    int n_text = pl.n;   // pl: the prompts, then the --image paths
    for (int i = 0; i < images.n; i++) {
        pl.v = cd_realloc(pl.v, (size_t)(pl.n + 1) * sizeof(char *));
        pl.v[pl.n++] = images.v[i];
    }
    if (pl.n == 0) { cd_err("no query: give --prompt TEXT, --prompts-file FILE or --image FILE"); cd_die("retrieve", 2); }
    if (!(max_pixels >= 0)) { cd_err("--max-pixels must be >= 0"); cd_die("retrieve", 2); }
    if (!!endpoint == !!index_dir) { cd_err("give exactly one of --index DIR (with --clip) or --endpoint URL"); cd_die("retrieve", 2); }
    if (index_dir && !clip_dir) { cd_err("--index needs --clip MODEL to embed the query"); cd_die("retrieve", 2); }
    if (num <= 0) { cd_err("--num must be positive"); cd_die("retrieve", 2); }
    regex_t re;
    if (deny && regcomp(&re, deny, REG_EXTENDED | REG_ICASE | REG_NOSUB) != 0) {
        cd_err("--deny '%s' is not a valid POSIX extended regular expression", deny);
        cd_die("retrieve", 2);
    }
    rt_remote R = {.endpoint = endpoint, .index_name = index_name, .modality = modality, .deduplicate = deduplicate,
                   .use_safety_model = safety, .use_violence_detector = violence, .aesthetic_score = aes_score,
                   .aesthetic_weight = aes_weight, .retries = retries, .timeout_s = timeout_s, .backoff_s = backoff};
    if (index_dir && rt_local_open(&L, index_dir, clip_dir, params) != 0) cd_die("retrieve", 1);
    if (index_dir && violence && violence_file && load_violence(&L, &viol, &nviol) != 0) cd_die("retrieve", 1);
    // said once, not skipped silently: a local index has no NSFW model, and the violence filter
    // needs its detector file
    if (index_dir && (safety || (violence && !viol)))
        cd_info("local index: %s%s%s; the results are otherwise as the index ranks them", safety ? "no NSFW filter" : "",
                safety && violence && !viol ? ", " : "",
                violence && !viol ? "no violence filter (give --violence-detector FILE)" : "");
    rt_filter f = {.min_sim = min_sim, .dup_ip = near_dup, .dedup_urls = dedup_urls, .deny = deny ? &re : NULL,
                   .d = index_dir && L.can_rec ? L.d : 0, .viol = viol, .nviol = nviol, .vd = index_dir ? L.d : 0};
    rt_list kept = {0};
    for (int i = 0; i < pl.n; i++)
        if (run_prompt(index_dir ? &L : NULL, &R, &f, pl.v[i], i >= n_text, &kept) != 0) cd_die("retrieve", 1);
    if (write_out(&pl, &kept) != 0) cd_die("retrieve", 1);
    for (int i = 0; i < kept.n && i < top; i++)
        printf("  %2d. %.4f  %s  %s\n", i + 1, kept.v[i].sim, rt_url(&kept.v[i]), rt_caption(&kept.v[i]));
    printf("customdiff-retrieve: wrote %s (%d candidates for %d quer%s from %s)\n", out, kept.n, pl.n,
           pl.n > 1 ? "ies" : "y", endpoint ? endpoint : index_dir);
    rt_list_free(&kept);
    for (int i = prompts.n; i < n_text; i++) free((char *)pl.v[i]);   // read from --prompts-file
    free(pl.v);
    if (index_dir) rt_local_close(&L);
    free(viol);
    if (deny) regfree(&re);
    return 0;
}
