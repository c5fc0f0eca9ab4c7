// Input lists for customdiff-preprocess (see inputs.h).
#include "core/image.h"
#include "preprocess/inputs.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PP_MAX_LIST_BYTES ((size_t)1 << 30)

void pp_inputs_free(pp_inputs *in) {
    for (int i = 0; i < in->n; i++) {
        free(in->v[i].url); free(in->v[i].path); free(in->v[i].caption); free(in->v[i].origin_url); free(in->v[i].id);
    }
    free(in->v);
    memset(in, 0, sizeof *in);
}

static pp_input *push(pp_inputs *in) {
    if (in->n == in->cap) {
        in->cap = in->cap ? 2 * in->cap : 64;
        in->v = cd_realloc(in->v, in->cap * sizeof *in->v);
    }
    pp_input *p = &in->v[in->n++];
    memset(p, 0, sizeof *p);
    return p;
}

// Copy with surrounding whitespace removed and inner newlines/tabs made spaces (a caption
// must stay one line in caption.txt).
static char *clean_text(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *o = cd_malloc(n + 1);
    for (size_t i = 0; i < n; i++) o[i] = (s[i] == '\n' || s[i] == '\r' || s[i] == '\t') ? ' ' : s[i];
    o[n] = 0;
    return o;
}


int pp_inputs_instance(const char *dir, const char *caption, pp_inputs *in) {
    char **names;
    int n;
    if (cd_list_dir(dir, &names, &n)) return cd_errctx("instance folder");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!cd_image_name_supported(names[i])) continue;
        char *path = cd_path_join(dir, names[i]);
        const char *dot = strrchr(names[i], '.');
        char *side_name = cd_fmt("%.*s.txt", (int)(dot - names[i]), names[i]);
        char *side = cd_path_join(dir, side_name), *text = NULL;
        size_t tl = 0;
        pp_input *p = push(in);
        p->path = path;
        p->id = cd_strdup(names[i]);
        if (cd_path_exists(side) && cd_read_file(side, &text, &tl, 1 << 20) == 0) {
            p->caption = clean_text(text, tl);
            free(text);
        } else if (caption) {
            p->caption = cd_strdup(caption);
        } else {
            p->caption = cd_strdup("");
            rc = cd_err("%s: no caption: pass --caption or add %s", path, side_name);
        }
        free(side_name); free(side);
    }
    cd_free_strv(names, n);
    if (!rc && in->n == 0) rc = cd_err("%s: no images (" CD_IMAGE_EXTS ") in the folder", dir);
    return rc;
}

// ---- JSONL ----

int pp_parse_jsonl(const char *text, size_t len, const char *what, pp_inputs *in) {
    size_t pos = 0;
    int line = 0;
    while (pos < len) {
        size_t e = pos;
        while (e < len && text[e] != '\n') e++;
        line++;
        size_t b = pos;
        while (b < e && isspace((unsigned char)text[b])) b++;
        if (b < e) {
            char *lw = cd_fmt("%s:%d", what, line);
            cJSON *o;
            int rc = cd_json_parse(text + b, e - b, lw, &o);
            if (rc == 0 && !cJSON_IsObject(o)) { cJSON_Delete(o); rc = cd_err("%s: not a JSON object", lw); }
            if (rc) { free(lw); return -1; }
            const char *url = cd_json_str(o, "url", NULL);
            if (!url) url = cd_json_str(o, "URL", NULL);
            // customdiff-retrieve's first record describes the query (query, model, index,
            // parameters) and has no url: it is not a candidate.
            if (!url && line == 1 && cJSON_GetObjectItemCaseSensitive(o, "query")) {
                cJSON_Delete(o); free(lw); pos = e + 1; continue;
            }
            if (!url || !*url) { cJSON_Delete(o); rc = cd_err("%s: no \"url\" string", lw); free(lw); return rc; }
            const char *cap = cd_json_str(o, "caption", NULL);
            if (!cap) cap = cd_json_str(o, "TEXT", "");
            pp_input *p = push(in);
            p->url = clean_text(url, strlen(url));
            p->caption = clean_text(cap, strlen(cap));
            const cJSON *sim = cJSON_GetObjectItemCaseSensitive(o, "similarity");
            if (cJSON_IsNumber(sim)) { p->similarity = sim->valuedouble; p->has_similarity = 1; }
            cJSON_Delete(o);
            free(lw);
        }
        pos = e + 1;
    }
    return 0;
}

