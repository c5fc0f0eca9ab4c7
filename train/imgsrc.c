// Image sources for training (see train/imgsrc.h). Decoded images are kept in memory up
// to a budget (instance sets are small and read every epoch).
#include "train/imgsrc.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#if __has_include("core/store.h")
#include "core/store.h"
#define HAVE_STORE 1
#endif
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { SRC_FOLDER, SRC_LIST, SRC_STORE };

struct cd_imgsrc {
    int kind;
    char *path;
    int n;
    char **files;        // FOLDER/LIST: image paths
    char **captions;     // per image or NULL
#ifdef HAVE_STORE
    cd_store *store;     // STORE
#endif
    cd_image *cache;     // decoded images (rgb NULL when not cached)
};

static int64_t g_cache_bytes, g_cache_cap = (int64_t)768 << 20;

static int is_sidecar(const char *name) {
    static const char *skip[] = {".txt", ".json", ".jsonl", ".csv", ".tsv", ".md", ".mdb", ".npy",
                                 ".safetensors", ".parquet", NULL};
    if (name[0] == '.' || strstr(name, ".tmp.")) return 1;   // hidden, or an atomic write in progress
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (int i = 0; skip[i]; i++)
        if (strcasecmp(dot, skip[i]) == 0) return 1;
    return 0;
}

// "a/b.jpg" -> contents of "a/b.txt" (trimmed) or NULL.
static char *sidecar_caption(const char *img) {
    const char *dot = strrchr(img, '.');
    size_t stem = dot ? (size_t)(dot - img) : strlen(img);
    char *p = cd_fmt("%.*s.txt", (int)stem, img);
    char *txt = NULL;
    size_t len = 0;
    if (cd_path_exists(p) && cd_read_file(p, &txt, &len, 1 << 20) == 0) {
        while (len && (txt[len - 1] == '\n' || txt[len - 1] == '\r' || txt[len - 1] == ' ')) txt[--len] = 0;
    }
    free(p);
    return txt;
}

static int open_folder(cd_imgsrc *s, int want_captions, int limit) {
    char **names = NULL;
    int n = 0;
    CD_TRY(cd_list_dir(s->path, &names, &n));
    s->files = cd_calloc(n ? n : 1, sizeof(char *));
    s->captions = cd_calloc(n ? n : 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        if (is_sidecar(names[i])) continue;
        if (limit > 0 && s->n >= limit) break;
        s->files[s->n] = cd_path_join(s->path, names[i]);
        if (want_captions) s->captions[s->n] = sidecar_caption(s->files[s->n]);
        s->n++;
    }
    cd_free_strv(names, n);
    return 0;
}

// Split text into lines (no trailing empty line); returns the count.
static int split_lines(char *text, char ***out) {
    int n = 0, cap = 16;
    char **v = cd_malloc(sizeof(char *) * cap);
    char *p = text;
    while (*p) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r') p[l - 1] = 0;
        if (n == cap) v = cd_realloc(v, sizeof(char *) * (cap *= 2));
        v[n++] = p;
        if (!e) break;
        p = e + 1;
    }
    *out = v;
    return n;
}

// Custom Diffusion retrieval layout: images.txt (paths relative to the working directory,
// to the folder, or to its parent) zipped line by line with caption.txt.
static int open_list(cd_imgsrc *s, int want_captions, int limit) {
    char *imgs_path = cd_path_join(s->path, "images.txt"), *cap_path = cd_path_join(s->path, "caption.txt");
    char *imgs = NULL, *caps = NULL;
    size_t len;
    int rc = cd_read_file(imgs_path, &imgs, &len, 64 << 20);
    if (rc == 0 && cd_path_exists(cap_path)) rc = cd_read_file(cap_path, &caps, &len, 64 << 20);
    char **il = NULL, **cl = NULL;
    int ni = rc == 0 ? split_lines(imgs, &il) : 0, nc = caps ? split_lines(caps, &cl) : 0;
    if (rc == 0 && caps && nc < ni) cd_warn("%s: %d captions for %d images", cap_path, nc, ni);
    s->files = cd_calloc(ni ? ni : 1, sizeof(char *));
    s->captions = cd_calloc(ni ? ni : 1, sizeof(char *));
    char *parent = cd_path_join(s->path, "..");
    for (int i = 0; i < ni && rc == 0; i++) {
        if (!il[i][0]) continue;
        if (limit > 0 && s->n >= limit) break;
        char *p = cd_strdup(il[i]);
        if (!cd_path_exists(p) && il[i][0] != '/') {
            char *a = cd_path_join(s->path, il[i]), *b = cd_path_join(parent, il[i]);
            free(p);
            if (cd_path_exists(a)) { p = a; free(b); }
            else { p = b; free(a); }
        }
        s->files[s->n] = p;
        if (want_captions && i < nc) s->captions[s->n] = cd_strdup(cl[i]);
        s->n++;
    }
    free(parent);
    free(il);
    free(cl);
    free(imgs);
    free(caps);
    free(imgs_path);
    free(cap_path);
    return rc;
}

