// Deltas: project-format round trip (full, low-rank, tokens, metadata), fingerprint check,
// diffusers Custom Diffusion layout and textual-inversion reading (golden files), applying
// several deltas (tokens into tokenizer + embedding table), conflicts, error messages;
// compression (rank-r difference reconstructed exactly, Custom Diffusion's ratio rule) and
// the closed-form merge (constraints W c_i = W_i c_i hold).
#include "tests/testlib.h"
#include "model/delta.h"
#include "model/tokenizer.h"
#include "model/clip.h"
#include "core/safetensors.h"
#include "core/fileio.h"
#include "model/pipeline.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KN "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
#define VN "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight"
#define QN "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_q.weight"

// A small base: K, V [6, 5], Q [6, 6], plus an unrelated tensor.
static void make_base(cd_weights *ws, uint32_t seed) {
    cd_weights_init(ws, "testbase");
    float a[36];
    int64_t s65[2] = {6, 5}, s66[2] = {6, 6}, s3[1] = {3};
    tl_rand(a, 30, seed); cd_weights_put(ws, KN, 2, s65, a);
    tl_rand(a, 30, seed + 1); cd_weights_put(ws, VN, 2, s65, a);
    tl_rand(a, 36, seed + 2); cd_weights_put(ws, QN, 2, s66, a);
    tl_rand(a, 3, seed + 3); cd_weights_put(ws, "conv_in.bias", 1, s3, a);
}

static float *base_data(cd_weights *ws, const char *name) { return cd_weights_find(ws, name)->data; }

TEST(roundtrip_full_lowrank_tokens) {
    cd_weights base; make_base(&base, 1);
    cd_delta d; cd_delta_init(&d, "crossattn_kv");
    float k[30], u[12], v[10], row[4] = {1, 2, 3, 4}, row2[4] = {-1, -2, -3, -4};
    tl_rand(k, 30, 9); tl_rand(u, 12, 10); tl_rand(v, 10, 11);
    int64_t s[2] = {6, 5};
    CHECK_OK(cd_delta_add_tensor(&d, KN, 2, s, k));
    CHECK_OK(cd_delta_add_lowrank(&d, VN, 6, 5, 2, u, v));
    CHECK_OK(cd_delta_add_token(&d, "<new2>", row2, 4));
    CHECK_OK(cd_delta_add_token(&d, "<new1>", row, 4));
    cd_delta_set_meta(&d, "steps", "250");
    CHECK_OK(cd_delta_set_base(&d, &base));
    CHECK(strncmp(d.fingerprint, "sha256:", 7) == 0 && strlen(d.fingerprint) == 71);
    char *dir = tl_tmpdir("delta"), *p = cd_path_join(dir, "d.safetensors");
    CHECK_OK(cd_delta_save(&d, p));
    cd_delta r;
    CHECK_OK(cd_delta_read(&r, p));
    CHECK(strcmp(r.layout, "customdiff") == 0 && r.version == 1 && strcmp(r.mode, "crossattn_kv") == 0);
    CHECK(strcmp(r.fingerprint, d.fingerprint) == 0 && r.base_tensors == 2 && r.compression_rank == 2);
    CHECK(r.n == 2 && r.ntok == 2 && r.tok_dim == 4);
    CHECK(strcmp(r.tokens[0].tok, "<new2>") == 0 && r.tokens[0].row[3] == -4);   // id order kept
    CHECK(strcmp(r.tokens[1].tok, "<new1>") == 0 && r.tokens[1].row[1] == 2);
    int ik = cd_delta_find(&r, KN), iv = cd_delta_find(&r, VN);
    CHECK(ik >= 0 && iv >= 0 && r.t[iv].rank == 2 && !r.t[iv].data);
    CHECK(memcmp(r.t[ik].data, k, sizeof k) == 0);
    CHECK(cd_delta_get_meta(&r, "steps") && strcmp(cd_delta_get_meta(&r, "steps"), "250") == 0);
    CHECK_OK(cd_delta_check_base(&r, &base));
    CHECK_OK(cd_delta_reconstruct(&r, &base));   // V = base + u @ v
    const float *b = base_data(&base, VN);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++) {
            float want = b[i * 5 + j] + u[i * 2] * v[j] + u[i * 2 + 1] * v[5 + j];
            CHECKF(fabsf(r.t[iv].data[i * 5 + j] - want) < 1e-6f, "V[%d,%d]", i, j);
        }
    cd_delta_free(&r); cd_delta_free(&d); cd_weights_free(&base);
    free(p); free(dir);
}

