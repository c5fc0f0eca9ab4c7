// One optimizer step of customdiff-train: gradient_accumulation_steps micro-batches of
// (instance [+ class]) rows from the dataset, the random draws of the HF trainer (VAE
// sample noise, noise, timesteps), optional cached VAE moments, then clip + AdamW.
#include "train/train.h"
#include "core/err.h"
#include "core/progress.h"
#include "kernels/kernels.h"
#include <stdlib.h>
#include <string.h>

double cd_lr_at(double base, int warmup, int64_t k) {
    if (warmup > 0 && k < warmup) return base * (double)k / (double)warmup;
    return base;
}

double cd_lr_scaled(const cd_train_args *a) {
    double lr = a->lr;
    if (!a->scale_lr) return lr;
    lr *= (double)a->accum * a->batch;   // * num_processes (1)
    if (a->with_prior) lr *= 2.0;
    return lr;
}

// Cached moments of row r (mean then logvar, 2*per floats), or NULL.
static float *cache_slot(cd_run *r, const cd_batch *bt, int row) {
    if (!r->a->cache_latents || !bt->deterministic[row]) return NULL;
    int is_class = row >= bt->n_inst;
    int idx = bt->item[row] + (is_class ? r->data.n_inst : 0);
    if (idx >= r->cache_n) return NULL;
    return r->cache_mean[idx];
}

// VAE moments [B, lc, h, w] x2 for the batch, row by row through the cache.
static int batch_moments(cd_run *r, const cd_batch *bt, float *mean, float *logvar, int64_t per) {
    int N = bt->N;
    for (int i = 0; i < bt->B; i++) {
        float *slot = cache_slot(r, bt, i);
        int is_class = i >= bt->n_inst;
        int idx = bt->item[i] + (is_class ? r->data.n_inst : 0);
        if (slot) {
            memcpy(mean + i * per, slot, sizeof(float) * per);
            memcpy(logvar + i * per, slot + per, sizeof(float) * per);
            continue;
        }
        const float *px = bt->pixels + (size_t)i * 3 * N * N;
        CD_TRY(r->gpu ? cd_trainer_cuda_encode(r->gpu, px, 1, N, N, mean + i * per, logvar + i * per)
                      : cd_trainer_encode(&r->tr, px, 1, N, N, mean + i * per, logvar + i * per));
        if (r->a->cache_latents && bt->deterministic[i] && idx < r->cache_n) {
            float *s = cd_malloc(sizeof(float) * 2 * per);
            memcpy(s, mean + i * per, sizeof(float) * per);
            memcpy(s + per, logvar + i * per, sizeof(float) * per);
            r->cache_mean[idx] = s;
        }
    }
    return 0;
}

static int micro_batch(cd_run *r, cd_step_stats *st, float loss_scale) {
    const cd_train_args *a = r->a;
    cd_batch bt;
    CD_TRY(cd_dataset_next(&r->data, &r->rng_aug, a->batch, &bt));
    int B = bt.B, L = CD_CLIP_MAX_LEN;
    int64_t per = (int64_t)r->lc * r->h * r->h, n = (int64_t)B * per;
    int32_t *ids = cd_malloc(sizeof(int32_t) * B * L);
    float *vae_noise = cd_malloc(sizeof(float) * n), *noise = cd_malloc(sizeof(float) * n);
    float *mean = NULL, *logvar = NULL;
    int *t = cd_malloc(sizeof(int) * B);
    int rc = 0;
    for (int i = 0; i < B && rc == 0; i++)
        rc = cd_tokenizer_encode(r->pipe.tok, bt.captions[i], L, ids + i * L, NULL);
    // Draw order as upstream: latent_dist.sample() noise, noise, timesteps.
    cd_rng_normal(&r->rng_noise, vae_noise, n);
    cd_rng_normal(&r->rng_noise, noise, n);
    for (int i = 0; i < B; i++) t[i] = cd_rng_int(&r->rng_noise, 0, r->tr.ntrain - 1);
    if (rc == 0 && a->cache_latents) {
        mean = cd_malloc(sizeof(float) * n);
        logvar = cd_malloc(sizeof(float) * n);
        rc = batch_moments(r, &bt, mean, logvar, per);
    }
    cd_train_batch tb = {
        .B = B, .n_inst = bt.n_inst, .with_prior = a->with_prior, .H = bt.N, .W = bt.N,
        .ids = ids, .pixels = bt.pixels, .vae_noise = vae_noise, .mean = mean, .logvar = logvar,
        .noise = noise, .timesteps = t, .mask = bt.mask, .loss_scale = loss_scale};
    cd_train_losses ls = {0};
    if (rc == 0) rc = r->gpu ? cd_trainer_cuda_accumulate(r->gpu, &tb, &ls, NULL)
                             : cd_trainer_accumulate(&r->tr, &tb, &ls, NULL);
    if (rc == 0) {
        st->loss += ls.loss * loss_scale;
        st->loss_inst += ls.loss_inst * loss_scale;
        st->loss_prior += ls.loss_prior * loss_scale;
        st->images += B;
    }
    free(ids); free(vae_noise); free(noise); free(mean); free(logvar); free(t);
    cd_batch_free(&bt);
    return rc;
}

int cd_run_step(cd_run *r, cd_step_stats *st) {
    memset(st, 0, sizeof *st);
    double t0 = cd_now();
    int accum = r->a->accum > 0 ? r->a->accum : 1;
    for (int k = 0; k < accum; k++)
        if (micro_batch(r, st, 1.0f / accum)) return cd_errctx("step %lld", (long long)r->step + 1);
    // The schedule advances with the optimizer steps taken: an fp16 step skipped on an overflow
    // does not advance it (accelerate's AcceleratedScheduler skips its step when the
    // optimizer's was skipped). Without fp16, adam_step == step.
    st->lr = cd_lr_at(r->lr, r->a->warmup, r->tr.adam_step);
    if (r->gpu ? cd_trainer_cuda_step(r->gpu, (float)st->lr, &st->grad_norm, &st->skipped)
               : cd_trainer_step(&r->tr, (float)st->lr, &st->grad_norm)) return -1;
    r->step++;
    st->ms = (cd_now() - t0) * 1000.0;
    return 0;
}
