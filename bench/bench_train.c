// Custom Diffusion training step on the CPU: milliseconds per optimizer step for the tiny
// model (tiny-sd shapes, 128x128, batch 1 instance + 1 class) and for one step at the SD1.5
// shape (real UNet config, ViT-L/14 text encoder, SD VAE; random weights) at 256x256, batch
// 1 + 1, with the achieved GFLOP/s of the UNet part against the BLAS SGEMM rate measured in
// the same run.
//   build/bench/bench_train [--tiny-only] [--sd15-steps N]
// FLOPs counted: UNet forward MACs x 2 (FLOP/MAC) x 2 (forward + the activation-gradient
// backward, whose GEMMs/convolutions match the forward's; the K/V weight gradients are
// negligible). VAE encoder and text encoder time are reported separately, not counted.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/clip_tiny.h"
#include "model/pipeline.h"
#include "model/tiny.h"
#include "model/trainer.h"

// ---- random weights for a config, by probing the binder's messages ----------------------
// The UNet/VAE binders report every missing tensor as "tensor 'NAME' [d0,d1,..] missing";
// add those with N(0, 1/fan_in) values (1-D: ones for norm weights, zeros otherwise) until
// the model binds.
static int parse_missing(cd_weights *ws, const char *msg, cd_rng *r) {
    int added = 0;
    const char *p = msg;
    while ((p = strstr(p, "tensor '"))) {
        p += 8;
        const char *q = strchr(p, '\'');
        if (!q) break;
        char name[512];
        snprintf(name, sizeof name, "%.*s", (int)(q - p), p);
        const char *lb = strchr(q, '[');
        const char *miss = strstr(q, "missing");
        const char *next = strstr(q, "tensor '");
        if (!lb || !miss || (next && miss > next)) { p = q; continue; }
        int64_t shape[CD_MAX_DIMS];
        int nd = 0;
        const char *s = lb + 1;
        while (*s && *s != ']' && nd < CD_MAX_DIMS) {
            shape[nd++] = strtoll(s, (char **)&s, 10);
            if (*s == ',') s++;
        }
        int64_t n = 1, fan = 1;
        for (int i = 0; i < nd; i++) n *= shape[i];
        for (int i = 1; i < nd; i++) fan *= shape[i];
        float *d = malloc(sizeof(float) * n);
        if (nd == 1) {
            int is_w = strstr(name, "norm") && strstr(name, ".weight");
            for (int64_t i = 0; i < n; i++) d[i] = is_w ? 1.0f : 0.0f;
        } else {
            cd_rng_normal(r, d, n);
            float sc = (float)(1.0 / sqrt((double)fan));
            for (int64_t i = 0; i < n; i++) d[i] *= sc;
        }
        cd_weights_put(ws, name, nd, shape, d);
        free(d);
        added++;
        p = q;
    }
    return added;
}

typedef int (*bind_fn)(void *ctx, cd_weights *ws);

static int probe(cd_weights *ws, bind_fn fn, void *ctx) {
    cd_rng r;
    cd_rng_seed(&r, 1);
    for (int it = 0; it < 100000; it++) {
        cd_errclear();
        if (fn(ctx, ws) == 0) return 0;
        char *msg = cd_strdup(cd_errmsg());
        int added = parse_missing(ws, msg, &r);
        if (!added) { cd_err("%s", msg); free(msg); return -1; }
        free(msg);
    }
    return cd_err("probe: too many rounds");
}

static cd_unet *g_unet;
static cd_vae *g_vae;
static int bind_unet(void *ctx, cd_weights *ws) {
    if (g_unet) { cd_unet_free(g_unet); g_unet = NULL; }
    return cd_unet_new(&g_unet, ctx, ws);
}
static int bind_vae(void *ctx, cd_weights *ws) {
    if (g_vae) { cd_vae_free(g_vae); g_vae = NULL; }
    return cd_vae_new(&g_vae, ctx, ws, 1);
}

static cJSON *text_config_json(const cd_clip_text_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->heads);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_pos);
    cJSON_AddNumberToObject(o, "projection_dim", c->projection_dim);
    cJSON_AddStringToObject(o, "hidden_act", c->act == CD_ACT_GELU ? "gelu" : "quick_gelu");
    cJSON_AddNumberToObject(o, "layer_norm_eps", c->eps);
    cJSON_AddNumberToObject(o, "eos_token_id", 2);
    return o;
}