TEST(fingerprint_mismatch_is_a_clear_error) {
    cd_weights base, other; make_base(&base, 1); make_base(&other, 1);
    base_data(&other, VN)[7] += 1e-3f;   // one value of one replaced tensor differs
    cd_delta d; cd_delta_init(&d, "crossattn_kv");
    float k[30]; tl_rand(k, 30, 5);
    int64_t s[2] = {6, 5};
    CHECK_OK(cd_delta_add_tensor(&d, KN, 2, s, k));
    CHECK_OK(cd_delta_add_tensor(&d, VN, 2, s, k));
    CHECK_OK(cd_delta_set_base(&d, &base));
    d.path = cd_strdup("d1");
    CHECK_OK(cd_delta_check_base(&d, &base));
    CHECK_ERR(cd_delta_check_base(&d, &other), "made for another base model");
    cd_delta *ds[1] = {&d};
    CHECK_ERR(cd_delta_apply(ds, 1, &other, NULL, NULL, 1), "made for another base model");
    CHECK(memcmp(base_data(&other, KN), base_data(&base, KN), 30 * 4) == 0);   // untouched
    // unrelated tensors do not enter the fingerprint
    base_data(&other, VN)[7] -= 1e-3f;
    base_data(&other, QN)[0] += 1;
    CHECK_OK(cd_delta_check_base(&d, &other));
    // wrong shape names the tensor
    cd_weights small; cd_weights_init(&small, "small");
    int64_t s2[2] = {6, 4}; float z[24] = {0};
    cd_weights_put(&small, KN, 2, s2, z); cd_weights_put(&small, VN, 2, s2, z);
    CHECK_ERR(cd_delta_check_base(&d, &small), "another base model");
    CHECK_ERR(cd_delta_apply(ds, 1, &small, NULL, NULL, 0), "another base model");   // even unchecked
    cd_delta_free(&d); cd_weights_free(&base); cd_weights_free(&other); cd_weights_free(&small);
}

// A fake text encoder table of n rows x C for apply tests.
static void fake_text(cd_clip_text *t, int n, int C) {
    memset(t, 0, sizeof *t);
    t->cfg.hidden = C;
    t->n_tok = n;
    t->tok_own = t->tok_emb = cd_calloc((size_t)n * C, sizeof(float));
}

