// customdiff-train: Custom Diffusion fine-tuning (HF trainer semantics) of a Stable Diffusion
// model on one or more concepts, with prior preservation from real class images.
// Writes RUN/delta.safetensors, RUN/checkpoints/, RUN/train.log, RUN/metrics.json, RUN/loss.png.
#include <math.h>
#include "train/train.h"
#include "train/ckpt_base.h"
#include "train/validate.h"
#include "core/cli.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/progress.h"
#include "model/delta.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cd_train_args A;

static cd_opt opts[] = {
    {"model", CD_OPT_STR, &A.model, NULL, "base model: diffusers folder or single-file .safetensors"},
    {"tokenizer", CD_OPT_STR, &A.tokenizer, NULL, "tokenizer folder (default MODEL/tokenizer)"},
    {"instance-data", CD_OPT_STR, &A.instance_data, NULL, "instance images: store, image folder or images.txt folder"},
    {"class-data", CD_OPT_STR, &A.class_data, NULL, "class (regularisation) images: store, folder or images.txt folder"},
    {"instance-prompt", CD_OPT_STR, &A.instance_prompt, NULL, "instance prompt, e.g. \"photo of a <new1> cat\""},
    {"class-prompt", CD_OPT_STR, &A.class_prompt, NULL, "class prompt, e.g. \"cat\" (real prior: captions from the store)"},
    {"modifier-token", CD_OPT_STR, &A.modifier_token, NULL, "new tokens, '+'-separated: \"<new1>+<new2>\""},
    {"initializer-token", CD_OPT_STR, &A.initializer_token, "ktn+pll+ucd", "vocabulary pieces initialising the new tokens"},
    {"concepts", CD_OPT_STR, &A.concepts, NULL, "Custom Diffusion concepts list (JSON) instead of the single-concept flags"},
    {"with-prior-preservation", CD_OPT_FLAG, &A.with_prior, "0", "add the class-image prior loss"},
    {"real-prior", CD_OPT_FLAG, &A.real_prior, "0", "class images are real (retrieved): use their captions"},
    {"prior-loss-weight", CD_OPT_FLOAT, &A.prior_loss_weight, "1.0", "weight of the prior loss"},
    {"num-class-images", CD_OPT_INT, &A.num_class_images, "200", "class images used per concept"},
    {"resolution", CD_OPT_INT, &A.resolution, "512", "training resolution (pixels)"},
    {"train-batch-size", CD_OPT_INT, &A.batch, "4", "instance images per micro-batch (same number of class images); upstream default 4"},
    {"learning-rate", CD_OPT_FLOAT, &A.lr, "1e-5", "base learning rate"},
    {"scale-lr", CD_OPT_FLAG, &A.scale_lr, "0", "lr *= accumulation * batch size (x2 with prior preservation), as upstream"},
    {"lr-warmup-steps", CD_OPT_INT, &A.warmup, "0", "linear warmup steps (0: constant)"},
    {"max-train-steps", CD_OPT_INT, &A.max_steps, "250", "optimizer steps"},
    {"gradient-accumulation-steps", CD_OPT_INT, &A.accum, "1", "micro-batches per optimizer step"},
    {"max-grad-norm", CD_OPT_FLOAT, &A.max_grad_norm, "1.0", "clip the global gradient norm (0: off)"},
    {"adam-beta1", CD_OPT_FLOAT, &A.adam_beta1, "0.9", "AdamW beta1"},
    {"adam-beta2", CD_OPT_FLOAT, &A.adam_beta2, "0.999", "AdamW beta2"},
    {"adam-epsilon", CD_OPT_FLOAT, &A.adam_eps, "1e-8", "AdamW epsilon"},
    {"adam-weight-decay", CD_OPT_FLOAT, &A.weight_decay, "1e-2", "AdamW decoupled weight decay"},
    {"checkpointing-steps", CD_OPT_INT, &A.checkpointing_steps, "250", "write a resumable checkpoint every N steps (0: never)"},
    {"checkpoints-total-limit", CD_OPT_INT, &A.checkpoints_limit, "0", "keep only the newest N checkpoints (0: all)"},
    {"seed", CD_OPT_I64, &A.seed, "42", "random seed"},
    {"hflip", CD_OPT_FLAG, &A.hflip, "0", "random horizontal flips"},
    {"noaug", CD_OPT_FLAG, &A.noaug, "0", "no random-scale augmentation of instance images"},
    {"center-crop", CD_OPT_FLAG, &A.center_crop, "0", "centre-crop class images (default: random crop)"},
    {"cache-latents", CD_OPT_FLAG, &A.cache_latents, "0", "cache VAE moments of images whose augmentation is deterministic"},
    {"train-mode", CD_OPT_STR, &A.train_mode, "crossattn_kv", "crossattn_kv (K/V) or crossattn (Q/K/V/out)"},
    {"gradient-checkpointing", CD_OPT_FLAG, &A.grad_ckpt, "0", "recompute UNet blocks in backward to save memory"},
    {"validation-prompt", CD_OPT_STR, &A.validation_prompt, NULL, "sample this prompt every --validation-steps"},
    {"validation-steps", CD_OPT_INT, &A.validation_steps, "50", "steps between validation samples"},
    {"device", CD_OPT_STR, &A.device, "cpu", "cpu or cuda (an NVIDIA GPU; needs a CUDA build)"},
    {"deterministic", CD_OPT_FLAG, &A.deterministic, "0", "GPU: repeat a run bit for bit (the attention backward without float atomics; costs it one more pass). The CPU always does"},
    {"precision", CD_OPT_STR, &A.precision, "auto", "fp32, tf32, bf16 or fp16 (GPU; fp16 scales the loss dynamically); auto: fp32 on the CPU, bf16 on the GPU"},
    {"out", CD_OPT_STR, &A.out, "run", "run folder"},
    {"resume", CD_OPT_STR, &A.resume, NULL, "resume from a checkpoint folder, a run folder, or 'latest' (= --out)"},
    {"overwrite", CD_OPT_FLAG, &A.overwrite, NULL, "start over in an --out that holds an earlier run's checkpoints"},
    {0}};

