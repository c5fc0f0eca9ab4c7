// "No JSON here" implementations of the cJSON functions declared by the stand-in header
// bench/gpu-unet/nojson/cjson/cJSON.h (bench/gpu-check.sh's minimal build): every parse and
// constructor returns NULL, every predicate 0, so code that reads a config fails cleanly with its
// own "missing key" error and code that writes one writes nothing. Random-weight benches and
// tests never call them.
#include <stdlib.h>
#include "bench/gpu-unet/nojson/cjson/cJSON.h"

cJSON *cJSON_Parse(const char *v) { (void)v; return NULL; }
cJSON *cJSON_ParseWithLengthOpts(const char *v, size_t n, const char **e, cJSON_bool z) {
    (void)v; (void)n; (void)z;
    if (e) *e = v;
    return NULL;
}
const char *cJSON_GetErrorPtr(void) { return "JSON is not available in the minimal GPU-check build"; }
char *cJSON_Print(const cJSON *i) { (void)i; return NULL; }
char *cJSON_PrintUnformatted(const cJSON *i) { (void)i; return NULL; }
void cJSON_Delete(cJSON *i) { (void)i; }
void cJSON_free(void *o) { free(o); }
int cJSON_GetArraySize(const cJSON *a) { (void)a; return 0; }
cJSON *cJSON_GetArrayItem(const cJSON *a, int i) { (void)a; (void)i; return NULL; }
cJSON *cJSON_GetObjectItem(const cJSON *const o, const char *const s) { (void)o; (void)s; return NULL; }
cJSON *cJSON_GetObjectItemCaseSensitive(const cJSON *const o, const char *const s) { (void)o; (void)s; return NULL; }
cJSON_bool cJSON_IsBool(const cJSON *const i) { (void)i; return 0; }
cJSON_bool cJSON_IsNull(const cJSON *const i) { (void)i; return 0; }
cJSON_bool cJSON_IsNumber(const cJSON *const i) { (void)i; return 0; }
cJSON_bool cJSON_IsString(const cJSON *const i) { (void)i; return 0; }
cJSON_bool cJSON_IsArray(const cJSON *const i) { (void)i; return 0; }
cJSON_bool cJSON_IsObject(const cJSON *const i) { (void)i; return 0; }
cJSON_bool cJSON_IsTrue(const cJSON *const i) { (void)i; return 0; }
cJSON_bool cJSON_IsFalse(const cJSON *const i) { (void)i; return 0; }
cJSON *cJSON_CreateObject(void) { return NULL; }
cJSON *cJSON_CreateArray(void) { return NULL; }
cJSON *cJSON_CreateString(const char *s) { (void)s; return NULL; }
cJSON *cJSON_CreateNumber(double n) { (void)n; return NULL; }
cJSON *cJSON_CreateBool(cJSON_bool b) { (void)b; return NULL; }
cJSON *cJSON_CreateNull(void) { return NULL; }
cJSON *cJSON_Duplicate(const cJSON *i, cJSON_bool r) { (void)i; (void)r; return NULL; }
cJSON_bool cJSON_AddItemToArray(cJSON *a, cJSON *i) { (void)a; (void)i; return 0; }
cJSON_bool cJSON_AddItemToObject(cJSON *o, const char *s, cJSON *i) { (void)o; (void)s; (void)i; return 0; }
void cJSON_DeleteItemFromObjectCaseSensitive(cJSON *o, const char *s) { (void)o; (void)s; }
cJSON *cJSON_AddNumberToObject(cJSON *const o, const char *const n, const double x) { (void)o; (void)n; (void)x; return NULL; }
cJSON *cJSON_AddStringToObject(cJSON *const o, const char *const n, const char *const s) { (void)o; (void)n; (void)s; return NULL; }
cJSON *cJSON_AddBoolToObject(cJSON *const o, const char *const n, const cJSON_bool b) { (void)o; (void)n; (void)b; return NULL; }
cJSON *cJSON_AddNullToObject(cJSON *const o, const char *const n) { (void)o; (void)n; return NULL; }
cJSON *cJSON_AddArrayToObject(cJSON *const o, const char *const n) { (void)o; (void)n; return NULL; }
cJSON *cJSON_AddObjectToObject(cJSON *const o, const char *const n) { (void)o; (void)n; return NULL; }