TEST(apply_several_deltas_adds_tokens_and_tensors) {
    if (!tl_golden()) return;
    cd_tokenizer *tok;
    char *td = tl_golden_path("tiny-sd/model/tokenizer");
    CHECK_OK(cd_tokenizer_load(&tok, td));
    free(td);
    cd_weights base; make_base(&base, 3);
    cd_clip_text text; fake_text(&text, cd_tokenizer_size(tok), 4);
    cd_delta a, b; cd_delta_init(&a, "crossattn_kv"); cd_delta_init(&b, "crossattn");
    a.path = cd_strdup("a"); b.path = cd_strdup("b");
    float k[30], q[36], r1[4] = {1, 1, 1, 1}, r2[4] = {2, 2, 2, 2};
    tl_rand(k, 30, 77); tl_rand(q, 36, 78);
    int64_t s65[2] = {6, 5}, s66[2] = {6, 6};
    CHECK_OK(cd_delta_add_tensor(&a, KN, 2, s65, k));
    CHECK_OK(cd_delta_add_token(&a, "<new1>", r1, 4));
    CHECK_OK(cd_delta_add_tensor(&b, QN, 2, s66, q));
    CHECK_OK(cd_delta_add_token(&b, "<new2>", r2, 4));
    CHECK_OK(cd_delta_set_base(&a, &base));
    CHECK_OK(cd_delta_set_base(&b, &base));
    cd_delta *ds[2] = {&a, &b};
    CHECK_OK(cd_delta_apply(ds, 2, &base, tok, &text, 1));
    CHECK(memcmp(base_data(&base, KN), k, sizeof k) == 0 && memcmp(base_data(&base, QN), q, sizeof q) == 0);
    CHECK(cd_tokenizer_size(tok) == 49410 && text.n_tok == 49410);
    CHECK(cd_tokenizer_piece_id(tok, "<new1>") == 49408 && cd_tokenizer_piece_id(tok, "<new2>") == 49409);
    CHECK(text.tok_emb[49408 * 4] == 1 && text.tok_emb[49409 * 4 + 3] == 2);
    int32_t ids[77]; int used;
    CHECK_OK(cd_tokenizer_encode(tok, "photo of a <new1> cat", 77, ids, &used));
    CHECK(ids[4] == 49408);
    // a row of the wrong width is refused
    cd_delta c; cd_delta_init(&c, NULL); c.path = cd_strdup("c");
    float r8[8] = {0};
    CHECK_OK(cd_delta_add_token(&c, "<new3>", r8, 8));
    cd_delta *dc[1] = {&c};
    CHECK_ERR(cd_delta_apply(dc, 1, &base, tok, &text, 1), "text encoder is 4 wide");
    cd_delta_free(&a); cd_delta_free(&b); cd_delta_free(&c);
    cd_clip_text_release(&text); cd_tokenizer_free(tok); cd_weights_free(&base);
}

TEST(conflicting_deltas_are_refused) {
    cd_weights base; make_base(&base, 4);
    cd_delta a, b; cd_delta_init(&a, NULL); cd_delta_init(&b, NULL);
    a.path = cd_strdup("a.safetensors"); b.path = cd_strdup("b.safetensors");
    float k[30] = {0}, row[4] = {0};
    int64_t s[2] = {6, 5};
    CHECK_OK(cd_delta_add_tensor(&a, KN, 2, s, k));
    CHECK_OK(cd_delta_add_tensor(&b, KN, 2, s, k));
    cd_delta *ds[2] = {&a, &b};
    CHECK_ERR(cd_delta_apply(ds, 2, &base, NULL, NULL, 0), "both replace");
    cd_delta_free(&b); cd_delta_init(&b, NULL); b.path = cd_strdup("b.safetensors");
    CHECK_OK(cd_delta_add_token(&a, "<new1>", row, 4));
    CHECK_OK(cd_delta_add_token(&b, "<new1>", row, 4));
    CHECK_ERR(cd_delta_apply(ds, 2, &base, NULL, NULL, 0), "both define token <new1>");
    cd_delta_free(&a); cd_delta_free(&b); cd_weights_free(&base);
}

