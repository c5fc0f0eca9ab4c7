// Training data: concepts, image sources (LMDB stores written by customdiff-preprocess,
// image folders, Custom Diffusion's images.txt + caption.txt lists), the dataset order and
// the HF trainer's augmentation (train_custom_diffusion.py CustomDiffusionDataset).
#include "train/train.h"
#include "train/imgsrc.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- concepts list ---------------------------------------------------------------------

int cd_concepts_load(const char *path, cd_concept **out, int *n) {
    cJSON *j = NULL;
    CD_TRY(cd_json_load(path, &j));
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) == 0) {
        cJSON_Delete(j);
        return cd_err("%s: a concepts list must be a non-empty JSON array of objects with "
                      "instance_prompt, class_prompt, instance_data_dir, class_data_dir", path);
    }
    int k = cJSON_GetArraySize(j);
    cd_concept *c = cd_calloc(k, sizeof *c);
    for (int i = 0; i < k; i++) {
        cJSON *o = cJSON_GetArrayItem(j, i);
        char what[64];
        snprintf(what, sizeof what, "concept %d", i);
        const char *ip, *idir;
        if (!cJSON_IsObject(o) || cd_json_req_str(o, "instance_prompt", what, &ip) ||
            cd_json_req_str(o, "instance_data_dir", what, &idir)) {
            cJSON_Delete(j);
            cd_concepts_free(c, k);
            return cd_errctx("%s", path);
        }
        c[i].instance_prompt = cd_strdup(ip);
        c[i].instance_dir = cd_strdup(idir);
        const char *cp = cd_json_str(o, "class_prompt", NULL), *cdir = cd_json_str(o, "class_data_dir", NULL);
        c[i].class_prompt = cp ? cd_strdup(cp) : NULL;
        c[i].class_dir = cdir ? cd_strdup(cdir) : NULL;
    }
    cJSON_Delete(j);
    *out = c;
    *n = k;
    return 0;
}

void cd_concepts_free(cd_concept *c, int n) {
    if (!c) return;
    for (int i = 0; i < n; i++) {
        free(c[i].instance_prompt);
        free(c[i].class_prompt);
        free(c[i].instance_dir);
        free(c[i].class_dir);
    }
    free(c);
}

// ---- augmentation (HF profile) ---------------------------------------------------------

static void flip_h(cd_image *im) {
    for (int y = 0; y < im->h; y++) {
        uint8_t *row = im->rgb + (size_t)y * im->w * 3;
        for (int a = 0, b = im->w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
    }
}

static int copy_image(const cd_image *in, cd_image *out) {
    out->w = in->w;
    out->h = in->h;
    out->rgb = cd_malloc((size_t)in->w * in->h * 3);
    memcpy(out->rgb, in->rgb, (size_t)in->w * in->h * 3);
    return 0;
}

// px[3,N,N] (channel-first) region [y0,y0+h) x [x0,x0+w) from im's pixels at (sy, sx),
// mapped u8 / 127.5 - 1.
static void put_pixels(float *px, int N, const cd_image *im, int y0, int x0, int sy, int sx, int h, int w) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *p = im->rgb + ((size_t)(sy + y) * im->w + (sx + x)) * 3;
            for (int c = 0; c < 3; c++)
                px[(size_t)c * N * N + (size_t)(y0 + y) * N + (x0 + x)] = (float)(p[c] / 127.5 - 1.0);
        }
}

// np.random.randint(lo, hi): [lo, hi) ; our cd_rng_int is inclusive.
static int randint_excl(cd_rng *r, int lo, int hi) { return cd_rng_int(r, lo, hi - 1); }

const char *cd_aug_instance(const cd_image *im0, int N, int f, int noaug, int hflip, cd_rng *r,
                            float *px, float *mask, int *scale_out) {
    cd_image im, rs;
    copy_image(im0, &im);
    // RandomHorizontalFlip(0.5 * hflip) before the scale augmentation.
    if (hflip && cd_rng_uniform(r) < 0.5) flip_h(&im);
    int s = N;
    if (!noaug)
        s = cd_rng_uniform(r) < 0.66 ? randint_excl(r, N / 3, N + 1)
                                     : randint_excl(r, (int)(1.2 * N), (int)(1.4 * N));
    int outer = N, inner = s;
    if (s > N) { outer = s; inner = N; }
    int top = randint_excl(r, 0, outer - inner + 1), left = randint_excl(r, 0, outer - inner + 1);
    int m = N / f;
    if (cd_image_resize_to(&im, s, s, CD_FILTER_BILINEAR, &rs)) {
        cd_image_free(&im);
        return NULL;
    }
    cd_image_free(&im);
    if (s > N) {
        put_pixels(px, N, &rs, 0, 0, top, left, N, N);
        for (int i = 0; i < m * m; i++) mask[i] = 1.0f;
    } else {
        for (size_t i = 0; i < (size_t)3 * N * N; i++) px[i] = 0.0f;
        put_pixels(px, N, &rs, top, left, 0, 0, s, s);
        // mask[top//f+1 : (top+s)//f-1, left//f+1 : (left+s)//f-1] = 1 (Q6: even at s = N)
        for (int i = 0; i < m * m; i++) mask[i] = 0.0f;
        for (int y = top / f + 1; y < (top + s) / f - 1; y++)
            for (int x = left / f + 1; x < (left + s) / f - 1; x++)
                if (y >= 0 && y < m && x >= 0 && x < m) mask[y * m + x] = 1.0f;
    }
    cd_image_free(&rs);
    if (scale_out) *scale_out = s;
    if (s < 0.6 * N) return cd_rng_uniform(r) < 0.5 ? "a far away " : "very small ";
    if (s > N) return cd_rng_uniform(r) < 0.5 ? "zoomed in " : "close up ";
    return "";
}

