// customdiff-retrieve --serve: a local index over clip-retrieval's HTTP API
// (retrieval-pipeline.md §1.1-1.5) with libmicrohttpd: POST /knn-service (text, image as
// base64, image_url fetched under the safe address policy, embedding_input), POST /metadata,
// GET /indices-list. One internal polling thread, so requests are handled one at a time.
#include <arpa/inet.h>
#include <math.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/err.h"
#include "core/http.h"
#include "core/json.h"
#include "core/log.h"
#include "retrieve/retrieve.h"

#define MAX_BODY (32 << 20)   // base64 images: 4/3 of the 20 MB image cap, and some
#define MAX_K 10000

typedef struct {
    rt_local *L;
    const char *name;
    rt_serve_opts o;
} server;

typedef struct {
    char *buf;
    size_t len;
    int too_big;
} conn_body;

static volatile sig_atomic_t stop_flag;
static void on_signal(int s) { (void)s; stop_flag = 1; }

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned code, const char *msg) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "message", msg);
    return send_json(c, code, j);
}

void rt_serve_opts_default(rt_serve_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_pixels = 89478485;            // PIL's MAX_IMAGE_PIXELS
    o->max_bytes = (int64_t)20 << 20;
    o->url_timeout_s = 10;               // clip-retrieval's download timeout
}

// image_url: download under the safe policy (no private, link-local or loopback peers unless
// --allow-loopback; http/https only; max_bytes), then decode and embed.
static int url_vector(server *S, const char *url, float *q) {
    cd_http_opts o;
    cd_http_opts_default(&o);
    o.retries = 0;
    o.timeout_s = S->o.url_timeout_s;
    o.connect_timeout_s = o.timeout_s;
    o.max_bytes = S->o.max_bytes;
    o.allow_loopback = S->o.allow_loopback;
    cd_http_response r;
    memset(&r, 0, sizeof r);
    int rc = cd_http_request(&o, "GET", url, NULL, NULL, &r);
    if (rc != 0) cd_err("image_url refused or not fetched (%s): %s", cd_http_status_name(r.status), r.error[0] ? r.error : cd_errmsg());
    else rc = rt_local_embed_image_bytes(S->L, r.body, r.len, url, S->o.max_pixels, q);
    cd_http_response_free(&r);
    return rc;
}

// The query vector of a /knn-service body in clip-retrieval's precedence (§1.5): non-empty
// text, then image (base64), then image_url, then embedding_input (normalised here).
// Returns 0, or the HTTP status of the failure (400: the request's fault) with cd_err set.
static unsigned query_vector(server *S, const cJSON *req, float *q) {
    const cJSON *emb = cJSON_GetObjectItemCaseSensitive(req, "embedding_input");
    const char *text = cd_json_str(req, "text", NULL), *img = cd_json_str(req, "image", NULL),
               *url = cd_json_str(req, "image_url", NULL);
    if (text && *text) return rt_local_embed(S->L, text, q) ? 500 : 0;
    if (img || url) {
        if (!S->L->have_clip || !S->L->clip.has_vision)
            return cd_err("image queries need the server started with --clip MODEL (with a vision tower)"), 400;
        if (!img) return url_vector(S, url, q) ? 400 : 0;
        uint8_t *bytes;
        size_t n;
        if (cd_base64_decode(img, strlen(img), "image (base64)", &bytes, &n) != 0) return 400;
        int rc = rt_local_embed_image_bytes(S->L, bytes, n, "image (base64)", S->o.max_pixels, q);
        free(bytes);
        return rc ? 400 : 0;
    }
    if (emb && !cJSON_IsNull(emb)) {
        if (!cJSON_IsArray(emb) || cJSON_GetArraySize(emb) != S->L->d)
            return cd_err("embedding_input must be an array of %d numbers (the index dimension)%s%d", S->L->d,
                          cJSON_IsArray(emb) ? "; it has " : "", cJSON_IsArray(emb) ? cJSON_GetArraySize(emb) : 0), 400;
        int i = 0;
        double ss = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, emb) {
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
                return cd_err("embedding_input[%d] is not a finite number", i), 400;
            ss += e->valuedouble * e->valuedouble;
            q[i++] = (float)e->valuedouble;
        }
        if (!(ss > 0)) return cd_err("embedding_input is the zero vector"), 400;
        cd_l2_normalize(q, 1, S->L->d);
        return 0;
    }
    return cd_err("give a non-empty 'text', an 'image' (base64), an 'image_url' or an 'embedding_input'"), 400;
}

static cJSON *cand_json(const rt_cand *c, int with_meta) {
    cJSON *o = with_meta && c->meta ? cJSON_Duplicate(c->meta, 1) : cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)c->id);
    cJSON_AddNumberToObject(o, "similarity", c->sim);
    return o;
}

