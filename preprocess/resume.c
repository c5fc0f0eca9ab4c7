// Incremental reruns: match this run's inputs to the manifest entries already in the store
// by identity (the input's source: its URL, or a local file's path relative to its folder;
// plus an occurrence number for a source listed more than once), not by list position.
// Matched inputs keep their manifest key; a finished one is skipped (its caption rewritten
// when it changed), a transient failure is retried. Entries no input matches are kept and
// reported as absent. Schema-1 entries (no "id", keyed by input position) are matched by
// their url or path as given and upgraded to carry "id" (manifests/schema/store.md).
#include "preprocess/pp.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A manifest entry already in the store.
typedef struct {
    char *id;              // "id", or for a schema-1 entry its url / path
    char *caption;
    int64_t ord;           // manifest key
    int64_t key;           // record key, or -1
    int occ;               // 1 = first listing of id, 2 = the second, ...
    uint8_t transient, legacy, matched;
} pp_entry;

typedef struct {
    pp_entry *v;
    int64_t n, cap;
    int64_t *tab;          // open addressing on (id, occ) -> index in v
    uint64_t mask;
} entry_set;

const char *pp_input_id(const pp_input *p) {
    return p->id ? p->id : p->url ? p->url : p->path;
}

static uint64_t hash_id(const char *s, int occ) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (h ^ (uint64_t)occ) * 0x9E3779B97F4A7C15ull;
}

static int collect(void *u, int64_t ord, const char *json) {
    entry_set *E = u;
    cJSON *o;
    char what[64];
    snprintf(what, sizeof what, "manifest entry " CD_STORE_KEY_FMT, (long long)ord);
    if (cd_json_parse(json, strlen(json), what, &o)) return -1;
    const char *id = cd_json_str(o, "id", NULL);
    int legacy = !id;
    if (legacy) id = cd_json_str(o, "url", NULL);
    if (!id) id = cd_json_str(o, "path", "");
    if (E->n == E->cap) {
        E->cap = E->cap ? 2 * E->cap : 256;
        E->v = cd_realloc(E->v, E->cap * sizeof *E->v);
    }
    pp_entry *e = &E->v[E->n++];
    memset(e, 0, sizeof *e);
    e->id = cd_strdup(id);
    e->caption = cd_strdup(cd_json_str(o, "caption", ""));
    e->ord = ord;
    const char *k = cd_json_str(o, "key", NULL);
    char *end = NULL;
    e->key = k && *k ? strtoll(k, &end, 10) : -1;
    if (end && (*end || e->key < 0)) e->key = -1;           // not a record key: owns no record
    e->occ = legacy ? 1 : cd_json_int(o, "occurrence", 1);
    if (e->occ < 1) e->occ = 1;
    e->transient = (uint8_t)cd_json_bool(o, "transient", 0);
    e->legacy = (uint8_t)legacy;
    cJSON_Delete(o);
    return 0;
}

static int64_t find(const entry_set *E, const char *id, int occ) {
    for (uint64_t k = hash_id(id, occ) & E->mask;; k = (k + 1) & E->mask) {
        int64_t x = E->tab[k];
        if (x < 0) return -1;
        if (E->v[x].occ == occ && !strcmp(E->v[x].id, id)) return x;
    }
}

// Index the entries (in key order); a repeated (id, occ) — schema-1 entries of a URL
// listed twice — takes the next occurrence number, as the inputs do.
static void index_entries(entry_set *E) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)E->n + 2) cap *= 2;
    E->mask = cap - 1;
    E->tab = cd_malloc(cap * sizeof *E->tab);
    for (uint64_t i = 0; i < cap; i++) E->tab[i] = -1;
    for (int64_t i = 0; i < E->n; i++) {
        while (find(E, E->v[i].id, E->v[i].occ) >= 0) E->v[i].occ++;
        uint64_t k = hash_id(E->v[i].id, E->v[i].occ) & E->mask;
        while (E->tab[k] >= 0) k = (k + 1) & E->mask;
        E->tab[k] = i;
    }
}

