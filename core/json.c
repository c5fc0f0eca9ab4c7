#include "core/json.h"
#include "core/err.h"
#include "core/fileio.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cd_json_parse(const char *text, size_t len, const char *what, cJSON **out) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        *out = NULL;
        return cd_err("%s: invalid JSON near byte %ld", what, off);
    }
    *out = j;
    return 0;
}

int cd_json_load(const char *path, cJSON **out) {
    char *buf;
    size_t len;
    CD_TRY(cd_read_file(path, &buf, &len, (size_t)64 << 20));
    int rc = cd_json_parse(buf, len, path, out);
    free(buf);
    return rc;
}

static const cJSON *get(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

int cd_json_int(const cJSON *o, const char *key, int def) {
    const cJSON *v = get(o, key);
    return v && cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}
double cd_json_num(const cJSON *o, const char *key, double def) {
    const cJSON *v = get(o, key);
    return v && cJSON_IsNumber(v) ? v->valuedouble : def;
}
const char *cd_json_str(const cJSON *o, const char *key, const char *def) {
    const cJSON *v = get(o, key);
    return v && cJSON_IsString(v) ? v->valuestring : def;
}
int cd_json_bool(const cJSON *o, const char *key, int def) {
    const cJSON *v = get(o, key);
    if (!v) return def;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    return def;
}
int cd_json_req_int(const cJSON *o, const char *key, const char *what, int *out) {
    const cJSON *v = get(o, key);
    if (!v || !cJSON_IsNumber(v)) return cd_err("%s: key '%s' missing or not a number", what, key);
    if (v->valuedouble != (double)(int)v->valuedouble) return cd_err("%s: key '%s' is %g, expected an integer", what, key, v->valuedouble);
    *out = (int)v->valuedouble;
    return 0;
}
int cd_json_req_num(const cJSON *o, const char *key, const char *what, double *out) {
    const cJSON *v = get(o, key);
    if (!v || !cJSON_IsNumber(v)) return cd_err("%s: key '%s' missing or not a number", what, key);
    *out = v->valuedouble;
    return 0;
}
int cd_json_req_str(const cJSON *o, const char *key, const char *what, const char **out) {
    const cJSON *v = get(o, key);
    if (!v || !cJSON_IsString(v)) return cd_err("%s: key '%s' missing or not a string", what, key);
    *out = v->valuestring;
    return 0;
}
int cd_json_int_array(const cJSON *o, const char *key, const char *what, int *vals, int cap, int *n) {
    const cJSON *v = get(o, key);
    if (!v || !cJSON_IsArray(v)) return cd_err("%s: key '%s' missing or not an array", what, key);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int)e->valuedouble)
            return cd_err("%s: '%s'[%d] is not an integer", what, key, i);
        if (i >= cap) return cd_err("%s: '%s' has more than %d entries", what, key, cap);
        vals[i++] = (int)e->valuedouble;
    }
    *n = i;
    return 0;
}
int cd_json_save(const char *path, const cJSON *o) {
    char *s = cJSON_Print(o);
    if (!s) return cd_err("%s: cannot serialise JSON", path);
    size_t n = strlen(s);
    s = cd_realloc(s, n + 2);
    s[n] = '\n'; s[n + 1] = 0;
    int rc = cd_write_file_atomic(path, s, n + 1);
    free(s);
    return rc;
}
