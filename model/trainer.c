// Custom Diffusion training core: see model/trainer.h. Loss and gradient formulas follow
// diffusers' examples/custom_diffusion/train_custom_diffusion.py (fixed multi-token
// gradient mask, token-0 K/V detach inside the UNet backward).
#include "model/trainer.h"
#include "model/scheduler.h"
#include "model/vae.h"
#include "kernels/kernels.h"
#include "core/err.h"
#include "core/log.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cd_trainer_opts_default(cd_trainer_opts *o) {
    memset(o, 0, sizeof *o);
    o->mode = CD_TRAIN_CROSSATTN_KV;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->weight_decay = 1e-2f;
    o->max_grad_norm = 1.0f;
    o->prior_loss_weight = 1.0f;
}

// Split "a+b+c" on '+' (spaces around parts trimmed) into heap strings.
static int split_plus(const char *s, char **out, int cap, int *n, const char *what) {
    *n = 0;
    if (!s || !*s) return 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, '+');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ')) { p++; len--; }
        while (len && p[len - 1] == ' ') len--;
        if (!len) return cd_err("%s '%s': empty part between '+' separators", what, s);
        if (*n >= cap) return cd_err("%s '%s': more than %d parts", what, s, cap);
        char *t = cd_malloc(len + 1);
        memcpy(t, p, len);
        t[len] = 0;
        out[(*n)++] = t;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int setup_tokens(cd_trainer *tr, const char *modifiers, const char *initializers) {
    cd_tokenizer *tok = tr->pipe->tok;
    char *inits[CD_TRAINER_MAX_TOKENS];
    int ninit = 0, rc = 0;
    CD_TRY(split_plus(modifiers, tr->mod_tok, CD_TRAINER_MAX_TOKENS, &tr->nmod, "--modifier-token"));
    if (split_plus(initializers, inits, CD_TRAINER_MAX_TOKENS, &ninit, "--initializer-token")) return -1;
    if (tr->nmod > ninit) {
        rc = cd_err("%d modifier tokens ('%s') but only %d initializer tokens ('%s'): give one "
                    "'+'-separated initializer per modifier", tr->nmod, modifiers, ninit,
                    initializers ? initializers : "");
        goto done;
    }
    for (int i = 0; i < tr->nmod && rc == 0; i++) {
        int have = cd_tokenizer_piece_id(tok, tr->mod_tok[i]);
        if (have >= 0) {
            rc = cd_err("modifier token '%s' is already in the tokenizer's vocabulary (id %d): "
                        "choose a token the vocabulary does not have, e.g. <new%d>",
                        tr->mod_tok[i], have, i + 1);
            break;
        }
        int init = cd_tokenizer_piece_id(tok, inits[i]);
        if (init < 0 || init >= cd_tokenizer_base_size(tok)) {
            rc = cd_err("initializer token '%s' is not a single piece of the vocabulary; give a "
                        "raw vocabulary piece (e.g. 'ktn', 'pll', 'ucd')", inits[i]);
            break;
        }
        tr->init_id[i] = init;
        if (cd_tokenizer_add_token(tok, tr->mod_tok[i], &tr->mod_id[i])) { rc = -1; break; }
    }
    if (rc == 0 && tr->nmod > 0) {
        rc = cd_clip_text_resize_tokens(&tr->text, cd_tokenizer_size(tok));
        for (int i = 0; i < tr->nmod && rc == 0; i++)
            rc = cd_clip_text_copy_row(&tr->text, tr->mod_id[i], tr->init_id[i]);
    }
done:
    for (int i = 0; i < ninit; i++) free(inits[i]);
    return rc;
}

static int setup_params(cd_trainer *tr) {
    cd_param *up = NULL;
    int nup = 0;
    CD_TRY(cd_unet_set_train(tr->pipe->unet, tr->o.mode, &up, &nup));
    cd_unet_set_checkpointing(tr->pipe->unet, tr->o.gradient_checkpointing);
    int C = tr->tcfg.hidden;
    tr->n_unet = nup;
    tr->nparams = nup + tr->nmod;
    tr->params = cd_calloc(tr->nparams, sizeof(cd_param));
    for (int i = 0; i < nup; i++) tr->params[i] = up[i];
    for (int i = 0; i < tr->nmod; i++) {
        cd_param *p = &tr->params[nup + i];
        snprintf(p->name, sizeof p->name, "token_embedding.%s", tr->mod_tok[i]);
        p->w = tr->text.tok_emb + (int64_t)tr->mod_id[i] * C;
        p->g = cd_calloc(C, sizeof(float));
        p->ndim = 1;
        p->shape[0] = C;
        p->numel = C;
    }
    tr->total = 0;
    for (int i = 0; i < tr->nparams; i++) tr->total += tr->params[i].numel;
    tr->adam_m = cd_calloc(tr->total, sizeof(float));
    tr->adam_v = cd_calloc(tr->total, sizeof(float));
    return 0;
}

