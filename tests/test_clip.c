// Tokenizer and CLIP model: the tiny tokenizer and models of our own (no golden needed),
// golden vocabulary facts, the OpenAI .gz layout, and the text encoder's backward against
// finite differences.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/testlib.h"
#include "core/fileio.h"
#include "core/image.h"
#include "model/clip.h"
#include "model/clip_tiny.h"
#include "model/tokenizer.h"

TEST(tiny_tokenizer_roundtrip_and_added_tokens) {
    char *dir = tl_tmpdir("clip_tok");
    CHECK_OK(cd_tiny_tokenizer_write(dir));
    cd_tokenizer *t;
    CHECK_OK(cd_tokenizer_load(&t, dir));
    CHECK(cd_tokenizer_size(t) == CD_TINY_VOCAB);
    CHECK(cd_tokenizer_bos(t) == CD_TINY_VOCAB - 2 && cd_tokenizer_eos(t) == CD_TINY_VOCAB - 1 && cd_tokenizer_pad(t) == CD_TINY_VOCAB - 1);
    CHECK(cd_tokenizer_piece_id(t, "ktn") >= 512 && cd_tokenizer_piece_id(t, "pll") >= 512);
    int32_t ids[77];
    int n;
    CHECK_OK(cd_tokenizer_encode(t, "A  Photo of\ta CAT, sitting!", 77, ids, &n));
    CHECK(ids[0] == cd_tokenizer_bos(t) && ids[n - 1] == cd_tokenizer_eos(t) && ids[76] == cd_tokenizer_pad(t));
    CHECK(n < 20);   // "photo", "cat", "sitting" are merged pieces
    char *s = cd_tokenizer_decode(t, ids, 77);
    CHECKF(!strcmp(s, "a photo of a cat , sitting !"), "decoded '%s'", s);
    free(s);
    int id;
    CHECK_ERR(cd_tokenizer_add_token(t, "ktn", &id), "already in the vocabulary");
    CHECK_OK(cd_tokenizer_add_token(t, "<new1>", &id));
    CHECK(id == CD_TINY_VOCAB);
    CHECK_OK(cd_tokenizer_add_token(t, "<new1>", &id));
    CHECK(id == CD_TINY_VOCAB && cd_tokenizer_size(t) == CD_TINY_VOCAB + 1);
    CHECK_OK(cd_tokenizer_encode(t, "photo of a <new1>dog", 77, ids, &n));
    int found = 0;
    for (int i = 0; i < n; i++) found += ids[i] == CD_TINY_VOCAB;
    CHECK(found == 1);
    // truncation: bos + 75 + eos
    char longt[2000] = "";
    for (int i = 0; i < 200; i++) strcat(longt, "cat ");
    CHECK_OK(cd_tokenizer_encode(t, longt, 77, ids, &n));
    CHECK(n == 77 && ids[76] == cd_tokenizer_eos(t) && ids[75] != cd_tokenizer_eos(t));
    CHECK_ERR(cd_tokenizer_encode(t, "x", 1, ids, &n), "too short");
    cd_tokenizer_free(t);
    CHECK_ERR(cd_tokenizer_load(&t, "/nonexistent-dir"), "no tokenizer here");
    free(dir);
}

TEST(golden_vocabulary_facts) {
    if (!tl_golden()) return;
    char *dir = tl_golden_path("tiny-sd/model/tokenizer");
    cd_tokenizer *t;
    CHECK_OK(cd_tokenizer_load(&t, dir));
    CHECK(cd_tokenizer_piece_id(t, "ktn") == 42170 && cd_tokenizer_piece_id(t, "pll") == 47629 &&
          cd_tokenizer_piece_id(t, "ucd") == 44746);
    int id;
    CHECK_OK(cd_tokenizer_add_token(t, "<new1>", &id));
    CHECK(id == 49408);
    int32_t ids[77], want[7] = {49406, 1125, 539, 320, 49408, 2368, 49407};
    CHECK_OK(cd_tokenizer_encode(t, "photo of a <new1> cat", 77, ids, NULL));
    CHECK(!memcmp(ids, want, sizeof want) && ids[7] == 49407);
    cd_tokenizer_free(t);
    free(dir);
}

