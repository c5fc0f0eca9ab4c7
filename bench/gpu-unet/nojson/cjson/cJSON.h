// Stand-in for <cjson/cJSON.h> in bench/gpu-check.sh's minimal build (a GPU machine without
// libcjson-dev): model/unet.h and model/vae.h only name the type. Code that needs cJSON
// (config parsing, the golden tests) checks CD_CJSON_STUB and leaves itself out.
#ifndef cJSON__h
#define cJSON__h
#ifndef CD_CJSON_STUB
#define CD_CJSON_STUB 1
#endif
typedef struct cJSON cJSON;
#endif