TEST(reads_diffusers_layout_and_textual_inversion) {
    if (!tl_golden()) return;
    const char *sets[2] = {"tiny-sd", "tiny-sd2"};
    for (int si = 0; si < 2; si++) {
        char *p = cd_fmt("%s/%s/cases/pytorch_custom_diffusion_weights.safetensors", tl_golden(), sets[si]);
        char *q = cd_fmt("%s/%s/cases/new1.safetensors", tl_golden(), sets[si]);
        cd_delta d, t;
        CHECK_OK(cd_delta_read(&d, p));
        CHECK(strcmp(d.layout, "diffusers") == 0 && d.n == 32 && d.ntok == 0 && !d.fingerprint[0]);
        int i = cd_delta_find(&d, "mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight");
        CHECK(i >= 0 && d.t[i].ndim == 2 && d.t[i].shape[1] == 32);
        cd_st_file f;
        CHECK_OK(cd_st_open(&f, p));
        float *want; int64_t n;
        CHECK_OK(cd_st_load_f32(&f, "mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_v_custom_diffusion.weight", &want, &n));
        CHECK(memcmp(want, d.t[i].data, n * 4) == 0);
        free(want); cd_st_close(&f);
        CHECK_OK(cd_delta_read(&t, q));
        CHECK(strcmp(t.layout, "textual_inversion") == 0 && t.ntok == 1 && t.tok_dim == 32);
        CHECK(strcmp(t.tokens[0].tok, "<new1>") == 0);
        cd_delta_free(&d); cd_delta_free(&t);
        free(p); free(q);
    }
}

TEST(reads_folder_and_emb_params_and_refuses_junk) {
    char *dir = tl_tmpdir("deltadir");
    float row[3] = {1, 2, 3}, w[4] = {1, 2, 3, 4};
    int64_t s13[2] = {1, 3}, s3[1] = {3}, s22[2] = {2, 2};
    cd_st_writer *wr = cd_st_writer_new();   // diffusers weights file
    cd_st_writer_add(wr, "up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_custom_diffusion.0.weight", CD_F32, 2, s22, w);
    char *p = cd_path_join(dir, "pytorch_custom_diffusion_weights.safetensors");
    CHECK_OK(cd_st_writer_save(wr, p)); cd_st_writer_free(wr); free(p);
    wr = cd_st_writer_new();
    cd_st_writer_add(wr, "<cat>", CD_F32, 2, s13, row);
    p = cd_path_join(dir, "<cat>.safetensors");
    CHECK_OK(cd_st_writer_save(wr, p)); cd_st_writer_free(wr); free(p);
    cd_delta d;
    CHECK_OK(cd_delta_read(&d, dir));
    CHECK(d.n == 1 && d.ntok == 1 && strcmp(d.tokens[0].tok, "<cat>") == 0);
    CHECK(strcmp(d.t[0].name, "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.weight") == 0);
    cd_delta_free(&d);
    wr = cd_st_writer_new();   // A1111 embedding: token from the file name
    cd_st_writer_add(wr, "emb_params", CD_F32, 1, s3, row);
    p = cd_path_join(dir, "mystyle.safetensors");
    CHECK_OK(cd_st_writer_save(wr, p)); cd_st_writer_free(wr);
    CHECK_OK(cd_delta_read(&d, p));
    CHECK(d.ntok == 1 && strcmp(d.tokens[0].tok, "mystyle") == 0 && d.tokens[0].row[2] == 3);
    cd_delta_free(&d); free(p);
    wr = cd_st_writer_new();
    cd_st_writer_add(wr, "a", CD_F32, 1, s3, row);
    cd_st_writer_add(wr, "b", CD_F32, 1, s3, row);
    p = cd_path_join(dir, "junk.safetensors");
    CHECK_OK(cd_st_writer_save(wr, p)); cd_st_writer_free(wr);
    CHECK_ERR(cd_delta_read(&d, p), "not a delta");
    free(p);
    wr = cd_st_writer_new();   // newer format version
    cd_st_writer_add(wr, KN, CD_F32, 2, s22, w);
    cd_st_writer_meta(wr, "format", "customdiff-delta");
    cd_st_writer_meta(wr, "format_version", "9");
    p = cd_path_join(dir, "new.safetensors");
    CHECK_OK(cd_st_writer_save(wr, p)); cd_st_writer_free(wr);
    CHECK_ERR(cd_delta_read(&d, p), "format_version '9' is not supported");
    free(p);
    CHECK_ERR(cd_delta_read(&d, "x/delta.bin"), "convert it to safetensors");
    p = cd_path_join(dir, "missing.safetensors");
    CHECK_ERR(cd_delta_read(&d, p), "missing.safetensors");
    free(p); free(dir);
}

