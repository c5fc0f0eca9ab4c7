// Refusing implementations of the utf8proc functions declared by the stand-in header
// bench/gpu-unet/nojson/utf8proc.h (bench/gpu-check.sh's minimal build): the tokenizer links,
// and any attempt to tokenize fails with its own error. Never called by the random-weight benches.
#include <stdlib.h>
#include "bench/gpu-unet/nojson/utf8proc.h"

utf8proc_ssize_t utf8proc_iterate(const utf8proc_uint8_t *s, utf8proc_ssize_t n, utf8proc_int32_t *cp) {
    (void)s; (void)n;
    if (cp) *cp = -1;
    return UTF8PROC_ERROR_NOTASSIGNED;
}
utf8proc_ssize_t utf8proc_encode_char(utf8proc_int32_t c, utf8proc_uint8_t *dst) { (void)c; (void)dst; return 0; }
utf8proc_category_t utf8proc_category(utf8proc_int32_t c) { (void)c; return UTF8PROC_CATEGORY_CN; }
utf8proc_int32_t utf8proc_tolower(utf8proc_int32_t c) { return c; }
utf8proc_ssize_t utf8proc_decompose(const utf8proc_uint8_t *s, utf8proc_ssize_t n, utf8proc_int32_t *b,
                                    utf8proc_ssize_t bs, utf8proc_option_t o) {
    (void)s; (void)n; (void)b; (void)bs; (void)o;
    return UTF8PROC_ERROR_NOTASSIGNED;
}
utf8proc_ssize_t utf8proc_map(const utf8proc_uint8_t *s, utf8proc_ssize_t n, utf8proc_uint8_t **d, utf8proc_option_t o) {
    (void)s; (void)n; (void)o;
    if (d) *d = NULL;
    return UTF8PROC_ERROR_NOTASSIGNED;
}
const char *utf8proc_errmsg(utf8proc_ssize_t e) { (void)e; return "utf8proc is not in the minimal GPU-check build"; }
