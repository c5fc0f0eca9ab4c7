// customdiff-sample's file handling: prompts file, --init-latents (.npy / .safetensors),
// writing images (PNG with the generation parameters in a tEXt chunk, or JPEG).
#include "sample/sample.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/npy.h"
#include "core/safetensors.h"

int sample_read_prompts(const char *path, char ***out, int *n) {
    char *text;
    size_t len;
    CD_TRY(cd_read_file(path, &text, &len, 64 << 20));
    *out = NULL;
    *n = 0;
    if (strlen(text) != len || utf8proc_decompose((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len, NULL, 0, 0) < 0) {
        free(text);
        return cd_err("%s: not a UTF-8 text file (one prompt per line)", path);
    }
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#') continue;
        *out = cd_realloc(*out, sizeof(char *) * (*n + 1));
        (*out)[(*n)++] = cd_strdup(line);
    }
    free(text);
    if (*n == 0) return cd_err("%s: no prompts (one per line; empty lines and # comments are skipped)", path);
    return 0;
}

static int take_shape(sample_latents *L, int ndim, const int64_t *shape, const char *path) {
    if (ndim == 3) { L->B = 1; L->C = (int)shape[0]; L->h = (int)shape[1]; L->w = (int)shape[2]; }
    else if (ndim == 4) { L->B = (int)shape[0]; L->C = (int)shape[1]; L->h = (int)shape[2]; L->w = (int)shape[3]; }
    else return cd_err("%s: init latents must be [B, C, h, w] or [C, h, w] (got %d dims)", path, ndim);
    if (L->B < 1 || L->C < 1 || L->h < 1 || L->w < 1) return cd_err("%s: init latents have an empty dimension", path);
    return 0;
}

int sample_read_latents(const char *path, sample_latents *L) {
    memset(L, 0, sizeof *L);
    size_t pl = strlen(path);
    if (pl > 4 && strcmp(path + pl - 4, ".npy") == 0) {
        cd_npy a;
        CD_TRY(cd_npy_read(path, &a));
        int rc = take_shape(L, a.ndim, a.shape, path);
        if (!rc) rc = cd_npy_to_f32(&a, &L->data);
        cd_npy_free(&a);
        return rc;
    }
    cd_st_file f;
    CD_TRY(cd_st_open(&f, path));
    static const char *names[] = {"init_latents", "latents", "latent"};
    const cd_st_tensor *t = NULL;
    for (int i = 0; i < 3 && !t; i++) t = cd_st_find(&f, names[i]);
    if (!t && f.n == 1) t = &f.t[0];
    int rc = t ? take_shape(L, t->ndim, t->shape, path)
               : cd_err("%s: no tensor named init_latents or latents (and more than one tensor)", path);
    int64_t n;
    if (!rc) rc = cd_st_load_f32(&f, t->name, &L->data, &n);
    cd_st_close(&f);
    return rc;
}

int sample_write_image(const char *path, const cd_image *im, const char *params, int jpeg) {
    uint8_t *buf;
    size_t len;
    if (jpeg) {
        CD_TRY(cd_image_encode_jpeg(im, 95, &buf, &len));
    } else {
        const char *keys[1] = {"parameters"}, *vals[1] = {params};
        CD_TRY(cd_image_encode_png(im, params ? 1 : 0, keys, vals, &buf, &len));
    }
    int rc = cd_write_file_atomic(path, buf, len);
    free(buf);
    return rc ? cd_errctx("writing %s", path) : 0;
}

// A1111-style parameter text: prompt, negative prompt, then "Key: value" pairs.
char *sample_params_text(const sample_opts *o, const char *prompt, uint64_t seed, int index, int W, int H) {
    size_t cap = 4096 + strlen(prompt) + strlen(o->negative) + strlen(o->model);
    for (int i = 0; i < o->ndeltas; i++) cap += strlen(o->deltas[i]) + 4;
    char *s = cd_malloc(cap);
    int k = snprintf(s, cap, "%s\nNegative prompt: %s\nSteps: %d, Sampler: %s, CFG scale: %g, Eta: %g, "
                     "Seed: %llu, Index: %d, Size: %dx%d, Model: %s", prompt, o->negative, o->steps,
                     o->scheduler, o->guidance, o->eta, (unsigned long long)seed, index, W, H, o->model);
    if (o->init_latents) k += snprintf(s + k, cap - k, ", Init latents: %s", o->init_latents);
    for (int i = 0; i < o->ndeltas; i++) k += snprintf(s + k, cap - k, "%s%s", i ? " + " : ", Deltas: ", o->deltas[i]);
    snprintf(s + k, cap - k, ", Version: customdiff %s", CD_VERSION);
    return s;
}
