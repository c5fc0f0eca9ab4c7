// Golden case tokenizer.json: ids of every text, without and with the added tokens, from
// MODEL/tokenizer. Ids must be identical.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "verify/verify.h"

// Compare the encoding of text with the JSON id array; prints one result line.
static void check_ids(cd_verify_ctx *v, cd_tokenizer *t, const char *text, const cJSON *ref,
                      const char *label) {
    int n = cJSON_GetArraySize(ref);
    if (!cJSON_IsArray(ref) || n < 2) { cd_verify_fail(v, "tokenizer", label, "reference ids missing"); return; }
    int32_t *ids = cd_malloc(sizeof(int32_t) * n);
    if (cd_tokenizer_encode(t, text, n, ids, NULL)) { cd_verify_fail(v, "tokenizer", label, cd_errmsg()); free(ids); return; }
    int bad = 0, first = -1;
    for (int i = 0; i < n; i++)
        if (ids[i] != cJSON_GetArrayItem(ref, i)->valueint) { bad++; if (first < 0) first = i; }
    cd_verify_result(v, "tokenizer", label, "mismatches", bad, 0);
    if (bad) printf("    text '%.60s': position %d has %d, expected %d\n", text, first, ids[first],
                    cJSON_GetArrayItem(ref, first)->valueint);
    free(ids);
}

static int run_pass(cd_verify_ctx *v, cd_tokenizer *t, const cJSON *cases, const char *key) {
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *text = cd_json_str(c, "text", NULL);
        if (!text) return cd_err("tokenizer.json: case %d has no text", i);
        char label[64];
        snprintf(label, sizeof label, "%s[%d]", key, i++);
        check_ids(v, t, text, cJSON_GetObjectItemCaseSensitive(c, key), label);
    }
    return 0;
}

static int run(cd_verify_ctx *v, const char *path) {
    if (!v->model) return cd_err("the tokenizer case needs --model (its tokenizer/ folder)");
    cJSON *o;
    CD_TRY(cd_json_load(path, &o));
    char *dir = cd_path_join(v->model, "tokenizer");
    cd_tokenizer *t = NULL;
    int rc = cd_tokenizer_load(&t, dir);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(o, "cases");
    if (!rc && !cJSON_IsArray(cases)) rc = cd_err("%s: no 'cases' array", path);
    const char *pad = cd_json_str(o, "pad_token", NULL);
    if (!rc && pad) {
        int want = cd_tokenizer_piece_id(t, pad);
        cd_verify_result(v, "tokenizer", "pad_token", "mismatches", want == cd_tokenizer_pad(t) ? 0 : 1, 0);
    }
    if (!rc) rc = run_pass(v, t, cases, "ids");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(o, "added_tokens"), *a;
    int k = 0;
    cJSON_ArrayForEach(a, added) {
        int id;
        if (rc || !cJSON_IsString(a)) break;
        rc = cd_tokenizer_add_token(t, a->valuestring, &id);
        if (!rc && id != cd_tokenizer_base_size(t) + k) rc = cd_err("added token '%s' got id %d", a->valuestring, id);
        k++;
    }
    if (!rc) rc = run_pass(v, t, cases, "ids_with_added");
    cd_tokenizer_free(t);
    free(dir);
    cJSON_Delete(o);
    return rc;
}

const cd_verify_case cd_verify_case_tokenizer = {"tokenizer", "tokenizer.json", run};