// ---- CSV / TSV (RFC 4180 quoting) ----

typedef struct { char **f; int n, cap; } fields;

static void fields_clear(fields *r) {
    for (int i = 0; i < r->n; i++) free(r->f[i]);
    r->n = 0;
}

static void field_push(fields *r, const char *s, size_t n) {
    if (r->n == r->cap) { r->cap = r->cap ? 2 * r->cap : 16; r->f = cd_realloc(r->f, r->cap * sizeof *r->f); }
    char *o = cd_malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {            // quoted: "" -> "
        o[k++] = s[i];
        if (s[i] == '"' && i + 1 < n && s[i + 1] == '"') i++;
    }
    o[k] = 0;
    r->f[r->n++] = o;
}

// Parse one record starting at *pos. Returns 1 if a record was read, 0 at end, -1 on an
// unterminated quote.
static int read_record(const char *t, size_t len, size_t *pos, char d, fields *r) {
    size_t i = *pos;
    fields_clear(r);
    if (i >= len) return 0;
    for (;;) {
        if (i < len && t[i] == '"') {
            size_t s = ++i;
            for (;;) {
                if (i >= len) return -1;
                if (t[i] == '"') { if (i + 1 < len && t[i + 1] == '"') { i += 2; continue; } break; }
                i++;
            }
            field_push(r, t + s, i - s);
            i++;                                    // closing quote; junk until delimiter is dropped
            while (i < len && t[i] != d && t[i] != '\n' && t[i] != '\r') i++;
        } else {
            size_t s = i;
            while (i < len && t[i] != d && t[i] != '\n' && t[i] != '\r') i++;
            char *tmp = cd_malloc(i - s + 1);        // unquoted: taken literally
            memcpy(tmp, t + s, i - s);
            if (r->n == r->cap) { r->cap = r->cap ? 2 * r->cap : 16; r->f = cd_realloc(r->f, r->cap * sizeof *r->f); }
            tmp[i - s] = 0;
            r->f[r->n++] = tmp;
        }
        if (i < len && t[i] == d) { i++; continue; }
        if (i < len && t[i] == '\r') i++;
        if (i < len && t[i] == '\n') i++;
        break;
    }
    *pos = i;
    return 1;
}

static int col_index(const fields *h, const char *const *names) {
    for (int k = 0; names[k]; k++)
        for (int i = 0; i < h->n; i++) {
            char *c = h->f[i];
            if (i == 0 && (uint8_t)c[0] == 0xEF && (uint8_t)c[1] == 0xBB && (uint8_t)c[2] == 0xBF) c += 3;   // BOM
            size_t n = strlen(c);
            while (n && isspace((unsigned char)c[n - 1])) n--;
            while (n && isspace((unsigned char)*c)) { c++; n--; }
            if (strlen(names[k]) == n && !strncasecmp(c, names[k], n)) return i;
        }
    return -1;
}

int pp_parse_csv(const char *text, size_t len, char delim, const char *what, pp_inputs *in) {
    if (!delim) {
        size_t e = 0;
        while (e < len && text[e] != '\n') e++;
        delim = memchr(text, '\t', e) ? '\t' : ',';
    }
    fields r = {0};
    size_t pos = 0;
    int rc = read_record(text, len, &pos, delim, &r);
    if (rc <= 0) { fields_clear(&r); free(r.f); return cd_err("%s: empty or unreadable header line", what); }
    static const char *url_names[] = {"url", "image_url", "link", NULL};
    static const char *cap_names[] = {"caption", "text", "title", NULL};
    int cu = col_index(&r, url_names), cc = col_index(&r, cap_names);
    if (cu < 0) { fields_clear(&r); free(r.f); return cd_err("%s: header has no url column", what); }
    int line = 1, out = 0;
    while ((rc = read_record(text, len, &pos, delim, &r)) == 1) {
        line++;
        if (r.n == 1 && !r.f[0][0]) continue;       // blank line
        if (cu >= r.n || !r.f[cu][0]) { out = cd_err("%s: record %d has no url", what, line); break; }
        pp_input *p = push(in);
        p->url = clean_text(r.f[cu], strlen(r.f[cu]));
        p->caption = cc >= 0 && cc < r.n ? clean_text(r.f[cc], strlen(r.f[cc])) : cd_strdup("");
    }
    if (rc < 0) out = cd_err("%s: record %d: unterminated quoted field", what, line + 1);
    fields_clear(&r);
    free(r.f);
    return out;
}

