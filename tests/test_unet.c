// UNet and VAE against the golden cases (tiny-sd fp32, tiny-sd2 fp16 / linear projections /
// heads per block), loaded from the diffusers folder and from the single file; the
// loader's error paths; training backward vs finite differences on the tiny model.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/testlib.h"
#include "model/pipeline.h"
#include "model/unet.h"
#include "model/vae.h"
#include "model/tiny.h"
#include "core/safetensors.h"
#include "core/json.h"
#include "core/fileio.h"

typedef struct { cd_st_file *f; double worst; char first[64]; double tol; } actcmp;

static void on_act(void *ctx, const char *name, const float *d, int ndim, const int64_t *shape) {
    actcmp *a = ctx;
    char key[96];
    snprintf(key, sizeof key, "act.%s", name);
    const cd_st_tensor *t = cd_st_find(a->f, key);
    if (!t) return;
    float *ref = malloc(t->numel * sizeof(float));
    cd_st_to_f32(t, ref);
    double e = tl_relerr(d, ref, t->numel);
    if (e > a->tol && !a->first[0]) snprintf(a->first, sizeof a->first, "%s (%.2e)", name, e);
    if (e > a->worst) a->worst = e;
    free(ref);
}

// Run the golden unet case on a loaded pipeline; returns max rel error of out (or 1e9).
static double unet_case(cd_pipeline *p, const char *set, char *first) {
    char *path = tl_golden_path(set);
    char *cases = cd_fmt("%s/cases/unet.safetensors", path);
    cd_st_file f;
    double err = 1e9;
    if (cd_st_open(&f, cases)) goto out;
    float *x, *t, *ctx, *ref;
    int64_t nx, nt, nc, nr;
    if (cd_st_load_f32(&f, "sample", &x, &nx) || cd_st_load_f32(&f, "timesteps", &t, &nt) ||
        cd_st_load_f32(&f, "encoder_hidden_states", &ctx, &nc) || cd_st_load_f32(&f, "out", &ref, &nr)) {
        cd_st_close(&f);
        goto out;
    }
    const cd_st_tensor *ts = cd_st_find(&f, "sample"), *cs = cd_st_find(&f, "encoder_hidden_states");
    int B = ts->shape[0], H = ts->shape[2], W = ts->shape[3], M = cs->shape[1];
    float *o = malloc(nr * sizeof(float));
    actcmp a = {&f, 0, "", 1e-4};
    if (cd_unet_forward(p->unet, o, x, t, ctx, B, H, W, M, on_act, &a) == 0) err = tl_relerr(o, ref, nr);
    if (first) strcpy(first, a.first);
    free(o); free(x); free(t); free(ctx); free(ref);
    cd_st_close(&f);
out:
    free(cases); free(path);
    return err;
}

static double vae_case(cd_pipeline *p, const char *set, double *dec_err) {
    char *path = tl_golden_path(set);
    char *cases = cd_fmt("%s/cases/vae.safetensors", path);
    cd_st_file f;
    double err = 1e9;
    *dec_err = 1e9;
    if (cd_st_open(&f, cases)) { free(cases); free(path); return err; }
    float *img, *mean, *logvar, *lat, *dec;
    int64_t n1, n2, n3, n4, n5;
    if (!cd_st_load_f32(&f, "image", &img, &n1) && !cd_st_load_f32(&f, "mean", &mean, &n2) &&
        !cd_st_load_f32(&f, "logvar", &logvar, &n3) && !cd_st_load_f32(&f, "latent", &lat, &n4) &&
        !cd_st_load_f32(&f, "decoded", &dec, &n5)) {
        const cd_st_tensor *ti = cd_st_find(&f, "image"), *tl = cd_st_find(&f, "latent");
        float *m = malloc(n2 * sizeof(float)), *lv = malloc(n3 * sizeof(float)), *d = malloc(n5 * sizeof(float));
        if (!cd_vae_encode(p->vae, m, lv, img, ti->shape[0], ti->shape[2], ti->shape[3])) {
            double e1 = tl_relerr(m, mean, n2), e2 = tl_relerr(lv, logvar, n3);
            err = e1 > e2 ? e1 : e2;
        }
        if (!cd_vae_decode(p->vae, d, lat, tl->shape[0], tl->shape[2], tl->shape[3])) *dec_err = tl_relerr(d, dec, n5);
        free(m); free(lv); free(d); free(img); free(mean); free(logvar); free(lat); free(dec);
    }
    cd_st_close(&f);
    free(cases); free(path);
    return err;
}

