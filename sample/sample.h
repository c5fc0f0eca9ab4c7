// customdiff-sample internals (sample/*.c only).
#ifndef CD_SAMPLE_STAGE_H
#define CD_SAMPLE_STAGE_H
#include <stdint.h>
#include "core/image.h"

typedef struct {
    const char *model, *tokenizer, *config;
    const char **deltas;
    int ndeltas;
    const char *negative, *scheduler, *init_latents, *out, *format;
    int steps, n, height, width, grid_cols, check_base;
    double guidance, eta;
    int64_t seed;
} sample_opts;

typedef struct { int B, C, h, w; float *data; } sample_latents;   // [B, C, h, w]

int sample_read_prompts(const char *path, char ***out, int *n);
int sample_read_latents(const char *path, sample_latents *L);
int sample_write_image(const char *path, const cd_image *im, const char *params, int jpeg);
char *sample_params_text(const sample_opts *o, const char *prompt, uint64_t seed, int index, int W, int H);
#endif
