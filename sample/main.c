// customdiff-sample: model + deltas + prompts -> images (PNG with the generation parameters
// in a tEXt chunk, or JPEG) and a grid. Classifier-free guidance with the batch
// [uncond, cond]; the random numbers of image k come from Philox streams keyed by
// (seed, k), so an image depends only on the seed, its index and the settings, never on the
// thread count or on how many other images are made.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/cli.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "model/sampler.h"
#include "model/sampler_cuda.h"
#include "sample/sample.h"

#define PROG "sample"

static const char *g_device, *g_precision;   // --device cpu|cuda, --precision (cuda)
static cd_sampler_cuda g_gpu;   // UNet and VAE decoder on the GPU (--device cuda)
static int g_cuda;

// Noise streams of image k: initial latents (k, 0), scheduler step i (k, i + 1).
static uint64_t stream_id(int k, int i) { return ((uint64_t)k << 20) | (uint64_t)i; }

typedef struct { uint64_t seed; int k; } noise_ctx;
static int step_noise(void *ctx, int step, float *out, int64_t n) {
    noise_ctx *c = ctx;
    cd_rng r;
    cd_rng_split(&r, c->seed, stream_id(c->k, step + 1));
    cd_rng_normal(&r, out, (size_t)n);
    return 0;
}

typedef struct { cd_progress p; } step_ctx;
static void on_step(void *ctx, int i, int n, double secs) {
    step_ctx *s = ctx;
    char extra[64];
    snprintf(extra, sizeof extra, "%.3f s/step", secs);
    s->p.every_s = 1e-9;   // a line per step
    cd_progress_update(&s->p, i + 1, extra);
}

typedef struct {
    sample_opts o;
    cd_pipeline pipe;
    cd_sampler s;
    cd_scheduler sch;
    char **prompts;
    int nprompts;
    sample_latents init;
    int h, w;       // latent size
    cd_image *ims;
    int nims;
} sample_run;

static int setup_model(sample_run *R) {
    unsigned what = CD_LOAD_UNET | CD_LOAD_VAE_DECODER | CD_LOAD_TEXT | CD_LOAD_TOKENIZER;
    CD_TRY(cd_pipeline_load(&R->pipe, R->o.model, R->o.tokenizer, R->o.config, what));
    CD_TRY(cd_sampler_init(&R->s, &R->pipe));
    int nd = R->o.ndeltas, rc = 0;
    cd_delta *ds = cd_calloc(nd ? nd : 1, sizeof(cd_delta));
    cd_delta **dp = cd_calloc(nd ? nd : 1, sizeof(cd_delta *));
    int nread = 0;
    for (int i = 0; i < nd && !rc; i++) {
        rc = cd_delta_read(&ds[i], R->o.deltas[i]);
        if (!rc) { dp[i] = &ds[i]; nread++; }
    }
    if (!rc) rc = cd_sampler_apply_deltas(&R->s, dp, nd, R->o.check_base);
    for (int i = 0; i < nread; i++) cd_delta_free(&ds[i]);
    free(ds); free(dp);
    CD_TRY(rc);
    if (!strcmp(g_device, "cuda")) { CD_TRY(cd_sampler_cuda_init(&g_gpu, &R->s, g_precision)); g_cuda = 1; }
    cd_sched_kind kind;
    cd_sched_config sc;
    CD_TRY(cd_sched_kind_parse(R->o.scheduler, &kind));
    CD_TRY(cd_sched_config_from_json(&sc, R->pipe.scheduler_config, "scheduler_config.json"));
    CD_TRY(cd_sched_init(&R->sch, kind, &sc));
    R->sch.eta = R->o.eta;
    return 0;
}