static void golden_set(const char *set, int single) {
    if (!tl_golden()) return;
    char *root = tl_golden_path(set);
    char *model = single ? cd_fmt("%s/single_file.safetensors", root) : cd_fmt("%s/model", root);
    char *tok = cd_fmt("%s/model/tokenizer", root);
    cd_pipeline p;
    cd_errclear();
    int rc = cd_pipeline_load(&p, model, tok, NULL, CD_LOAD_UNET | CD_LOAD_VAE);
    free(model); free(tok); free(root);
    CHECKF(rc == 0, "load %s: %s", set, cd_errmsg());
    char first[64] = "";
    double e = unet_case(&p, set, first);
    double de, ee = vae_case(&p, set, &de);
    cd_pipeline_free(&p);
    printf("# %s %s: unet out %.2e%s%s, vae moments %.2e, decoded %.2e\n", set, single ? "single file" : "folder",
           e, first[0] ? ", first block over 1e-4: " : "", first, ee, de);
    CHECKF(e < 1e-4, "%s unet rel err %.3e (first differing block: %s)", set, e, first[0] ? first : "none");
    CHECKF(ee < 1e-4, "%s vae encode rel err %.3e", set, ee);
    CHECKF(de < 1e-4, "%s vae decode rel err %.3e", set, de);
}

TEST(golden_tiny_sd_folder) { golden_set("tiny-sd", 0); }
TEST(golden_tiny_sd2_folder) { golden_set("tiny-sd2", 0); }
TEST(golden_tiny_sd_single_file) { golden_set("tiny-sd", 1); }
TEST(golden_tiny_sd2_single_file) { golden_set("tiny-sd2", 1); }

// A small random UNet (2 levels, cross-attention in the top level and the mid block).
static void small_config(cd_unet_config *c) {
    cd_unet_config_sd15(c);
    c->nblocks = 2;
    c->block_out[0] = 8; c->block_out[1] = 16;
    c->heads[0] = 2; c->heads[1] = 2;
    c->down_attn[0] = 1; c->down_attn[1] = 0;
    c->up_attn[0] = 0; c->up_attn[1] = 1;
    c->layers_per_block = 1;
    c->groups = 4;
    c->cross_dim = 6;
    c->time_embed_dim = 32;
    c->sample_size = 4;
}

static double loss(const float *o, const float *r, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)o[i] * r[i];
    return s;
}

