// Stand-ins for the safetensors reader (core/safetensors.c needs cJSON) in bench/gpu-check.sh's
// minimal build: model/weights.c links against them; random-weight models never call them.
#include <string.h>
#include "core/safetensors.h"
#include "core/err.h"

int cd_st_open(cd_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    return cd_err("%s: safetensors reading is not in the minimal GPU-check build (no cJSON)", path);
}
void cd_st_close(cd_st_file *f) { (void)f; }
void cd_st_to_f32(const cd_st_tensor *t, float *dst) { (void)t; (void)dst; }