int cd_trainer_init(cd_trainer *tr, cd_pipeline *p, const char *modifiers,
                    const char *initializers, const cd_trainer_opts *o) {
    memset(tr, 0, sizeof *tr);
    tr->pipe = p;
    if (o) tr->o = *o;
    else cd_trainer_opts_default(&tr->o);
    if (!p->unet || !p->tok || !p->text_config || !p->scheduler_config)
        return cd_err("%s: training needs the UNet, text encoder, tokenizer and scheduler config",
                      p->model_path ? p->model_path : "model");
    CD_TRY(cd_clip_text_config_parse(p->text_config, "text_encoder config", &tr->tcfg));
    CD_TRY(cd_clip_text_bind(&tr->text, &tr->tcfg, &p->text_w));
    const char *pt = cd_pipeline_prediction_type(p);
    tr->vpred = pt && strcmp(pt, "v_prediction") == 0;
    if (pt && !tr->vpred && strcmp(pt, "epsilon") != 0)
        return cd_err("%s: prediction_type '%s' is not supported for training (epsilon or v_prediction)",
                      p->model_path, pt);
    tr->scaling = p->vae ? cd_vae_cfg(p->vae)->scaling_factor : p->vae_cfg.scaling_factor;
    if (!(tr->scaling > 0)) tr->scaling = 0.18215f;
    cd_sched_config sc;
    CD_TRY(cd_sched_config_from_json(&sc, p->scheduler_config, "scheduler_config.json"));
    tr->ntrain = sc.num_train_timesteps;
    tr->alphas_cumprod = cd_malloc(sizeof(float) * tr->ntrain);
    CD_TRY(cd_sched_alphas_cumprod(&sc, tr->alphas_cumprod));
    CD_TRY(setup_tokens(tr, modifiers, initializers));
    return setup_params(tr);
}

void cd_trainer_free(cd_trainer *tr) {
    if (!tr) return;
    for (int i = tr->n_unet; i < tr->nparams; i++) free(tr->params[i].g);
    free(tr->params);
    for (int i = 0; i < tr->nmod; i++) free(tr->mod_tok[i]);
    free(tr->alphas_cumprod);
    free(tr->adam_m);
    free(tr->adam_v);
    cd_clip_text_release(&tr->text);
    memset(tr, 0, sizeof *tr);
}

int cd_trainer_find_param(const cd_trainer *tr, const char *name) {
    for (int i = 0; i < tr->nparams; i++)
        if (strcmp(tr->params[i].name, name) == 0) return i;
    return -1;
}

int cd_trainer_encode(cd_trainer *tr, const float *pixels, int B, int H, int W, float *mean,
                      float *logvar) {
    if (!tr->pipe->vae) return cd_err("%s: the VAE encoder is not loaded", tr->pipe->model_path);
    return cd_vae_encode(tr->pipe->vae, mean, logvar, pixels, B, H, W);
}

void cd_trainer_loss(const cd_trainer *tr, const cd_train_batch *b, const float *pred,
                     const float *target, float *dpred, int lc, int hw, cd_train_losses *out) {
    int64_t per = (int64_t)lc * hw;
    int ninst = b->with_prior ? b->n_inst : b->B;
    int nprior = b->with_prior ? b->B - b->n_inst : 0;
    float *m4 = cd_malloc(sizeof(float) * per);
    double inst = 0;
    for (int i = 0; i < ninst; i++) {
        double msum = 0;
        for (int c = 0; c < lc; c++)
            for (int k = 0; k < hw; k++) {
                float mv = b->mask ? b->mask[(int64_t)i * hw + k] : 1.0f;
                m4[(int64_t)c * hw + k] = mv;
                if (c == 0) msum += mv;
            }
        // sum over channels and pixels / count of mask pixels (4x a masked mean, Q1);
        // an empty mask (possible at tiny resolutions) contributes nothing instead of NaN.
        float sc = msum > 0 ? (float)(b->loss_scale / (ninst * msum)) : 0.0f;
        double s = cd_mse_fwd_bwd(dpred + i * per, pred + i * per, target + i * per, m4, per, sc);
        if (msum > 0) inst += s / msum;
    }
    free(m4);
    out->loss_inst = ninst ? inst / ninst : 0;
    out->loss_prior = 0;
    if (nprior > 0) {
        int64_t n = (int64_t)nprior * per;
        float sc = (float)(b->loss_scale * tr->o.prior_loss_weight / (double)n);
        double s = cd_mse_fwd_bwd(dpred + ninst * per, pred + ninst * per, target + ninst * per,
                                  NULL, n, sc);
        out->loss_prior = s / n;
    }
    out->loss = out->loss_inst + tr->o.prior_loss_weight * out->loss_prior;
}

