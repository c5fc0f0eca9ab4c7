// CLIP vision tower: CLIPImageProcessor's recipe and the ViT forward. Shapes in model/clip.h.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "kernels/kernels.h"
#include "model/clip_internal.h"

// transformers' CLIPImageProcessor: shortest edge -> size (long edge int(size*long/short)),
// PIL resize, centre crop with top=(h-ch)//2, left=(w-cw)//2, x*rescale (double, then
// float32), (x - mean)/std in float32. pixels [3, crop_h, crop_w].
int cd_clip_preprocess(const cd_clip_preproc *p, const cd_image *im, float *pixels) {
    if (!im || !im->rgb || im->w <= 0 || im->h <= 0) return cd_err("clip preprocess: empty image");
    cd_image rs = {0};
    const cd_image *src = im;
    if (p->do_resize) {
        int sh = im->w <= im->h ? im->w : im->h, lo = im->w <= im->h ? im->h : im->w;
        int ns = p->shortest_edge, nl = (int)((double)p->shortest_edge * lo / sh);
        int w = im->w <= im->h ? ns : nl, h = im->w <= im->h ? nl : ns;
        if (w != im->w || h != im->h) {
            CD_TRY(cd_image_resize_to(im, w, h, p->resample == 2 ? CD_FILTER_BILINEAR : CD_FILTER_BICUBIC, &rs));
            src = &rs;
        }
    }
    int cw = p->do_center_crop ? p->crop_w : src->w, ch = p->do_center_crop ? p->crop_h : src->h;
    int top = (src->h - ch) / 2, left = (src->w - cw) / 2;
    if (p->do_center_crop && (top < 0 || left < 0)) {
        cd_image_free(&rs);   // transformers pads; CLIP configs never need it
        return cd_err("clip preprocess: image %dx%d smaller than the crop %dx%d", src->w, src->h, cw, ch);
    }
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++) {
                uint8_t u = src->rgb[((int64_t)(y + top) * src->w + (x + left)) * 3 + c];
                float v = p->do_rescale ? (float)(u * (double)p->rescale) : (float)u;
                if (p->do_normalize) v = (v - p->mean[c]) / p->std[c];
                pixels[((int64_t)c * ch + y) * cw + x] = v;
            }
    cd_image_free(&rs);
    return 0;
}

// pixels [B,3,S,S] -> x [B, 1+np, C]: class embedding, then patches (conv stride p, no
// bias, as a GEMM over im2col rows), plus position embeddings.
static void vision_embed(const cd_clip_vision *m, const float *pix, int B, float *x) {
    int C = m->cfg.hidden, p = m->cfg.patch_size, S = m->cfg.image_size, g = S / p, np = g * g;
    int K = 3 * p * p, T = np + 1;
    float *col = cd_malloc(sizeof(float) * (size_t)B * np * K);
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < np; i++) {
            int py = i / g, px = i % g;
            float *r = col + ((int64_t)b * np + i) * K;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < p; ky++)
                    for (int kx = 0; kx < p; kx++)
                        r[(c * p + ky) * p + kx] = pix[(((int64_t)b * 3 + c) * S + py * p + ky) * S + px * p + kx];
        }
    float *pe = cd_malloc(sizeof(float) * (size_t)B * np * C);
    cd_linear_fwd(pe, col, m->patch_w, NULL, B * np, K, C);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *xr = x + ((int64_t)b * T + t) * C;
            const float *src = t == 0 ? m->cls : pe + ((int64_t)b * np + t - 1) * C, *pos = m->pos_emb + (int64_t)t * C;
            for (int c = 0; c < C; c++) xr[c] = src[c] + pos[c];
        }
    free(col); free(pe);
}

int cd_clip_vision_forward(const cd_clip_vision *m, const float *pixels, int B, float *pooled,
                           float *emb, int normalize) {
    if (B <= 0) return cd_err("clip vision: batch %d", B);
    int C = m->cfg.hidden, g = m->cfg.image_size / m->cfg.patch_size, T = g * g + 1;
    int64_t n = (int64_t)B * T;
    float *x = cd_malloc(sizeof(float) * n * C), *y = cd_malloc(sizeof(float) * n * C);
    vision_embed(m, pixels, B, x);
    cd_layernorm_fwd(y, NULL, NULL, x, m->pre_g, m->pre_b, (int)n, C, m->cfg.eps);
    clip_dims d = {B, T, C, m->cfg.heads, m->cfg.intermediate, m->cfg.eps, m->cfg.act, 0};
    for (int i = 0; i < m->cfg.layers; i++) clip_layer_fwd(&m->L[i], &d, y, NULL);
    float *cls = cd_malloc(sizeof(float) * (size_t)B * C), *pl = cd_malloc(sizeof(float) * (size_t)B * C);
    for (int b = 0; b < B; b++) memcpy(cls + (int64_t)b * C, y + (int64_t)b * T * C, sizeof(float) * C);
    cd_layernorm_fwd(pl, NULL, NULL, cls, m->post_g, m->post_b, B, C, m->cfg.eps);
    if (pooled) memcpy(pooled, pl, sizeof(float) * (size_t)B * C);
    if (emb) {
        cd_linear_fwd(emb, pl, m->proj, NULL, B, C, m->cfg.projection_dim);
        if (normalize) cd_l2_normalize(emb, B, m->cfg.projection_dim);
    }
    free(x); free(y); free(cls); free(pl);
    return 0;
}

int cd_clip_embed_images(const cd_clip *m, const cd_image *ims, int n, float *emb, int normalize) {
    if (!m->has_vision) return cd_err("clip: no vision tower loaded (a CLIPModel folder has vision_config)");
    int S = m->vision.cfg.image_size, P = m->vision.cfg.projection_dim, chunk = 32;
    float *pix = cd_malloc(sizeof(float) * (size_t)chunk * 3 * S * S);
    int rc = 0;
    for (int b0 = 0; b0 < n && !rc; b0 += chunk) {
        int nb = n - b0 < chunk ? n - b0 : chunk;
        for (int i = 0; i < nb && !rc; i++) rc = cd_clip_preprocess(&m->prep, &ims[b0 + i], pix + (int64_t)i * 3 * S * S);
        if (!rc) rc = cd_clip_vision_forward(&m->vision, pix, nb, NULL, emb + (int64_t)b0 * P, normalize);
    }
    free(pix);
    return rc;
}
