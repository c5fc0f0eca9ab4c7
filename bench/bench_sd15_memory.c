// Memory of a real-size SD v1.5 pipeline on the CPU (random weights, the real diffusers
// layout and configs): peak RSS of loading it from fp32 and fp16 folders, and of one 512x512
// sampling run with classifier-free guidance (the customdiff-sample code path: model/sampler.h),
// with seconds per step and the VAE decode's time and GFLOP/s against the SGEMM rate.
//
//   bench_sd15_memory [--dir DIR] [--keep] [--steps N] [--no-sample] [--no-fp16]
//                     [--tokenizer DIR]
//
// DIR (default build/sd15-random) gets fp32/ (4.3 GB: unet, vae, text_encoder as
// *.safetensors) and fp16/ (2.1 GB: the diffusers variant names *.fp16.safetensors), each
// with model_index.json, the real SD1.5 configs, scheduler/ and tokenizer/ (a copy of
// --tokenizer, default ../shared/golden/tiny-sd/model/tokenizer: the real CLIP BPE vocab).
// An existing complete DIR is reused; DIR is deleted at the end unless --keep.
// Every measurement runs in its own process (this program re-executed with --child ...),
// so each peak RSS belongs to that measurement alone; within a child VmHWM is reset between
// phases (write "5" to /proc/self/clear_refs) and the child reports the largest seen.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include "model/pipeline.h"
#include "model/sampler.h"
#include "model/scheduler.h"
#include "model/tiny.h"
#include "model/clip_tiny.h"
#include "kernels/kernels.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/half.h"
#include "core/json.h"
#include "core/rng.h"

#define MARKER "sd15-random.complete"
#define GB 1e9

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ---- /proc/self/status -------------------------------------------------------------------
typedef struct { double hwm, rss, anon, file; } mem_t;   // bytes

static mem_t mem_now(void) {
    mem_t m = {0};
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        long long kb;
        if (sscanf(line, "VmHWM: %lld", &kb) == 1) m.hwm = kb * 1024.0;
        else if (sscanf(line, "VmRSS: %lld", &kb) == 1) m.rss = kb * 1024.0;
        else if (sscanf(line, "RssAnon: %lld", &kb) == 1) m.anon = kb * 1024.0;
        else if (sscanf(line, "RssFile: %lld", &kb) == 1) m.file = kb * 1024.0;
    }
    if (f) fclose(f);
    return m;
}

// Peak RSS of the whole process: the largest VmHWM seen before any reset (clear_refs also
// resets what getrusage/wait4 report as ru_maxrss, so that is not used after a reset).
static double g_peak;

// Reset VmHWM to the current RSS (Linux >= 4.0), so the next reading is that phase's peak.
static void hwm_reset(void) {
    mem_t m = mem_now();
    if (m.hwm > g_peak) g_peak = m.hwm;
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) { if (write(fd, "5", 1) != 1) perror("clear_refs"); close(fd); }
}

static void mem_print(const char *phase, double secs) {
    mem_t m = mem_now();
    if (m.hwm > g_peak) g_peak = m.hwm;
    printf("  %-28s %7.2f s  peak %5.2f GB  now %5.2f GB (anon %.2f, file-mapped %.2f)\n", phase, secs,
           m.hwm / GB, m.rss / GB, m.anon / GB, m.file / GB);
    fflush(stdout);
}

// ---- writing the random pipeline ----------------------------------------------------------
static const char *UNET_CFG =
    "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.6.0\",\n"
    "  \"act_fn\": \"silu\",\n  \"attention_head_dim\": 8,\n  \"block_out_channels\": [320, 640, 1280, 1280],\n"
    "  \"center_input_sample\": false,\n  \"cross_attention_dim\": 768,\n"
    "  \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],\n"
    "  \"downsample_padding\": 1,\n  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n  \"in_channels\": 4,\n"
    "  \"layers_per_block\": 2,\n  \"mid_block_scale_factor\": 1,\n  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": 32,\n"
    "  \"out_channels\": 4,\n  \"sample_size\": 64,\n"
    "  \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]\n}\n";