// Backward (crossattn mode: to_q, to_k, to_v, to_out.0 of every attn2, and d context) against
// central finite differences of L = sum(r * unet(x, t, ctx)). Context row 0 is zero so the
// token-0 detach does not change the weight gradients; d context[:, 0] must be exactly 0.
TEST(unet_backward_finite_differences) {
    cd_unet_config c;
    small_config(&c);
    cd_weights ws;
    cd_weights_init(&ws, "random");
    cd_unet *u;
    CHECK_OK(cd_unet_new_random(&u, &c, &ws, 7));
    int B = 2, H = 4, W = 4, M = 4;
    int64_t nx = (int64_t)B * 4 * H * W, nc = (int64_t)B * M * c.cross_dim;
    float *x = malloc(nx * 4), *r = malloc(nx * 4), *o = malloc(nx * 4), *o2 = malloc(nx * 4);
    float *ctx = malloc(nc * 4), *dctx = malloc(nc * 4), t[2] = {999, 17};
    tl_rand(x, nx, 1); tl_rand(r, nx, 2); tl_rand(ctx, nc, 3);
    for (int b = 0; b < B; b++) memset(ctx + (int64_t)b * M * c.cross_dim, 0, c.cross_dim * 4);
    cd_param *ps;
    int np;
    CHECK_OK(cd_unet_set_train(u, CD_TRAIN_CROSSATTN, &ps, &np));
    CHECK(np == 4 * 5);   // 4 cross-attentions (down 0, mid, up 1 x2) x {q,k,v,out.w,out.b}
    CHECK_OK(cd_unet_forward_train(u, o, x, t, ctx, B, H, W, M));
    CHECK_OK(cd_unet_forward(u, o2, x, t, ctx, B, H, W, M, NULL, NULL));
    CHECKF(tl_relerr(o, o2, nx) < 1e-6, "training forward differs from inference forward");
    cd_unet_zero_grad(u);
    CHECK_OK(cd_unet_backward(u, dctx, r));
    for (int b = 0; b < B; b++)
        for (int k = 0; k < c.cross_dim; k++) CHECKF(dctx[(int64_t)b * M * c.cross_dim + k] == 0, "d context[:,0] not detached");
    {   // gradient checkpointing gives the same gradients
        float **g0 = malloc(np * sizeof(float *)), *dctx2 = malloc(nc * 4);
        for (int pi = 0; pi < np; pi++) { g0[pi] = malloc(ps[pi].numel * 4); memcpy(g0[pi], ps[pi].g, ps[pi].numel * 4); }
        cd_unet_set_checkpointing(u, 1);
        cd_unet_zero_grad(u);
        CHECK_OK(cd_unet_forward_train(u, o2, x, t, ctx, B, H, W, M));
        CHECK_OK(cd_unet_backward(u, dctx2, r));
        double e = tl_relerr(dctx2, dctx, nc);
        for (int pi = 0; pi < np; pi++) { double ep = tl_relerr(ps[pi].g, g0[pi], ps[pi].numel); if (ep > e) e = ep; free(g0[pi]); }
        free(g0); free(dctx2);
        cd_unet_set_checkpointing(u, 0);
        CHECKF(e < 1e-6, "checkpointed backward differs by %.2e", e);
    }
    const float h = 1e-2f;
    double worst = 0;
    char where[256] = "";
    for (int pi = 0; pi < np; pi++) {
        double gmax = 0, emax = 0;
        for (int64_t i = 0; i < ps[pi].numel; i++) gmax = fmax(gmax, fabs(ps[pi].g[i]));
        for (int s = 0; s < 4; s++) {
            int64_t i = (int64_t)(s * 7919 + pi * 31) % ps[pi].numel;
            float v = ps[pi].w[i];
            ps[pi].w[i] = v + h; cd_unet_forward(u, o2, x, t, ctx, B, H, W, M, NULL, NULL); double a = loss(o2, r, nx);
            ps[pi].w[i] = v - h; cd_unet_forward(u, o2, x, t, ctx, B, H, W, M, NULL, NULL); double b = loss(o2, r, nx);
            ps[pi].w[i] = v;
            emax = fmax(emax, fabs((a - b) / (2 * h) - ps[pi].g[i]));
        }
        double e = emax / (gmax + 1e-3);
        if (e > worst) { worst = e; snprintf(where, sizeof where, "%s", ps[pi].name); }
    }
    double gmax = 0, emax = 0;
    for (int64_t i = 0; i < nc; i++) gmax = fmax(gmax, fabs(dctx[i]));
    for (int s = 0; s < 12; s++) {
        int64_t i = (int64_t)(s * 613 + 5) % nc;
        if ((i / c.cross_dim) % M == 0) continue;   // token 0: detached
        float v = ctx[i];
        ctx[i] = v + h; cd_unet_forward(u, o2, x, t, ctx, B, H, W, M, NULL, NULL); double a = loss(o2, r, nx);
        ctx[i] = v - h; cd_unet_forward(u, o2, x, t, ctx, B, H, W, M, NULL, NULL); double b = loss(o2, r, nx);
        ctx[i] = v;
        emax = fmax(emax, fabs((a - b) / (2 * h) - dctx[i]));
    }
    double ec = emax / (gmax + 1e-3);
    printf("# unet backward vs finite differences: worst param %.2e (%s), context %.2e\n", worst, where, ec);
    cd_unet_free(u);
    cd_weights_free(&ws);
    free(x); free(r); free(o); free(o2); free(ctx); free(dctx);
    CHECKF(worst < 2e-2, "weight gradient off by %.2e (rel) at %s", worst, where);
    CHECKF(ec < 2e-2, "context gradient off by %.2e (rel)", ec);
}

