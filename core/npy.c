// NumPy .npy read/write. Format (numpy/lib/format.py):
//   "\x93NUMPY" u8 major u8 minor, header length (u16 LE for 1.0, u32 LE for 2.0/3.0),
//   then a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }
//   padded with spaces and ended by '\n', then the raw C-order data.
// Only little-endian (or byte-order-free) dtypes in C order are accepted.
#include "core/npy.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/half.h"

#define NPY_MAX_HEADER (1 << 20)   // numpy itself refuses headers over 10 kB unless told

typedef struct {
    const char *s, *end, *what, *start;
} hdr_parser;

static void hp_ws(hdr_parser *p) {
    while (p->s < p->end && isspace((unsigned char)*p->s)) p->s++;
}

static int hp_expect(hdr_parser *p, char c) {
    hp_ws(p);
    if (p->s >= p->end || *p->s != c)
        return cd_err("%s: npy header: expected '%c' at header byte %d", p->what, c, (int)(p->s - p->start));
    p->s++;
    return 0;
}

// A quoted Python string ('...' or "...") without escapes, into buf.
static int hp_string(hdr_parser *p, char *buf, size_t cap) {
    hp_ws(p);
    if (p->s >= p->end || (*p->s != '\'' && *p->s != '"'))
        return cd_err("%s: npy header: expected a quoted string", p->what);
    char q = *p->s++;
    size_t n = 0;
    while (p->s < p->end && *p->s != q) {
        if (*p->s == '\\') return cd_err("%s: npy header: escapes in strings are not supported", p->what);
        if (n + 1 >= cap) return cd_err("%s: npy header: string too long", p->what);
        buf[n++] = *p->s++;
    }
    if (p->s >= p->end) return cd_err("%s: npy header: unterminated string", p->what);
    p->s++;
    buf[n] = 0;
    return 0;
}

static int hp_word(hdr_parser *p, const char *w) {
    hp_ws(p);
    size_t n = strlen(w);
    if ((size_t)(p->end - p->s) >= n && memcmp(p->s, w, n) == 0 &&
        (p->s + n == p->end || !isalnum((unsigned char)p->s[n]))) {
        p->s += n;
        return 1;
    }
    return 0;
}

// Shape tuple: "()" | "(N,)" | "(N, M, ...)" with an optional trailing comma.
static int hp_shape(hdr_parser *p, cd_npy *out) {
    CD_TRY(hp_expect(p, '('));
    out->ndim = 0;
    for (;;) {
        hp_ws(p);
        if (p->s < p->end && *p->s == ')') { p->s++; return 0; }
        if (p->s >= p->end || !isdigit((unsigned char)*p->s))
            return cd_err("%s: npy header: bad shape tuple (expected a non-negative integer)", p->what);
        if (out->ndim >= CD_MAX_DIMS) return cd_err("%s: npy header: more than %d dimensions", p->what, CD_MAX_DIMS);
        int64_t v = 0;
        while (p->s < p->end && isdigit((unsigned char)*p->s)) {
            if (v > (INT64_MAX - 9) / 10) return cd_err("%s: npy header: shape value too large", p->what);
            v = v * 10 + (*p->s++ - '0');
        }
        hp_ws(p);
        if (p->s < p->end && (*p->s == 'L' || *p->s == 'l')) p->s++;   // Python 2 longs
        out->shape[out->ndim++] = v;
        hp_ws(p);
        if (p->s < p->end && *p->s == ',') { p->s++; continue; }
        if (p->s < p->end && *p->s == ')') { p->s++; return 0; }
        return cd_err("%s: npy header: bad shape tuple", p->what);
    }
}

static int descr_to_dtype(const char *descr, const char *what, cd_dtype *dt) {
    static const struct { const char *code; cd_dtype dt; } tab[] = {
        {"f4", CD_F32}, {"f2", CD_F16}, {"f8", CD_F64}, {"i4", CD_I32}, {"i8", CD_I64},
        {"u1", CD_U8},  {"i1", CD_I8},  {"i2", CD_I16}, {"b1", CD_BOOL}};
    if (descr[0] == '>' && strcmp(descr + 1, "u1") && strcmp(descr + 1, "i1") && strcmp(descr + 1, "b1"))
        return cd_err("%s: npy dtype '%s' is big-endian; convert with arr.astype('<%s')", what, descr, descr + 1);
    if (descr[0] != '<' && descr[0] != '|' && descr[0] != '=' && descr[0] != '>')
        return cd_err("%s: npy dtype '%s' is not supported", what, descr);
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(descr + 1, tab[i].code) == 0) { *dt = tab[i].dt; return 0; }
    return cd_err("%s: npy dtype '%s' is not supported (f4, f2, f8, i4, i8, u1, i1, i2, b1)", what, descr);
}

