// Remote clip-retrieval back end: POST /knn-service with ClipClient's fields
// (retrieval-pipeline.md §1.2-1.4), with retries for HTTP errors, timeouts, non-JSON
// bodies and empty answers, then a clear error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/http.h"
#include "core/json.h"
#include "core/log.h"
#include "retrieve/retrieve.h"

// The endpoint as given when it has a path (ClipClient takes the full /knn-service URL);
// a bare base URL ("http://host:1234" or ".../") gets "/knn-service".
static char *knn_url(const char *endpoint) {
    const char *p = strstr(endpoint, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    if (p && strcmp(p, "/") != 0) return cd_strdup(endpoint);
    size_t n = strlen(endpoint);
    return cd_fmt("%.*s/knn-service", (int)(n && endpoint[n - 1] == '/' ? n - 1 : n), endpoint);
}

// ClipClient's body: every key present, the unused query inputs as null (§1.4).
static char *request_body(const rt_remote *R, const char *text, const char *image_b64, int k) {
    cJSON *o = cJSON_CreateObject();
    if (text) cJSON_AddStringToObject(o, "text", text); else cJSON_AddNullToObject(o, "text");
    if (image_b64) cJSON_AddStringToObject(o, "image", image_b64); else cJSON_AddNullToObject(o, "image");
    cJSON_AddNullToObject(o, "image_url");
    cJSON_AddNullToObject(o, "embedding_input");
    cJSON_AddStringToObject(o, "modality", R->modality ? R->modality : "image");
    cJSON_AddNumberToObject(o, "num_images", k);
    cJSON_AddNumberToObject(o, "num_result_ids", k);
    if (R->index_name) cJSON_AddStringToObject(o, "indice_name", R->index_name);
    else cJSON_AddNullToObject(o, "indice_name");
    cJSON_AddBoolToObject(o, "use_mclip", 0);
    cJSON_AddBoolToObject(o, "deduplicate", R->deduplicate);
    cJSON_AddBoolToObject(o, "use_safety_model", R->use_safety_model);
    cJSON_AddBoolToObject(o, "use_violence_detector", R->use_violence_detector);
    if (R->aesthetic_score >= 0) cJSON_AddNumberToObject(o, "aesthetic_score", R->aesthetic_score);
    else cJSON_AddStringToObject(o, "aesthetic_score", "");
    if (R->aesthetic_weight >= 0) cJSON_AddNumberToObject(o, "aesthetic_weight", R->aesthetic_weight);
    else cJSON_AddStringToObject(o, "aesthetic_weight", "");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

// Turn a response body into candidates. Returns 0, or -1 with a cause in cd_err.
static int parse_answer(const char *url, const cd_http_response *r, const char *text, rt_list *out) {
    const char *b = r->body ? (const char *)r->body : "";
    size_t i = 0;
    while (i < r->len && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t')) i++;
    if (i == r->len) return cd_err("POST %s: empty body", url);
    if (b[i] == '<')
        return cd_err("POST %s: the answer is HTML, not JSON (Content-Type %s): %.60s", url,
                      r->content_type ? r->content_type : "none", b + i);
    cJSON *j;
    if (cd_json_parse(b, r->len, url, &j) != 0) return cd_err("POST %s: the answer is not valid JSON (truncated?): %s", url, cd_errmsg());
    if (!cJSON_IsArray(j)) {
        const char *msg = cd_json_str(j, "message", NULL);
        cJSON_Delete(j);
        return cd_err("POST %s: the answer is not a JSON array%s%s", url, msg ? ": " : "", msg ? msg : "");
    }
    if (cJSON_GetArraySize(j) == 0) {
        cJSON_Delete(j);
        return cd_err("POST %s: empty answer (no results for '%s')", url, text);
    }
    cJSON *e;
    int k = -1, bad = 0, first_bad = -1;
    cJSON_ArrayForEach(e, j) {
        k++;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "url"), *sim = cJSON_GetObjectItemCaseSensitive(e, "similarity");
        if (!u) u = cJSON_GetObjectItemCaseSensitive(e, "image_path");
        if (!cJSON_IsObject(e) || !cJSON_IsString(u) || !u->valuestring[0] || (sim && !cJSON_IsNumber(sim)) ||
            (sim && !isfinite(sim->valuedouble))) {
            if (!bad++) first_bad = k;
            continue;
        }
        rt_cand c = {.id = (int64_t)cd_json_num(e, "id", -1), .sim = cd_json_num(e, "similarity", 0), .query = text};
        c.meta = cJSON_Duplicate(e, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(c.meta, "id");
        cJSON_DeleteItemFromObjectCaseSensitive(c.meta, "similarity");
        rt_list_push(out, c);
    }
    cJSON_Delete(j);
    if (bad && bad == k + 1) return cd_err("POST %s: none of the %d results has a string url and a finite similarity", url, bad);
    if (bad) cd_warn("POST %s: dropped %d malformed results (no string url, or a similarity that is not a finite number; "
                     "first: result %d)", url, bad, first_bad);
    return 0;
}

static int remote_query(const rt_remote *R, const char *text, const char *image_b64, const char *what, int k, rt_list *out) {
    cd_http_opts o;
    cd_http_opts_default(&o);
    o.retries = 0;                 // retried here, also for bodies that are not JSON
    o.timeout_s = R->timeout_s > 0 ? R->timeout_s : 60;
    o.connect_timeout_s = o.timeout_s < 10 ? o.timeout_s : 10;
    o.allow_loopback = 1;          // the user named this endpoint (a self-hosted back end,
    o.allow_private = 1;           // on this machine or the LAN); link-local stays refused
    o.honour_robots = 0;
    o.max_bytes = (int64_t)256 << 20;
    char *url = knn_url(R->endpoint), *body = request_body(R, text, image_b64, k);
    int attempts = 1 + (R->retries > 0 ? R->retries : 0), rc = -1;
    double delay = R->backoff_s > 0 ? R->backoff_s : 1;
    char last[512] = "";
    for (int a = 1; a <= attempts && rc != 0; a++) {
        cd_http_response r;
        memset(&r, 0, sizeof r);
        cd_errclear();
        int h = cd_http_request(&o, "POST", url, body, "application/json", &r);
        int retry = 1;
        if (h != 0) {
            snprintf(last, sizeof last, "%s", cd_errmsg());
            retry = r.status != CD_HTTP_ERROR || cd_http_is_transient(r.status, r.http_code);
        } else if (parse_answer(url, &r, what, out) == 0) {
            rc = 0;
        } else {
            snprintf(last, sizeof last, "%s", cd_errmsg());
        }
        cd_http_response_free(&r);
        if (rc == 0 || !retry) break;
        if (a < attempts) {
            cd_warn("attempt %d/%d failed: %s; retrying in %.1f s", a, attempts, last, delay);
            usleep((useconds_t)(delay * 1e6));
            delay *= 2;
        }
    }
    if (rc != 0) cd_err("%s (after %d attempt%s)", last, attempts, attempts > 1 ? "s" : "");
    free(url);
    free(body);
    return rc;
}

int rt_remote_query(const rt_remote *R, const char *text, int k, rt_list *out) {
    return remote_query(R, text, NULL, text, k, out);
}

int rt_remote_query_image(const rt_remote *R, const char *image_b64, const char *what, int k, rt_list *out) {
    return remote_query(R, NULL, image_b64, what, k, out);
}