static cJSON *sched_json(void) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "num_train_timesteps", 1000);
    cJSON_AddNumberToObject(o, "beta_start", 0.00085);
    cJSON_AddNumberToObject(o, "beta_end", 0.012);
    cJSON_AddStringToObject(o, "beta_schedule", "scaled_linear");
    cJSON_AddStringToObject(o, "prediction_type", "epsilon");
    return o;
}

// SD1.5-shaped pipeline with random weights and the tiny tokenizer (ids only index rows).
static int build_sd15(cd_pipeline *p, const char *tmp) {
    memset(p, 0, sizeof *p);
    p->model_path = cd_strdup("random SD1.5-shaped model");
    cd_weights_init(&p->unet_w, "random SD1.5 UNet");
    cd_weights_init(&p->vae_w, "random SD VAE");
    cd_weights_init(&p->text_w, "random ViT-L/14 text");
    cd_unet_config_sd15(&p->unet_cfg);
    cd_vae_config *v = &p->vae_cfg;
    memset(v, 0, sizeof *v);
    v->in_channels = 3; v->out_channels = 3; v->latent_channels = 4; v->nblocks = 4;
    v->block_out[0] = 128; v->block_out[1] = 256; v->block_out[2] = 512; v->block_out[3] = 512;
    v->layers_per_block = 2; v->groups = 32; v->scaling_factor = 0.18215f; v->sample_size = 512;
    CD_TRY(probe(&p->unet_w, bind_unet, &p->unet_cfg));
    p->unet = g_unet;
    CD_TRY(probe(&p->vae_w, bind_vae, v));
    p->vae = g_vae;
    CD_TRY(cd_tiny_tokenizer_write(tmp));
    CD_TRY(cd_tokenizer_load(&p->tok, tmp));
    cd_clip_text_config tc;
    cd_clip_text_config_vit_l14(&tc);
    tc.vocab_size = cd_tokenizer_size(p->tok);   // the tiny vocabulary: ids only index rows
    cd_tiny_clip_weights(&p->text_w, &tc, 0, NULL, 3);
    p->text_config = text_config_json(&tc);
    p->scheduler_config = sched_json();
    p->family = CD_FAMILY_SD1;
    return 0;
}

// ---- timing ---------------------------------------------------------------------------
typedef struct { double enc_ms, acc_ms, opt_ms; } step_times;

// One step at N x N, batch 1 instance + 1 class: VAE encode (timed), forward + backward
// with the moments (timed), AdamW (timed).
static int time_step(cd_trainer *tr, int N, cd_rng *r, step_times *st) {
    int B = 2, f = 1 << (tr->pipe->vae_cfg.nblocks - 1), h = N / f, lc = 4, L = 77;
    int64_t per = (int64_t)lc * h * h, n = B * per;
    float *px = malloc(sizeof(float) * B * 3 * N * N), *mean = malloc(sizeof(float) * n);
    float *logvar = malloc(sizeof(float) * n), *vn = malloc(sizeof(float) * n), *noise = malloc(sizeof(float) * n);
    float *mask = malloc(sizeof(float) * h * h);
    int32_t ids[2 * 77];
    int t[2];
    cd_rng_uniform_f(r, px, (size_t)B * 3 * N * N, -1, 1);
    cd_rng_normal(r, vn, n);
    cd_rng_normal(r, noise, n);
    for (int i = 0; i < h * h; i++) mask[i] = 1;
    for (int i = 0; i < B * L; i++) ids[i] = i % L == 0 ? 1 : (i % L == 4 ? tr->mod_id[0] : 2 + (i % 50));
    t[0] = cd_rng_int(r, 0, 999);
    t[1] = cd_rng_int(r, 0, 999);
    double t0 = cd_now();
    int rc = cd_trainer_encode(tr, px, B, N, N, mean, logvar);
    double t1 = cd_now();
    cd_train_batch b = {.B = B, .n_inst = 1, .with_prior = 1, .H = N, .W = N, .ids = ids, .vae_noise = vn,
                        .mean = mean, .logvar = logvar, .noise = noise, .timesteps = t, .mask = mask,
                        .loss_scale = 1};
    cd_train_losses ls;
    if (rc == 0) rc = cd_trainer_accumulate(tr, &b, &ls, NULL);
    double t2 = cd_now();
    double gn;
    if (rc == 0) rc = cd_trainer_step(tr, 1e-5f, &gn);
    double t3 = cd_now();
    st->enc_ms = (t1 - t0) * 1e3;
    st->acc_ms = (t2 - t1) * 1e3;
    st->opt_ms = (t3 - t2) * 1e3;
    free(px); free(mean); free(logvar); free(vn); free(noise); free(mask);
    return rc;
}

