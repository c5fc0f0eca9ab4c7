// customdiff-retrieve internals: candidates, filters, the local index, the remote client
// and the HTTP server.
#ifndef CD_RETRIEVE_H
#define CD_RETRIEVE_H
#include <regex.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "core/faiss.h"
#include "core/image.h"
#include "core/idxmeta.h"
#include "model/clip.h"

typedef struct {
    int64_t id;
    double sim;            // inner product of normalised vectors (cosine)
    cJSON *meta;           // owned: metadata object (url, caption, ...), or NULL
    float *vec;            // owned: stored vector [d], or NULL when not at hand
    const char *query;     // the prompt it answers (not owned)
} rt_cand;

typedef struct {
    rt_cand *v;
    int n, cap;
} rt_list;

void rt_list_push(rt_list *l, rt_cand c);   // takes ownership of c.meta / c.vec
void rt_list_free(rt_list *l);
const char *rt_url(const rt_cand *c);       // "" when absent
const char *rt_caption(const rt_cand *c);

// Filters applied in rank order (clip-retrieval's post_filter + client-side URL dedup).
typedef struct {
    double min_sim;        // drop below (-2: off)
    double dup_ip;         // near-duplicate embeddings: drop if IP with a kept one > this (0.94)
    int dedup_urls;
    regex_t *deny;         // on url and caption, or NULL
    int d;
    // clip-retrieval's violence filter: scores = vec . P[j] for the detector's rows P [nviol, vd];
    // a candidate whose best row is row 1 is dropped (NULL: off; candidates need vec)
    const float *viol;
    int nviol, vd;
} rt_filter;

// Loads a violence detector (LAION-AI/CLIP-based-NSFW-Detector's violence_detection_vit_*.npy:
// [n >= 2, d] prompt embeddings, float32/16/64) for embeddings of dimension d.
int rt_violence_load(const char *path, int d, float **P, int *n);

// Append the candidates of `in` (rank order) that pass the filters against those already
// kept in `out` (so it also works across prompts). `in` is emptied (ownership moves).
void rt_filter_apply(const rt_filter *f, rt_list *in, rt_list *out);

// ---- local index ----
typedef struct {
    char *dir;
    cd_faiss *ix;
    cd_idxmeta *meta;
    cJSON *info;          // index.json
    int d;
    int can_rec;          // the index reconstructs vectors (near-dup filter possible)
    cd_clip clip;
    int have_clip;
} rt_local;

int rt_local_open(rt_local *L, const char *dir, const char *clip_dir, const char *params);
void rt_local_close(rt_local *L);
// Normalised text embedding [d] of a prompt.
int rt_local_embed(rt_local *L, const char *prompt, float *q);
// Normalised image embedding [d] through the CLIP vision tower (CLIPImageProcessor recipe).
int rt_local_embed_image(rt_local *L, const cd_image *im, float *q);
// The same from encoded bytes (JPEG/PNG/WebP/GIF/BMP; over max_pixels refused, 0: no cap);
// `what` names the image in errors.
int rt_local_embed_image_bytes(rt_local *L, const void *buf, size_t len, const char *what, int64_t max_pixels, float *q);
// k-NN of a normalised query q [d]: candidates in rank order with metadata and (when the
// index can) vectors. with_meta_first: metadata only for the first that many (-1: all).
int rt_local_knn(rt_local *L, const float *q, int k, int with_meta_first, rt_list *out);

// ---- remote clip-retrieval back end ----
typedef struct {
    const char *endpoint;      // full /knn-service URL or a base URL
    const char *index_name;
    const char *modality;      // "image" (default) or "text"
    int deduplicate, use_safety_model, use_violence_detector;
    int aesthetic_score;       // <0: not sent
    double aesthetic_weight;   // <0: not sent
    int retries;
    double timeout_s, backoff_s;
} rt_remote;

// One POST /knn-service with num_images = num_result_ids = k; results in rank order. The query
// is `text`, or (text NULL) `image_b64`: base64 of an image file's bytes; `what` names the
// query in messages (the prompt or the image path).
int rt_remote_query(const rt_remote *R, const char *text, int k, rt_list *out);
int rt_remote_query_image(const rt_remote *R, const char *image_b64, const char *what, int k, rt_list *out);

// ---- server ----
// Inputs of /knn-service (retrieval-pipeline.md §1.2, §1.5): text, image (base64), image_url
// (downloaded under the safe address policy), embedding_input (length d; normalised here).
typedef struct {
    int allow_loopback;        // image_url may name 127.0.0.0/8 and ::1 (tests); private never
    int64_t max_pixels;        // decoded image cap (0: none)
    int64_t max_bytes;         // image_url download cap
    double url_timeout_s;      // image_url download timeout
    const float *violence;     // detector rows [nviol, d] for requests with use_violence_detector (NULL: none)
    int nviol;
} rt_serve_opts;
void rt_serve_opts_default(rt_serve_opts *o);
int rt_serve(rt_local *L, const char *host, int port, const char *index_name, double max_seconds,
             const rt_serve_opts *o);
#endif