static const char *VAE_CFG =
    "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"_diffusers_version\": \"0.6.0\",\n  \"act_fn\": \"silu\",\n"
    "  \"block_out_channels\": [128, 256, 512, 512],\n"
    "  \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],\n"
    "  \"in_channels\": 3,\n  \"latent_channels\": 4,\n  \"layers_per_block\": 2,\n  \"norm_num_groups\": 32,\n"
    "  \"out_channels\": 3,\n  \"sample_size\": 512,\n"
    "  \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]\n}\n";
static const char *TEXT_CFG =
    "{\n  \"_name_or_path\": \"openai/clip-vit-large-patch14\",\n  \"architectures\": [\"CLIPTextModel\"],\n"
    "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 0,\n  \"dropout\": 0.0,\n  \"eos_token_id\": 2,\n"
    "  \"hidden_act\": \"quick_gelu\",\n  \"hidden_size\": 768,\n  \"initializer_factor\": 1.0,\n"
    "  \"initializer_range\": 0.02,\n  \"intermediate_size\": 3072,\n  \"layer_norm_eps\": 1e-05,\n"
    "  \"max_position_embeddings\": 77,\n  \"model_type\": \"clip_text_model\",\n  \"num_attention_heads\": 12,\n"
    "  \"num_hidden_layers\": 12,\n  \"pad_token_id\": 1,\n  \"projection_dim\": 768,\n"
    "  \"torch_dtype\": \"float32\",\n  \"transformers_version\": \"4.22.0.dev0\",\n  \"vocab_size\": 49408\n}\n";
static const char *SCHED_CFG =
    "{\n  \"_class_name\": \"PNDMScheduler\",\n  \"_diffusers_version\": \"0.6.0\",\n  \"beta_end\": 0.012,\n"
    "  \"beta_schedule\": \"scaled_linear\",\n  \"beta_start\": 0.00085,\n  \"num_train_timesteps\": 1000,\n"
    "  \"set_alpha_to_one\": false,\n  \"skip_prk_steps\": true,\n  \"steps_offset\": 1,\n"
    "  \"trained_betas\": null,\n  \"clip_sample\": false\n}\n";
static const char *INDEX_CFG =
    "{\n  \"_class_name\": \"StableDiffusionPipeline\",\n  \"_diffusers_version\": \"0.6.0\",\n"
    "  \"feature_extractor\": [null, null],\n  \"safety_checker\": [null, null],\n"
    "  \"requires_safety_checker\": false,\n  \"scheduler\": [\"diffusers\", \"PNDMScheduler\"],\n"
    "  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],\n  \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n"
    "  \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],\n  \"vae\": [\"diffusers\", \"AutoencoderKL\"]\n}\n";

static int write_text(const char *dir, const char *rel, const char *text) {
    char *p = cd_path_join(dir, rel), *d = cd_strdup(p);
    *strrchr(d, '/') = 0;
    int rc = cd_mkdirs(d);
    if (!rc) rc = cd_write_file_atomic(p, text, strlen(text));
    free(p); free(d);
    return rc;
}