// Parse the dict literal into dtype and shape.
static int parse_dict(const char *h, size_t hlen, const char *what, cd_npy *out) {
    hdr_parser p = {h, h + hlen, what, h};
    int have_descr = 0, have_fo = 0, have_shape = 0;
    CD_TRY(hp_expect(&p, '{'));
    for (;;) {
        hp_ws(&p);
        if (p.s < p.end && *p.s == '}') { p.s++; break; }
        char key[64], val[64];
        CD_TRY(hp_string(&p, key, sizeof key));
        CD_TRY(hp_expect(&p, ':'));
        if (strcmp(key, "descr") == 0) {
            if (hp_string(&p, val, sizeof val) != 0)
                return cd_err("%s: npy descr is not a simple dtype string (structured arrays are not supported)", what);
            CD_TRY(descr_to_dtype(val, what, &out->dtype));
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (hp_word(&p, "True"))
                return cd_err("%s: npy array is in Fortran order; save it with np.ascontiguousarray", what);
            if (!hp_word(&p, "False")) return cd_err("%s: npy fortran_order is neither True nor False", what);
            have_fo = 1;
        } else if (strcmp(key, "shape") == 0) {
            CD_TRY(hp_shape(&p, out));
            have_shape = 1;
        } else {
            return cd_err("%s: npy header has an unknown key '%s'", what, key);
        }
        hp_ws(&p);
        if (p.s < p.end && *p.s == ',') { p.s++; continue; }
        CD_TRY(hp_expect(&p, '}'));
        break;
    }
    if (!have_descr || !have_fo || !have_shape)
        return cd_err("%s: npy header lacks '%s'", what, !have_descr ? "descr" : !have_fo ? "fortran_order" : "shape");
    return 0;
}

int cd_npy_parse(const void *buf, size_t len, const char *what, cd_npy *out) {
    memset(out, 0, sizeof *out);
    const unsigned char *b = buf;
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0) return cd_err("%s: not a .npy file (bad magic)", what);
    int major = b[6], minor = b[7];
    size_t hlen, off;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return cd_err("%s: npy file truncated in its header", what);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        off = 12;
    } else {
        return cd_err("%s: npy format version %d.%d is not supported (1.0, 2.0, 3.0)", what, major, minor);
    }
    if (hlen > NPY_MAX_HEADER) return cd_err("%s: npy header length %zu is implausible", what, hlen);
    if (hlen > len - off) return cd_err("%s: npy file truncated in its header (%zu of %zu bytes)", what, len - off, hlen);
    if (parse_dict((const char *)b + off, hlen, what, out) != 0) return -1;
    int64_t numel = 1;
    for (int i = 0; i < out->ndim; i++) {
        int64_t s = out->shape[i];
        if (s != 0 && numel > INT64_MAX / 16 / s) return cd_err("%s: npy shape is too large", what);
        numel *= s;
    }
    out->numel = numel;
    size_t es = cd_dtype_size(out->dtype), nbytes = (size_t)numel * es;
    size_t avail = len - off - hlen;
    if (avail < nbytes)
        return cd_err("%s: npy data truncated: %zu bytes for %lld elements of %s (need %zu)", what, avail,
                      (long long)numel, cd_dtype_name(out->dtype), nbytes);
    if (avail > nbytes)
        return cd_err("%s: npy file has %zu trailing bytes after the data", what, avail - nbytes);
    out->data = cd_malloc(nbytes ? nbytes : 1);
    if (nbytes) memcpy(out->data, b + off + hlen, nbytes);
    return 0;
}

int cd_npy_read(const char *path, cd_npy *out) {
    memset(out, 0, sizeof *out);
    cd_map m;
    if (cd_map_file(&m, path) != 0) return -1;
    int rc = cd_npy_parse(m.data ? m.data : "", m.size, path, out);
    cd_unmap(&m);
    return rc;
}

int cd_npy_to_f32(const cd_npy *a, float **out) {
    *out = NULL;
    float *y = cd_malloc((size_t)(a->numel ? a->numel : 1) * sizeof(float));
    const unsigned char *x = a->data;
    switch (a->dtype) {
    case CD_F32: memcpy(y, x, (size_t)a->numel * 4); break;
    case CD_F16:
        for (int64_t i = 0; i < a->numel; i++) { uint16_t h; memcpy(&h, x + 2 * i, 2); y[i] = cd_f16_to_f32(h); }
        break;
    case CD_BF16:
        for (int64_t i = 0; i < a->numel; i++) { uint16_t h; memcpy(&h, x + 2 * i, 2); y[i] = cd_bf16_to_f32(h); }
        break;
    case CD_F64:
        for (int64_t i = 0; i < a->numel; i++) { double d; memcpy(&d, x + 8 * i, 8); y[i] = (float)d; }
        break;
    default:
        free(y);
        return cd_err("npy: cannot convert %s to float32 (only float arrays)", cd_dtype_name(a->dtype));
    }
    *out = y;
    return 0;
}

void cd_npy_free(cd_npy *a) {
    if (!a) return;
    free(a->data);
    a->data = NULL;
}

int cd_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > CD_MAX_DIMS) return cd_err("%s: npy write: bad ndim %d", path, ndim);
    char shp[256] = "(";
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        size_t l = strlen(shp);
        snprintf(shp + l, sizeof shp - l, "%lld%s", (long long)shape[i], ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
        numel *= shape[i];
    }
    strcat(shp, ")");
    char hdr[512];
    int n = snprintf(hdr + 10, sizeof hdr - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shp);
    int total = 10 + n + 1;
    int padded = (total + 63) / 64 * 64;
    memset(hdr + 10 + n, ' ', (size_t)(padded - total));
    hdr[padded - 1] = '\n';
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    int hl = padded - 10;
    hdr[8] = (char)(hl & 0xff);
    hdr[9] = (char)(hl >> 8);
    cd_atomic a;
    if (cd_atomic_open(&a, path) != 0) return -1;
    FILE *f = a.fp;
    if (fwrite(hdr, 1, (size_t)padded, f) != (size_t)padded ||
        fwrite(data, sizeof(float), (size_t)numel, f) != (size_t)numel) {
        cd_atomic_abort(&a);
        return cd_errno("%s: npy write", path);
    }
    return cd_atomic_commit(&a);
}
