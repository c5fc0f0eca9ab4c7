// CLIP byte-level BPE tokenizer. See model/tokenizer.h for the recipe.
#include "model/tokenizer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "model/tokenizer_internal.h"

// ---- string -> int hash map (open addressing, FNV-1a) --------------------------------
static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

void cd_smap_init(cd_smap *m, int expect) {
    m->cap = 16;
    while (m->cap < expect * 2) m->cap <<= 1;
    m->n = 0;
    m->keys = cd_calloc(m->cap, sizeof(char *));
    m->vals = cd_calloc(m->cap, sizeof(int));
}

static void smap_grow(cd_smap *m);
// Insert or replace; the key is copied.
void cd_smap_put(cd_smap *m, const char *key, int val) {
    if ((m->n + 1) * 2 > m->cap) smap_grow(m);
    size_t n = strlen(key), i = fnv(key, n) & (m->cap - 1);
    while (m->keys[i]) {
        if (!strcmp(m->keys[i], key)) { m->vals[i] = val; return; }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = cd_strdup(key);
    m->vals[i] = val;
    m->n++;
}

static void smap_grow(cd_smap *m) {
    cd_smap o = *m;
    cd_smap_init(m, o.cap);
    for (int i = 0; i < o.cap; i++)
        if (o.keys[i]) { cd_smap_put(m, o.keys[i], o.vals[i]); free(o.keys[i]); }
    free(o.keys); free(o.vals);
}

// Lookup of the n-byte key s (not NUL-terminated); -1 when absent.
int cd_smap_getn(const cd_smap *m, const char *s, size_t n) {
    if (!m->cap) return -1;
    size_t i = fnv(s, n) & (m->cap - 1);
    while (m->keys[i]) {
        if (strlen(m->keys[i]) == n && !memcmp(m->keys[i], s, n)) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}
int cd_smap_get(const cd_smap *m, const char *s) { return cd_smap_getn(m, s, strlen(s)); }

void cd_smap_free(cd_smap *m) {
    for (int i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys); free(m->vals);
    memset(m, 0, sizeof(*m));
}

// ---- the byte alphabet (GPT-2 / CLIP bytes_to_unicode) ----------------------------------
// The bytes in bytes_to_unicode()'s order (printable ranges first, then the others): the
// order of the first 256 vocabulary entries in OpenAI's layout.
void cd_byte_order(int order[256]) {
    int k = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) order[k++] = b;
    for (int b = 0; b < 256; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) order[k++] = b;
}

void cd_byte_alphabet(char enc[256][4]) {
    int cps[256], used[256] = {0}, n = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) { cps[b] = b; used[b] = 1; }
    for (int b = 0; b < 256; b++)
        if (!used[b]) cps[b] = 256 + n++;
    for (int b = 0; b < 256; b++) {
        uint8_t buf[4] = {0};
        utf8proc_ssize_t k = utf8proc_encode_char(cps[b], buf);
        memcpy(enc[b], buf, 4);
        enc[b][k] = 0;
    }
}

// ---- loading ---------------------------------------------------------------------------
static int load_vocab_json(cd_tokenizer *t, const char *path) {
    cJSON *o;
    if (cd_json_load(path, &o)) return -1;
    if (!cJSON_IsObject(o)) { cJSON_Delete(o); return cd_err("%s: not a JSON object", path); }
    int n = cJSON_GetArraySize(o), maxid = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        if (!cJSON_IsNumber(it) || it->valueint < 0 || it->valueint > 10000000) {
            cd_err("%s: entry '%s' is not a valid id", path, it->string ? it->string : "?");
            cJSON_Delete(o);
            return -1;
        }
        if (it->valueint > maxid) maxid = it->valueint;
    }
    t->nbase = maxid + 1;
    t->pieces = cd_calloc(t->nbase, sizeof(char *));
    cd_smap_init(&t->vocab, n);
    cJSON_ArrayForEach(it, o) {
        cd_smap_put(&t->vocab, it->string, it->valueint);
        if (!t->pieces[it->valueint]) t->pieces[it->valueint] = cd_strdup(it->string);
    }
    cJSON_Delete(o);
    for (int i = 0; i < t->nbase; i++)
        if (!t->pieces[i]) t->pieces[i] = cd_strdup("");
    return 0;
}