// Streams ws (sorted by name) to a safetensors file as dtype (F32 or F16) without a second
// in-memory copy of the weights (the core writer copies every tensor first).
static int write_st(const cd_weights *ws, const char *path, cd_dtype dt) {
    size_t es = cd_dtype_size(dt);
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; i < ws->n; i++) {
        const cd_weight *w = &ws->w[i];
        cJSON *e = cJSON_AddObjectToObject(h, w->name), *sh = cJSON_AddArrayToObject(e, "shape");
        cJSON_AddStringToObject(e, "dtype", cd_dtype_name(dt));
        for (int d = 0; d < w->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)w->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += (uint64_t)w->numel * es;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    cd_atomic a;
    if (cd_atomic_open(&a, path)) { free(js); return -1; }
    FILE *fp = a.fp;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(js, 1, jl, fp) == jl;
    for (size_t i = jl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    free(js);
    enum { CH = 1 << 20 };
    uint16_t *buf = dt == CD_F16 ? cd_malloc(CH * sizeof(uint16_t)) : NULL;
    for (int i = 0; ok && i < ws->n; i++) {
        const cd_weight *w = &ws->w[i];
        if (dt == CD_F32) { ok = fwrite(w->data, 4, w->numel, fp) == (size_t)w->numel; continue; }
        for (int64_t s = 0; ok && s < w->numel; s += CH) {
            int64_t n = w->numel - s < CH ? w->numel - s : CH;
            for (int64_t k = 0; k < n; k++) buf[k] = cd_f32_to_f16(w->data[s + k]);
            ok = fwrite(buf, 2, n, fp) == (size_t)n;
        }
    }
    free(buf);
    if (!ok) { cd_errno("write error on %s", a.tmp); cd_atomic_abort(&a); return -1; }
    return cd_atomic_commit(&a);
}

// One component's weights into fp32/<sub>/<file>.safetensors and fp16/<sub>/<file>.fp16.safetensors.
static int write_component(const char *dir, const char *sub, const char *file, const cd_weights *ws, int fp32) {
    char *p32 = cd_fmt("%s/fp32/%s/%s.safetensors", dir, sub, file);
    char *p16 = cd_fmt("%s/fp16/%s/%s.fp16.safetensors", dir, sub, file);
    double t0 = now_s();
    int rc = fp32 ? write_st(ws, p32, CD_F32) : 0;
    if (!rc) rc = write_st(ws, p16, CD_F16);
    if (!rc) printf("  wrote %s weights (%d tensors) in %.1f s\n", sub, ws->n, now_s() - t0);
    fflush(stdout);
    free(p32); free(p16);
    return rc;
}

static int copy_file(const char *src, const char *dst) {
    char *data;
    size_t len;
    CD_TRY(cd_read_file(src, &data, &len, 0));
    int rc = cd_write_file_atomic(dst, data, len);
    free(data);
    return rc;
}

static int write_configs(const char *root, const char *tokdir) {
    static const char *tokfiles[] = {"vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"};
    CD_TRY(write_text(root, "model_index.json", INDEX_CFG));
    CD_TRY(write_text(root, "unet/config.json", UNET_CFG));
    CD_TRY(write_text(root, "vae/config.json", VAE_CFG));
    CD_TRY(write_text(root, "text_encoder/config.json", TEXT_CFG));
    CD_TRY(write_text(root, "scheduler/scheduler_config.json", SCHED_CFG));
    char *td = cd_path_join(root, "tokenizer");
    int rc = cd_mkdirs(td);
    for (int i = 0; i < 4 && !rc; i++) {
        char *s = cd_path_join(tokdir, tokfiles[i]), *d = cd_path_join(td, tokfiles[i]);
        rc = copy_file(s, d);
        free(s); free(d);
    }
    free(td);
    return rc;
}

// Child "write": random weights from the project's own builders (cd_unet_new_random etc.,
// so names and shapes are exactly what the loader binds), one component at a time.
static int child_write(const char *dir, const char *tokdir, int fp32) {
    char *r32 = cd_path_join(dir, "fp32"), *r16 = cd_path_join(dir, "fp16");
    int rc = (fp32 ? write_configs(r32, tokdir) : 0) || write_configs(r16, tokdir);
    free(r32); free(r16);
    CD_TRY(rc);
    cd_weights ws;
    cd_unet_config uc;
    cJSON *j = cJSON_Parse(UNET_CFG);
    rc = cd_unet_config_parse(&uc, j, "unet config");
    cJSON_Delete(j);
    CD_TRY(rc);
    cd_weights_init(&ws, "random sd15 unet");
    cd_unet *u = NULL;
    rc = cd_unet_new_random(&u, &uc, &ws, 1);
    if (!rc) rc = write_component(dir, "unet", "diffusion_pytorch_model", &ws, fp32);
    if (u) cd_unet_free(u);
    cd_weights_free(&ws);
    CD_TRY(rc);
    cd_vae_config vc;
    j = cJSON_Parse(VAE_CFG);
    rc = cd_vae_config_parse(&vc, j, "vae config");
    cJSON_Delete(j);
    CD_TRY(rc);
    cd_weights_init(&ws, "random sd15 vae");
    cd_vae *v = NULL;
    rc = cd_vae_new_random(&v, &vc, &ws, 2);
    if (!rc) rc = write_component(dir, "vae", "diffusion_pytorch_model", &ws, fp32);
    if (v) cd_vae_free(v);
    cd_weights_free(&ws);
    CD_TRY(rc);
    cd_clip_text_config tc;
    j = cJSON_Parse(TEXT_CFG);
    rc = cd_clip_text_config_parse(j, "text config", &tc);
    cJSON_Delete(j);
    CD_TRY(rc);
    cd_weights_init(&ws, "random clip vit-l/14 text");
    cd_tiny_clip_weights(&ws, &tc, 0, NULL, 3);
    rc = write_component(dir, "text_encoder", "model", &ws, fp32);
    cd_weights_free(&ws);
    CD_TRY(rc);
    char *m = cd_path_join(dir, MARKER);
    rc = cd_write_file_atomic(m, fp32 ? "fp32 fp16\n" : "fp16\n", fp32 ? 10 : 5);
    free(m);
    return rc;
}

// ---- load -------------------------------------------------------------------------------
static double weights_bytes(const cd_pipeline *p) {   // fp32 size of every tensor loaded
    const cd_weights *all[3] = {&p->unet_w, &p->vae_w, &p->text_w};
    double b = 0;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < all[k]->n; i++) b += 4.0 * all[k]->w[i].numel;
    return b;
}