static enum MHD_Result knn_service(server *S, struct MHD_Connection *con, const cJSON *req) {
    const char *ind = cd_json_str(req, "indice_name", NULL);
    if (ind && strcmp(ind, S->name) != 0) return send_error(con, 400, "unknown indice_name");
    int num_images = cd_json_int(req, "num_images", 40);
    int k = cd_json_int(req, "num_result_ids", num_images);
    if (num_images < 0 || k <= 0) return send_error(con, 400, "num_images and num_result_ids must be positive");
    if (k > MAX_K) k = MAX_K;
    float *q = cd_malloc((size_t)S->L->d * sizeof(float));
    rt_list raw = {0}, kept = {0};
    cd_errclear();
    unsigned code = query_vector(S, req, q);
    if (code == 0 && rt_local_knn(S->L, q, k, -1, &raw) != 0) code = 500;
    free(q);
    if (code != 0) {
        rt_list_free(&raw);
        if (code == 400) cd_info("400 /knn-service: %s", cd_errmsg());
        return send_error(con, code, cd_errmsg());
    }
    // as clip-retrieval: dedup and the violence filter when the request asks (default false)
    // and, for the latter, a detector was loaded (--violence-detector)
    const int viol = cd_json_bool(req, "use_violence_detector", 0) && S->o.violence;
    rt_filter f = {.min_sim = -2, .dup_ip = 0.94, .dedup_urls = 0, .deny = NULL,
                   .d = cd_json_bool(req, "deduplicate", 0) ? S->L->d : 0, .viol = viol ? S->o.violence : NULL,
                   .nviol = S->o.nviol, .vd = S->L->d};
    rt_filter_apply(&f, &raw, &kept);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < kept.n; i++) cJSON_AddItemToArray(arr, cand_json(&kept.v[i], i < num_images));
    rt_list_free(&kept);
    return send_json(con, 200, arr);
}

static enum MHD_Result metadata_service(server *S, struct MHD_Connection *con, const cJSON *req) {
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(req, "ids"), *e;
    if (!cJSON_IsArray(ids)) return send_error(con, 400, "'ids' must be an array");
    cJSON *arr = cJSON_CreateArray();
    cJSON_ArrayForEach(e, ids) {
        int64_t id = (int64_t)e->valuedouble;
        char *js = NULL;
        cJSON *m = NULL;
        if (cd_idxmeta_get(S->L->meta, id, &js) == 0) cd_json_parse(js, strlen(js), "metadata", &m);
        free(js);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)id);
        cJSON_AddItemToObject(o, "metadata", m ? m : cJSON_CreateObject());
        cJSON_AddItemToArray(arr, o);
    }
    return send_json(con, 200, arr);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    server *S = cls;
    if (strcmp(method, "POST") == 0) {
        conn_body *b = *con_cls;
        if (!b) { *con_cls = cd_calloc(1, sizeof(conn_body)); return MHD_YES; }
        if (*upload_size) {   // accumulate the body
            if (b->len + *upload_size > MAX_BODY) b->too_big = 1;
            else {
                b->buf = cd_realloc(b->buf, b->len + *upload_size + 1);
                memcpy(b->buf + b->len, upload, *upload_size);
                b->len += *upload_size;
                b->buf[b->len] = 0;
            }
            *upload_size = 0;
            return MHD_YES;
        }
        if (b->too_big) return send_error(con, 413, "request body too large");
        cJSON *req = NULL;
        if (cd_json_parse(b->buf ? b->buf : "", b->len, "request body", &req) != 0 || !cJSON_IsObject(req)) {
            cJSON_Delete(req);
            return send_error(con, 400, "the request body is not a JSON object");
        }
        enum MHD_Result r;
        if (strcmp(url, "/knn-service") == 0) r = knn_service(S, con, req);
        else if (strcmp(url, "/metadata") == 0) r = metadata_service(S, con, req);
        else r = send_error(con, 404, "no such endpoint");
        cJSON_Delete(req);
        return r;
    }
    if (strcmp(method, "GET") == 0 && strcmp(url, "/indices-list") == 0) {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, cJSON_CreateString(S->name));
        return send_json(con, 200, a);
    }
    return send_error(con, strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0 ? 404 : 405, "no such endpoint");
}

static void completed(void *cls, struct MHD_Connection *con, void **con_cls, enum MHD_RequestTerminationCode t) {
    conn_body *b = *con_cls;
    if (b) { free(b->buf); free(b); }
    *con_cls = NULL;
}

int rt_serve(rt_local *L, const char *host, int port, const char *index_name, double max_seconds,
             const rt_serve_opts *o) {
    server S = {L, index_name, {0}};
    if (o) S.o = *o; else rt_serve_opts_default(&S.o);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return cd_err("--host %s: not an IPv4 address", host);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
                                            handle, &S, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    if (!d) return cd_err("cannot listen on %s:%d (port in use?)", host, port);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("customdiff-retrieve: serving %s (%lld vectors) as '%s' on http://%s:%d (/knn-service, /metadata, /indices-list)\n",
           L->dir, (long long)cd_faiss_ntotal(L->ix), index_name, host, port);
    fflush(stdout);
    double waited = 0;
    while (!stop_flag && (max_seconds <= 0 || waited < max_seconds)) {
        usleep(100000);
        waited += 0.1;
    }
    MHD_stop_daemon(d);
    return 0;
}