static void report(const char *what, cd_trainer *tr, int N, int steps, double gemm) {
    cd_rng r;
    cd_rng_seed(&r, 5);
    step_times best = {1e30, 1e30, 1e30}, s;
    for (int i = 0; i < steps; i++) {
        if (time_step(tr, N, &r, &s)) { fprintf(stderr, "bench_train: %s\n", cd_errmsg()); exit(1); }
        if (s.enc_ms + s.acc_ms + s.opt_ms < best.enc_ms + best.acc_ms + best.opt_ms) best = s;
    }
    int f = 1 << (tr->pipe->vae_cfg.nblocks - 1);
    double macs = cd_unet_forward_macs(cd_unet_cfg(tr->pipe->unet), 2, N / f, N / f, 77);
    double flops = macs * 2.0 * 2.0;
    double total = best.enc_ms + best.acc_ms + best.opt_ms;
    double gf = flops / (best.acc_ms * 1e-3) * 1e-9;
    printf("%s, %dx%d, batch 1+1 (best of %d): %.1f ms/step = VAE encode %.1f + text/UNet fwd+bwd %.1f + "
           "AdamW %.1f ms; UNet fwd+bwd %.1f GFLOP -> %.1f GFLOP/s = %.2fx of SGEMM\n",
           what, N, N, steps, total, best.enc_ms, best.acc_ms, best.opt_ms, flops * 1e-9, gf, gf / gemm);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int tiny_only = 0, sd_steps = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tiny-only")) tiny_only = 1;
        else if (!strcmp(argv[i], "--sd15-steps") && i + 1 < argc) sd_steps = atoi(argv[++i]);
    }
    double gemm = cd_gemm_rate_gflops(1024);
    printf("bench_train: Custom Diffusion training step on the CPU, %d OpenMP threads\n", omp_get_max_threads());
    printf("SGEMM 1024^3 (OpenBLAS, same run): %.1f GFLOP/s\n", gemm);
    char tmpl[] = "/tmp/bench_train.XXXXXX";
    char *tmp = mkdtemp(tmpl);
    if (!tmp) { perror("mkdtemp"); return 1; }
    // tiny model: customdiff-tiny-model's UNet/VAE writer + tiny text encoder and tokenizer
    char *tiny = cd_path_join(tmp, "tiny"), *tokd = cd_path_join(tiny, "tokenizer"), *ted = cd_path_join(tiny, "text_encoder");
    cd_pipeline p;
    cd_trainer tr;
    cd_trainer_opts o;
    cd_trainer_opts_default(&o);
    if (cd_tiny_unet_vae_write(tiny, 1) || cd_tiny_tokenizer_write(tokd) || cd_tiny_text_encoder_write(ted, 1) ||
        cd_pipeline_load(&p, tiny, NULL, NULL, CD_LOAD_UNET | CD_LOAD_VAE_ENCODER | CD_LOAD_TEXT | CD_LOAD_TOKENIZER) ||
        cd_trainer_init(&tr, &p, "<new1>", "ktn", &o)) {
        fprintf(stderr, "bench_train: tiny model: %s\n", cd_errmsg());
        return 1;
    }
    report("tiny model (tiny-sd shapes)", &tr, 128, 5, gemm);
    cd_trainer_free(&tr);
    cd_pipeline_free(&p);
    if (!tiny_only) {
        char *tk = cd_path_join(tmp, "tok");
        if (build_sd15(&p, tk) || cd_trainer_init(&tr, &p, "<new1>", "ktn", &o)) {
            fprintf(stderr, "bench_train: SD1.5 shape: %s\n", cd_errmsg());
            return 1;
        }
        report("SD1.5 shape (random weights)", &tr, 256, sd_steps, gemm);
        cd_trainer_free(&tr);
        cd_pipeline_free(&p);
        free(tk);
    }
    char *cmd = cd_fmt("rm -rf '%s'", tmp);
    if (system(cmd)) {}
    free(cmd);
    free(tiny); free(tokd); free(ted);
    return 0;
}