// Reads every weight once (as a first forward does): mapped fp32 pages become resident.
static double touch_all(const cd_pipeline *p) {
    const cd_weights *all[3] = {&p->unet_w, &p->vae_w, &p->text_w};
    double s = 0;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < all[k]->n; i++) {
            const float *d = all[k]->w[i].data;
            for (int64_t j = 0; j < all[k]->w[i].numel; j += 1024) s += d[j];
        }
    return s;
}

// Child "load": the whole pipeline (UNet, VAE encoder+decoder, text encoder, tokenizer).
static int child_load(const char *root) {
    mem_t m0 = mem_now();
    hwm_reset();
    double t0 = now_s();
    cd_pipeline p;
    CD_TRY(cd_pipeline_load(&p, root, NULL, NULL, CD_LOAD_ALL));
    double tl = now_s() - t0, wb = weights_bytes(&p);
    mem_t m1 = mem_now();
    mem_print("cd_pipeline_load", tl);
    t0 = now_s();
    volatile double s = touch_all(&p);
    (void)s;
    mem_print("+ read every weight once", now_s() - t0);
    mem_t m2 = mem_now();
    printf("  weights (fp32 size): %.3f GB (unet %d, vae %d, text %d tensors); process before load %.3f GB\n",
           wb / GB, p.unet_w.n, p.vae_w.n, p.text_w.n, m0.rss / GB);
    printf("RESULT load %s: peak %.3f GB after load (%.3fx the fp32 weights), %.3f GB once every weight "
           "is resident (%.3fx); %.1f s\n", root, m1.hwm / GB, m1.hwm / wb, m2.hwm / GB, m2.hwm / wb, tl);
    cd_pipeline_free(&p);
    return 0;
}

