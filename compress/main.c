// customdiff-compress: delta -> low-rank delta (Custom Diffusion's src/compress.py): for every
// to_k / to_v tensor, the SVD of its difference from the base weight, keeping a fixed
// --rank or, by default, the leading singular values before their cumulative share of the
// sum passes --ratio (0.6, as compress.py). The result stores u = U S and v = V^T
// (W = W_base + u v); the metadata records the rank; any delta reader reconstructs it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/cli.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "model/delta.h"
#include "model/pipeline.h"

#define PROG "compress"

static int64_t delta_floats(const cd_delta *d) {
    int64_t n = (int64_t)d->ntok * d->tok_dim;
    for (int i = 0; i < d->n; i++) {
        const cd_delta_tensor *t = &d->t[i];
        n += t->rank > 0 ? t->rank * (t->shape[0] + t->shape[1]) : t->shape[0] * t->shape[1];
    }
    return n;
}

// OUT default: IN's folder, "<stem>.compressed.safetensors" (stem of a folder: its name).
static char *default_out(const char *in) {
    char *s = cd_strdup(in);
    size_t l = strlen(s);
    while (l > 1 && s[l - 1] == '/') s[--l] = 0;
    const char *ext = ".safetensors";
    if (l > strlen(ext) && strcmp(s + l - strlen(ext), ext) == 0) s[l - strlen(ext)] = 0;
    char *o = cd_fmt("%s.compressed.safetensors", s);
    free(s);
    return o;
}

int main(int argc, char **argv) {
    static const char *delta, *model, *tokenizer, *config, *out;
    static int rank, check_base_off;
    static double ratio;
    cd_opt opts[] = {
        {"delta", CD_OPT_STR, &delta, NULL, "delta to compress (any layout cd_delta_read takes; required)"},
        {"model", CD_OPT_STR, &model, NULL, "the base model the delta was trained on (required)"},
        {"tokenizer", CD_OPT_STR, &tokenizer, NULL, "tokenizer folder (for a single-file model)"},
        {"config", CD_OPT_STR, &config, NULL, "diffusers folder whose configs describe a single-file model"},
        {"rank", CD_OPT_INT, &rank, "0", "keep this many singular values per tensor (0: use --ratio)"},
        {"ratio", CD_OPT_FLOAT, &ratio, "0.6", "keep the singular values before their cumulative sum passes this share"},
        {"out", CD_OPT_STR, &out, NULL, "output file (default: DELTA.compressed.safetensors)"},
        {"no-check-base", CD_OPT_FLAG, &check_base_off, "0", "skip the base fingerprint check"},
        {0}};
    int npos; char **pos;
    int r = cd_cli_parse(PROG, "low-rank compression of a delta (SVD of the difference from the base)",
                         opts, argc, argv, &npos, &pos);
    if (r == 1) return 0;
    if (r < 0) cd_die(PROG, 2);
    if (!delta || !model) { cd_err("--delta and --model are required"); cd_die(PROG, 2); }
    if (rank < 0 || !(ratio > 0 && ratio <= 1)) { cd_err("--rank must be >= 0 and --ratio in (0, 1]"); cd_die(PROG, 2); }
    char *outp = out ? cd_strdup(out) : default_out(delta);
    cd_pipeline p;
    if (cd_pipeline_load(&p, model, tokenizer, config, CD_LOAD_UNET)) cd_die(PROG, 1);
    cd_delta d;
    if (cd_delta_read(&d, delta)) cd_die(PROG, 1);
    if (!check_base_off && cd_delta_check_base(&d, &p.unet_w)) cd_die(PROG, 1);
    int64_t before = delta_floats(&d);
    int maxr = 0;
    if (cd_delta_compress(&d, &p.unet_w, rank, ratio, &maxr)) cd_die(PROG, 1);
    if (!d.mode) d.mode = cd_strdup("crossattn_kv");
    char buf[32];
    if (rank == 0) { snprintf(buf, sizeof buf, "%g", ratio); cd_delta_set_meta(&d, "compression_ratio", buf); }
    cd_delta_set_meta(&d, "compressed_from", delta);
    if (cd_delta_save(&d, outp)) cd_die(PROG, 1);
    int64_t after = delta_floats(&d);
    printf("customdiff-compress: wrote %s (%d tensors, rank <= %d, %.2f MB -> %.2f MB of fp32)\n", outp,
           d.n, maxr, before * 4 / 1e6, after * 4 / 1e6);
    cd_delta_free(&d);
    cd_pipeline_free(&p);
    free(outp);
    return 0;
}
