// Learning a small byte-level BPE vocabulary (the tiny models' own tokenizer) and writing
// it in transformers' CLIPTokenizer layout. See model/clip_tiny.h.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "model/clip_tiny.h"
#include "model/tokenizer_internal.h"

typedef struct { int *sym; int n, count; } lword;   // a unique word as symbol ids
typedef struct { char **s; int n, cap; } strtab;

static int stab_add(strtab *t, char *s) {
    if (t->n == t->cap) t->s = cd_realloc(t->s, sizeof(char *) * (t->cap = t->cap ? t->cap * 2 : 1024));
    t->s[t->n] = s;
    return t->n++;
}

// Split lower-cased ASCII text like CLIP's pattern (letters+, one digit, other runs) and
// count the words. Each word becomes its byte symbols (last one with "</w>").
static lword *count_words(const char *corpus, char benc[256][4], cd_smap *symid, strtab *syms, int *nw) {
    cd_smap seen;
    cd_smap_init(&seen, 1024);
    lword *w = NULL;
    int n = 0, cap = 0;
    char buf[256];
    for (const char *p = corpus; *p;) {
        int c = tolower((unsigned char)*p), k = 0;
        if (isspace(c)) { p++; continue; }
        if (isalpha(c)) while (isalpha((unsigned char)*p) && k < 255) buf[k++] = (char)tolower((unsigned char)*p++);
        else if (isdigit(c)) buf[k++] = *p++;
        else while (*p && !isspace((unsigned char)*p) && !isalnum((unsigned char)*p) && k < 255) buf[k++] = *p++;
        buf[k] = 0;
        int idx = cd_smap_get(&seen, buf);
        if (idx >= 0) { w[idx].count++; continue; }
        if (n == cap) w = cd_realloc(w, sizeof(lword) * (cap = cap ? cap * 2 : 256));
        w[n].sym = cd_malloc(sizeof(int) * k);
        w[n].n = k; w[n].count = 1;
        for (int i = 0; i < k; i++) {
            char s[16];
            snprintf(s, sizeof s, "%s%s", benc[(unsigned char)buf[i]], i == k - 1 ? "</w>" : "");
            w[n].sym[i] = cd_smap_get(symid, s);
        }
        cd_smap_put(&seen, buf, n++);
    }
    cd_smap_free(&seen);
    (void)syms;
    *nw = n;
    return w;
}

// Apply merge (a, b) -> m in every word.
static void apply_merge(lword *w, int nw, int a, int b, int m) {
    for (int i = 0; i < nw; i++) {
        int k = 0;
        for (int j = 0; j < w[i].n;) {
            if (j + 1 < w[i].n && w[i].sym[j] == a && w[i].sym[j + 1] == b) { w[i].sym[k++] = m; j += 2; }
            else w[i].sym[k++] = w[i].sym[j++];
        }
        w[i].n = k;
    }
}

// The most frequent adjacent pair (ties: the smaller ids), or -1 when none is left.
static int best_pair(const lword *w, int nw, int nsym, int *a, int *b) {
    cd_smap cnt;
    cd_smap_init(&cnt, 4096);
    int best = 0;
    char key[32];
    for (int i = 0; i < nw; i++)
        for (int j = 0; j + 1 < w[i].n; j++) {
            snprintf(key, sizeof key, "%d %d", w[i].sym[j], w[i].sym[j + 1]);
            int c = cd_smap_get(&cnt, key);
            c = (c < 0 ? 0 : c) + w[i].count;
            cd_smap_put(&cnt, key, c);
            int x = w[i].sym[j], y = w[i].sym[j + 1];
            if (c > best || (c == best && (x < *a || (x == *a && y < *b)))) { best = c; *a = x; *b = y; }
        }
    cd_smap_free(&cnt);
    (void)nsym;
    return best > 0 ? 0 : -1;
}

