// JSON through cJSON (Debian libcjson-dev). These helpers add file loading with errors
// that name the file, and typed getters that name the missing or mistyped key.
#ifndef CD_JSON_H
#define CD_JSON_H
#include <cjson/cJSON.h>
#include <stdint.h>

// Parse a JSON file (max 64 MiB). On error names the file and the byte offset.
int cd_json_load(const char *path, cJSON **out);
// Parse text; `what` names it in errors.
int cd_json_parse(const char *text, size_t len, const char *what, cJSON **out);
// Typed getters with defaults (used when the key is absent or null).
int cd_json_int(const cJSON *o, const char *key, int def);
double cd_json_num(const cJSON *o, const char *key, double def);
const char *cd_json_str(const cJSON *o, const char *key, const char *def);
int cd_json_bool(const cJSON *o, const char *key, int def);
// Required getters: fail with "<what>: key 'key' missing or not a <type>".
int cd_json_req_int(const cJSON *o, const char *key, const char *what, int *out);
int cd_json_req_num(const cJSON *o, const char *key, const char *what, double *out);
int cd_json_req_str(const cJSON *o, const char *key, const char *what, const char **out);
// Int arrays, e.g. block_out_channels: fills up to cap values, *n gets the count.
int cd_json_int_array(const cJSON *o, const char *key, const char *what, int *vals, int cap, int *n);
// Write a cJSON tree atomically (pretty-printed).
int cd_json_save(const char *path, const cJSON *o);
#endif