// bpe_simple_vocab_16e6.txt.gz (OpenAI's layout) gives the same vocabulary as vocab.json.
TEST(openai_gz_layout_matches_vocab_json) {
    if (!tl_golden()) return;
    char *src = tl_golden_path("tiny-sd/model/tokenizer"), *dir = tl_tmpdir("clip_gz");
    char *cmd = cd_fmt("gzip -c '%s/merges.txt' > '%s/bpe_simple_vocab_16e6.txt.gz'", src, dir);
    if (system(cmd) != 0) { tl_skip("gzip not available"); free(cmd); free(src); free(dir); return; }
    cd_tokenizer *a, *b;
    CHECK_OK(cd_tokenizer_load(&a, src));
    CHECK_OK(cd_tokenizer_load(&b, dir));
    CHECK(cd_tokenizer_size(a) == cd_tokenizer_size(b));
    int bad = 0;
    for (int i = 0; i < cd_tokenizer_size(a); i++) bad += strcmp(cd_tokenizer_piece(a, i), cd_tokenizer_piece(b, i)) != 0;
    CHECKF(bad == 0, "%d pieces differ (first: id 0 '%s' vs '%s')", bad, cd_tokenizer_piece(a, 0), cd_tokenizer_piece(b, 0));
    int32_t ia[77], ib[77];
    CHECK_OK(cd_tokenizer_encode(a, "emoji test 🐱 café 東京", 77, ia, NULL));
    CHECK_OK(cd_tokenizer_encode(b, "emoji test 🐱 café 東京", 77, ib, NULL));
    CHECK(!memcmp(ia, ib, sizeof ia));
    cd_tokenizer_free(a); cd_tokenizer_free(b);
    free(cmd); free(src); free(dir);
}

// ---- text backward against finite differences -------------------------------------------
typedef struct { cd_clip_text *m; const int32_t *ids; int B, L; float *hid, *w; } fd_ctx;
static double fd_loss(fd_ctx *c) {
    cd_clip_text_forward(c->m, c->ids, c->B, c->L, c->hid, NULL);
    double s = 0;
    for (int64_t i = 0; i < (int64_t)c->B * c->L * c->m->cfg.hidden; i++) s += (double)c->hid[i] * c->w[i];
    return s;
}

static void backward_case(cd_clip_act act) {
    cd_clip_text_config tc = {.vocab_size = 12, .hidden = 8, .intermediate = 16, .layers = 2, .heads = 2,
                              .max_pos = 6, .projection_dim = 4, .eps = 1e-5f, .act = act, .bos_id = 10, .eos_id = 11};
    cd_weights ws;
    cd_weights_init(&ws, "random text model");
    cd_tiny_clip_weights(&ws, &tc, 1, NULL, 7);
    cd_clip_text m;
    CHECK_OK(cd_clip_text_bind(&m, &tc, &ws));
    CHECK_OK(cd_clip_text_resize_tokens(&m, 13));   // one added token row
    CHECK_OK(cd_clip_text_copy_row(&m, 12, 3));
    int B = 2, L = 5, C = tc.hidden;
    int32_t ids[10] = {10, 12, 4, 11, 11, 10, 5, 12, 12, 11};
    float *hid = malloc(sizeof(float) * B * L * C), *hid2 = malloc(sizeof(float) * B * L * C), *w = malloc(sizeof(float) * B * L * C);
    tl_rand(w, B * L * C, 99);
    cd_clip_text_acts acts;
    CHECK_OK(cd_clip_text_forward_train(&m, ids, B, L, hid, &acts));
    fd_ctx c = {&m, ids, B, L, hid2, w};
    fd_loss(&c);
    CHECK(tl_relerr(hid, hid2, B * L * C) < 1e-6);
    float *dtok = calloc((size_t)13 * C, sizeof(float)), *dx = malloc(sizeof(float) * B * L * C);
    uint8_t mask[13] = {0};
    mask[12] = 1; mask[4] = 1;
    CHECK_OK(cd_clip_text_backward(&m, &acts, w, dx, dtok, mask));
    double maxd = 0, maxa = 1e-3;
    for (int row = 0; row < 13; row++)
        for (int j = 0; j < C; j++) {
            float *p = &m.tok_emb[row * C + j], keep = *p, h = 1e-2f;
            double num = 0;
            if (mask[row]) {
                *p = keep + h; double lp = fd_loss(&c);
                *p = keep - h; double lm = fd_loss(&c);
                *p = keep;
                num = (lp - lm) / (2 * h);
            }
            double ana = dtok[row * C + j];
            if (fabs(num - ana) > maxd) maxd = fabs(num - ana);
            if (fabs(ana) > maxa) maxa = fabs(ana);
        }
    CHECKF(maxd / maxa < 2e-3, "token-row gradient vs finite differences: %g", maxd / maxa);
    CHECK(dtok[12 * C] != 0 && dtok[4 * C] != 0 && dtok[5 * C] == 0);   // masked rows only
    cd_clip_text_acts_free(&acts);
    cd_clip_text_release(&m);
    cd_weights_free(&ws);
    free(hid); free(hid2); free(w); free(dtok); free(dx);
}
TEST(text_backward_quick_gelu) { backward_case(CD_ACT_QUICK_GELU); }
TEST(text_backward_gelu) { backward_case(CD_ACT_GELU); }