// ---- Custom Diffusion layout ----

// Next line of t at *pos (without the newline); NULL at end.
static char *next_line(const char *t, size_t *pos) {
    if (!t || !t[*pos]) return NULL;
    size_t s = *pos, e = s;
    while (t[e] && t[e] != '\n') e++;
    *pos = t[e] ? e + 1 : e;
    size_t n = e - s;
    if (n && t[s + n - 1] == '\r') n--;
    char *o = cd_malloc(n + 1);
    memcpy(o, t + s, n);
    o[n] = 0;
    return o;
}

static char *resolve_image(const char *p, const char *base) {
    if (p[0] == '/' || cd_path_exists(p) || !base) return cd_strdup(p);
    char *j = cd_path_join(base, p);
    if (cd_path_exists(j)) return j;
    free(j);
    const char *slash = strrchr(p, '/');
    char *img = cd_path_join(base, "images");
    j = cd_path_join(img, slash ? slash + 1 : p);
    free(img);
    if (cd_path_exists(j)) return j;
    free(j);
    return cd_strdup(p);
}

int pp_parse_cd_lists(const char *images, const char *captions, const char *urls,
                      const char *base_dir, const char *what, pp_inputs *in) {
    size_t pi = 0, pc = 0, pu = 0;
    int line = 0;
    char *im;
    while ((im = next_line(images, &pi))) {
        char *cap = next_line(captions, &pc), *url = next_line(urls, &pu);
        line++;
        char *t = clean_text(im, strlen(im));
        free(im);
        if (!*t) { free(t); free(cap); free(url); continue; }
        if (!cap) { free(t); free(url); return cd_err("%s: caption.txt has fewer lines than images.txt (line %d)", what, line); }
        pp_input *p = push(in);
        p->path = resolve_image(t, base_dir);
        p->id = cd_strdup(t);
        p->caption = clean_text(cap, strlen(cap));
        if (url) { p->origin_url = clean_text(url, strlen(url)); if (!*p->origin_url) { free(p->origin_url); p->origin_url = NULL; } }
        free(t); free(cap); free(url);
    }
    return 0;
}

static int load_text(const char *path, char **t, size_t *n) {
    CD_TRY(cd_read_file(path, t, n, PP_MAX_LIST_BYTES));
    size_t z = strlen(*t);
    if (z == *n) return 0;
    free(*t);
    *t = NULL;
    return cd_err("%s: NUL byte at offset %zu: not a text file", path, z);
}

static int candidates_folder(const char *dir, pp_inputs *in) {
    char *pi = cd_path_join(dir, "images.txt"), *pc = cd_path_join(dir, "caption.txt");
    char *pu = cd_path_join(dir, "urls.txt");
    char *ti = NULL, *tc = NULL, *tu = NULL;
    size_t n;
    int rc = load_text(pi, &ti, &n) || load_text(pc, &tc, &n) ? -1 : 0;
    if (!rc && cd_path_exists(pu) && load_text(pu, &tu, &n)) rc = -1;
    if (!rc) rc = pp_parse_cd_lists(ti, tc, tu, dir, dir, in);
    free(ti); free(tc); free(tu); free(pi); free(pc); free(pu);
    return rc;
}

int pp_inputs_candidates(const char *path, pp_inputs *in) {
    if (cd_is_dir(path)) return candidates_folder(path, in);
    char *t;
    size_t n;
    CD_TRY(load_text(path, &t, &n));
    const char *ext = strrchr(path, '.');
    int rc;
    if (ext && (!strcasecmp(ext, ".jsonl") || !strcasecmp(ext, ".json"))) rc = pp_parse_jsonl(t, n, path, in);
    else if (ext && !strcasecmp(ext, ".tsv")) rc = pp_parse_csv(t, n, '\t', path, in);
    else if (ext && !strcasecmp(ext, ".csv")) rc = pp_parse_csv(t, n, ',', path, in);
    else {
        size_t i = 0;
        while (i < n && isspace((unsigned char)t[i])) i++;
        rc = i < n && t[i] == '{' ? pp_parse_jsonl(t, n, path, in) : pp_parse_csv(t, n, 0, path, in);
    }
    free(t);
    return rc;
}