// Image size: --init-latents decides, else --height/--width, else the UNet's sample_size.
static int setup_size(sample_run *R) {
    const cd_unet_config *uc = cd_unet_cfg(R->pipe.unet);
    int f = R->s.f, mult = 1 << (uc->nblocks - 1);
    if (R->o.init_latents) {
        CD_TRY(sample_read_latents(R->o.init_latents, &R->init));
        int total = R->nprompts * R->o.n;
        if (R->init.C != uc->in_channels)
            return cd_err("%s: %d latent channels, the UNet takes %d", R->o.init_latents, R->init.C, uc->in_channels);
        if (R->init.B != 1 && R->init.B != total)
            return cd_err("%s: %d latents for %d images (give 1, or one per image)", R->o.init_latents, R->init.B, total);
        R->h = R->init.h; R->w = R->init.w;
        if ((R->o.height > 0 && R->o.height != R->h * f) || (R->o.width > 0 && R->o.width != R->w * f))
            return cd_err("%s: latents of shape [%d,%d,%d,%d] are %dx%d pixels, not --height %d --width %d",
                          R->o.init_latents, R->init.B, R->init.C, R->init.h, R->init.w, R->h * f, R->w * f,
                          R->o.height, R->o.width);
    } else {
        int H = R->o.height > 0 ? R->o.height : uc->sample_size * f;
        int W = R->o.width > 0 ? R->o.width : uc->sample_size * f;
        if (H % f || W % f) return cd_err("--height %d / --width %d must be multiples of %d", H, W, f);
        R->h = H / f; R->w = W / f;
    }
    if (R->h % mult || R->w % mult)
        return cd_err("image %dx%d: the latent %dx%d must be a multiple of %d (so the size a multiple of %d)",
                      R->w * f, R->h * f, R->w, R->h, mult, mult * f);
    return 0;
}

static int make_image(sample_run *R, int k, const char *prompt, const float *cond, const float *unc) {
    const cd_unet_config *uc = cd_unet_cfg(R->pipe.unet);
    int64_t n = (int64_t)uc->in_channels * R->h * R->w;
    float *lat = cd_malloc(sizeof(float) * n);
    if (R->init.data) memcpy(lat, R->init.data + (R->init.B == 1 ? 0 : (int64_t)k * n), sizeof(float) * n);
    else { cd_rng r; cd_rng_split(&r, (uint64_t)R->o.seed, stream_id(k, 0)); cd_rng_normal(&r, lat, (size_t)n); }
    noise_ctx nc = {(uint64_t)R->o.seed, k};
    R->sch.noise = step_noise;
    R->sch.noise_ctx = &nc;
    int rc = cd_sched_set_timesteps(&R->sch, R->o.steps);
    step_ctx sc;
    char what[64];
    snprintf(what, sizeof what, "image %d/%d", k + 1, R->nims);
    cd_progress_start(&sc.p, what, R->sch.n);
    if (!rc) rc = g_cuda ? cd_sampler_denoise_cuda(&R->s, g_gpu.unet, &R->sch, cond, unc, (float)R->o.guidance, lat, R->h, R->w, on_step, &sc)
                        : cd_sampler_denoise(&R->s, &R->sch, cond, unc, (float)R->o.guidance, lat, R->h, R->w, on_step, &sc);
    if (!rc) cd_progress_end(&sc.p, NULL);
    if (!rc) rc = g_cuda ? cd_sampler_decode_cuda(&R->s, g_gpu.vae, lat, R->h, R->w, NULL, &R->ims[k])
                         : cd_sampler_decode(&R->s, lat, R->h, R->w, NULL, &R->ims[k]);
    free(lat);
    CD_TRY(rc);
    int jpeg = strcmp(R->o.format, "jpg") == 0 || strcmp(R->o.format, "jpeg") == 0;
    char *params = sample_params_text(&R->o, prompt, (uint64_t)R->o.seed, k, R->ims[k].w, R->ims[k].h);
    char name[64];
    snprintf(name, sizeof name, "%05d-%lld.%s", k, (long long)R->o.seed, jpeg ? "jpg" : "png");
    char *path = cd_path_join(R->o.out, name);
    rc = sample_write_image(path, &R->ims[k], params, jpeg);
    free(path); free(params);
    return rc;
}

