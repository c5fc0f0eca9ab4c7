// libFuzzer target: the safetensors header validator (cd_st_parse) on arbitrary bytes.
// Every input must give 0 or -1 (never crash, leak or read outside the buffer); an accepted
// file's tensors must lie inside it.
#include "core/err.h"
#include "core/safetensors.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cd_st_file f;
    memset(&f, 0, sizeof f);
    if (cd_st_parse(&f, data, size, "fuzz.safetensors") == 0) {
        for (int i = 0; i < f.n; i++) {
            const uint8_t *p = f.t[i].data;
            if (f.t[i].nbytes && (p < data || p + f.t[i].nbytes > data + size)) abort();
            if (f.t[i].nbytes && f.t[i].numel <= (1 << 16)) {     // touch the bytes, convert
                float *dst = malloc((size_t)f.t[i].numel * sizeof(float) + 1);
                cd_st_to_f32(&f.t[i], dst);
                free(dst);
            }
        }
        (void)cd_st_meta(&f, "format");
        cd_st_close(&f);
    }
    cd_errclear();
    return 0;
}