void cd_trainer_latents(const cd_trainer *tr, const float *mean, const float *logvar,
                        const float *vae_noise, float *z, int64_t n) {
    cd_vae_sample(z, mean, logvar, vae_noise, n);
    cd_scale(z, tr->scaling, n);
}

void cd_trainer_noisy(const cd_trainer *tr, const cd_train_batch *b, const float *z, float *zt,
                      float *target, float *tf, int64_t per) {
    int B = b->B;
    cd_sched_add_noise(tr->alphas_cumprod, zt, z, b->noise, b->timesteps, B, per);
    if (tr->vpred) cd_sched_velocity(tr->alphas_cumprod, target, z, b->noise, b->timesteps, B, per);
    else memcpy(target, b->noise, sizeof(float) * B * per);
    for (int i = 0; i < B; i++) tf[i] = (float)b->timesteps[i];
}

int cd_trainer_batch_shape(const cd_trainer *tr, const cd_train_batch *b, int *lc, int *h, int *w) {
    const cd_unet_config *uc = cd_unet_cfg(tr->pipe->unet);
    int f = 1 << (tr->pipe->vae_cfg.nblocks > 0 ? tr->pipe->vae_cfg.nblocks - 1 : 3);
    *lc = uc->in_channels;
    *h = b->H / f;
    *w = b->W / f;
    if (b->B < 1 || *h < 1 || *w < 1)
        return cd_err("train batch: %d rows of %dx%d pixels (latent %dx%d)", b->B, b->H, b->W, *h, *w);
    if (b->with_prior && (b->n_inst <= 0 || b->n_inst >= b->B))
        return cd_err("train batch: %d rows with %d instance rows: prior preservation needs both", b->B, b->n_inst);
    if (tr->tcfg.hidden != uc->cross_dim)
        return cd_err("%s: text encoder width %d but the UNet's cross_attention_dim is %d",
                      tr->pipe->model_path, tr->tcfg.hidden, uc->cross_dim);
    for (int i = 0; i < b->B; i++)
        if (b->timesteps[i] < 0 || b->timesteps[i] >= tr->ntrain)
            return cd_err("train batch: timestep %d outside [0, %d)", b->timesteps[i], tr->ntrain);
    return 0;
}

int cd_trainer_batch_uses_modifiers(const cd_trainer *tr, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < tr->nmod; k++)
            if (ids[i] == tr->mod_id[k]) return 1;
    return 0;
}

// Scaled latents z[B, lc, h, w] from pixels (or cached moments) and the sample noise.
static int make_latents(cd_trainer *tr, const cd_train_batch *b, float *z, int64_t n) {
    const float *mean = b->mean, *logvar = b->logvar;
    float *mbuf = NULL, *lbuf = NULL;
    if (!mean) {
        if (!b->pixels) return cd_err("train batch: neither pixels nor cached latents");
        mbuf = cd_malloc(sizeof(float) * n);
        lbuf = cd_malloc(sizeof(float) * n);
        if (cd_trainer_encode(tr, b->pixels, b->B, b->H, b->W, mbuf, lbuf)) {
            free(mbuf);
            free(lbuf);
            return -1;
        }
        mean = mbuf;
        logvar = lbuf;
    }
    cd_trainer_latents(tr, mean, logvar, b->vae_noise, z, n);
    free(mbuf);
    free(lbuf);
    return 0;
}