static int build_concepts(cd_concept **c, int *n) {
    if (A.concepts) return cd_concepts_load(A.concepts, c, n);
    if (!A.instance_data) return cd_err("give --instance-data (and --instance-prompt) or --concepts FILE");
    if (!A.instance_prompt) return cd_err("--instance-prompt is required with --instance-data");
    *c = cd_calloc(1, sizeof(cd_concept));
    (*c)->instance_dir = cd_strdup(A.instance_data);
    (*c)->instance_prompt = cd_strdup(A.instance_prompt);
    (*c)->class_dir = A.class_data ? cd_strdup(A.class_data) : NULL;
    (*c)->class_prompt = A.class_prompt ? cd_strdup(A.class_prompt) : NULL;
    *n = 1;
    return 0;
}

static int check_args(void) {
    if (!A.model) return cd_err("--model is required");
    if (A.resolution < 16) return cd_err("--resolution %d is too small", A.resolution);
    if (A.batch < 1 || A.accum < 1) return cd_err("--train-batch-size and --gradient-accumulation-steps must be >= 1");
    if (A.max_steps < 1) return cd_err("--max-train-steps %d: must be >= 1", A.max_steps);
    if (A.resolution > 4096) return cd_err("--resolution %d is too large (at most 4096)", A.resolution);
    if (A.batch > 1024) return cd_err("--train-batch-size %d is too large (at most 1024)", A.batch);
    if (A.validation_steps < 1) return cd_err("--validation-steps %d: must be >= 1", A.validation_steps);
    if (A.checkpointing_steps < 0 || A.checkpoints_limit < 0 || A.warmup < 0 || A.num_class_images < 0)
        return cd_err("--checkpointing-steps, --checkpoints-total-limit, --lr-warmup-steps and --num-class-images must be >= 0");
    if (!isfinite(A.lr) || A.lr < 0) return cd_err("--learning-rate must be a finite number >= 0");
    if (!isfinite(A.prior_loss_weight) || !isfinite(A.max_grad_norm) || A.max_grad_norm < 0)
        return cd_err("--prior-loss-weight and --max-grad-norm must be finite (--max-grad-norm >= 0)");
    if (!(A.adam_beta1 >= 0 && A.adam_beta1 < 1) || !(A.adam_beta2 >= 0 && A.adam_beta2 < 1) ||
        !(A.adam_eps > 0 && isfinite(A.adam_eps)) || !isfinite(A.weight_decay))
        return cd_err("--adam-beta1/--adam-beta2 must be in [0, 1), --adam-epsilon > 0, --adam-weight-decay finite");
    if (A.modifier_token && (!A.modifier_token[0] || A.modifier_token[0] == '+' || strstr(A.modifier_token, "++") ||
                             A.modifier_token[strlen(A.modifier_token) - 1] == '+'))
        return cd_err("--modifier-token '%s': empty token name", A.modifier_token);
    if (strcmp(A.train_mode, "crossattn_kv") && strcmp(A.train_mode, "crossattn"))
        return cd_err("--train-mode '%s': expected crossattn_kv or crossattn", A.train_mode);
    if (strcmp(A.device, "cpu") && strcmp(A.device, "cuda"))
        return cd_err("--device '%s': expected cpu or cuda", A.device);
    int prec;
    if (strcmp(A.precision, "auto") && cd_precision_parse(A.precision, &prec)) return -1;
    if (!strcmp(A.device, "cpu") && strcmp(A.precision, "auto") && strcmp(A.precision, "fp32"))
        return cd_err("--precision %s: the CPU trains in fp32 (tf32/bf16/fp16 need --device cuda)", A.precision);
    return 0;
}

