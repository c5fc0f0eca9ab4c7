// CLIP tokenizer: text normalisation, the pre-tokenisation pattern (by hand, with utf8proc
// categories), byte-level BPE, encode/decode. See model/tokenizer.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "core/err.h"
#include "model/tokenizer_internal.h"

typedef struct { int32_t *v; int n, cap; } ivec;
static void ipush(ivec *a, int32_t x) {
    if (a->n == a->cap) a->v = cd_realloc(a->v, sizeof(int32_t) * (a->cap = a->cap ? a->cap * 2 : 64));
    a->v[a->n++] = x;
}

static int is_letter(int32_t c) {
    if (c < 128) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}
static int is_number(int32_t c) {
    if (c < 128) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}
// Python's str.isspace (what whitespace_clean's \s+ collapses).
static int is_space(int32_t c) {
    if (c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f) || c == 0x85) return 1;
    if (c < 128) return 0;
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

// UTF-8 (n bytes) -> NFC codepoints, whitespace runs -> one space, trimmed, lower-cased.
// Invalid UTF-8 bytes become U+FFFD (Python's errors="replace").
static int32_t *normalise(const char *s, size_t n, int *count) {
    uint8_t *nfc = NULL;
    utf8proc_ssize_t m = utf8proc_map((const uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    const uint8_t *p = m >= 0 ? nfc : (const uint8_t *)s;
    size_t len = m >= 0 ? (size_t)m : n;
    int32_t *cp = cd_malloc(sizeof(int32_t) * (len + 1));
    int k = 0, pend_space = 0;
    for (size_t i = 0; i < len;) {
        int32_t c;
        utf8proc_ssize_t r = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &c);
        if (r <= 0) { c = 0xFFFD; r = 1; }
        i += r;
        if (is_space(c)) { pend_space = 1; continue; }
        if (pend_space && k) cp[k++] = ' ';
        pend_space = 0;
        cp[k++] = utf8proc_tolower(c);
    }
    free(nfc);
    *count = k;
    return cp;
}

// ---- BPE of one word ------------------------------------------------------------------
// word: its UTF-8 bytes; appends the ids of its BPE pieces.
static void bpe_word(const cd_tokenizer *t, const uint8_t *w, int nb, ivec *out) {
    char **sym = cd_malloc(sizeof(char *) * (nb + 1));
    int ns = nb;
    for (int i = 0; i < nb; i++)
        sym[i] = cd_fmt("%s%s", t->benc[w[i]], i == nb - 1 ? "</w>" : "");
    char key[1024];
    while (ns > 1) {
        int best = -1, bi = -1;
        for (int i = 0; i + 1 < ns; i++) {
            int kl = snprintf(key, sizeof key, "%s %s", sym[i], sym[i + 1]);
            if (kl >= (int)sizeof key) continue;
            int r = cd_smap_getn(&t->merges, key, kl);
            if (r >= 0 && (best < 0 || r < best)) { best = r; bi = i; }
        }
        if (best < 0) break;
        // merge every occurrence of the pair (a, b), left to right
        char *a = cd_strdup(sym[bi]), *b = cd_strdup(sym[bi + 1]);
        int k = 0;
        for (int i = 0; i < ns;) {
            if (i + 1 < ns && !strcmp(sym[i], a) && !strcmp(sym[i + 1], b)) {
                char *m = cd_fmt("%s%s", a, b);
                free(sym[i]); free(sym[i + 1]);
                sym[k++] = m;
                i += 2;
            } else sym[k++] = sym[i++];
        }
        ns = k;
        free(a); free(b);
    }
    for (int i = 0; i < ns; i++) {
        int id = cd_smap_get(&t->vocab, sym[i]);
        ipush(out, id >= 0 ? id : t->eos);   // unk token is <|endoftext|>
        free(sym[i]);
    }
    free(sym);
}

// ---- the pre-tokenisation pattern ----------------------------------------------------
static int match_lit(const int32_t *cp, int n, int i, const char *lit) {
    int k = 0;
    for (; lit[k]; k++)
        if (i + k >= n || cp[i + k] != (unsigned char)lit[k]) return 0;
    return k;
}

// Length of the match of <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|
// [^\s\p{L}\p{N}]+ at i (alternatives in that order), 0 for whitespace.
static int pattern_at(const int32_t *cp, int n, int i, int *special) {
    static const char *contr[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    int k;
    *special = 0;
    if ((k = match_lit(cp, n, i, "<|startoftext|>")) || (k = match_lit(cp, n, i, "<|endoftext|>"))) {
        *special = 1;
        return k;
    }
    for (int c = 0; c < 7; c++)
        if ((k = match_lit(cp, n, i, contr[c]))) return k;
    if (is_letter(cp[i])) {
        for (k = i; k < n && is_letter(cp[k]); k++) {}
        return k - i;
    }
    if (is_number(cp[i])) return 1;
    if (is_space(cp[i])) return 0;
    for (k = i; k < n && !is_space(cp[k]) && !is_letter(cp[k]) && !is_number(cp[k]); k++) {}
    return k - i;
}

// A chunk of text without added tokens -> ids.
static void tokenize_chunk(const cd_tokenizer *t, const char *s, size_t len, ivec *out) {
    int n;
    int32_t *cp = normalise(s, len, &n);
    uint8_t *buf = cd_malloc((size_t)n * 4 + 4);
    for (int i = 0; i < n;) {
        int special, k = pattern_at(cp, n, i, &special);
        if (k == 0) { i++; continue; }
        if (special) {
            char sp[32];
            int j;
            for (j = 0; j < k && j < 31; j++) sp[j] = (char)cp[i + j];
            sp[j] = 0;
            ipush(out, cd_smap_get(&t->vocab, sp) >= 0 ? cd_smap_get(&t->vocab, sp) : t->eos);
        } else {
            int nb = 0;
            for (int j = 0; j < k; j++) nb += (int)utf8proc_encode_char(cp[i + j], buf + nb);
            bpe_word(t, buf, nb, out);
        }
        i += k;
    }
    free(buf);
    free(cp);
}

// Leftmost, then longest, added token starting at or after `from`.
static const char *find_added(const cd_tokenizer *t, const char *from, int *which) {
    const char *best = NULL;
    size_t blen = 0;
    for (int a = 0; a < t->nadded; a++) {
        const char *p = strstr(from, t->added[a]);
        size_t l = strlen(t->added[a]);
        if (p && (!best || p < best || (p == best && l > blen))) { best = p; blen = l; *which = a; }
    }
    return best;
}

int cd_tokenizer_tokenize(const cd_tokenizer *t, const char *text, int32_t **ids, int *n) {
    ivec out = {0};
    const char *p = text ? text : "";
    while (*p) {
        int which = -1;
        const char *hit = find_added(t, p, &which);
        size_t seg = hit ? (size_t)(hit - p) : strlen(p);
        if (seg) tokenize_chunk(t, p, seg, &out);
        if (!hit) break;
        ipush(&out, t->nbase + which);
        p = hit + strlen(t->added[which]);
    }
    *ids = out.v ? out.v : cd_malloc(sizeof(int32_t));
    *n = out.n;
    return 0;
}

int cd_tokenizer_encode(const cd_tokenizer *t, const char *text, int max_len, int32_t *ids,
                        int *n_used) {
    if (max_len < 2) return cd_err("tokenizer: max_len %d is too short for bos + eos", max_len);
    int32_t *bpe;
    int nb;
    CD_TRY(cd_tokenizer_tokenize(t, text, &bpe, &nb));
    if (nb > max_len - 2) nb = max_len - 2;
    int k = 0;
    ids[k++] = t->bos;
    for (int i = 0; i < nb; i++) ids[k++] = bpe[i];
    ids[k++] = t->eos;
    if (n_used) *n_used = k;
    while (k < max_len) ids[k++] = t->pad;
    free(bpe);
    return 0;
}

// ---- decode ---------------------------------------------------------------------------
char *cd_tokenizer_decode(const cd_tokenizer *t, const int32_t *ids, int n) {
    // byte alphabet inverse: UTF-8 of the stand-in -> byte
    size_t cap = 64, len = 0;
    char *s = cd_malloc(cap);
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id == t->bos) continue;
        if (id == t->eos) break;
        const char *pc = cd_tokenizer_piece(t, id);
        if (!pc) continue;
        if (id >= t->nbase) {   // added token: as itself
            size_t l = strlen(pc);
            while (len + l + 2 > cap) s = cd_realloc(s, cap *= 2);
            memcpy(s + len, pc, l); len += l;
            continue;
        }
        const uint8_t *p = (const uint8_t *)pc;
        size_t pl = strlen(pc);
        for (size_t j = 0; j < pl;) {
            if (len + 8 > cap) s = cd_realloc(s, cap *= 2);
            if (pl - j >= 4 && !memcmp(p + j, "</w>", 4)) { s[len++] = ' '; j += 4; continue; }
            int32_t c;
            utf8proc_ssize_t r = utf8proc_iterate(p + j, (utf8proc_ssize_t)(pl - j), &c);
            if (r <= 0) { j++; continue; }
            j += r;
            int byte = -1;
            for (int b = 0; b < 256 && byte < 0; b++) {
                uint8_t enc[4] = {0};
                utf8proc_ssize_t el = utf8proc_encode_char(c, enc);
                if (el == (utf8proc_ssize_t)strlen(t->benc[b]) && !memcmp(enc, t->benc[b], el)) byte = b;
            }
            if (byte >= 0) s[len++] = (char)byte;
        }
    }
    while (len && s[len - 1] == ' ') len--;
    s[len] = 0;
    return s;
}