TEST(compress_rank_r_difference_is_exact) {
    cd_weights base; cd_weights_init(&base, "b");
    enum { O = 12, I = 9, R = 3 };
    float w0[O * I], a[O * R], bb[R * I], w[O * I];
    tl_rand(w0, O * I, 1); tl_rand(a, O * R, 2); tl_rand(bb, R * I, 3);
    int64_t s[2] = {O, I};
    cd_weights_put(&base, KN, 2, s, w0);
    cd_weights_put(&base, QN, 2, s, w0);
    for (int i = 0; i < O; i++)
        for (int j = 0; j < I; j++) {
            double acc = w0[i * I + j];
            for (int k = 0; k < R; k++) acc += (double)a[i * R + k] * bb[k * I + j];
            w[i * I + j] = (float)acc;
        }
    cd_delta d; cd_delta_init(&d, "crossattn"); d.path = cd_strdup("d");
    CHECK_OK(cd_delta_add_tensor(&d, KN, 2, s, w));
    CHECK_OK(cd_delta_add_tensor(&d, QN, 2, s, w));   // to_q: kept as is
    int mr;
    CHECK_OK(cd_delta_compress(&d, &base, R, 0, &mr));
    CHECK(mr == R && d.compression_rank == R);
    int ik = cd_delta_find(&d, KN), iq = cd_delta_find(&d, QN);
    CHECK(d.t[ik].rank == R && !d.t[ik].data && d.t[iq].rank == 0 && d.t[iq].data);
    char *dir = tl_tmpdir("compress"), *p = cd_path_join(dir, "c.safetensors");
    CHECK_OK(cd_delta_save(&d, p));
    cd_delta r;
    CHECK_OK(cd_delta_read(&r, p));
    CHECK(r.compression_rank == R);
    CHECK_OK(cd_delta_check_base(&r, &base));
    CHECK_OK(cd_delta_reconstruct(&r, &base));
    double e = tl_relerr(r.t[cd_delta_find(&r, KN)].data, w, O * I);
    CHECKF(e < 2e-6, "rank-%d reconstruction relerr %.3g", R, e);
    cd_delta_free(&r); cd_delta_free(&d); cd_weights_free(&base);
    free(p); free(dir);
}

TEST(compress_ratio_rule_matches_custom_diffusion) {
    float S[4] = {5, 3, 1, 1};   // cumulative 0.5, 0.8 -> rank 1 (spec checklist item 8)
    CHECK(cd_svd_rank_for_ratio(S, 4, 0.6) == 1);
    float S2[3] = {7, 2, 1};     // 0.7 > 0.6 at i = 0 -> rank 0
    CHECK(cd_svd_rank_for_ratio(S2, 3, 0.6) == 0);
    CHECK(cd_svd_rank_for_ratio(S, 4, 0.95) == 3);
    // a rank-0 tensor is dropped
    cd_weights base; cd_weights_init(&base, "b");
    float w0[20], w[20];
    tl_rand(w0, 20, 4);
    int64_t s[2] = {4, 5};
    cd_weights_put(&base, VN, 2, s, w0);
    for (int i = 0; i < 20; i++) w[i] = w0[i] + (i % 5 == 0 ? 1.0f : 0.0f) * (1 + i / 5);   // rank 1
    cd_delta d; cd_delta_init(&d, "crossattn_kv"); d.path = cd_strdup("d");
    CHECK_OK(cd_delta_add_tensor(&d, VN, 2, s, w));
    CHECK_OK(cd_delta_compress(&d, &base, 0, 0.6, NULL));
    CHECK(d.n == 0);
    cd_delta_free(&d); cd_weights_free(&base);
}