// occ[i] = 1 + the number of earlier inputs with the same identity.
static void input_occurrences(const pp_inputs *in, int *occ) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)in->n + 2) cap *= 2;
    int64_t *tab = cd_malloc(cap * sizeof *tab);       // id -> latest input with it
    for (uint64_t i = 0; i < cap; i++) tab[i] = -1;
    for (int64_t i = 0; i < in->n; i++) {
        const char *id = pp_input_id(&in->v[i]);
        occ[i] = 1;
        uint64_t k = hash_id(id, 0) & (cap - 1);
        for (;; k = (k + 1) & (cap - 1)) {
            if (tab[k] < 0) break;
            if (!strcmp(pp_input_id(&in->v[tab[k]]), id)) { occ[i] = occ[tab[k]] + 1; break; }
        }
        tab[k] = i;
    }
    free(tab);
}

// Rewrite entry e for input p: add "id"/"occurrence" (schema-1 entries) and/or the new caption.
static int rewrite_entry(cd_store *s, const pp_entry *e, const pp_input *p, int occ, int new_caption) {
    char *json;
    int f = cd_store_get_manifest(s, e->ord, &json);
    if (f <= 0) return f < 0 ? -1 : cd_err("manifest entry %lld vanished", (long long)e->ord);
    cJSON *o;
    int rc = cd_json_parse(json, strlen(json), "manifest entry", &o);
    free(json);
    if (rc) return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(o, "id");
    cJSON_DeleteItemFromObjectCaseSensitive(o, "occurrence");
    cJSON_AddStringToObject(o, "id", pp_input_id(p));
    if (occ > 1) cJSON_AddNumberToObject(o, "occurrence", occ);
    if (new_caption) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, "caption");
        cJSON_AddStringToObject(o, "caption", p->caption);
    }
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    rc = cd_store_put_manifest(s, e->ord, out);
    free(out);
    if (!rc && new_caption && e->key >= 0) rc = cd_store_set_caption(s, e->key, p->caption);
    return rc;
}

// One input against the entries: sets man_of/skip, queues rewrites.
static int match_one(cd_store *s, entry_set *E, const pp_input *p, int occ, int64_t *man_of,
                     uint8_t *skip, pp_stats *st) {
    int64_t x = find(E, pp_input_id(p), occ);
    if ((x < 0 || E->v[x].matched) && p->path) x = find(E, p->path, occ);   // schema-1 entry
    if (x < 0 || E->v[x].matched) return 0;
    pp_entry *e = &E->v[x];
    e->matched = 1;
    *man_of = e->ord;
    if (e->transient) return 0;                       // retried; its entry is rewritten then
    *skip = 1;
    st->skipped++;
    int new_caption = strcmp(e->caption, p->caption) != 0;
    if (new_caption) st->caption_updated++;
    if (new_caption || e->legacy) return rewrite_entry(s, e, p, occ, new_caption);
    return 0;
}

int pp_resume_match(cd_store *s, const pp_inputs *in, const char *out, int64_t *man_of,
                    int *occ, uint8_t *skip, pp_stats *st, int64_t *next_man) {
    entry_set E = {0};
    int rc = cd_store_iter_manifest(s, collect, &E);
    *next_man = 0;
    for (int64_t i = 0; i < E.n; i++)
        if (E.v[i].ord >= *next_man) *next_man = E.v[i].ord + 1;
    if (!rc) {
        index_entries(&E);
        input_occurrences(in, occ);
    }
    for (int64_t i = 0; i < in->n && !rc; i++) {
        man_of[i] = -1;
        rc = match_one(s, &E, &in->v[i], occ[i], &man_of[i], &skip[i], st);
    }
    if (!rc) {
        st->absent_ords = cd_calloc((size_t)E.n + 1, sizeof *st->absent_ords);
        const char *example = NULL;
        for (int64_t i = 0; i < E.n; i++)
            if (!E.v[i].matched) {
                st->absent_ords[st->absent++] = E.v[i].ord;
                if (!example) example = E.v[i].id;
            }
        if (st->absent)
            cd_warn("%s: %lld inputs recorded in the store are absent from this run's inputs, e.g. "
                    "'%s' (kept in the store; listed in stats.json)", out, (long long)st->absent, example);
        if (st->caption_updated)
            cd_info("%s: %lld stored inputs have a new caption: updated in place", out,
                    (long long)st->caption_updated);
    }
    for (int64_t i = 0; i < E.n; i++) { free(E.v[i].id); free(E.v[i].caption); }
    free(E.v);
    free(E.tab);
    return rc;
}

void pp_stats_free(pp_stats *st) {
    free(st->absent_ords);
    st->absent_ords = NULL;
}