// ---- loader errors ----
static char *write_small_model(const char *tag, const char *drop, const char *reshape, const char *cfg_extra) {
    char *dir = tl_tmpdir(tag);
    cd_unet_config c;
    small_config(&c);
    cd_weights ws;
    cd_weights_init(&ws, "random");
    cd_unet *u;
    if (cd_unet_new_random(&u, &c, &ws, 3)) return dir;
    cd_unet_free(u);
    char *ud = cd_path_join(dir, "unet");
    cd_mkdirs(ud);
    cJSON *j = cd_unet_config_to_json(&c);
    if (cfg_extra) cJSON_AddStringToObject(j, cfg_extra, "text_time");
    char *cp = cd_path_join(ud, "config.json"), *wp = cd_path_join(ud, "diffusion_pytorch_model.safetensors");
    cd_json_save(cp, j);
    cJSON_Delete(j);
    cd_st_writer *w = cd_st_writer_new();
    for (int i = 0; i < ws.n; i++) {
        if (drop && !strcmp(ws.w[i].name, drop)) continue;
        int64_t shape[8];
        memcpy(shape, ws.w[i].shape, sizeof shape);
        if (reshape && !strcmp(ws.w[i].name, reshape)) shape[0] = 1, shape[1] = ws.w[i].numel;
        cd_st_writer_add_f32(w, ws.w[i].name, CD_F16, reshape && !strcmp(ws.w[i].name, reshape) ? 2 : ws.w[i].ndim, shape, ws.w[i].data);
    }
    cd_st_writer_save(w, wp);
    cd_st_writer_free(w);
    cd_weights_free(&ws);
    free(ud); free(cp); free(wp);
    return dir;
}

TEST(loader_ok_small_model_fp16) {
    char *dir = write_small_model("unet_ok", NULL, NULL, NULL);
    cd_pipeline p;
    CHECK_OK(cd_pipeline_load(&p, dir, NULL, NULL, CD_LOAD_UNET));
    CHECK(p.nunknown == 0);
    cd_pipeline_free(&p);
    free(dir);
}

TEST(loader_missing_tensor) {
    char *dir = write_small_model("unet_missing", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", NULL, NULL);
    cd_pipeline p;
    CHECK_ERR(cd_pipeline_load(&p, dir, NULL, NULL, CD_LOAD_UNET), "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight' [16,6] missing");
    free(dir);
}

TEST(loader_wrong_shape) {
    char *dir = write_small_model("unet_shape", NULL, "conv_in.weight", NULL);
    cd_pipeline p;
    CHECK_ERR(cd_pipeline_load(&p, dir, NULL, NULL, CD_LOAD_UNET), "tensor 'conv_in.weight' has shape [1,288], expected [8,4,3,3]");
    free(dir);
}

TEST(loader_unknown_architecture) {
    char *dir = write_small_model("unet_sdxl", NULL, NULL, "addition_embed_type");
    cd_pipeline p;
    CHECK_ERR(cd_pipeline_load(&p, dir, NULL, NULL, CD_LOAD_UNET), "addition_embed_type");
    char *idx = cd_path_join(dir, "model_index.json");
    const char *txt = "{\"_class_name\": \"StableDiffusionXLPipeline\", \"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"]}";
    cd_write_file_atomic(idx, txt, strlen(txt));
    CHECK_ERR(cd_pipeline_load(&p, dir, NULL, NULL, CD_LOAD_UNET), "SDXL");
    free(idx);
    free(dir);
}