// ---- sample ------------------------------------------------------------------------------
static double conv_macs(int cin, int cout, int k, double hw) { return (double)cin * cout * k * k * hw; }
static double res_macs(int cin, int cout, double hw) {
    return conv_macs(cin, cout, 3, hw) + conv_macs(cout, cout, 3, hw) + (cin != cout ? conv_macs(cin, cout, 1, hw) : 0);
}

// Multiply-accumulates of AutoencoderKL's decoder (post_quant_conv .. conv_out) at latent h x w.
static double vae_decode_macs(const cd_vae_config *c, int h, int w) {
    int n = c->nblocks, ch = c->block_out[n - 1];
    double hw = (double)h * w;
    double m = conv_macs(c->latent_channels, c->latent_channels, 1, hw) + conv_macs(c->latent_channels, ch, 3, hw);
    m += 2 * res_macs(ch, ch, hw) + 4.0 * ch * ch * hw + 2.0 * hw * hw * ch;   // mid: resnets, attention
    for (int i = 0; i < n; i++) {
        int co = c->block_out[n - 1 - i];
        for (int l = 0; l <= c->layers_per_block; l++) { m += res_macs(ch, co, hw); ch = co; }
        if (i < n - 1) { hw *= 4; m += conv_macs(ch, ch, 3, hw); }
    }
    return m + conv_macs(ch, c->out_channels, 3, hw);
}

typedef struct { double total; int n; } step_acc;
static void on_step(void *ctx, int i, int n, double secs) {
    step_acc *a = ctx;
    a->total += secs; a->n++;
    printf("  step %d/%d: %.2f s\n", i + 1, n, secs);
    fflush(stdout);
}

static int sample_steps(cd_sampler *s, cd_pipeline *p, int steps, float *lat, step_acc *acc) {
    int64_t nctx = 77LL * s->ctx_dim;
    float *cond = cd_malloc(nctx * sizeof(float)), *unc = cd_malloc(nctx * sizeof(float));
    hwm_reset();
    double t0 = now_s();
    int rc = cd_sampler_encode(s, "", unc);
    if (!rc) rc = cd_sampler_encode(s, "a photo of an astronaut riding a horse on mars", cond);
    if (!rc) mem_print("text encoder (2 prompts)", now_s() - t0);
    cd_sched_kind kind;
    cd_sched_config sc;
    cd_scheduler sch;
    memset(&sch, 0, sizeof sch);
    if (!rc) rc = cd_sched_kind_parse("ddim", &kind);
    if (!rc) rc = cd_sched_config_from_json(&sc, p->scheduler_config, "scheduler_config.json");
    if (!rc) rc = cd_sched_init(&sch, kind, &sc);
    if (!rc) rc = cd_sched_set_timesteps(&sch, steps);
    hwm_reset();
    t0 = now_s();
    if (!rc) rc = cd_sampler_denoise(s, &sch, cond, unc, 7.5f, lat, 64, 64, on_step, acc);
    if (!rc) mem_print("denoise (UNet, CFG batch 2)", now_s() - t0);
    cd_sched_free(&sch);
    free(cond); free(unc);
    return rc;
}

