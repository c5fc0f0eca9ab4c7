// The device trainer (model/trainer_cuda.h) on the golden training steps and against itself:
// - the golden train case (three AdamW steps, every gradient and trained tensor) replayed on
//   the device through customdiff-verify's train case, fp32 (golden tolerances), bf16 and fp16
//   (verify's floors; fp16 with its loss scaling), for tiny-sd (epsilon) and tiny-sd2 (v_prediction);
// - fp16's loss scaler: an overflowed step is skipped and halves the scale, growth doubles it;
// - a resume through the host (to_host, a new handle, from_host) continues exactly as an
//   uninterrupted run; gradient checkpointing gives the gradients of a plain run.
// On a GPU (make test-cuda) and through the host emulation of the twins (make test).
#include "tests/cuda_testlib.h"
#include "verify/case_train.c"
#include "verify/device.c"
#include "tests/verify_shim.h"
#include "kernels/kernels_cuda.h"
#include <math.h>
#include <string.h>

// 1 when a GPU answers; else the running test is skipped with the reason.
static int have_gpu(void) {
    char why[256];
    if (ctl_have_gpu(why, sizeof why, 0)) return 1;
    tl_skip(why);
    return 0;
}

static void golden_set(const char *set, const char *prec) {
    if (!tl_golden() || !have_gpu()) return;
    char *dir = tl_golden_path(set), *m = cd_fmt("%s/model", dir), *c = cd_fmt("%s/cases/train.safetensors", dir);
    cd_verify_ctx v = {.model = m};
    cd_errclear();
    if (cd_verify_device_init(&v, "cuda", prec)) tl_fail(__FILE__, __LINE__, "device init: %s", cd_errmsg());
    else if (cd_verify_case_train.run(&v, c)) tl_fail(__FILE__, __LINE__, "train case %s on the device: %s", set, cd_errmsg());
    else if (v.nfail == 0 && v.npass < 3 * 6)
        tl_fail(__FILE__, __LINE__, "train case %s: only %d comparisons ran", set, v.npass);
    free(dir); free(m); free(c);
}

TEST(golden_train_tiny_sd_fp32) { golden_set("tiny-sd", "fp32"); }
TEST(golden_train_tiny_sd2_vpred_fp32) { golden_set("tiny-sd2", "fp32"); }
TEST(golden_train_tiny_sd_bf16) { golden_set("tiny-sd", "bf16"); }
TEST(golden_train_tiny_sd_fp16) { golden_set("tiny-sd", "fp16"); }
TEST(golden_train_tiny_sd2_vpred_fp16) { golden_set("tiny-sd2", "fp16"); }

// ---- a synthetic batch on the golden tiny-sd model -------------------------------------
typedef struct {
    cd_pipeline p;
    cd_trainer tr;
    int32_t ids[2 * CD_CLIP_MAX_LEN];
    float *px, *vn, *noise, *mask;
    int t[2];
    cd_train_batch b;
} fixture;

static int fixture_open(fixture *f, int ckpt) {
    memset(f, 0, sizeof *f);
    char *model = tl_golden_path("tiny-sd/model");
    int rc = cd_pipeline_load(&f->p, model, NULL, NULL, CD_LOAD_UNET | CD_LOAD_VAE_ENCODER | CD_LOAD_TEXT | CD_LOAD_TOKENIZER);
    free(model);
    cd_trainer_opts o;
    cd_trainer_opts_default(&o);
    o.gradient_checkpointing = ckpt;
    if (!rc) rc = cd_trainer_init(&f->tr, &f->p, "<new1>", "ktn", &o);
    if (rc) return rc;
    CD_TRY(cd_tokenizer_encode(f->p.tok, "photo of a <new1> cat", CD_CLIP_MAX_LEN, f->ids, NULL));
    CD_TRY(cd_tokenizer_encode(f->p.tok, "a cat", CD_CLIP_MAX_LEN, f->ids + CD_CLIP_MAX_LEN, NULL));
    int H = 64, f8 = 1 << (f->p.vae_cfg.nblocks - 1), h = H / f8, lc = cd_unet_cfg(f->p.unet)->in_channels;
    int64_t nl = 2LL * lc * h * h;
    f->px = cd_malloc(sizeof(float) * 2 * 3 * H * H);
    f->vn = cd_malloc(sizeof(float) * nl);
    f->noise = cd_malloc(sizeof(float) * nl);
    f->mask = cd_malloc(sizeof(float) * h * h);
    tl_rand(f->px, 2 * 3 * H * H, 11);
    tl_rand(f->vn, nl, 12);
    tl_rand(f->noise, nl, 13);
    for (int i = 0; i < h * h; i++) f->mask[i] = (i % h) > 0 && (i / h) > 0;   // a border of zeros
    f->t[0] = 17;
    f->t[1] = 640;
    f->b = (cd_train_batch){.B = 2, .n_inst = 1, .with_prior = 1, .H = H, .W = H, .ids = f->ids, .pixels = f->px,
                            .vae_noise = f->vn, .noise = f->noise, .timesteps = f->t, .mask = f->mask, .loss_scale = 1};
    return 0;
}