TEST(loader_truncated_and_bad_header) {
    char *dir = write_small_model("unet_trunc", NULL, NULL, NULL);
    char *wp = cd_fmt("%s/unet/diffusion_pytorch_model.safetensors", dir);
    char *data;
    size_t len;
    CHECK_OK(cd_read_file(wp, &data, &len, 0));
    CHECK_OK(cd_write_file_atomic(wp, data, len - 100));
    cd_pipeline p;
    CHECK_ERR(cd_pipeline_load(&p, dir, NULL, NULL, CD_LOAD_UNET), "diffusion_pytorch_model.safetensors");
    memcpy(data + 8, "{\"x\":[", 6);   // corrupt the JSON header
    CHECK_OK(cd_write_file_atomic(wp, data, len));
    CHECK_ERR(cd_pipeline_load(&p, dir, NULL, NULL, CD_LOAD_UNET), "diffusion_pytorch_model.safetensors");
    free(data); free(wp); free(dir);
}

TEST(loader_pickle_and_tokenizer) {
    char *dir = tl_tmpdir("unet_pickle");
    char *ck = cd_path_join(dir, "model.ckpt");
    CHECK_OK(cd_write_file_atomic(ck, "PK\003\004junk", 8));
    cd_pipeline p;
    CHECK_ERR(cd_pipeline_load(&p, ck, NULL, NULL, CD_LOAD_UNET), "safetensors");
    free(ck);
    free(dir);
    if (!tl_golden()) return;
    char *sf = tl_golden_path("tiny-sd/single_file.safetensors");
    CHECK_ERR(cd_pipeline_load(&p, sf, NULL, NULL, CD_LOAD_ALL), "--tokenizer");
    free(sf);
}

// Single file with no config folder: the architecture is inferred from shapes (SD1 rule:
// 8 heads, which tiny-sd follows) and gives the golden output.
TEST(golden_single_file_inferred_config) {
    if (!tl_golden()) return;
    char *sf = tl_golden_path("tiny-sd/single_file.safetensors");
    cd_pipeline p;
    cd_errclear();
    int rc = cd_pipeline_load(&p, sf, NULL, NULL, CD_LOAD_UNET);
    free(sf);
    CHECKF(rc == 0, "%s", cd_errmsg());
    CHECK(p.family == CD_FAMILY_SD1 && p.unet_cfg.block_out[1] == 64 && p.unet_cfg.heads[0] == 8);
    CHECK(!strcmp(cd_pipeline_prediction_type(&p), "epsilon"));
    double e = unet_case(&p, "tiny-sd", NULL);
    cd_pipeline_free(&p);
    CHECKF(e < 1e-4, "rel err %.3e", e);
}

TEST(tiny_model_writer) {
    char *dir = tl_tmpdir("tiny_writer");
    CHECK_OK(cd_tiny_unet_vae_write(dir, 42));
    cd_pipeline p;
    CHECK_OK(cd_pipeline_load(&p, dir, NULL, NULL, CD_LOAD_UNET | CD_LOAD_VAE));
    int64_t nx = 4 * 16 * 16, nc = 77 * 32;
    float *x = malloc(nx * 4), *ctx = malloc(nc * 4), *o = malloc(nx * 4), t = 500, *img = malloc(3 * 128 * 128 * 4);
    tl_rand(x, nx, 1); tl_rand(ctx, nc, 2);
    CHECK_OK(cd_unet_forward(p.unet, o, x, &t, ctx, 1, 16, 16, 77, NULL, NULL));
    CHECK_OK(cd_vae_decode(p.vae, img, x, 1, 16, 16));
    double s = 0;
    for (int64_t i = 0; i < nx; i++) s += fabs(o[i]);
    CHECK(isfinite(s) && s > 0);
    CHECK(isfinite(img[0]));
    cd_pipeline_free(&p);
    free(x); free(ctx); free(o); free(img); free(dir);
}