// --device cuda: the device trainer, and what it will hold.
static int setup_gpu(cd_run *r) {
    if (strcmp(A.device, "cuda")) return 0;
    int prec = CD_PREC_BF16;
    if (strcmp(A.precision, "auto")) CD_TRY(cd_precision_parse(A.precision, &prec));
    cd_precision_deterministic(A.deterministic);
    CD_TRY(cd_trainer_cuda_new(&r->gpu, &r->tr, prec));
    cd_trainer_cuda_stats s;
    cd_trainer_cuda_get_stats(r->gpu, &s);
    cd_info("cuda: %s%s, weights %.2f GiB, gradients + AdamW %.1f MiB (activations are planned by the first step)",
            cd_precision_name(prec), A.deterministic ? " deterministic" : "", s.weights / 1073741824.0, s.optimizer / 1048576.0);
    return 0;
}

// Before the first step: the planned device memory of one step at this shape (a host-only
// planning pass of the UNet's training walk; the text encoder's few MB are not counted).
static void report_plan(cd_run *r) {
    if (!r->gpu) return;
    int B = A.batch * (A.with_prior ? 2 : 1);
    double flops = 0;
    int64_t act = cd_unet_cuda_train_plan(r->pipe.unet, cd_precision_half(cd_trainer_cuda_precision(r->gpu)),
                                          B, r->h, r->h, CD_CLIP_MAX_LEN, &flops);
    if (act < 0) { cd_errclear(); return; }
    cd_trainer_cuda_stats s;
    cd_trainer_cuda_get_stats(r->gpu, &s);
    cd_info("cuda plan for %d images at %dx%d: weights %.2f GiB + gradients/AdamW %.2f GiB + activations "
            "%.2f GiB = %.2f GiB; %.2f TFLOP per micro-batch", B, A.resolution, A.resolution,
            s.weights / 1073741824.0, s.optimizer / 1073741824.0, act / 1073741824.0,
            (s.weights + s.optimizer + act) / 1073741824.0, flops * 1e-12);
}

static void report_gpu(cd_run *r, const char *when) {
    if (!r->gpu) return;
    cd_trainer_cuda_stats s;
    cd_trainer_cuda_get_stats(r->gpu, &s);
    cd_info("cuda %s: activations planned %.2f GiB, peak device memory %.2f GiB, %.2f TFLOP per micro-batch",
            when, s.activations / 1073741824.0, s.peak / 1073741824.0, s.step_flops * 1e-12);
}

// The device's trained tensors and AdamW state into the host trainer (checkpoints, delta).
static int gpu_to_host(cd_run *r) {
    return r->gpu ? cd_trainer_cuda_to_host(r->gpu) : 0;
}

// Fingerprint of the base tensors the delta replaces (before any update).
static int base_fingerprint(cd_run *r, char fp[80]) {
    int n = r->tr.n_unet;
    const char **names = cd_malloc(sizeof(char *) * (n ? n : 1));
    for (int i = 0; i < n; i++) names[i] = r->tr.params[i].name;
    int rc = cd_delta_fingerprint(&r->pipe.unet_w, names, n, fp);
    free(names);
    return rc;
}