// merges text: a "#version" line, then "a b" per line; rank = line index. CLIP uses the
// first 49152 - 256 - 2 merges.
static int parse_merges(cd_tokenizer *t, char *text, const char *what) {
    cd_smap_init(&t->merges, 65536);
    int rank = 0;
    char *p = text;
    while (*p && rank < CD_CLIP_MAX_MERGES) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        size_t n = strlen(p);
        if (n && p[n - 1] == '\r') p[--n] = 0;
        if (n && !(p == text && !strncmp(p, "#version", 8))) {
            char *sp = strchr(p, ' ');
            if (!sp || sp == p || !sp[1] || strchr(sp + 1, ' ')) return cd_err("%s: line %d is not a merge 'a b': '%.40s'", what, rank + 2, p);
            cd_smap_put(&t->merges, p, rank++);
        }
        if (!e) break;
        p = e + 1;
    }
    t->nmerges = rank;
    return 0;
}

static int load_merges(cd_tokenizer *t, const char *path) {
    char *text; size_t len;
    if (cd_read_file(path, &text, &len, 64u << 20)) return -1;
    int rc = strlen(text) != len ? cd_err("%s: NUL byte at offset %zu: not a merges text file", path, strlen(text))
           : utf8proc_decompose((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len, NULL, 0, 0) < 0
           ? cd_err("%s: not valid UTF-8 text", path) : parse_merges(t, text, path);
    free(text);
    return rc;
}

// A special token entry: a string or {"content": "..."}.
static const char *special_str(const cJSON *m, const char *key, const char *def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return cd_json_str(v, "content", def);
    return def;
}

static int resolve_special(cd_tokenizer *t, const char *tok, const char *dir, int *id) {
    *id = cd_smap_get(&t->vocab, tok);
    if (*id < 0) return cd_err("%s: special token '%s' is not in the vocabulary", dir, tok);
    return 0;
}

static int load_specials(cd_tokenizer *t, const char *dir) {
    char *p = cd_path_join(dir, "special_tokens_map.json");
    cJSON *m = NULL;
    if (cd_path_exists(p) && cd_json_load(p, &m)) { free(p); return -1; }
    free(p);
    const char *bos = special_str(m, "bos_token", "<|startoftext|>");
    const char *eos = special_str(m, "eos_token", "<|endoftext|>");
    const char *pad = special_str(m, "pad_token", eos);
    int rc = resolve_special(t, bos, dir, &t->bos) || resolve_special(t, eos, dir, &t->eos) ||
             resolve_special(t, pad, dir, &t->pad) ? -1 : 0;
    cJSON_Delete(m);
    return rc;
}

// added_tokens.json {"<new1>": 49408, ...} (ids must continue the vocabulary in order).
static int load_added(cd_tokenizer *t, const char *dir) {
    char *p = cd_path_join(dir, "added_tokens.json");
    if (!cd_path_exists(p)) { free(p); return 0; }
    cJSON *o;
    if (cd_json_load(p, &o)) { free(p); return -1; }
    int n = cJSON_GetArraySize(o), rc = 0;
    for (int want = t->nbase; want < t->nbase + n && !rc; want++) {
        const cJSON *it, *hit = NULL;
        cJSON_ArrayForEach(it, o) if (cJSON_IsNumber(it) && it->valueint == want) hit = it;
        if (!hit) break;   // ids below the vocabulary size (specials) are already known
        int id;
        rc = cd_tokenizer_add_token(t, hit->string, &id);
    }
    cJSON_Delete(o);
    if (rc) cd_errctx("%s", p);
    free(p);
    return rc;
}

int cd_tokenizer_load(cd_tokenizer **out, const char *dir) {
    *out = NULL;
    cd_tokenizer *t = cd_calloc(1, sizeof(*t));
    cd_byte_alphabet(t->benc);
    char *vj = cd_path_join(dir, "vocab.json"), *mt = cd_path_join(dir, "merges.txt");
    char *gz = cd_path_join(dir, "bpe_simple_vocab_16e6.txt.gz");
    int rc;
    if (cd_path_exists(vj) && cd_path_exists(mt)) rc = load_vocab_json(t, vj) || load_merges(t, mt) ? -1 : 0;
    else if (cd_path_exists(gz)) rc = cd_tokenizer_load_openai_gz(t, gz);
    else rc = cd_err("%s: no tokenizer here (need vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz)", dir);
    free(vj); free(mt); free(gz);
    if (!rc) rc = load_specials(t, dir);
    if (!rc) rc = load_added(t, dir);
    if (rc) { cd_tokenizer_free(t); return -1; }
    *out = t;
    return 0;
}

// OpenAI's layout: the vocabulary is the 256 byte symbols, the same with "</w>", one piece
// per merge, then <|startoftext|> and <|endoftext|>. `text` is the decompressed merges file.
int cd_tokenizer_build_openai(cd_tokenizer *t, char *text, const char *what) {
    CD_TRY(parse_merges(t, text, what));
    t->nbase = 512 + t->nmerges + 2;
    t->pieces = cd_calloc(t->nbase, sizeof(char *));
    int k = 0, order[256];
    cd_byte_order(order);
    for (int b = 0; b < 256; b++) t->pieces[k++] = cd_strdup(t->benc[order[b]]);
    for (int b = 0; b < 256; b++) t->pieces[k++] = cd_fmt("%s</w>", t->benc[order[b]]);
    for (int i = 0; i < t->merges.cap; i++) {
        if (!t->merges.keys[i]) continue;
        const char *m = t->merges.keys[i];
        const char *sp = strchr(m, ' ');
        t->pieces[512 + t->merges.vals[i]] = cd_fmt("%.*s%s", (int)(sp - m), m, sp + 1);
    }
    k = 512 + t->nmerges;
    t->pieces[k++] = cd_strdup("<|startoftext|>");
    t->pieces[k++] = cd_strdup("<|endoftext|>");
    cd_smap_init(&t->vocab, t->nbase);
    for (int i = 0; i < t->nbase; i++)
        if (cd_smap_get(&t->vocab, t->pieces[i]) < 0) cd_smap_put(&t->vocab, t->pieces[i], i);
    return 0;
}

void cd_tokenizer_free(cd_tokenizer *t) {
    if (!t) return;
    cd_smap_free(&t->vocab);
    cd_smap_free(&t->merges);
    for (int i = 0; i < t->nbase; i++) free(t->pieces[i]);
    free(t->pieces);
    for (int i = 0; i < t->nadded; i++) free(t->added[i]);
    free(t->added);
    free(t);
}

// ---- small accessors ---------------------------------------------------------------------
int cd_tokenizer_size(const cd_tokenizer *t) { return t->nbase + t->nadded; }
int cd_tokenizer_base_size(const cd_tokenizer *t) { return t->nbase; }
int cd_tokenizer_bos(const cd_tokenizer *t) { return t->bos; }
int cd_tokenizer_eos(const cd_tokenizer *t) { return t->eos; }
int cd_tokenizer_pad(const cd_tokenizer *t) { return t->pad; }
int cd_tokenizer_num_added(const cd_tokenizer *t) { return t->nadded; }
const char *cd_tokenizer_added(const cd_tokenizer *t, int i) {
    return i >= 0 && i < t->nadded ? t->added[i] : NULL;
}

int cd_tokenizer_add_token(cd_tokenizer *t, const char *tok, int *id) {
    if (!tok || !*tok) return cd_err("tokenizer: cannot add an empty token");
    for (int i = 0; i < t->nadded; i++)
        if (!strcmp(t->added[i], tok)) { *id = t->nbase + i; return 0; }
    if (cd_smap_get(&t->vocab, tok) >= 0)
        return cd_err("tokenizer: '%s' is already in the vocabulary (id %d); choose another modifier token",
                      tok, cd_smap_get(&t->vocab, tok));
    t->added = cd_realloc(t->added, sizeof(char *) * (t->nadded + 1));
    t->added[t->nadded] = cd_strdup(tok);
    *id = t->nbase + t->nadded++;
    return 0;
}

int cd_tokenizer_piece_id(const cd_tokenizer *t, const char *piece) {
    for (int i = 0; i < t->nadded; i++)
        if (!strcmp(t->added[i], piece)) return t->nbase + i;
    return cd_smap_get(&t->vocab, piece);
}

const char *cd_tokenizer_piece(const cd_tokenizer *t, int id) {
    if (id >= 0 && id < t->nbase) return t->pieces[id];
    if (id >= t->nbase && id < t->nbase + t->nadded) return t->added[id - t->nbase];
    return NULL;
}