// The text encoder renamed from the single file (v1 transformer.*, v2 OpenCLIP with in_proj
// split) gives the golden last_hidden_state.
static void text_single_file(const char *set) {
    if (!tl_golden()) return;
    char *root = tl_golden_path(set);
    char *sf = cd_fmt("%s/single_file.safetensors", root), *tok = cd_fmt("%s/model/tokenizer", root);
    char *cases = cd_fmt("%s/cases/text_encoder.safetensors", root);
    cd_pipeline p;
    cd_errclear();
    int rc = cd_pipeline_load(&p, sf, tok, NULL, CD_LOAD_TEXT | CD_LOAD_TOKENIZER);
    free(sf); free(tok); free(root);
    if (rc) { free(cases); CHECKF(0, "load: %s", cd_errmsg()); }
    cd_st_file f;
    float *ids = NULL, *ref = NULL;
    int64_t ni, nr;
    rc = cd_st_open(&f, cases);
    free(cases);
    if (!rc) rc = cd_st_load_f32(&f, "input_ids", &ids, &ni) || cd_st_load_f32(&f, "last_hidden_state", &ref, &nr);
    CHECKF(rc == 0, "%s", cd_errmsg());
    int B = ni / 77;
    int32_t *iid = malloc(ni * sizeof(int32_t));
    for (int64_t i = 0; i < ni; i++) iid[i] = (int32_t)ids[i];
    float *hid = malloc(nr * 4);
    rc = cd_clip_text_forward(&p.text, iid, B, 77, hid, NULL);
    double e = rc ? 1e9 : tl_relerr(hid, ref, nr);
    printf("# %s single-file text encoder: %.2e, %d unknown tensors\n", set, e, p.nunknown);
    int nunk = p.nunknown;
    free(iid); free(hid); free(ids); free(ref);
    cd_st_close(&f);
    cd_pipeline_free(&p);
    CHECKF(e < 1e-4, "%s text encoder from the single file: rel err %.3e", set, e);
    CHECKF(nunk == 0, "%d unknown tensors", nunk);
}
// A native OpenCLIP layout (transformer.resblocks.*, token_embedding, positional_embedding,
// ln_final, text_projection, one extra last layer that SD2 skips) built from tiny-sd2's
// single file must give the same golden text encoder output.
TEST(golden_text_single_file_openclip_native) {
    if (!tl_golden()) return;
    char *sf = tl_golden_path("tiny-sd2/single_file.safetensors");
    cd_st_file f;
    CHECK_OK(cd_st_open(&f, sf));
    free(sf);
    char *dir = tl_tmpdir("openclip_native"), *out = cd_path_join(dir, "native.safetensors");
    cd_st_writer *w = cd_st_writer_new();
    const char *P = "cond_stage_model.model.";
    for (int i = 0; i < f.n; i++) {
        const cd_st_tensor *t = &f.t[i];
        float *d = malloc(t->numel * 4);
        cd_st_to_f32(t, d);
        const char *k = t->name;
        char *nk = NULL;
        if (!strncmp(k, P, strlen(P))) {
            const char *r = k + strlen(P);
            if (!strcmp(r, "text_model.embeddings.token_embedding.weight")) nk = cd_fmt("%stoken_embedding.weight", P);
            else if (!strcmp(r, "text_model.embeddings.position_embedding.weight")) nk = cd_fmt("%spositional_embedding", P);
            else if (!strncmp(r, "text_model.final_layer_norm.", 28)) nk = cd_fmt("%sln_final.%s", P, r + 28);
            else if (!strncmp(r, "resblocks.", 10)) {
                nk = cd_fmt("%stransformer.%s", P, r);
                if (!strncmp(r, "resblocks.1.", 12)) {   // an extra last layer (skipped: penultimate)
                    char *extra = cd_fmt("%stransformer.resblocks.2.%s", P, r + 12);
                    cd_st_writer_add_f32(w, extra, CD_F16, t->ndim, t->shape, d);
                    free(extra);
                }
            }
        }
        cd_st_writer_add_f32(w, nk ? nk : k, t->dtype, t->ndim, t->shape, d);
        free(nk);
        free(d);
    }
    int64_t ps[2] = {32, 32};
    float proj[32 * 32] = {0};
    char *pk = cd_fmt("%stext_projection", P);
    cd_st_writer_add_f32(w, pk, CD_F32, 2, ps, proj);
    free(pk);
    cd_st_close(&f);
    CHECK_OK(cd_st_writer_save(w, out));
    cd_st_writer_free(w);
    char *root = tl_golden_path("tiny-sd2");
    char *tok = cd_fmt("%s/model/tokenizer", root), *cases = cd_fmt("%s/cases/text_encoder.safetensors", root);
    free(root);
    cd_pipeline p;
    cd_errclear();
    int rc = cd_pipeline_load(&p, out, tok, NULL, CD_LOAD_TEXT);
    free(tok); free(out); free(dir);
    if (rc) { free(cases); CHECKF(0, "load: %s", cd_errmsg()); }
    float *ids = NULL, *ref = NULL;
    int64_t ni, nr;
    rc = cd_st_open(&f, cases) || cd_st_load_f32(&f, "input_ids", &ids, &ni) || cd_st_load_f32(&f, "last_hidden_state", &ref, &nr);
    free(cases);
    CHECKF(rc == 0, "%s", cd_errmsg());
    int32_t *iid = malloc(ni * sizeof(int32_t));
    for (int64_t i = 0; i < ni; i++) iid[i] = (int32_t)ids[i];
    float *hid = malloc(nr * 4);
    rc = cd_clip_text_forward(&p.text, iid, (int)(ni / 77), 77, hid, NULL);
    double e = rc ? 1e9 : tl_relerr(hid, ref, nr);
    int nunk = p.nunknown, layers = p.text.cfg.layers;
    free(iid); free(hid); free(ids); free(ref);
    cd_st_close(&f);
    cd_pipeline_free(&p);
    CHECKF(layers == 2, "%d text layers, expected 2 (penultimate of 3)", layers);
    CHECKF(e < 1e-4, "native OpenCLIP text encoder rel err %.3e", e);
    CHECKF(nunk == 0, "%d unknown tensors", nunk);
}

TEST(golden_text_single_file_v1) { text_single_file("tiny-sd"); }
TEST(golden_text_single_file_v2) { text_single_file("tiny-sd2"); }

int main(void) {
    RUN(golden_tiny_sd_folder);
    RUN(golden_tiny_sd2_folder);
    RUN(golden_tiny_sd_single_file);
    RUN(golden_tiny_sd2_single_file);
    RUN(golden_single_file_inferred_config);
    RUN(golden_text_single_file_v1);
    RUN(golden_text_single_file_v2);
    RUN(golden_text_single_file_openclip_native);
    RUN(unet_backward_finite_differences);
    RUN(loader_ok_small_model_fp16);
    RUN(loader_missing_tensor);
    RUN(loader_wrong_shape);
    RUN(loader_unknown_architecture);
    RUN(loader_truncated_and_bad_header);
    RUN(loader_pickle_and_tokenizer);
    RUN(tiny_model_writer);
    return tl_done();
}
