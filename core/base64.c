// Base64 encode/decode (see core/base64.h).
#include "core/base64.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static const char ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cd_base64_encode(const void *buf, size_t len, size_t *out_len) {
    const uint8_t *p = buf;
    size_t n = 4 * ((len + 2) / 3);
    char *s = cd_malloc(n + 1), *o = s;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < len ? p[i + 2] : 0);
        *o++ = ALPHA[v >> 18 & 63];
        *o++ = ALPHA[v >> 12 & 63];
        *o++ = i + 1 < len ? ALPHA[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? ALPHA[v & 63] : '=';
    }
    *o = 0;
    if (out_len) *out_len = n;
    return s;
}

static int value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

int cd_base64_decode(const char *s, size_t n, const char *what, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (n > 5 && strncmp(s, "data:", 5) == 0) {   // data URL: skip up to the comma
        const char *c = memchr(s, ',', n);
        if (!c) return cd_err("%s: a data: URL without a comma", what);
        n -= (size_t)(c + 1 - s);
        s = c + 1;
    }
    uint8_t *b = cd_malloc(n / 4 * 3 + 3);
    size_t o = 0, pad = 0, q = 0;   // q: sextets in the current quantum
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') { pad++; continue; }
        int v = value(c);
        if (v < 0 || pad) {
            free(b);
            return cd_err("%s: not base64 (%s at offset %zu)", what, pad ? "data after '=' padding" : "bad character", i);
        }
        acc = acc << 6 | (uint32_t)v;
        if (++q == 4) {
            b[o++] = (uint8_t)(acc >> 16);
            b[o++] = (uint8_t)(acc >> 8);
            b[o++] = (uint8_t)acc;
            q = 0;
            acc = 0;
        }
    }
    if (q == 1 || pad > 2 || (pad && q + pad != 4)) {
        free(b);
        return cd_err("%s: not base64 (%s)", what, q == 1 ? "a dangling last character" : "bad '=' padding");
    }
    if (q == 2) b[o++] = (uint8_t)(acc >> 4);
    if (q == 3) { b[o++] = (uint8_t)(acc >> 10); b[o++] = (uint8_t)(acc >> 2); }
    *out = b;
    *out_len = o;
    return 0;
}