int cd_imgsrc_open(cd_imgsrc **out, const char *path, int want_captions, int limit) {
    *out = NULL;
    if (!path || !*path) return cd_err("no image folder or store given");
    if (!cd_is_dir(path)) return cd_err("%s: no such folder (expected an image folder, a store or a "
                                        "folder with images.txt)", path);
    cd_imgsrc *s = cd_calloc(1, sizeof *s);
    s->path = cd_strdup(path);
    char *mdb = cd_path_join(path, "data.mdb"), *lst = cd_path_join(path, "images.txt");
    int rc;
    if (cd_path_exists(mdb)) {
        s->kind = SRC_STORE;
#ifdef HAVE_STORE
        rc = cd_store_open(path, &s->store);
        if (rc == 0) {
            int64_t n = cd_store_count(s->store);
            s->n = (int)(limit > 0 && n > limit ? limit : n);
        }
#else
        rc = cd_err("%s: LMDB stores are not readable in this build", path);
#endif
    } else if (cd_path_exists(lst)) {
        s->kind = SRC_LIST;
        rc = open_list(s, want_captions, limit);
    } else {
        s->kind = SRC_FOLDER;
        rc = open_folder(s, want_captions, limit);
    }
    free(mdb);
    free(lst);
    if (rc == 0 && s->n == 0)
        rc = cd_err("%s: no images (an empty %s)", path,
                    s->kind == SRC_STORE ? "store" : s->kind == SRC_LIST ? "images.txt" : "folder");
    if (rc) {
        cd_imgsrc_free(s);
        return -1;
    }
    s->cache = cd_calloc(s->n, sizeof(cd_image));
    *out = s;
    return 0;
}

int cd_imgsrc_count(const cd_imgsrc *s) { return s->n; }
const char *cd_imgsrc_path(const cd_imgsrc *s) { return s->path; }

static void copy_out(const cd_image *c, cd_image *im) {
    im->w = c->w;
    im->h = c->h;
    im->rgb = cd_malloc((size_t)c->w * c->h * 3);
    memcpy(im->rgb, c->rgb, (size_t)c->w * c->h * 3);
}

int cd_imgsrc_get(cd_imgsrc *s, int i, cd_image *im, char **caption) {
    if (caption) *caption = NULL;
    if (i < 0 || i >= s->n) return cd_err("%s: image %d out of range (%d images)", s->path, i, s->n);
    int fresh = !s->cache[i].rgb;
    if (s->kind == SRC_STORE) {
#ifdef HAVE_STORE
        cd_store_rec rec;
        CD_TRY(cd_store_get(s->store, i, &rec));
        int rc = fresh ? cd_image_decode(rec.jpeg, rec.jpeg_len, s->path, 0, 0, &s->cache[i]) : 0;
        if (rc == 0 && caption && rec.caption) *caption = cd_strdup(rec.caption);
        cd_store_rec_free(&rec);
        if (rc) return -1;
#endif
    } else {
        if (caption && s->captions[i]) *caption = cd_strdup(s->captions[i]);
        if (fresh && cd_image_load(s->files[i], (int64_t)1 << 28, &s->cache[i]))
            return cd_errctx("%s", s->path);
    }
    copy_out(&s->cache[i], im);
    int64_t bytes = (int64_t)im->w * im->h * 3;
    if (fresh) {
        if (g_cache_bytes + bytes <= g_cache_cap) g_cache_bytes += bytes;
        else cd_image_free(&s->cache[i]);   // over budget: decode again next time
    }
    return 0;
}

void cd_imgsrc_free(cd_imgsrc *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        if (s->files) free(s->files[i]);
        if (s->captions) free(s->captions[i]);
        if (s->cache && s->cache[i].rgb) {
            g_cache_bytes -= (int64_t)s->cache[i].w * s->cache[i].h * 3;
            cd_image_free(&s->cache[i]);
        }
    }
    free(s->files);
    free(s->captions);
    free(s->cache);
#ifdef HAVE_STORE
    if (s->store) cd_store_close(s->store);
#endif
    free(s->path);
    free(s);
}