static int run_all(sample_run *R) {
    CD_TRY(setup_model(R));
    CD_TRY(setup_size(R));
    CD_TRY(cd_mkdirs(R->o.out));
    R->nims = R->nprompts * R->o.n;
    R->ims = cd_calloc(R->nims, sizeof(cd_image));
    int64_t nctx = (int64_t)R->s.ctx_len * R->s.ctx_dim;
    float *cond = cd_malloc(sizeof(float) * nctx), *unc = cd_malloc(sizeof(float) * nctx);
    int rc = cd_sampler_encode(&R->s, R->o.negative, unc);
    for (int p = 0; p < R->nprompts && !rc; p++) {
        rc = cd_sampler_encode(&R->s, R->prompts[p], cond);
        for (int j = 0; j < R->o.n && !rc; j++) rc = make_image(R, p * R->o.n + j, R->prompts[p], cond, unc);
    }
    free(cond); free(unc);
    CD_TRY(rc);
    cd_image grid;
    int cols = R->o.grid_cols > 0 ? R->o.grid_cols : (R->o.n > 1 ? R->o.n : (int)ceil(sqrt(R->nims)));
    int side = R->ims[0].w > R->ims[0].h ? R->ims[0].w : R->ims[0].h;
    CD_TRY(cd_image_grid(R->ims, R->nims, cols, side < 512 ? side : 512, &grid));
    char *gp = cd_path_join(R->o.out, strcmp(R->o.format, "png") == 0 ? "grid.png" : "grid.jpg");
    rc = sample_write_image(gp, &grid, NULL, strcmp(R->o.format, "png") != 0);
    free(gp);
    cd_image_free(&grid);
    return rc;
}