static int write_delta(cd_run *r, const char *fp, const char *path) {
    cd_delta d;
    cd_delta_init(&d, A.train_mode);
    int rc = 0;
    for (int i = 0; i < r->tr.n_unet && rc == 0; i++) {
        const cd_param *p = &r->tr.params[i];
        rc = cd_delta_add_tensor(&d, p->name, p->ndim, p->shape, p->w);
    }
    for (int i = 0; i < r->tr.nmod && rc == 0; i++) {
        const cd_param *p = &r->tr.params[r->tr.n_unet + i];
        rc = cd_delta_add_token(&d, r->tr.mod_tok[i], p->w, (int)p->numel);
    }
    if (rc == 0) {
        snprintf(d.fingerprint, sizeof d.fingerprint, "%s", fp);
        d.base_tensors = r->tr.n_unet;
        char buf[64];
        snprintf(buf, sizeof buf, "%lld", (long long)r->step);
        cd_delta_set_meta(&d, "train_steps", buf);
        cd_delta_set_meta(&d, "base_model", A.model);
        rc = cd_delta_save(&d, path);
    }
    cd_delta_free(&d);
    return rc;
}

static int setup(cd_run *r, char fp[80]) {
    CD_TRY(check_args());
    CD_TRY(build_concepts(&r->concepts, &r->nconcepts));
    unsigned what = CD_LOAD_UNET | CD_LOAD_VAE_ENCODER | CD_LOAD_TEXT | CD_LOAD_TOKENIZER;
    if (A.validation_prompt || (A.with_prior && !A.real_prior)) what |= CD_LOAD_VAE_DECODER;
    CD_TRY(cd_pipeline_load(&r->pipe, A.model, A.tokenizer, NULL, what));
    cd_trainer_opts to;
    cd_trainer_opts_default(&to);
    to.mode = strcmp(A.train_mode, "crossattn") == 0 ? CD_TRAIN_CROSSATTN : CD_TRAIN_CROSSATTN_KV;
    to.gradient_checkpointing = A.grad_ckpt;
    to.max_grad_norm = (float)A.max_grad_norm;
    to.prior_loss_weight = (float)A.prior_loss_weight;
    to.beta1 = (float)A.adam_beta1;
    to.beta2 = (float)A.adam_beta2;
    to.eps = (float)A.adam_eps;
    to.weight_decay = (float)A.weight_decay;
    CD_TRY(cd_trainer_init(&r->tr, &r->pipe, A.modifier_token, A.initializer_token, &to));
    CD_TRY(base_fingerprint(r, fp));
    CD_TRY(setup_gpu(r));
    cd_ckpt_set_base(fp);
    int f = 1 << (r->pipe.vae_cfg.nblocks - 1);
    r->lc = cd_unet_cfg(r->pipe.unet)->in_channels;
    r->h = A.resolution / f;
    CD_TRY(cd_generate_class_images(r));
    CD_TRY(cd_dataset_open(&r->data, r->concepts, r->nconcepts, &A, f));
    r->lr = cd_lr_scaled(&A);
    cd_rng_split(&r->rng_aug, (uint64_t)A.seed, 1);
    cd_rng_split(&r->rng_noise, (uint64_t)A.seed, 2);
    if (A.cache_latents) {
        r->cache_n = r->data.n_inst + r->data.n_class;
        r->cache_mean = cd_calloc(r->cache_n, sizeof(float *));
        int any = (A.noaug && !A.hflip) || (A.with_prior && A.center_crop && !A.hflip);
        if (!any) cd_warn("--cache-latents: every image's augmentation is random (instances need --noaug, class "
                          "images --center-crop, both without --hflip): nothing can be cached");
    }
    cd_info("training %d tensors (%lld values) + %d token rows, lr %g, %d instance / %d class images",
            r->tr.n_unet, (long long)(r->tr.total - (int64_t)r->tr.nmod * r->tr.tcfg.hidden), r->tr.nmod,
            r->lr, r->data.n_inst, r->data.n_class);
    return 0;
}

