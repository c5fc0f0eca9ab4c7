// libFuzzer target: the .npy parser (cd_npy_parse) and the fp32 conversion on arbitrary bytes.
#include "core/err.h"
#include "core/npy.h"
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cd_npy a = {0};
    if (cd_npy_parse(data, size, "fuzz.npy", &a) == 0) {
        float *f = NULL;
        if (a.numel <= (1 << 20) && cd_npy_to_f32(&a, &f) == 0) free(f);
        cd_npy_free(&a);
    }
    cd_errclear();
    return 0;
}