static int write_files(const char *dir, const strtab *syms, const strtab *merges, const char *pad) {
    CD_TRY(cd_mkdirs(dir));
    cJSON *v = cJSON_CreateObject();
    for (int i = 0; i < syms->n; i++) cJSON_AddNumberToObject(v, syms->s[i], i);
    char *p = cd_path_join(dir, "vocab.json");
    int rc = cd_json_save(p, v);
    free(p); cJSON_Delete(v);
    size_t cap = 64, len = 0;
    char *m = cd_malloc(cap);
    len = (size_t)sprintf(m, "#version: 0.2\n");
    for (int i = 0; i < merges->n; i++) {
        size_t l = strlen(merges->s[i]);
        while (len + l + 2 > cap) m = cd_realloc(m, cap *= 2);
        memcpy(m + len, merges->s[i], l); len += l; m[len++] = '\n';
    }
    p = cd_path_join(dir, "merges.txt");
    if (!rc) rc = cd_write_file_atomic(p, m, len);
    free(p); free(m);
    cJSON *sp = cJSON_CreateObject();
    cJSON_AddStringToObject(sp, "bos_token", "<|startoftext|>");
    cJSON_AddStringToObject(sp, "eos_token", "<|endoftext|>");
    cJSON_AddStringToObject(sp, "unk_token", "<|endoftext|>");
    cJSON_AddStringToObject(sp, "pad_token", pad);
    p = cd_path_join(dir, "special_tokens_map.json");
    if (!rc) rc = cd_json_save(p, sp);
    free(p);
    cJSON_AddNumberToObject(sp, "model_max_length", 77);
    cJSON_AddBoolToObject(sp, "do_lower_case", 1);
    cJSON_AddStringToObject(sp, "tokenizer_class", "CLIPTokenizer");
    cJSON_AddStringToObject(sp, "errors", "replace");
    cJSON_AddBoolToObject(sp, "add_prefix_space", 0);
    p = cd_path_join(dir, "tokenizer_config.json");
    if (!rc) rc = cd_json_save(p, sp);
    free(p); cJSON_Delete(sp);
    return rc;
}

int cd_bpe_learn_write(const char *dir, const char *corpus, int nmerges, const char *pad_token) {
    char benc[256][4];
    int order[256];
    cd_byte_alphabet(benc);
    cd_byte_order(order);
    strtab syms = {0}, merges = {0};
    cd_smap symid;
    cd_smap_init(&symid, 4096);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 256; i++) {
            char *s = cd_fmt("%s%s", benc[order[i]], pass ? "</w>" : "");
            cd_smap_put(&symid, s, stab_add(&syms, s));
        }
    int nw;
    lword *w = count_words(corpus, benc, &symid, &syms, &nw);
    // forced merges first, so that "ktn" and "pll" are pieces (Custom Diffusion's
    // initializers); then the most frequent pairs until the vocabulary has 512 + nmerges
    // pieces (or the corpus has no pair left).
    const char *forced[4][2] = {{"k", "t"}, {"kt", "n"}, {"p", "l"}, {"pl", "l"}};
    for (int f = 0; syms.n < 512 + nmerges; f++) {
        int a = 1 << 30, b = 1 << 30;
        if (f < 4) { a = cd_smap_get(&symid, forced[f][0]); b = cd_smap_get(&symid, forced[f][1]); }
        else if (best_pair(w, nw, syms.n, &a, &b)) break;
        char *m = cd_fmt("%s%s", syms.s[a], syms.s[b]);
        int id = cd_smap_get(&symid, m);
        if (id < 0) { id = stab_add(&syms, m); cd_smap_put(&symid, m, id); }
        else free(m);   // the same piece from another split: a merge but no new entry
        stab_add(&merges, cd_fmt("%s %s", syms.s[a], syms.s[b]));
        apply_merge(w, nw, a, b, id);
    }
    stab_add(&syms, cd_strdup("<|startoftext|>"));
    stab_add(&syms, cd_strdup("<|endoftext|>"));
    int rc = write_files(dir, &syms, &merges, pad_token);
    for (int i = 0; i < nw; i++) free(w[i].sym);
    free(w);
    for (int i = 0; i < syms.n; i++) free(syms.s[i]);
    for (int i = 0; i < merges.n; i++) free(merges.s[i]);
    free(syms.s); free(merges.s);
    cd_smap_free(&symid);
    return rc;
}