// Child "sample": customdiff-sample's path at 512x512, DDIM, guidance 7.5.
static int child_sample(const char *root, int steps) {
    double gemm = cd_gemm_rate_gflops(2048);
    printf("  sgemm 2048^3: %.1f GFLOP/s\n", gemm);
    hwm_reset();
    double t0 = now_s(), tall = now_s();
    cd_pipeline p;
    CD_TRY(cd_pipeline_load(&p, root, NULL, NULL, CD_LOAD_UNET | CD_LOAD_VAE_DECODER | CD_LOAD_TEXT | CD_LOAD_TOKENIZER));
    mem_print("load (unet, vae decoder, text)", now_s() - t0);
    cd_sampler s;
    int rc = cd_sampler_init(&s, &p);
    float *lat = cd_malloc(4 * 64 * 64 * sizeof(float));
    cd_rng r;
    cd_rng_seed(&r, 42);
    cd_rng_normal(&r, lat, 4 * 64 * 64);
    step_acc acc = {0, 0};
    if (!rc) rc = sample_steps(&s, &p, steps, lat, &acc);
    cd_image im = {0};
    // cd_sampler_decode first gives back the UNet's mapped pages (model/sampler.c); doing it
    // here as well puts the phase's baseline after that, so the peak below is the decode's own.
    for (int i = 0; i < p.unet_w.nfiles; i++) madvise(p.unet_w.files[i]->map.data, p.unet_w.files[i]->map.size, MADV_DONTNEED);
    hwm_reset();
    t0 = now_s();
    if (!rc) rc = cd_sampler_decode(&s, lat, 64, 64, NULL, &im);
    double td = now_s() - t0;
    if (!rc) mem_print("VAE decode 64x64 -> 512x512", td);
    if (!rc) {
        double uf = 2 * cd_unet_forward_macs(cd_unet_cfg(p.unet), 2, 64, 64, 77) * acc.n / acc.total * 1e-9;
        double vf = 2 * vae_decode_macs(cd_vae_cfg(p.vae), 64, 64) / td * 1e-9;
        mem_t m = mem_now();
        if (m.hwm > g_peak) g_peak = m.hwm;
        printf("RESULT sample 512x512 %s: peak RSS %.3f GB (whole run); %.2f s/step (CFG batch 2, "
               "%.1f GFLOP/s = %.0f%% of sgemm); total %.1f s\n", root, g_peak / GB, acc.total / acc.n,
               uf, 100 * uf / gemm, now_s() - tall);
        printf("RESULT vae decode 512: %.2f s, %.0f GFLOP, %.1f GFLOP/s = %.0f%% of sgemm %.1f GFLOP/s\n", td,
               2 * vae_decode_macs(cd_vae_cfg(p.vae), 64, 64) * 1e-9, vf, 100 * vf / gemm, gemm);
    }
    free(im.rgb);
    free(lat);
    cd_sampler_free(&s);
    cd_pipeline_free(&p);
    return rc;
}

// ---- parent -------------------------------------------------------------------------------
// Runs this program again with args; returns its exit status; *maxrss its peak RSS (bytes).
static int run_child(char *const *args, double *maxrss) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return cd_errno("fork");
    if (pid == 0) {
        execv("/proc/self/exe", args);
        perror("execv /proc/self/exe");
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) < 0) return cd_errno("wait4");
    *maxrss = ru.ru_maxrss * 1024.0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

// Deletes what ensure_model wrote (fp32/, fp16/, the marker, then DIR if empty); nothing
// when DIR has no marker, i.e. was not written by this program.
static void remove_model(const char *dir) {
    char *m = cd_path_join(dir, MARKER);
    if (!cd_path_exists(m)) { free(m); return; }
    static const char *subs[] = {"fp32", "fp16"};
    for (int i = 0; i < 2; i++) {
        char *d = cd_path_join(dir, subs[i]);
        if (cd_is_dir(d)) nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        free(d);
    }
    remove(m);
    free(m);
    rmdir(dir);
    printf("removed %s (--keep keeps it)\n", dir);
}

static int child_main(int argc, char **argv) {
    const char *what = argv[2];
    int rc;
    if (!strcmp(what, "write") && argc >= 6) rc = child_write(argv[3], argv[4], atoi(argv[5]));
    else if (!strcmp(what, "load") && argc >= 4) rc = child_load(argv[3]);
    else if (!strcmp(what, "sample") && argc >= 5) rc = child_sample(argv[3], atoi(argv[4]));
    else { fprintf(stderr, "bad --child arguments\n"); return 2; }
    if (rc) fprintf(stderr, "bench_sd15_memory %s: %s\n", what, cd_errmsg());
    return rc ? 1 : 0;
}