TEST(merge_satisfies_constraints) {
    enum { IN = 16, OUT = 10, M = 60, S = 4 };
    float Creg[M * IN], C[S * IN], W0[OUT * IN], W1[OUT * IN], W2[OUT * IN], V[S * OUT], W[OUT * IN], P[S * IN];
    tl_rand(Creg, M * IN, 1); tl_rand(C, S * IN, 2); tl_rand(W0, OUT * IN, 3);
    tl_rand(W1, OUT * IN, 4); tl_rand(W2, OUT * IN, 5);
    // rows 0-1 belong to concept 1 (W1), rows 2-3 to concept 2 (W2): V[s] = W_n c_s
    for (int a = 0; a < S; a++)
        for (int o = 0; o < OUT; o++) {
            const float *Wn = a < 2 ? W1 : W2;
            double acc = 0;
            for (int i = 0; i < IN; i++) acc += (double)Wn[o * IN + i] * C[a * IN + i];
            V[a * OUT + o] = (float)acc;
        }
    CHECK_OK(cd_merge_prepare(Creg, M, C, S, IN, 0, P));
    cd_merge_apply(W, W0, C, V, P, S, OUT, IN);
    for (int a = 0; a < S; a++) {
        float got[OUT];
        for (int o = 0; o < OUT; o++) {
            double acc = 0;
            for (int i = 0; i < IN; i++) acc += (double)W[o * IN + i] * C[a * IN + i];
            got[o] = (float)acc;
        }
        double e = tl_relerr(got, V + a * OUT, OUT);
        CHECKF(e < 1e-3, "constraint %d: relerr %.3g", a, e);
    }
    // V = W0 C^T -> W = W0
    for (int a = 0; a < S; a++)
        for (int o = 0; o < OUT; o++) {
            double acc = 0;
            for (int i = 0; i < IN; i++) acc += (double)W0[o * IN + i] * C[a * IN + i];
            V[a * OUT + o] = (float)acc;
        }
    cd_merge_apply(W, W0, C, V, P, S, OUT, IN);
    CHECK(tl_relerr(W, W0, OUT * IN) < 1e-5);
    // too few regularisation rows: singular Gram matrix
    CHECK_ERR(cd_merge_prepare(Creg, 5, C, S, IN, 0, P), "singular");
    // duplicate target rows: singular C M^-1 C^T
    memcpy(C + IN, C, sizeof(float) * IN);
    CHECK_ERR(cd_merge_prepare(Creg, M, C, S, IN, 0, P), "linearly dependent");
}

// UNet forward of golden unet.safetensors inputs on p into out [2,4,16,16].
static int unet_case(cd_pipeline *p, const char *set, float *out) {
    char *path = cd_fmt("%s/%s/cases/unet.safetensors", tl_golden(), set);
    cd_st_file f;
    int rc = cd_st_open(&f, path);
    free(path);
    if (rc) return -1;
    float *x = NULL, *t = NULL, *ctx = NULL;
    int64_t n;
    rc = cd_st_load_f32(&f, "sample", &x, &n) || cd_st_load_f32(&f, "timesteps", &t, &n) ||
         cd_st_load_f32(&f, "encoder_hidden_states", &ctx, &n);
    if (!rc) rc = cd_unet_forward(p->unet, out, x, t, ctx, 2, 16, 16, 77, NULL, NULL);
    free(x); free(t); free(ctx);
    cd_st_close(&f);
    return rc;
}