static int resume(cd_run *r) {
    if (!A.resume) {
        char *dir = NULL;
        int found = 0;
        int rc = 0;
        // Never mix or silently replace an earlier run's work: continue it or say so.
        if (cd_ckpt_find_latest(A.out, &dir, &found) == 0 && found) {
            if (A.overwrite)
                cd_warn("%s holds checkpoints of an earlier run (%s); starting over (--overwrite)", A.out, dir);
            else
                rc = cd_err("%s holds checkpoints of an earlier run (%s): --resume latest continues it, "
                            "--overwrite starts over, or choose another --out", A.out, dir);
        }
        free(dir);
        return rc;
    }
    const char *from = strcmp(A.resume, "latest") == 0 ? A.out : A.resume;
    char *dir = NULL;
    int found = 0;
    CD_TRY(cd_ckpt_find_latest(from, &dir, &found));
    if (!found) {
        if (strcmp(A.resume, "latest") == 0) { cd_info("no checkpoint in %s: starting fresh", from); return 0; }
        return cd_err("%s: no complete checkpoint to resume from", from);
    }
    int rc = cd_ckpt_load(r, dir);
    if (rc == 0 && r->gpu) rc = cd_trainer_cuda_from_host(r->gpu);
    if (rc == 0) cd_info("resumed from %s at step %lld", dir, (long long)r->step);
    else cd_errctx("resume from %s", dir);
    free(dir);
    return rc;
}

static int train_loop(cd_run *r, cd_trainlog *lg) {
    int64_t start = r->step;
    cd_progress pr;
    cd_progress_start(&pr, "train", A.max_steps);
    while (r->step < A.max_steps) {
        cd_step_stats st;
        CD_TRY(cd_run_step(r, &st));
        cd_trainlog_add(lg, r->step, &st, st.images);
        char extra[96];
        snprintf(extra, sizeof extra, "loss %.4f", st.loss);
        cd_progress_update(&pr, r->step, extra);
        if (r->step == start + 1) report_gpu(r, "after the first step");
        int ckpt = A.checkpointing_steps > 0 && r->step % A.checkpointing_steps == 0;
        int val = A.validation_prompt && A.validation_steps > 0 && r->step % A.validation_steps == 0;
        if (ckpt || val) CD_TRY(gpu_to_host(r));
        if (ckpt) CD_TRY(cd_ckpt_save(r, A.out, A.checkpoints_limit));
        if (val) CD_TRY(cd_validate(r, A.validation_prompt, A.out));
    }
    cd_progress_end(&pr, NULL);
    return 0;
}

int main(int argc, char **argv) {
    const char *summary = "Custom Diffusion fine-tuning: trains the cross-attention K/V (and the modifier tokens' "
                          "embeddings) on instance images with a class-image prior.";
    int rc = cd_cli_parse("train", summary, opts, argc, argv, NULL, NULL);
    if (rc > 0) return 0;
    if (rc < 0) cd_die("train", 2);
    static cd_run r;
    r.a = &A;
    char fp[80] = "";
    double t0 = cd_now();
    if (setup(&r, fp) || cd_mkdirs(A.out) || resume(&r)) cd_die("train", 1);
    cd_trainlog lg;
    if (cd_trainlog_open(&lg, A.out, r.step)) cd_die("train", 1);
    int64_t start = r.step;
    report_plan(&r);
    if (train_loop(&r, &lg) || gpu_to_host(&r)) cd_die("train", 1);
    report_gpu(&r, "at the end");
    if (r.tr.loss_scale > 0)
        cd_info("fp16 loss scaling: %lld of %lld optimizer steps skipped on overflowed gradients, scale now %g",
                (long long)r.tr.skipped_steps, (long long)r.step, r.tr.loss_scale);
    char *delta = cd_path_join(A.out, "delta.safetensors");
    if (write_delta(&r, fp, delta) || cd_trainlog_finish(&lg, &A, r.step, cd_now() - t0)) cd_die("train", 1);
    if (A.validation_prompt && cd_validate(&r, A.validation_prompt, A.out)) cd_die("train", 1);
    printf("customdiff-train: wrote %s (%lld steps, %lld this run; loss %.4f -> %.4f; log %s/train.log)\n",
           delta, (long long)r.step, (long long)(r.step - start), lg.n ? lg.loss[0] : 0.0,
           lg.n ? lg.loss[lg.n - 1] : 0.0, A.out);
    cd_trainlog_close(&lg);
    free(delta);
    cd_dataset_free(&r.data);
    cd_trainer_cuda_free(r.gpu);
    cd_trainer_free(&r.tr);
    cd_pipeline_free(&r.pipe);
    cd_concepts_free(r.concepts, r.nconcepts);
    return 0;
}
