// Text-to-image sampling (see model/sampler.h).
#include "model/sampler.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "core/err.h"
#include "core/log.h"
#include "core/progress.h"

int cd_sampler_init(cd_sampler *s, cd_pipeline *p) {
    memset(s, 0, sizeof *s);
    s->pipe = p;
    if (!p->unet || !p->vae || !p->has_text || !p->tok)
        return cd_err("%s: sampling needs the UNet, VAE decoder, text encoder and tokenizer loaded",
                      p->model_path ? p->model_path : "model");
    s->ctx_len = CD_CLIP_MAX_LEN;
    s->ctx_dim = p->text.cfg.hidden;
    if (s->ctx_dim != cd_unet_cfg(p->unet)->cross_dim)
        return cd_err("%s: text encoder width %d differs from the UNet's cross_attention_dim %d",
                      p->model_path, s->ctx_dim, cd_unet_cfg(p->unet)->cross_dim);
    s->scaling = cd_vae_cfg(p->vae)->scaling_factor;
    if (!(s->scaling > 0)) s->scaling = 0.18215f;
    s->f = cd_vae_downscale(p->vae);
    return 0;
}

void cd_sampler_free(cd_sampler *s) { memset(s, 0, sizeof *s); }

int cd_sampler_apply_deltas(cd_sampler *s, cd_delta *const *ds, int n, int check_base) {
    if (n == 0) return 0;
    CD_TRY(cd_delta_apply(ds, n, &s->pipe->unet_w, s->pipe->tok, &s->pipe->text, check_base));
    return cd_unet_rebind(s->pipe->unet);
}

// Gives back the resident pages of a component's memory-mapped weight files while it is not
// needed (the text encoder after a prompt, the UNet during the VAE decode). F32 tensors are
// used in place from read-only private maps, so the pages are just mapped again from the page
// cache when touched (the UNet's 3.4 GB in well under a second, once per image). Peak RSS of
// 512x512 SD1.5 sampling: 4.84 -> 3.73 GB (bench/sd15-memory.sh). Owned tensors (fp16
// converted, delta-replaced) are not in the maps and are untouched.
static void release_mapped_pages(cd_weights *ws) {
    for (int i = 0; i < ws->nfiles; i++)
        if (ws->files[i] && ws->files[i]->map.size) madvise(ws->files[i]->map.data, ws->files[i]->map.size, MADV_DONTNEED);
}

int cd_sampler_encode(cd_sampler *s, const char *prompt, float *ctx) {
    int32_t ids[CD_CLIP_MAX_LEN];
    CD_TRY(cd_tokenizer_encode(s->pipe->tok, prompt, s->ctx_len, ids, NULL));
    int rc = cd_clip_text_forward(&s->pipe->text, ids, 1, s->ctx_len, ctx, NULL);
    release_mapped_pages(&s->pipe->text_w);
    return rc;
}

int cd_sampler_denoise(cd_sampler *s, cd_scheduler *sch, const float *ctx_cond,
                       const float *ctx_uncond, float guidance, float *lat, int h, int w,
                       cd_sampler_step_fn cb, void *cb_ctx) {
    const cd_unet_config *uc = cd_unet_cfg(s->pipe->unet);
    int C = uc->in_channels, cfg = guidance > 1.0f;
    int B = cfg ? 2 : 1;
    int64_t n = (int64_t)C * h * w, nctx = (int64_t)s->ctx_len * s->ctx_dim;
    if (uc->out_channels != C) return cd_err("UNet out_channels %d != in_channels %d", uc->out_channels, C);
    float *xin = cd_malloc(sizeof(float) * n * B), *eps = cd_malloc(sizeof(float) * n * B);
    float *ctx = cd_malloc(sizeof(float) * nctx * B);
    if (cfg) {   // batch [uncond, cond], as diffusers concatenates them
        memcpy(ctx, ctx_uncond, sizeof(float) * nctx);
        memcpy(ctx + nctx, ctx_cond, sizeof(float) * nctx);
    } else {
        memcpy(ctx, ctx_cond, sizeof(float) * nctx);
    }
    for (int64_t k = 0; k < n; k++) lat[k] *= sch->init_noise_sigma;
    int rc = 0;
    for (int i = 0; i < sch->n && !rc; i++) {
        double t0 = cd_now();
        cd_sched_scale_input(sch, i, xin, lat, n);
        if (cfg) memcpy(xin + n, xin, sizeof(float) * n);
        float t[2] = {sch->timesteps[i], sch->timesteps[i]};
        rc = cd_unet_forward(s->pipe->unet, eps, xin, t, ctx, B, h, w, s->ctx_len, NULL, NULL);
        if (rc) break;
        if (cfg)
            for (int64_t k = 0; k < n; k++) eps[k] = eps[k] + guidance * (eps[n + k] - eps[k]);
        rc = cd_sched_step(sch, i, eps, lat, n);
        if (cb) cb(cb_ctx, i, sch->n, cd_now() - t0);
    }
    free(xin); free(eps); free(ctx);
    return rc;
}

void cd_sampler_to_uint8(const float *img, int H, int W, uint8_t *rgb) {
    int64_t hw = (int64_t)H * W;
    for (int c = 0; c < 3; c++)
        for (int64_t k = 0; k < hw; k++) {
            float x = img[c * hw + k] / 2 + 0.5f;
            x = x < 0 ? 0 : x > 1 ? 1 : x;
            rgb[k * 3 + c] = (uint8_t)nearbyintf(x * 255.0f);
        }
}

int cd_sampler_decode(cd_sampler *s, const float *lat, int h, int w, float *img, cd_image *out) {
    int lc = cd_vae_cfg(s->pipe->vae)->latent_channels;
    int64_t n = (int64_t)lc * h * w;
    int H = h * s->f, W = w * s->f;
    float *z = cd_malloc(sizeof(float) * n);
    for (int64_t k = 0; k < n; k++) z[k] = lat[k] / s->scaling;
    float *im = img ? img : cd_malloc(sizeof(float) * 3 * (size_t)H * W);
    release_mapped_pages(&s->pipe->unet_w);
    int rc = cd_vae_decode(s->pipe->vae, im, z, 1, h, w);
    free(z);
    if (!rc && out) {
        out->w = W; out->h = H;
        out->rgb = cd_malloc((size_t)H * W * 3);
        cd_sampler_to_uint8(im, H, W, out->rgb);
    }
    if (!img) free(im);
    return rc;
}