int cd_aug_class(const cd_image *im0, int N, int hflip, int center_crop, cd_rng *r, float *px) {
    cd_image im, rs;
    copy_image(im0, &im);
    if (hflip && cd_rng_uniform(r) < 0.5) flip_h(&im);
    // torchvision Resize(N): shorter side -> N, longer = int(N * long / short); no-op if equal.
    int w = im.w, h = im.h, nw, nh;
    if (w <= h) { nw = N; nh = (int)((double)N * h / w); }
    else { nh = N; nw = (int)((double)N * w / h); }
    if (nw == w && nh == h) rs = im;
    else {
        int rc = cd_image_resize_to(&im, nw, nh, CD_FILTER_BILINEAR, &rs);
        cd_image_free(&im);
        if (rc) return -1;
    }
    int top, left;
    if (center_crop) {
        // torchvision CenterCrop: int(round((h - N) / 2.0)), Python's round = half to even
        top = (int)nearbyint((nh - N) / 2.0);
        left = (int)nearbyint((nw - N) / 2.0);
    } else {
        top = cd_rng_int(r, 0, nh - N);
        left = cd_rng_int(r, 0, nw - N);
    }
    put_pixels(px, N, &rs, 0, 0, top, left, N, N);
    cd_image_free(&rs);
    return 0;
}

// ---- dataset ---------------------------------------------------------------------------

// Open a source, or reuse an open one of the same folder (LMDB allows one handle per
// process); *idx gets its index.
static int add_source(cd_dataset *d, const char *path, int want_captions, int limit, int *idx) {
    char *rp = realpath(path, NULL);
    for (int i = 0; i < d->nsrc && rp; i++) {
        char *q = realpath(cd_imgsrc_path(d->src[i]), NULL);
        int same = q && strcmp(q, rp) == 0;
        free(q);
        if (same) {
            free(rp);
            *idx = i;
            return 0;
        }
    }
    free(rp);
    *idx = d->nsrc;
    cd_imgsrc *s = NULL;
    CD_TRY(cd_imgsrc_open(&s, path, want_captions, limit));
    d->src = cd_realloc(d->src, sizeof(*d->src) * (d->nsrc + 1));
    d->src[d->nsrc++] = s;
    return 0;
}