int main(int argc, char **argv) {
    static const char *model, *tokenizer, *config, *prompt, *prompts_file, *negative, *scheduler,
        *init_latents, *out, *format;
    static cd_strlist deltas;
    static int steps, n, height, width, grid_cols, no_check_base;
    static double guidance, eta;
    static int64_t seed;
    cd_opt opts[] = {
        {"model", CD_OPT_STR, &model, NULL, "diffusers pipeline folder or single-file .safetensors (required)"},
        {"tokenizer", CD_OPT_STR, &tokenizer, NULL, "tokenizer folder (default MODEL/tokenizer; required for a single file)"},
        {"config", CD_OPT_STR, &config, NULL, "diffusers folder whose configs describe a single-file checkpoint"},
        {"delta", CD_OPT_STRLIST, &deltas, NULL, "delta file or folder to apply (repeatable)"},
        {"prompt", CD_OPT_STR, &prompt, NULL, "text prompt"},
        {"prompts-file", CD_OPT_STR, &prompts_file, NULL, "file with one prompt per line (instead of --prompt)"},
        {"negative-prompt", CD_OPT_STR, &negative, "", "negative prompt (the unconditional branch)"},
        {"scheduler", CD_OPT_STR, &scheduler, "ddim", "ddim, ddpm, pndm, euler or euler_a"},
        {"steps", CD_OPT_INT, &steps, "50", "denoising steps"},
        {"guidance", CD_OPT_FLOAT, &guidance, "6.0", "classifier-free guidance scale (<= 1: off)"},
        {"eta", CD_OPT_FLOAT, &eta, "0.0", "DDIM eta (0 deterministic, 1 DDPM-like)"},
        {"seed", CD_OPT_I64, &seed, "42", "random seed"},
        {"n", CD_OPT_INT, &n, "1", "images per prompt"},
        {"height", CD_OPT_INT, &height, "0", "image height in pixels (0: the model's sample size)"},
        {"width", CD_OPT_INT, &width, "0", "image width in pixels (0: the model's sample size)"},
        {"init-latents", CD_OPT_STR, &init_latents, NULL, "start from these latents (.npy or .safetensors, [B,4,h,w])"},
        {"out", CD_OPT_STR, &out, "samples", "output folder"},
        {"format", CD_OPT_STR, &format, "png", "png (with parameters in a tEXt chunk) or jpg"},
        {"grid-cols", CD_OPT_INT, &grid_cols, "0", "grid columns (0: images per prompt, or square)"},
        {"no-check-base", CD_OPT_FLAG, &no_check_base, "0", "apply deltas even if made for another base model"},
        {"device", CD_OPT_STR, &g_device, "cpu", "cpu, or cuda (UNet and VAE decoder on the GPU; the text encoder on the CPU)"},
        {"precision", CD_OPT_STR, &g_precision, "fp32", "UNet math with --device cuda: fp32, tf32, bf16 or fp16"},
        {0}};
    int npos; char **pos;
    int r = cd_cli_parse(PROG, "text to image with Custom Diffusion deltas", opts, argc, argv, &npos, &pos);
    if (r == 1) return 0;
    if (r < 0) cd_die(PROG, 2);
    if (!model) { cd_err("--model is required"); cd_die(PROG, 2); }
    if (!!prompt == !!prompts_file) { cd_err("give exactly one of --prompt and --prompts-file"); cd_die(PROG, 2); }
    if (steps < 1 || n < 1) { cd_err("--steps and --n must be at least 1"); cd_die(PROG, 2); }
    if (n > 10000) { cd_err("--n %d: at most 10000 images per prompt", n); cd_die(PROG, 2); }
    if (height < 0 || width < 0 || height > 16384 || width > 16384) {
        cd_err("--height %d / --width %d: give 0 (the model's size) or 1..16384 pixels", height, width); cd_die(PROG, 2);
    }
    if (!isfinite(guidance)) { cd_err("--guidance must be a finite number"); cd_die(PROG, 2); }
    if (!isfinite(eta) || eta < 0) { cd_err("--eta must be a finite number >= 0"); cd_die(PROG, 2); }
    if (grid_cols < 0) { cd_err("--grid-cols %d: must be >= 0", grid_cols); cd_die(PROG, 2); }
    if (strcmp(format, "png") && strcmp(format, "jpg") && strcmp(format, "jpeg")) { cd_err("--format: png or jpg"); cd_die(PROG, 2); }
    if (strcmp(g_device, "cpu") && strcmp(g_device, "cuda")) { cd_err("--device: cpu or cuda, not '%s'", g_device); cd_die(PROG, 2); }
    if (!strcmp(g_device, "cpu") && strcmp(g_precision, "fp32")) {   // never a silently ignored option
        cd_err("--precision %s: the CPU samples in fp32 (tf32/bf16/fp16 need --device cuda)", g_precision);
        cd_die(PROG, 2);
    }
    sample_run R;
    memset(&R, 0, sizeof R);
    R.o = (sample_opts){model, tokenizer, config, deltas.v, deltas.n, negative, scheduler, init_latents,
                        out, format, steps, n, height, width, grid_cols, !no_check_base, guidance, eta, seed};
    if (prompts_file) { if (sample_read_prompts(prompts_file, &R.prompts, &R.nprompts)) cd_die(PROG, 1); }
    else { R.prompts = cd_malloc(sizeof(char *)); R.prompts[0] = cd_strdup(prompt); R.nprompts = 1; }
    if (run_all(&R)) cd_die(PROG, 1);
    printf("customdiff-sample: wrote %d image%s and a grid to %s\n", R.nims, R.nims > 1 ? "s" : "", out);
    for (int i = 0; i < R.nims; i++) cd_image_free(&R.ims[i]);
    free(R.ims); free(R.init.data);
    cd_free_strv(R.prompts, R.nprompts);
    cd_sched_free(&R.sch);
    cd_sampler_cuda_free(&g_gpu);
    cd_sampler_free(&R.s);
    cd_pipeline_free(&R.pipe);
    return 0;
}
