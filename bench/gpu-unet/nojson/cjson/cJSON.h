// Stand-in for <cjson/cJSON.h> in bench/gpu-check.sh's minimal build (a GPU machine without
// libcjson-dev). The struct has cJSON 1.7's layout and the functions that core/ and model/ call
// are declared, so those files compile; bench/gpu-unet/nojson/cjson_stub.c implements them as
// "no JSON here" (parsers and constructors return NULL, predicates 0). Random-weight models never
// reach them; code that needs real JSON (config parsing, the golden tests) checks CD_CJSON_STUB
// and leaves itself out.
#ifndef cJSON__h
#define cJSON__h
#include <stddef.h>
#ifndef CD_CJSON_STUB
#define CD_CJSON_STUB 1
#endif
typedef int cJSON_bool;
typedef struct cJSON {
    struct cJSON *next, *prev, *child;
    int type;
    char *valuestring;
    int valueint;
    double valuedouble;
    char *string;
} cJSON;
#define cJSON_ArrayForEach(element, array) \
    for (element = (array) != NULL ? (array)->child : NULL; element != NULL; element = element->next)
cJSON *cJSON_Parse(const char *value);
cJSON *cJSON_ParseWithLengthOpts(const char *value, size_t len, const char **end, cJSON_bool null_terminated);
const char *cJSON_GetErrorPtr(void);
char *cJSON_Print(const cJSON *item);
char *cJSON_PrintUnformatted(const cJSON *item);
void cJSON_Delete(cJSON *item);
void cJSON_free(void *object);
int cJSON_GetArraySize(const cJSON *array);
cJSON *cJSON_GetArrayItem(const cJSON *array, int index);
cJSON *cJSON_GetObjectItem(const cJSON *const object, const char *const string);
cJSON *cJSON_GetObjectItemCaseSensitive(const cJSON *const object, const char *const string);
cJSON_bool cJSON_IsBool(const cJSON *const item);
cJSON_bool cJSON_IsNull(const cJSON *const item);
cJSON_bool cJSON_IsNumber(const cJSON *const item);
cJSON_bool cJSON_IsString(const cJSON *const item);
cJSON_bool cJSON_IsArray(const cJSON *const item);
cJSON_bool cJSON_IsObject(const cJSON *const item);
cJSON_bool cJSON_IsTrue(const cJSON *const item);
cJSON_bool cJSON_IsFalse(const cJSON *const item);
cJSON *cJSON_CreateObject(void);
cJSON *cJSON_CreateArray(void);
cJSON *cJSON_CreateString(const char *string);
cJSON *cJSON_CreateNumber(double num);
cJSON *cJSON_CreateBool(cJSON_bool boolean);
cJSON *cJSON_CreateNull(void);
cJSON *cJSON_Duplicate(const cJSON *item, cJSON_bool recurse);
cJSON_bool cJSON_AddItemToArray(cJSON *array, cJSON *item);
cJSON_bool cJSON_AddItemToObject(cJSON *object, const char *string, cJSON *item);
void cJSON_DeleteItemFromObjectCaseSensitive(cJSON *object, const char *string);
cJSON *cJSON_AddNumberToObject(cJSON *const object, const char *const name, const double number);
cJSON *cJSON_AddStringToObject(cJSON *const object, const char *const name, const char *const string);
cJSON *cJSON_AddBoolToObject(cJSON *const object, const char *const name, const cJSON_bool boolean);
cJSON *cJSON_AddNullToObject(cJSON *const object, const char *const name);
cJSON *cJSON_AddArrayToObject(cJSON *const object, const char *const name);
cJSON *cJSON_AddObjectToObject(cJSON *const object, const char *const name);
#endif