static void shuffle(int *v, int n, cd_rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = cd_rng_int(r, 0, i);
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

int cd_dataset_open(cd_dataset *d, cd_concept *c, int nc, const cd_train_args *a, int f) {
    memset(d, 0, sizeof *d);
    d->N = a->resolution;
    d->f = f;
    d->hflip = a->hflip;
    d->noaug = a->noaug;
    d->center_crop = a->center_crop;
    d->with_prior = a->with_prior;
    d->real_prior = a->real_prior;
    d->concepts = c;
    d->nconcepts = nc;
    d->seed = (uint64_t)a->seed;
    d->cache_cap = (int64_t)1 << 30;
    if (d->N % (f * 2) != 0) return cd_err("--resolution %d must be a multiple of %d", d->N, f * 2);
    for (int i = 0; i < nc; i++) {
        int s0, s1;
        if (add_source(d, c[i].instance_dir, 1, 0, &s0)) return cd_errctx("concept %d instance data", i);
        int n = cd_imgsrc_count(d->src[s0]);
        d->inst = cd_realloc(d->inst, sizeof(cd_item) * (d->n_inst + n));
        for (int k = 0; k < n; k++) d->inst[d->n_inst++] = (cd_item){s0, k, i};
        if (!d->with_prior) continue;
        if (!c[i].class_dir) return cd_err("concept %d: prior preservation needs class data (--class-data)", i);
        if (add_source(d, c[i].class_dir, 1, a->num_class_images, &s1))
            return cd_errctx("concept %d class data", i);
        int m = cd_imgsrc_count(d->src[s1]);
        if (a->num_class_images > 0 && m < a->num_class_images)
            cd_warn("concept %d: class data %s has %d images, fewer than --num-class-images %d",
                    i, c[i].class_dir, m, a->num_class_images);
        d->cls = cd_realloc(d->cls, sizeof(cd_item) * (d->n_class + m));
        for (int k = 0; k < m; k++) d->cls[d->n_class++] = (cd_item){s1, k, i};
    }
    // Instance list shuffled once (random.shuffle upstream), seeded.
    cd_rng r;
    cd_rng_split(&r, d->seed, 0x1257a);
    int *order = cd_malloc(sizeof(int) * (d->n_inst ? d->n_inst : 1));
    for (int i = 0; i < d->n_inst; i++) order[i] = i;
    shuffle(order, d->n_inst, &r);
    cd_item *sh = cd_malloc(sizeof(cd_item) * (d->n_inst ? d->n_inst : 1));
    for (int i = 0; i < d->n_inst; i++) sh[i] = d->inst[order[i]];
    free(d->inst);
    free(order);
    d->inst = sh;
    d->len = d->with_prior && d->n_class > d->n_inst ? d->n_class : d->n_inst;
    d->perm = cd_malloc(sizeof(int) * d->len);
    d->perm_epoch = -1;
    return 0;
}

void cd_dataset_free(cd_dataset *d) {
    for (int i = 0; i < d->nsrc; i++) cd_imgsrc_free(d->src[i]);
    free(d->src);
    free(d->inst);
    free(d->cls);
    free(d->perm);
    memset(d, 0, sizeof *d);
}

// The epoch's order (DataLoader shuffle=True), from (seed, epoch) so a resume rebuilds it.
static void epoch_perm(cd_dataset *d) {
    if (d->perm_epoch == d->epoch) return;
    cd_rng r;
    cd_rng_split(&r, d->seed, 0x5eed0000ull + (uint64_t)d->epoch);
    for (int i = 0; i < d->len; i++) d->perm[i] = i;
    shuffle(d->perm, d->len, &r);
    d->perm_epoch = d->epoch;
}

void cd_batch_free(cd_batch *bt) {
    if (bt->captions)
        for (int i = 0; i < bt->B; i++) free(bt->captions[i]);
    free(bt->captions);
    free(bt->pixels);
    free(bt->mask);
    free(bt->item);
    free(bt->deterministic);
    memset(bt, 0, sizeof *bt);
}

static int fill_instance(cd_dataset *d, int idx, cd_rng *aug, cd_batch *bt, int row) {
    const cd_item *it = &d->inst[idx % d->n_inst];
    cd_image im;
    CD_TRY(cd_imgsrc_get(d->src[it->src], it->idx, &im, NULL));
    int N = d->N, m = N / d->f;
    const char *pre = cd_aug_instance(&im, N, d->f, d->noaug, d->hflip, aug,
                                      bt->pixels + (size_t)row * 3 * N * N,
                                      bt->mask + (size_t)row * m * m, NULL);
    cd_image_free(&im);
    if (!pre) return cd_errctx("%s image %d", cd_imgsrc_path(d->src[it->src]), it->idx);
    bt->captions[row] = cd_fmt("%s%s", pre, d->concepts[it->concept].instance_prompt);
    bt->item[row] = idx % d->n_inst;
    bt->deterministic[row] = d->noaug && !d->hflip;
    return 0;
}

static int fill_class(cd_dataset *d, int idx, cd_rng *aug, cd_batch *bt, int row) {
    const cd_item *it = &d->cls[idx % d->n_class];
    cd_image im;
    char *cap = NULL;
    CD_TRY(cd_imgsrc_get(d->src[it->src], it->idx, &im, &cap));
    int N = d->N;
    int rc = cd_aug_class(&im, N, d->hflip, d->center_crop, aug, bt->pixels + (size_t)row * 3 * N * N);
    cd_image_free(&im);
    if (rc) { free(cap); return cd_errctx("%s image %d", cd_imgsrc_path(d->src[it->src]), it->idx); }
    const char *cp = d->concepts[it->concept].class_prompt;
    if ((d->real_prior || !cp) && cap && *cap) bt->captions[row] = cap;
    else {
        free(cap);
        bt->captions[row] = cd_strdup(cp ? cp : "");
    }
    bt->item[row] = idx % d->n_class;
    bt->deterministic[row] = d->center_crop && !d->hflip;
    return 0;
}

int cd_dataset_next(cd_dataset *d, cd_rng *aug, int b, cd_batch *bt) {
    int N = d->N, m = N / d->f;
    memset(bt, 0, sizeof *bt);
    bt->n_inst = b;
    bt->B = d->with_prior ? 2 * b : b;
    bt->N = N;
    bt->mask_n = m;
    bt->pixels = cd_malloc(sizeof(float) * (size_t)bt->B * 3 * N * N);
    bt->mask = cd_malloc(sizeof(float) * (size_t)b * m * m);
    bt->captions = cd_calloc(bt->B, sizeof(char *));
    bt->item = cd_calloc(bt->B, sizeof(int));
    bt->deterministic = cd_calloc(bt->B, sizeof(int));
    for (int i = 0; i < b; i++) {
        epoch_perm(d);
        int idx = d->perm[d->pos];
        if (++d->pos >= d->len) { d->pos = 0; d->epoch++; }
        if (fill_instance(d, idx, aug, bt, i) ||
            (d->with_prior && fill_class(d, idx, aug, bt, b + i))) {
            cd_batch_free(bt);
            return -1;
        }
    }
    return 0;
}
