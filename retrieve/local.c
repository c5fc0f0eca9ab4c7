// Local index: index.json + index.faiss + metadata.lmdb, CLIP text embedding, k-NN,
// and the candidate filters shared by every mode.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/image.h"
#include "core/json.h"
#include "core/log.h"
#include "retrieve/retrieve.h"
#include "core/npy.h"

void rt_list_push(rt_list *l, rt_cand c) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = cd_realloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = c;
}

void rt_list_free(rt_list *l) {
    for (int i = 0; i < l->n; i++) {
        cJSON_Delete(l->v[i].meta);
        free(l->v[i].vec);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

const char *rt_url(const rt_cand *c) { return cd_json_str(c->meta, "url", cd_json_str(c->meta, "image_path", "")); }
const char *rt_caption(const rt_cand *c) { return cd_json_str(c->meta, "caption", cd_json_str(c->meta, "text", "")); }

int rt_violence_load(const char *path, int d, float **P, int *n) {
    cd_npy a;
    *P = NULL;
    *n = 0;
    CD_TRY(cd_npy_read(path, &a));
    int rc = 0;
    if (a.ndim != 2 || a.shape[0] < 2 || a.shape[1] != d)
        rc = cd_err("violence detector '%s': expected [n >= 2, %d] prompt embeddings (row 1 = violent), got %s%lld x %lld",
                    path, d, a.ndim != 2 ? "a non-matrix " : "", (long long)a.shape[0],
                    (long long)(a.ndim > 1 ? a.shape[1] : 0));
    else if (cd_npy_to_f32(&a, P)) rc = cd_errctx("violence detector '%s'", path);
    else {
        *n = (int)a.shape[0];
        for (int64_t i = 0; i < a.numel && !rc; i++)
            if (!isfinite((*P)[i])) rc = cd_err("violence detector '%s': value %lld is not finite", path, (long long)i);
    }
    cd_npy_free(&a);
    if (rc) { free(*P); *P = NULL; *n = 0; }
    return rc;
}

// 1 when the violence detector's best-scoring row for vec is row 1 (clip-retrieval's rule).
static int violent(const rt_filter *f, const float *vec) {
    int best = 0;
    double top = -INFINITY;
    for (int j = 0; j < f->nviol; j++) {
        double s = 0;
        for (int i = 0; i < f->vd; i++) s += (double)vec[i] * f->viol[(size_t)j * f->vd + i];
        if (s > top) { top = s; best = j; }
    }
    return best == 1;
}

static int passes(const rt_filter *f, const rt_cand *c, const rt_list *kept) {
    if (c->id < 0 && !c->meta) return 0;
    if (f->min_sim > -2 && c->sim < f->min_sim) return 0;
    if (f->viol && c->vec && violent(f, c->vec)) return 0;
    const char *url = rt_url(c), *cap = rt_caption(c);
    if (f->deny && (regexec(f->deny, url, 0, NULL, 0) == 0 || regexec(f->deny, cap, 0, NULL, 0) == 0)) return 0;
    for (int i = 0; i < kept->n; i++) {
        const rt_cand *k = &kept->v[i];
        if (c->id >= 0 && k->id == c->id) return 0;
        if (f->dedup_urls && *url && strcmp(url, rt_url(k)) == 0) return 0;
        if (c->vec && k->vec && f->d > 0) {
            double ip = 0;
            for (int j = 0; j < f->d; j++) ip += (double)c->vec[j] * k->vec[j];
            if (ip > f->dup_ip) return 0;
        }
    }
    return 1;
}

void rt_filter_apply(const rt_filter *f, rt_list *in, rt_list *out) {
    for (int i = 0; i < in->n; i++) {
        rt_cand *c = &in->v[i];
        if (passes(f, c, out)) {
            rt_list_push(out, *c);
        } else {
            cJSON_Delete(c->meta);
            free(c->vec);
        }
    }
    free(in->v);
    memset(in, 0, sizeof *in);
}

int rt_local_open(rt_local *L, const char *dir, const char *clip_dir, const char *params) {
    memset(L, 0, sizeof *L);
    L->dir = cd_strdup(dir);
    char *j = cd_path_join(dir, "index.json"), *f = cd_path_join(dir, "index.faiss"), *m = cd_path_join(dir, "metadata.lmdb");
    int rc = cd_json_load(j, &L->info);
    if (rc == 0 && !cJSON_IsObject(L->info)) rc = cd_err("%s: not a JSON object", j);
    if (rc == 0 && cJSON_GetObjectItemCaseSensitive(L->info, "dimension") &&
        !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(L->info, "dimension")))
        rc = cd_err("%s: 'dimension' is not a number", j);
    if (rc == 0) rc = cd_faiss_read(&L->ix, f, 0);
    if (rc == 0) rc = cd_idxmeta_open(&L->meta, m, 0);
    if (rc == 0) {
        L->d = cd_faiss_d(L->ix);
        int jd = cd_json_int(L->info, "dimension", L->d);
        if (jd != L->d) rc = cd_err("%s says dimension %d but %s has %d", j, jd, f, L->d);
    }
    const char *sp = params ? params : cd_json_str(L->info, "search_params", "");
    if (rc == 0) rc = cd_faiss_set_params(L->ix, sp);
    if (rc == 0 && L->d > 0 && cd_faiss_ntotal(L->ix) > 0) {
        float *v = cd_malloc((size_t)L->d * sizeof(float));
        int64_t id0 = 0;
        float dd;
        cd_faiss_search(L->ix, 1, L->d, memset(v, 0, (size_t)L->d * sizeof(float)), 1, &dd, &id0);
        L->can_rec = id0 >= 0 && cd_faiss_reconstruct(L->ix, id0, v) == 0;
        cd_errclear();
        free(v);
    }
    if (rc == 0 && clip_dir) {
        rc = cd_clip_load(&L->clip, clip_dir);
        if (rc == 0) {
            L->have_clip = 1;
            int P = L->clip.text.proj ? L->clip.text.cfg.projection_dim : L->clip.text.cfg.hidden;
            if (!L->clip.has_text || !L->clip.tok) rc = cd_err("%s: no text model or tokenizer", clip_dir);
            else if (P != L->d)
                rc = cd_err("%s: CLIP text embeddings have dimension %d but the index %s has %d (model in index.json: %s)",
                            clip_dir, P, dir, L->d, cd_json_str(L->info, "model", "?"));
        }
    }
    free(j);
    free(f);
    free(m);
    if (rc) rt_local_close(L);
    return rc;
}

void rt_local_close(rt_local *L) {
    cd_faiss_free(L->ix);
    if (L->meta) cd_idxmeta_close(L->meta);
    cJSON_Delete(L->info);
    if (L->have_clip) cd_clip_free(&L->clip);
    free(L->dir);
    memset(L, 0, sizeof *L);
}

int rt_local_embed_image(rt_local *L, const cd_image *im, float *q) {
    if (!L->have_clip || !L->clip.has_vision) return cd_err("an image query needs --clip MODEL with a vision tower");
    int P = L->clip.vision.proj ? L->clip.vision.cfg.projection_dim : L->clip.vision.cfg.hidden;
    if (P != L->d) return cd_err("CLIP image embeddings have dimension %d but the index %s has %d", P, L->dir, L->d);
    return cd_clip_embed_images(&L->clip, im, 1, q, 1);
}

int rt_local_embed_image_bytes(rt_local *L, const void *buf, size_t len, const char *what, int64_t max_pixels, float *q) {
    cd_image im = {0};
    if (cd_image_decode(buf, len, what, max_pixels, 0, &im) != 0) return cd_errctx("undecodable image");
    int rc = rt_local_embed_image(L, &im, q);
    cd_image_free(&im);
    return rc;
}

int rt_local_embed(rt_local *L, const char *prompt, float *q) {
    if (!L->have_clip) return cd_err("a text query needs --clip MODEL");
    const char *p[1] = {prompt};
    CD_TRY(cd_clip_embed_prompts(&L->clip, p, 1, q, 1));
    return 0;
}

int rt_local_knn(rt_local *L, const float *q, int k, int with_meta_first, rt_list *out) {
    int64_t nt = cd_faiss_ntotal(L->ix);
    if (k > nt) k = (int)nt;
    if (k <= 0) return 0;
    int d = L->d;
    float *dist = cd_malloc((size_t)k * sizeof(float)), *rec = L->can_rec ? cd_malloc((size_t)k * d * sizeof(float)) : NULL;
    int64_t *ids = cd_malloc((size_t)k * sizeof(int64_t));
    int rc = rec ? cd_faiss_search_rec(L->ix, 1, d, q, k, dist, ids, rec) : cd_faiss_search(L->ix, 1, d, q, k, dist, ids);
    for (int i = 0; i < k && rc == 0; i++) {
        if (ids[i] < 0) break;   // FAISS pads with -1: the rest is empty
        rt_cand c = {.id = ids[i], .sim = dist[i]};
        if (with_meta_first < 0 || i < with_meta_first) {
            char *js = NULL;
            int g = cd_idxmeta_get(L->meta, ids[i], &js);
            if (g < 0) { rc = -1; break; }
            if (g == 0 && cd_json_parse(js, strlen(js), "metadata", &c.meta) != 0) c.meta = NULL;
            free(js);
        }
        if (rec) {
            c.vec = cd_malloc((size_t)d * sizeof(float));
            memcpy(c.vec, rec + (size_t)i * d, (size_t)d * sizeof(float));
            double s = 0;   // re-normalise (PQ reconstructions are approximate)
            for (int j = 0; j < d; j++) s += (double)c.vec[j] * c.vec[j];
            if (s > 0) for (int j = 0; j < d; j++) c.vec[j] /= (float)sqrt(s);
        }
        rt_list_push(out, c);
    }
    free(dist);
    free(rec);
    free(ids);
    return rc;
}