// The golden diffusers-layout delta + new1.safetensors applied through cd_delta_apply give
// the same UNet output as laying the K/V tensors in by hand, and add <new1> = 49408.
static void golden_apply(const char *set) {
    unsigned what = CD_LOAD_UNET | CD_LOAD_TEXT | CD_LOAD_TOKENIZER;
    char *model = cd_fmt("%s/%s/model", tl_golden(), set);
    char *dp = cd_fmt("%s/%s/cases/pytorch_custom_diffusion_weights.safetensors", tl_golden(), set);
    char *tp = cd_fmt("%s/%s/cases/new1.safetensors", tl_golden(), set);
    cd_pipeline a, b;
    CHECK_OK(cd_pipeline_load(&a, model, NULL, NULL, what));
    CHECK_OK(cd_pipeline_load(&b, model, NULL, NULL, what));
    int64_t n = 2 * 4 * 16 * 16;
    float *base = malloc(4 * n), *oa = malloc(4 * n), *ob = malloc(4 * n);
    CHECK_OK(unet_case(&a, set, base));
    cd_delta d1, d2;
    CHECK_OK(cd_delta_read(&d1, dp));
    CHECK_OK(cd_delta_read(&d2, tp));
    cd_delta *ds[2] = {&d1, &d2};
    CHECK_OK(cd_delta_apply(ds, 2, &a.unet_w, a.tok, &a.text, 1));
    CHECK_OK(cd_unet_rebind(a.unet));
    cd_st_file f;   // by hand: X.attn2.processor.to_k_custom_diffusion.weight -> X.attn2.to_k.weight
    CHECK_OK(cd_st_open(&f, dp));
    for (int i = 0; i < f.n; i++) {
        char name[256];
        const char *k = f.t[i].name, *pp = strstr(k, "processor."), *kv = strstr(k, "to_k_") ? "to_k" : "to_v";
        CHECK(pp != NULL);
        snprintf(name, sizeof name, "%.*s%s.weight", (int)(pp - k), k, kv);
        float *w; int64_t nw;
        CHECK_OK(cd_st_load_f32(&f, k, &w, &nw));
        CHECK(cd_weights_find(&b.unet_w, name) != NULL);
        cd_weights_put(&b.unet_w, name, 2, f.t[i].shape, w);
        free(w);
    }
    cd_st_close(&f);
    CHECK_OK(cd_unet_rebind(b.unet));
    CHECK_OK(unet_case(&a, set, oa));
    CHECK_OK(unet_case(&b, set, ob));
    CHECKF(memcmp(oa, ob, 4 * n) == 0, "%s: applied delta differs from hand-laid K/V (relerr %.3g)", set, tl_relerr(oa, ob, n));
    CHECKF(tl_relerr(oa, base, n) > 1e-6, "%s: the delta changed nothing", set);
    CHECK(cd_tokenizer_piece_id(a.tok, "<new1>") == 49408);
    CHECK(a.text.n_tok == 49409);
    CHECK(memcmp(a.text.tok_emb + (int64_t)49408 * d2.tok_dim, d2.tokens[0].row, 4 * d2.tok_dim) == 0);
    cd_delta_free(&d1); cd_delta_free(&d2);
    cd_pipeline_free(&a); cd_pipeline_free(&b);
    free(base); free(oa); free(ob); free(model); free(dp); free(tp);
}
TEST(golden_delta_equals_hand_laid_kv_sd1) { if (tl_golden()) golden_apply("tiny-sd"); }
TEST(golden_delta_equals_hand_laid_kv_sd2) { if (tl_golden()) golden_apply("tiny-sd2"); }

int main(void) {
    RUN(roundtrip_full_lowrank_tokens);
    RUN(fingerprint_mismatch_is_a_clear_error);
    RUN(apply_several_deltas_adds_tokens_and_tensors);
    RUN(conflicting_deltas_are_refused);
    RUN(reads_diffusers_layout_and_textual_inversion);
    RUN(reads_folder_and_emb_params_and_refuses_junk);
    RUN(compress_rank_r_difference_is_exact);
    RUN(compress_ratio_rule_matches_custom_diffusion);
    RUN(merge_satisfies_constraints);
    RUN(golden_delta_equals_hand_laid_kv_sd1);
    RUN(golden_delta_equals_hand_laid_kv_sd2);
    return tl_done();
}
