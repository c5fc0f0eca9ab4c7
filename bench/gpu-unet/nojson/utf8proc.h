// Stand-in for <utf8proc.h> in bench/gpu-check.sh's minimal build (a GPU machine without
// libutf8proc-dev): the types, constants and functions model/tokenizer*.c use, so the tokenizer
// compiles and the model code that references it (model/clip.c, clip_text.c) links; the
// functions (bench/gpu-unet/nojson/utf8proc_stub.c) refuse every call (UTF8PROC_ERROR_NOTASSIGNED).
// Random-weight benches never tokenize text.
#ifndef UTF8PROC_H
#define UTF8PROC_H
#include <stddef.h>
#include <stdint.h>
typedef int8_t utf8proc_int8_t;
typedef uint8_t utf8proc_uint8_t;
typedef int16_t utf8proc_int16_t;
typedef uint16_t utf8proc_uint16_t;
typedef int32_t utf8proc_int32_t;
typedef uint32_t utf8proc_uint32_t;
typedef size_t utf8proc_size_t;
typedef ptrdiff_t utf8proc_ssize_t;
typedef int utf8proc_bool;
typedef enum {
    UTF8PROC_NULLTERM = (1 << 0), UTF8PROC_STABLE = (1 << 1), UTF8PROC_COMPAT = (1 << 2),
    UTF8PROC_COMPOSE = (1 << 3), UTF8PROC_DECOMPOSE = (1 << 4), UTF8PROC_IGNORE = (1 << 5),
    UTF8PROC_REJECTNA = (1 << 6), UTF8PROC_NLF2LS = (1 << 7), UTF8PROC_NLF2PS = (1 << 8),
    UTF8PROC_NLF2LF = (UTF8PROC_NLF2LS | UTF8PROC_NLF2PS), UTF8PROC_STRIPCC = (1 << 9),
    UTF8PROC_CASEFOLD = (1 << 10), UTF8PROC_CHARBOUND = (1 << 11), UTF8PROC_LUMP = (1 << 12),
    UTF8PROC_STRIPMARK = (1 << 13), UTF8PROC_STRIPNA = (1 << 14),
} utf8proc_option_t;
#define UTF8PROC_ERROR_NOMEM -1
#define UTF8PROC_ERROR_OVERFLOW -2
#define UTF8PROC_ERROR_INVALIDUTF8 -3
#define UTF8PROC_ERROR_NOTASSIGNED -4
#define UTF8PROC_ERROR_INVALIDOPTS -5
typedef enum {
    UTF8PROC_CATEGORY_CN = 0, UTF8PROC_CATEGORY_LU = 1, UTF8PROC_CATEGORY_LL = 2,
    UTF8PROC_CATEGORY_LT = 3, UTF8PROC_CATEGORY_LM = 4, UTF8PROC_CATEGORY_LO = 5,
    UTF8PROC_CATEGORY_MN = 6, UTF8PROC_CATEGORY_MC = 7, UTF8PROC_CATEGORY_ME = 8,
    UTF8PROC_CATEGORY_ND = 9, UTF8PROC_CATEGORY_NL = 10, UTF8PROC_CATEGORY_NO = 11,
    UTF8PROC_CATEGORY_PC = 12, UTF8PROC_CATEGORY_PD = 13, UTF8PROC_CATEGORY_PS = 14,
    UTF8PROC_CATEGORY_PE = 15, UTF8PROC_CATEGORY_PI = 16, UTF8PROC_CATEGORY_PF = 17,
    UTF8PROC_CATEGORY_PO = 18, UTF8PROC_CATEGORY_SM = 19, UTF8PROC_CATEGORY_SC = 20,
    UTF8PROC_CATEGORY_SK = 21, UTF8PROC_CATEGORY_SO = 22, UTF8PROC_CATEGORY_ZS = 23,
    UTF8PROC_CATEGORY_ZL = 24, UTF8PROC_CATEGORY_ZP = 25, UTF8PROC_CATEGORY_CC = 26,
    UTF8PROC_CATEGORY_CF = 27, UTF8PROC_CATEGORY_CS = 28, UTF8PROC_CATEGORY_CO = 29,
} utf8proc_category_t;
utf8proc_ssize_t utf8proc_iterate(const utf8proc_uint8_t *str, utf8proc_ssize_t strlen, utf8proc_int32_t *codepoint_ref);
utf8proc_ssize_t utf8proc_encode_char(utf8proc_int32_t codepoint, utf8proc_uint8_t *dst);
utf8proc_category_t utf8proc_category(utf8proc_int32_t codepoint);
utf8proc_int32_t utf8proc_tolower(utf8proc_int32_t c);
utf8proc_ssize_t utf8proc_decompose(const utf8proc_uint8_t *str, utf8proc_ssize_t strlen, utf8proc_int32_t *buffer,
                                    utf8proc_ssize_t bufsize, utf8proc_option_t options);
utf8proc_ssize_t utf8proc_map(const utf8proc_uint8_t *str, utf8proc_ssize_t strlen, utf8proc_uint8_t **dstptr,
                              utf8proc_option_t options);
const char *utf8proc_errmsg(utf8proc_ssize_t errcode);
#endif
