// libFuzzer target: the candidates parsers of customdiff-preprocess (preprocess/inputs.c):
// JSONL, CSV/TSV with RFC 4180 quoting, and the Custom Diffusion images.txt/caption.txt/
// urls.txt lists. The first byte picks the parser; for the lists, NUL bytes split the input
// into the three texts.
#include "core/err.h"
#include "preprocess/inputs.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    pp_inputs in = {0};
    const char *t = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0: (void)pp_parse_jsonl(t, n, "fuzz.jsonl", &in); break;
    case 1: (void)pp_parse_csv(t, n, ',', "fuzz.csv", &in); break;
    case 2: (void)pp_parse_csv(t, n, 0, "fuzz.tsv", &in); break;
    default: {
        char *c = malloc(n + 3);                 // three NUL-terminated texts
        memcpy(c, t, n);
        c[n] = c[n + 1] = c[n + 2] = 0;
        const char *parts[3] = {c, "", ""};
        size_t k = 0;
        for (int p = 1; p < 3; p++) {
            while (k < n && c[k]) k++;
            if (k < n) { k++; parts[p] = c + k; }
        }
        (void)pp_parse_cd_lists(parts[0], parts[1], parts[2], NULL, "fuzz-folder", &in);
        free(c);
    }
    }
    for (int i = 0; i < in.n; i++)
        if (!in.v[i].caption || (!in.v[i].url && !in.v[i].path)) abort();
    pp_inputs_free(&in);
    cd_errclear();
    return 0;
}
