// Base64 (RFC 4648, standard alphabet) for clip-retrieval's `image` field: encode file bytes,
// decode request bodies. The decoder accepts padded or unpadded input, ignores ASCII
// whitespace (line-wrapped base64) and an optional "data:<type>;base64," prefix, accepts the
// URL-safe alphabet ('-', '_') too, and rejects anything else (cd_err names `what`).
#ifndef CD_BASE64_H
#define CD_BASE64_H
#include <stddef.h>
#include <stdint.h>

// Heap, NUL-terminated string of 4*ceil(len/3) characters (padded); *out_len may be NULL.
char *cd_base64_encode(const void *buf, size_t len, size_t *out_len);
// Decode n characters of s into a heap buffer (*out, free()) of *out_len bytes.
// Returns 0, or -1 with cd_err on a bad character, bad padding or a dangling last character.
int cd_base64_decode(const char *s, size_t n, const char *what, uint8_t **out, size_t *out_len);
#endif