TEST(tiny_clip_embeds_text_and_images) {
    char *dir = tl_tmpdir("clip_tiny");
    CHECK_OK(cd_tiny_clip_write(dir, 3));
    cd_clip m;
    CHECK_OK(cd_clip_load(&m, dir));
    CHECK(m.has_text && m.has_vision && m.tok && m.text.proj);
    const char *prompts[3] = {"a photo of a cat", "a painting of a dog", "a photo of a cat"};
    float e[3 * 16];
    CHECK_OK(cd_clip_embed_prompts(&m, prompts, 3, e, 1));
    double n0 = 0, d01 = 0;
    for (int i = 0; i < 16; i++) { n0 += e[i] * e[i]; d01 += fabs(e[i] - e[16 + i]); }
    CHECK(fabs(n0 - 1) < 1e-5 && d01 > 1e-3 && tl_relerr(e + 32, e, 16) < 1e-6);
    cd_image im[2];
    for (int k = 0; k < 2; k++) {
        im[k].w = 80 + 40 * k; im[k].h = 70; im[k].rgb = malloc((size_t)im[k].w * im[k].h * 3);
        for (int i = 0; i < im[k].w * im[k].h * 3; i++) im[k].rgb[i] = (uint8_t)((i * (7 + k)) % 251);
    }
    float v[2 * 16];
    CHECK_OK(cd_clip_embed_images(&m, im, 2, v, 1));
    double nv = 0;
    for (int i = 0; i < 16; i++) nv += v[16 + i] * v[16 + i];
    CHECK(fabs(nv - 1) < 1e-5);
    for (int k = 0; k < 2; k++) free(im[k].rgb);
    cd_clip_free(&m);
    // a text-only folder: embeds need a projection
    char *te = cd_path_join(dir, "te");
    CHECK_OK(cd_tiny_text_encoder_write(te, 1));
    CHECK_OK(cd_clip_load(&m, te));
    CHECK(m.has_text && !m.has_vision && !m.text.proj);
    int32_t ids[77] = {998, 999};
    for (int i = 2; i < 77; i++) ids[i] = 999;
    CHECK_ERR(cd_clip_text_embed(&m.text, ids, 1, 77, e, 1), "no text_projection");
    ids[5] = 5000;
    float *hid = malloc(sizeof(float) * 77 * 32);
    CHECK_ERR(cd_clip_text_forward(&m.text, ids, 1, 77, hid, NULL), "outside the embedding");
    free(hid);
    cd_clip_free(&m);
    CHECK_ERR(cd_clip_load(&m, "/nonexistent-clip"), "config.json");
    free(te); free(dir);
}

int main(void) {
    RUN(tiny_tokenizer_roundtrip_and_added_tokens);
    RUN(golden_vocabulary_facts);
    RUN(openai_gz_layout_matches_vocab_json);
    RUN(text_backward_quick_gelu);
    RUN(text_backward_gelu);
    RUN(tiny_clip_embeds_text_and_images);
    return tl_done();
}
