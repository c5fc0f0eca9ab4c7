// bpe_simple_vocab_16e6.txt.gz (OpenAI's CLIP layout). zlib is opened at run time with
// dlopen, so the project links without -lz; a machine without libz.so.1 gets a clear error.
#include <dlfcn.h>
#include <stdlib.h>
#include "core/err.h"
#include "model/tokenizer_internal.h"

typedef void *gzfile_t;
int cd_tokenizer_load_openai_gz(cd_tokenizer *t, const char *path) {
    void *z = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!z) return cd_err("%s: reading .gz needs zlib (libz.so.1): %s; or give vocab.json + merges.txt", path, dlerror());
    gzfile_t (*gzopen_)(const char *, const char *) = (gzfile_t (*)(const char *, const char *))dlsym(z, "gzopen");
    int (*gzread_)(gzfile_t, void *, unsigned) = (int (*)(gzfile_t, void *, unsigned))dlsym(z, "gzread");
    int (*gzclose_)(gzfile_t) = (int (*)(gzfile_t))dlsym(z, "gzclose");
    if (!gzopen_ || !gzread_ || !gzclose_) { dlclose(z); return cd_err("%s: libz.so.1 lacks gzopen/gzread", path); }
    gzfile_t f = gzopen_(path, "rb");
    if (!f) { dlclose(z); return cd_errno("%s: cannot open", path); }
    size_t cap = 1 << 20, len = 0;
    char *buf = cd_malloc(cap);
    for (;;) {
        if (cap - len < 65536) buf = cd_realloc(buf, cap *= 2);
        int k = gzread_(f, buf + len, 65536);
        if (k < 0) { gzclose_(f); dlclose(z); free(buf); return cd_err("%s: corrupt gzip data", path); }
        if (k == 0) break;
        len += k;
        if (len > (64u << 20)) { gzclose_(f); dlclose(z); free(buf); return cd_err("%s: larger than 64 MiB", path); }
    }
    buf[len] = 0;
    gzclose_(f);
    dlclose(z);
    int rc = cd_tokenizer_build_openai(t, buf, path);
    free(buf);
    return rc;
}