// Text encoder backward to the modifier rows: dctx [B,L,C] -> params' row gradients.
static int text_backward(cd_trainer *tr, const cd_clip_text_acts *acts, const int32_t *ids,
                         int B, int L, const float *dctx) {
    int C = tr->tcfg.hidden;
    if (!cd_trainer_batch_uses_modifiers(tr, ids, B * L)) return 0;
    float *dx = cd_malloc(sizeof(float) * (int64_t)B * L * C);
    int rc = cd_clip_text_backward(&tr->text, acts, dctx, dx, NULL, NULL);
    for (int i = 0; i < B * L && rc == 0; i++)
        for (int k = 0; k < tr->nmod; k++)
            if (ids[i] == tr->mod_id[k]) cd_acc(tr->params[tr->n_unet + k].g, dx + (int64_t)i * C, C);
    free(dx);
    return rc;
}

int cd_trainer_accumulate(cd_trainer *tr, const cd_train_batch *b, cd_train_losses *out,
                          float *latents_out) {
    int lc, h, w, B = b->B, L = CD_CLIP_MAX_LEN, C = tr->tcfg.hidden;
    CD_TRY(cd_trainer_batch_shape(tr, b, &lc, &h, &w));
    int64_t per = (int64_t)lc * h * w, n = (int64_t)B * per;
    float *z = cd_malloc(sizeof(float) * n), *zt = cd_malloc(sizeof(float) * n);
    float *target = cd_malloc(sizeof(float) * n), *pred = cd_malloc(sizeof(float) * n);
    float *dpred = cd_malloc(sizeof(float) * n), *tf = cd_malloc(sizeof(float) * B);
    float *ctx = cd_malloc(sizeof(float) * (int64_t)B * L * C), *dctx = NULL;
    cd_clip_text_acts acts;
    memset(&acts, 0, sizeof acts);
    int rc = make_latents(tr, b, z, n);
    if (rc == 0 && latents_out) memcpy(latents_out, z, sizeof(float) * n);
    if (rc == 0) {
        cd_trainer_noisy(tr, b, z, zt, target, tf, per);
        rc = tr->nmod ? cd_clip_text_forward_train(&tr->text, b->ids, B, L, ctx, &acts)
                      : cd_clip_text_forward(&tr->text, b->ids, B, L, ctx, NULL);
    }
    if (rc == 0) rc = cd_unet_forward_train(tr->pipe->unet, pred, zt, tf, ctx, B, h, w, L);
    if (rc == 0) {
        cd_trainer_loss(tr, b, pred, target, dpred, lc, h * w, out);
        if (tr->nmod) dctx = cd_malloc(sizeof(float) * (int64_t)B * L * C);
        rc = cd_unet_backward(tr->pipe->unet, dctx, dpred);
    }
    if (rc == 0 && tr->nmod) rc = text_backward(tr, &acts, b->ids, B, L, dctx);
    if (tr->nmod) cd_clip_text_acts_free(&acts);
    free(z); free(zt); free(target); free(pred); free(dpred); free(tf); free(ctx); free(dctx);
    return rc;
}

double cd_trainer_grad_norm(const cd_trainer *tr) {
    double s = 0;
    for (int i = 0; i < tr->nparams; i++) s += cd_sumsq(tr->params[i].g, tr->params[i].numel);
    return sqrt(s);
}

void cd_trainer_zero_grad(cd_trainer *tr) {
    cd_unet_zero_grad(tr->pipe->unet);
    for (int i = 0; i < tr->nparams; i++) memset(tr->params[i].g, 0, sizeof(float) * tr->params[i].numel);
}

int cd_trainer_step(cd_trainer *tr, float lr, double *grad_norm) {
    double norm = cd_trainer_grad_norm(tr);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) return cd_err("gradient norm is %g at optimizer step %lld: training diverged",
                                       norm, (long long)tr->adam_step + 1);
    if (tr->o.max_grad_norm > 0) {
        // torch.nn.utils.clip_grad_norm_: coef = max / (norm + 1e-6), clamped to 1.
        float coef = (float)(tr->o.max_grad_norm / (norm + 1e-6));
        if (coef < 1.0f)
            for (int i = 0; i < tr->nparams; i++) cd_scale(tr->params[i].g, coef, tr->params[i].numel);
    }
    tr->adam_step++;
    int64_t off = 0;
    for (int i = 0; i < tr->nparams; i++) {
        cd_param *p = &tr->params[i];
        cd_adamw_step(p->w, p->g, tr->adam_m + off, tr->adam_v + off, p->numel, lr, tr->o.beta1,
                      tr->o.beta2, tr->o.eps, tr->o.weight_decay, (int)tr->adam_step);
        off += p->numel;
    }
    cd_trainer_zero_grad(tr);
    return 0;
}