static int ensure_model(const char *dir, const char *tokdir, int *fp32) {
    char *m = cd_path_join(dir, MARKER);
    char *have = NULL;
    size_t len = 0;
    int exists = cd_path_exists(m) && !cd_read_file(m, &have, &len, 0);
    free(m);
    struct statvfs sv;
    cd_mkdirs(dir);
    double avail = statvfs(dir, &sv) == 0 ? (double)sv.f_bavail * sv.f_frsize : 0;
    if (exists) {
        *fp32 = strstr(have, "fp32") != NULL;
        printf("reusing %s (%s)", dir, *fp32 ? "fp32 + fp16" : "fp16 only");
        free(have);
        printf("\n");
        return 0;
    }
    *fp32 = avail > 8.5 * GB;   // fp32 4.3 GB + fp16 2.1 GB + margin
    if (avail < 3 * GB) return cd_err("%s: only %.1f GB free on disk, need 2.5 GB for the fp16 copy", dir, avail / GB);
    printf("writing random SD1.5 pipeline to %s (%.1f GB free: %s)\n", dir, avail / GB,
           *fp32 ? "fp32 4.3 GB + fp16 2.1 GB" : "fp16 only, disk is short");
    char fl[4];
    snprintf(fl, sizeof fl, "%d", *fp32);
    char *args[] = {"bench_sd15_memory", "--child", "write", (char *)dir, (char *)tokdir, fl, NULL};
    double mr;
    double t0 = now_s();
    int st = run_child(args, &mr);
    printf("  write: %.1f s, writer peak RSS %.2f GB (ru_maxrss)\n", now_s() - t0, mr / GB);
    return st ? cd_err("writing the random model failed (exit %d)", st) : 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--child")) return child_main(argc, argv);
    const char *dir = "build/sd15-random", *tokdir = "../shared/golden/tiny-sd/model/tokenizer";
    int keep = 0, steps = 1, nosample = 0, nofp16 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokdir = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--keep")) keep = 1;
        else if (!strcmp(argv[i], "--no-sample")) nosample = 1;
        else if (!strcmp(argv[i], "--no-fp16")) nofp16 = 1;
        else {
            fprintf(stderr, "usage: %s [--dir DIR] [--keep] [--steps N] [--no-sample] [--no-fp16] [--tokenizer DIR]\n", argv[0]);
            return 2;
        }
    }
    int fp32 = 0, fails = 0;
    if (ensure_model(dir, tokdir, &fp32)) { fprintf(stderr, "bench_sd15_memory: %s\n", cd_errmsg()); return 1; }
    char *r32 = cd_path_join(dir, "fp32"), *r16 = cd_path_join(dir, "fp16"), nst[16];
    snprintf(nst, sizeof nst, "%d", steps);
    struct { const char *title; char *args[6]; int on; } runs[] = {
        {"(1) load the fp32 folder", {"bench_sd15_memory", "--child", "load", fp32 ? r32 : r16, NULL}, fp32},
        {"(2) load the fp16 folder (converted to fp32)", {"bench_sd15_memory", "--child", "load", r16, NULL}, !nofp16},
        {"(3+4) sample 512x512, CFG, DDIM", {"bench_sd15_memory", "--child", "sample", fp32 ? r32 : r16, nst, NULL}, !nosample},
    };
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        if (!runs[k].on) continue;
        printf("%s: %s\n", runs[k].title, runs[k].args[3]);
        double mr = 0, t0 = now_s();
        int st = run_child(runs[k].args, &mr);
        printf("  exit %d; %.1f s\n", st, now_s() - t0);
        (void)mr;   // ru_maxrss is reset by the child's per-phase clear_refs: the child reports its peak
        fails += st != 0;
    }
    free(r32); free(r16);
    if (!keep) remove_model(dir);
    return fails ? 1 : 0;
}