static void fixture_close(fixture *f) {
    if (f->tr.pipe) cd_trainer_free(&f->tr);
    cd_pipeline_free(&f->p);
    free(f->px); free(f->vn); free(f->noise); free(f->mask);
}

static int steps(cd_trainer_cuda *g, const cd_train_batch *b, int n, double *loss) {
    for (int i = 0; i < n; i++) {
        cd_train_losses ls;
        double gn;
        CD_TRY(cd_trainer_cuda_accumulate(g, b, &ls, NULL));
        CD_TRY(cd_trainer_cuda_step(g, 1e-2f, &gn, NULL));
        *loss = ls.loss;
    }
    return 0;
}

// All trained tensors of a and b: max relative difference.
static double params_diff(const cd_trainer *a, const cd_trainer *b) {
    double worst = 0;
    for (int i = 0; i < a->nparams; i++) {
        double e = tl_relerr(a->params[i].w, b->params[i].w, a->params[i].numel);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

// 3 steps straight == 2 steps, to the host, a new device handle from the host, 1 step.
TEST(resume_through_host) {
    if (!tl_golden() || !have_gpu()) return;
    fixture a, b;
    CHECK_OK(fixture_open(&a, 0));
    CHECK_OK(fixture_open(&b, 0));
    cd_trainer_cuda *ga = NULL, *gb = NULL;
    double la, lb;
    CHECK_OK(cd_trainer_cuda_new(&ga, &a.tr, CD_PREC_FP32));
    CHECK_OK(steps(ga, &a.b, 3, &la));
    CHECK_OK(cd_trainer_cuda_to_host(ga));
    CHECK_OK(cd_trainer_cuda_new(&gb, &b.tr, CD_PREC_FP32));
    CHECK_OK(steps(gb, &b.b, 2, &lb));
    CHECK_OK(cd_trainer_cuda_to_host(gb));
    cd_trainer_cuda_free(gb);
    gb = NULL;
    CHECK_OK(cd_trainer_cuda_new(&gb, &b.tr, CD_PREC_FP32));
    CHECK_OK(steps(gb, &b.b, 1, &lb));
    CHECK_OK(cd_trainer_cuda_to_host(gb));
    double d = params_diff(&a.tr, &b.tr);
    CHECKF(d <= 1e-6, "resumed run differs from the straight one by %.3e", d);
    CHECKF(fabs(la - lb) <= 1e-6 * fabs(la) + 1e-9, "last loss %.9g vs %.9g", la, lb);
    CHECK(a.tr.adam_step == 3 && b.tr.adam_step == 3);
    cd_trainer_cuda_free(ga);
    cd_trainer_cuda_free(gb);
    fixture_close(&a);
    fixture_close(&b);
}

// Device gradients with and without gradient checkpointing, and against the CPU trainer.
TEST(checkpointing_and_cpu_agree) {
    if (!tl_golden() || !have_gpu()) return;
    fixture a, b, c;
    CHECK_OK(fixture_open(&a, 0));
    CHECK_OK(fixture_open(&b, 1));
    CHECK_OK(fixture_open(&c, 0));
    cd_trainer_cuda *ga = NULL, *gb = NULL;
    cd_train_losses la, lb, lc;
    CHECK_OK(cd_trainer_cuda_new(&ga, &a.tr, CD_PREC_FP32));
    CHECK_OK(cd_trainer_cuda_new(&gb, &b.tr, CD_PREC_FP32));
    CHECK_OK(cd_trainer_cuda_accumulate(ga, &a.b, &la, NULL));
    CHECK_OK(cd_trainer_cuda_accumulate(gb, &b.b, &lb, NULL));
    CHECK_OK(cd_trainer_accumulate(&c.tr, &c.b, &lc, NULL));
    CHECK_OK(cd_trainer_cuda_grads_to_host(ga));
    CHECK_OK(cd_trainer_cuda_grads_to_host(gb));
    double worst_ck = 0, worst_cpu = 0;
    for (int i = 0; i < a.tr.nparams; i++) {
        double e1 = tl_relerr(b.tr.params[i].g, a.tr.params[i].g, a.tr.params[i].numel);
        double e2 = tl_relerr(a.tr.params[i].g, c.tr.params[i].g, a.tr.params[i].numel);
        if (!(e1 <= worst_ck)) worst_ck = e1;
        if (!(e2 <= worst_cpu)) worst_cpu = e2;
    }
    CHECKF(worst_ck <= 1e-5, "checkpointing changes the gradients by %.3e", worst_ck);
    CHECKF(worst_cpu <= 1e-4, "device gradients differ from the CPU's by %.3e", worst_cpu);
    CHECKF(fabs(la.loss - lc.loss) <= 1e-5 * fabs(lc.loss), "loss %.9g on the device, %.9g on the CPU", la.loss, lc.loss);
    CHECKF(fabs(la.loss - lb.loss) <= 1e-6 * fabs(la.loss), "loss %.9g vs %.9g with checkpointing", la.loss, lb.loss);
    cd_trainer_cuda_stats s;
    cd_trainer_cuda_get_stats(ga, &s);
    CHECK(s.weights > 0 && s.activations > 0 && s.peak >= s.weights && s.step_flops > 0);
    cd_trainer_cuda_free(ga);
    cd_trainer_cuda_free(gb);
    fixture_close(&a);
    fixture_close(&b);
    fixture_close(&c);
}

// bf16: the UNet's frozen matrices live on the device as bf16 only (their fp32 copies freed;
// the trainable K/V keep fp32 masters), so its weights take a bit over half the fp32 bytes.
TEST(bf16_frozen_weights_bf16_only) {
    if (!tl_golden() || !have_gpu()) return;
    fixture a;
    CHECK_OK(fixture_open(&a, 0));
    cd_trainer_cuda *g32 = NULL, *g16 = NULL;
    CHECK_OK(cd_trainer_cuda_new(&g32, &a.tr, CD_PREC_FP32));
    int64_t w32 = cd_unet_cuda_weight_bytes(cd_trainer_cuda_unet(g32));
    cd_trainer_cuda_free(g32);
    CHECK_OK(cd_trainer_cuda_new(&g16, &a.tr, CD_PREC_BF16));
    int64_t w16 = cd_unet_cuda_weight_bytes(cd_trainer_cuda_unet(g16));
    double loss;
    CHECK_OK(steps(g16, &a.b, 1, &loss));   // a bf16 step never needs a dropped fp32 copy
    CHECKF(w16 < 0.7 * w32 && w16 > 0.5 * w32, "UNet weights: %lld bytes in bf16 mode, %lld in fp32", (long long)w16, (long long)w32);
    CHECK(isfinite(loss));
    cd_trainer_cuda_free(g16);
    fixture_close(&a);
}

// fp16's dynamic loss scaling (GradScaler's rule): a step whose scaled gradients overflow
// fp16 is skipped (no update, Adam's step count unchanged, gradients dropped) and halves the
// scale; CD_LOSS_SCALE_INTERVAL finite steps in a row double it. The overflow is real: a scale
// of 1e36 makes the loss gradient ~1e33, which every fp16 conversion turns into inf.
TEST(fp16_loss_scaler) {
    if (!tl_golden() || !have_gpu()) return;
    fixture a;
    CHECK_OK(fixture_open(&a, 0));
    cd_trainer_cuda *g = NULL;
    CHECK_OK(cd_trainer_cuda_new(&g, &a.tr, CD_PREC_FP16));
    CHECK(a.tr.loss_scale == CD_LOSS_SCALE_INIT && a.tr.scale_good == 0 && a.tr.skipped_steps == 0);
    int p0 = a.tr.n_unet;   // the modifier row: trained, compared before and after
    int64_t nw = a.tr.params[p0].numel;
    float *w0 = cd_malloc(sizeof(float) * nw);
    memcpy(w0, a.tr.params[p0].w, sizeof(float) * nw);
    a.tr.loss_scale = 1e36;
    cd_train_losses ls;
    double gn = 0;
    int skipped = 0;
    CHECK_OK(cd_trainer_cuda_accumulate(g, &a.b, &ls, NULL));
    CHECK_OK(cd_trainer_cuda_step(g, 1e-2f, &gn, &skipped));
    CHECK(skipped == 1 && isinf(gn));
    CHECK(a.tr.adam_step == 0 && a.tr.skipped_steps == 1 && a.tr.scale_good == 0);
    CHECKF(a.tr.loss_scale == 5e35, "loss scale after an overflow: %g", a.tr.loss_scale);
    CHECK(isfinite(ls.loss));   // the forward is unscaled: the loss itself stays finite
    CHECK_OK(cd_trainer_cuda_to_host(g));
    CHECK(memcmp(w0, a.tr.params[p0].w, sizeof(float) * nw) == 0);   // no update
    // the overflowed gradients were dropped: a normal step now matches a fresh run's first step
    a.tr.loss_scale = CD_LOSS_SCALE_INIT;
    a.tr.scale_good = CD_LOSS_SCALE_INTERVAL - 1;
    CHECK_OK(cd_trainer_cuda_accumulate(g, &a.b, &ls, NULL));
    CHECK_OK(cd_trainer_cuda_step(g, 1e-2f, &gn, &skipped));
    CHECK(skipped == 0 && isfinite(gn) && gn > 0 && a.tr.adam_step == 1);
    CHECKF(a.tr.loss_scale == 2 * CD_LOSS_SCALE_INIT && a.tr.scale_good == 0, "loss scale %g after %d finite steps",
           a.tr.loss_scale, CD_LOSS_SCALE_INTERVAL);
    fixture b;
    CHECK_OK(fixture_open(&b, 0));
    cd_trainer_cuda *gb = NULL;
    double gnb = 0;
    CHECK_OK(cd_trainer_cuda_new(&gb, &b.tr, CD_PREC_FP16));
    CHECK_OK(cd_trainer_cuda_accumulate(gb, &b.b, &ls, NULL));
    CHECK_OK(cd_trainer_cuda_step(gb, 1e-2f, &gnb, NULL));
    CHECKF(fabs(gn - gnb) <= 1e-6 * gnb, "first real step's gradient norm %.9g, a fresh run's %.9g", gn, gnb);
    CHECK_OK(cd_trainer_cuda_to_host(g));
    CHECK_OK(cd_trainer_cuda_to_host(gb));
    double d = params_diff(&a.tr, &b.tr);
    CHECKF(d <= 1e-6, "after a skipped step the run differs from a fresh one by %.3e", d);
    // pixels far outside fp16's range overflow the VAE encoder: refused at once, with the reason
    for (int64_t k = 0; k < 2 * 3 * 64 * 64; k++) a.px[k] = 1e8f;
    CHECK_ERR(cd_trainer_cuda_accumulate(g, &a.b, &ls, NULL), "VAE encoder overflowed fp16");
    // cached latents too large for fp16 overflow the UNet: at scale 1 nothing is left to back
    // off, so the step fails with the reason instead of skipping forever
    int hl = 64 >> (a.p.vae_cfg.nblocks - 1);   // the fixture's latent side
    int64_t nl = 2LL * cd_unet_cfg(a.p.unet)->in_channels * hl * hl;
    float *mean = cd_malloc(sizeof(float) * nl), *logvar = cd_calloc(nl, sizeof(float));
    for (int64_t k = 0; k < nl; k++) mean[k] = 1e7f;
    cd_train_batch big = a.b;
    big.mean = mean;
    big.logvar = logvar;
    a.tr.loss_scale = 1;
    CHECK_OK(cd_trainer_cuda_accumulate(g, &big, &ls, NULL));
    CHECK_ERR(cd_trainer_cuda_step(g, 1e-2f, &gn, &skipped), "overflow even at loss scale 1");
    free(mean);
    free(logvar);
    cd_trainer_cuda_free(g);
    cd_trainer_cuda_free(gb);
    free(w0);
    fixture_close(&a);
    fixture_close(&b);
}

// 16-bit weights are read only in the format they were made in: switching the process to fp16
// after a bf16 upload is refused by the training forward (and by every inference forward).
TEST(format_switch_refused) {
    if (!tl_golden() || !have_gpu()) return;
#ifdef CD_CUDA   // (cd_cuda_set_fp16 exists only in CUDA builds; have_gpu() skipped the others)
    fixture a;
    CHECK_OK(fixture_open(&a, 0));
    cd_trainer_cuda *g = NULL;
    CHECK_OK(cd_trainer_cuda_new(&g, &a.tr, CD_PREC_BF16));
    cd_cuda_set_fp16(1);
    cd_train_losses ls;
    CHECK_ERR(cd_trainer_cuda_accumulate(g, &a.b, &ls, NULL), "16-bit weights were made as bf16");
    cd_cuda_set_fp16(0);
    cd_cuda_status();
    CHECK_OK(cd_trainer_cuda_accumulate(g, &a.b, &ls, NULL));
    cd_trainer_cuda_free(g);
    fixture_close(&a);
#endif
}

// Without fp16 the scaler is off, whatever the trainer held.
TEST(loss_scaler_off_without_fp16) {
    if (!tl_golden() || !have_gpu()) return;
    fixture a;
    CHECK_OK(fixture_open(&a, 0));
    a.tr.loss_scale = 1024;
    cd_trainer_cuda *g = NULL;
    CHECK_OK(cd_trainer_cuda_new(&g, &a.tr, CD_PREC_BF16));
    CHECK(a.tr.loss_scale == 0);
    cd_trainer_cuda_free(g);
    fixture_close(&a);
}

TEST(bad_precision) {
    int p;
    CHECK_ERR(cd_precision_parse("int8", &p), "expected fp32, tf32, bf16 or fp16");
    CHECK_ERR(cd_precision_parse("", &p), "expected fp32");
    CHECK_OK(cd_precision_parse("bf16", &p));
    CHECK(p == CD_PREC_BF16 && cd_precision_half(p));
    CHECK_OK(cd_precision_parse("fp16", &p));
    CHECK(p == CD_PREC_FP16 && cd_precision_half(p) && !strcmp(cd_precision_name(p), "fp16"));
    CHECK_OK(cd_precision_parse("tf32", &p));
    CHECK(!cd_precision_half(p));
}

int main(void) {
    RUN(golden_train_tiny_sd_fp32);
    RUN(golden_train_tiny_sd2_vpred_fp32);
    RUN(golden_train_tiny_sd_bf16);
    RUN(golden_train_tiny_sd_fp16);
    RUN(golden_train_tiny_sd2_vpred_fp16);
    RUN(resume_through_host);
    RUN(checkpointing_and_cpu_agree);
    RUN(bf16_frozen_weights_bf16_only);
    RUN(fp16_loss_scaler);
    RUN(format_switch_refused);
    RUN(loss_scaler_off_without_fp16);
    RUN(bad_precision);
    return tl_done();
}
