// Unit tests of the lead's core: cli, json, fileio, safetensors (read/write/validation),
// half conversions, rng, weights.
#include "tests/testlib.h"
#include "core/cli.h"
#include "core/fileio.h"
#include "core/half.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/weights.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST(cli_parses_types_and_defaults) {
    int steps, flag; double g; const char *out; cd_strlist pr; int64_t mb;
    cd_opt opts[] = {
        {"steps", CD_OPT_INT, &steps, "50", "steps"},
        {"hflip", CD_OPT_FLAG, &flag, NULL, "flip"},
        {"guidance", CD_OPT_FLOAT, &g, "7.5", "cfg"},
        {"out", CD_OPT_STR, &out, "samples", "folder"},
        {"prompt", CD_OPT_STRLIST, &pr, "a cat", "prompt"},
        {"max-bytes", CD_OPT_I64, &mb, "20M", "cap"},
        {0}};
    char *argv[] = {"x", "--steps", "7", "--hflip", "--guidance=3.5", "--prompt", "a", "--prompt", "b", "pos1", NULL};
    int np; char **pos;
    CHECK_OK(cd_cli_parse("t", "test", opts, 10, argv, &np, &pos));
    CHECK(steps == 7 && flag == 1 && fabs(g - 3.5) < 1e-12 && !strcmp(out, "samples"));
    CHECK(pr.n == 2 && !strcmp(pr.v[0], "a") && !strcmp(pr.v[1], "b"));
    CHECK(mb == 20 << 20);
    CHECK(np == 1 && !strcmp(pos[0], "pos1"));
    CHECK(cd_cli_given(opts, "steps") && !cd_cli_given(opts, "out"));
    free(pos);
    char *bad[] = {"x", "--steps", "seven", NULL};
    CHECK_ERR(cd_cli_parse("t", "test", opts, 3, bad, &np, &pos), "--steps expects an integer");
    char *unk[] = {"x", "--nope", NULL};
    CHECK_ERR(cd_cli_parse("t", "test", opts, 2, unk, &np, &pos), "unknown option '--nope'");
    char *miss[] = {"x", "--out", NULL};
    CHECK_ERR(cd_cli_parse("t", "test", opts, 2, miss, &np, &pos), "needs a value");
    char *neg[] = {"x", "--hflip", "--no-hflip", NULL};
    CHECK_OK(cd_cli_parse("t", "test", opts, 3, neg, &np, &pos));
    CHECK(flag == 0 && pr.n == 1 && !strcmp(pr.v[0], "a cat"));
}

TEST(json_errors_name_the_file) {
    char *dir = tl_tmpdir("json");
    char *p = cd_path_join(dir, "bad.json");
    CHECK_OK(cd_write_file_atomic(p, "{\"a\": 1,", 8));
    cJSON *j;
    CHECK_ERR(cd_json_load(p, &j), "bad.json: invalid JSON");
    CHECK_OK(cd_write_file_atomic(p, "{\"a\": 1, \"b\": [1,2,3], \"s\": \"x\"}", 33));
    CHECK_OK(cd_json_load(p, &j));
    int v[4], n;
    CHECK_OK(cd_json_int_array(j, "b", "cfg", v, 4, &n));
    CHECK(n == 3 && v[2] == 3 && cd_json_int(j, "a", 0) == 1 && cd_json_int(j, "zz", 9) == 9);
    const char *s;
    CHECK_ERR(cd_json_req_str(j, "a", "cfg", &s), "cfg: key 'a' missing or not a string");
    cJSON *frac;
    CHECK_OK(cd_json_parse("{\"c\": 4.5, \"d\": [1, 2.5]}", 25, "frac", &frac));
    int iv;
    CHECK_ERR(cd_json_req_int(frac, "c", "cfg", &iv), "is 4.5, expected an integer");
    CHECK_ERR(cd_json_int_array(frac, "d", "cfg", v, 4, &n), "'d'[1] is not an integer");
    cJSON_Delete(frac);
    cJSON_Delete(j);
    free(p); free(dir);
}

TEST(half_round_trip_and_rounding) {
    // Known fp16 encodings.
    CHECK(cd_f32_to_f16(1.0f) == 0x3c00 && cd_f32_to_f16(-2.0f) == 0xc000);
    CHECK(cd_f32_to_f16(65504.0f) == 0x7bff && cd_f32_to_f16(1e6f) == 0x7c00);
    CHECK(cd_f16_to_f32(0x0001) == ldexpf(1.0f, -24));   // smallest subnormal
    CHECK(cd_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001);
    CHECK(cd_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00);   // tie to even
    CHECK(cd_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02);
    for (uint32_t h = 0; h < 0x7c00; h++) CHECK(cd_f32_to_f16(cd_f16_to_f32((uint16_t)h)) == h);
    CHECK(cd_bf16_to_f32(cd_f32_to_bf16(3.140625f)) == 3.140625f);
    CHECK(cd_f32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80);   // tie to even
    CHECK(isnan(cd_bf16_to_f32(cd_f32_to_bf16(NAN))));
}

static void write_raw_st(const char *path, const char *header, size_t data_bytes) {
    size_t hl = strlen(header);
    size_t total = 8 + hl + data_bytes;
    uint8_t *b = calloc(1, total);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    cd_write_file_atomic(path, b, total);
    free(b);
}

TEST(safetensors_round_trip) {
    char *dir = tl_tmpdir("st");
    char *p = cd_path_join(dir, "a.safetensors");
    float x[6] = {1, -2, 3.5f, 0.25f, 1e-3f, 7};
    int32_t ids[3] = {49406, 320, 49407};
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    cd_st_writer *w = cd_st_writer_new();
    cd_st_writer_add_f32(w, "x.f32", CD_F32, 2, s23, x);
    cd_st_writer_add_f32(w, "x.f16", CD_F16, 2, s23, x);
    cd_st_writer_add_f32(w, "x.bf16", CD_BF16, 2, s23, x);
    cd_st_writer_add(w, "ids", CD_I32, 1, s3, ids);
    cd_st_writer_meta(w, "format", "customdiff-test");
    CHECK_OK(cd_st_writer_save(w, p));
    cd_st_writer_free(w);
    cd_st_file f;
    CHECK_OK(cd_st_open(&f, p));
    CHECK(f.n == 4 && !strcmp(cd_st_meta(&f, "format"), "customdiff-test"));
    float y[6];
    CHECK_OK(cd_st_read_f32(&f, "x.f32", y, 6));
    CHECK(!memcmp(x, y, sizeof x));
    CHECK_OK(cd_st_read_f32(&f, "x.f16", y, 6));
    CHECK(tl_relerr(y, x, 6) < 1e-3);
    CHECK_OK(cd_st_read_f32(&f, "x.bf16", y, 6));
    CHECK(tl_relerr(y, x, 6) < 1e-2);
    int64_t *iv, n;
    CHECK_OK(cd_st_load_i64(&f, "ids", &iv, &n));
    CHECK(n == 3 && iv[0] == 49406 && iv[2] == 49407);
    free(iv);
    CHECK_ERR(cd_st_read_f32(&f, "x.f32", y, 5), "has 6 elements, expected 5");
    CHECK_ERR(cd_st_read_f32(&f, "nope", y, 5), "tensor 'nope' not found");
    cd_st_close(&f);
    free(p); free(dir);
}

TEST(safetensors_rejects_bad_headers) {
    char *dir = tl_tmpdir("stbad");
    char *p = cd_path_join(dir, "b.safetensors");
    cd_st_file f;
    write_raw_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4);
    CHECK_ERR(cd_st_open(&f, p), "outside the data section");
    write_raw_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
    CHECK_ERR(cd_st_open(&f, p), "holds 8 bytes");
    write_raw_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    CHECK_ERR(cd_st_open(&f, p), "overlap");
    write_raw_st(p, "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    CHECK_ERR(cd_st_open(&f, p), "unsupported dtype 'Q4'");
    write_raw_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],", 8);
    CHECK_ERR(cd_st_open(&f, p), "invalid JSON");
    write_raw_st(p, "[1,2]", 0);
    CHECK_ERR(cd_st_open(&f, p), "not a JSON object");
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0};
    CHECK_OK(cd_write_file_atomic(p, huge, 16));
    CHECK_ERR(cd_st_open(&f, p), "exceeds");
    uint8_t trunc[12] = {64, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    CHECK_OK(cd_write_file_atomic(p, trunc, 12));
    CHECK_ERR(cd_st_open(&f, p), "truncated");
    CHECK_ERR(cd_st_open(&f, "/nonexistent/x.safetensors"), "/nonexistent/x.safetensors");
    free(p); free(dir);
}

TEST(rng_is_deterministic_and_normal) {
    cd_rng a, b;
    cd_rng_seed(&a, 42); cd_rng_seed(&b, 42);
    float x[10000], y[10000];
    cd_rng_normal(&a, x, 10000);
    cd_rng_normal(&b, y, 10000);
    CHECK(!memcmp(x, y, sizeof x));
    double m = 0, v = 0;
    for (int i = 0; i < 10000; i++) m += x[i];
    m /= 10000;
    for (int i = 0; i < 10000; i++) v += (x[i] - m) * (x[i] - m);
    v /= 10000;
    CHECK(fabs(m) < 0.05 && fabs(v - 1) < 0.05);
    cd_rng c = a;   // state copy continues identically (checkpoint resume)
    CHECK(cd_rng_u32(&a) == cd_rng_u32(&c));
    cd_rng_split(&a, 42, 1); cd_rng_split(&b, 42, 2);
    CHECK(cd_rng_u32(&a) != cd_rng_u32(&b));
    for (int i = 0; i < 1000; i++) { int k = cd_rng_int(&a, 3, 5); CHECK(k >= 3 && k <= 5); }
}

static char *rename_prefix(const char *key, void *ctx) {
    if (!strcmp(key, "drop")) return NULL;
    return cd_fmt("%s%s", (const char *)ctx, key);
}

TEST(weights_load_rename_and_shape_errors) {
    char *dir = tl_tmpdir("w");
    char *p = cd_path_join(dir, "w.safetensors");
    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t s23[2] = {2, 3};
    cd_st_writer *w = cd_st_writer_new();
    cd_st_writer_add_f32(w, "m.a", CD_F32, 2, s23, x);
    cd_st_writer_add_f32(w, "m.b", CD_F16, 2, s23, x);
    cd_st_writer_add_f32(w, "m.drop", CD_F32, 2, s23, x);
    cd_st_writer_add_f32(w, "other", CD_F32, 2, s23, x);
    CHECK_OK(cd_st_writer_save(w, p));
    cd_st_writer_free(w);
    cd_weights ws;
    cd_weights_init(&ws, "test model");
    CHECK_OK(cd_weights_load(&ws, p, "m.", rename_prefix, "unet."));
    CHECK(ws.n == 2);
    float *d;
    CHECK_OK(cd_weights_get(&ws, "unet.a", 2, s23, &d));
    CHECK(d[5] == 6);
    CHECK(!ws.w[0].owned);   // F32 used in place from the map
    int64_t s32[2] = {3, 2};
    CHECK_ERR(cd_weights_get(&ws, "unet.b", 2, s32, &d), "tensor 'unet.b' has shape [2, 3], expected [3, 2]");
    CHECK_ERR(cd_weights_get(&ws, "unet.c", -1, NULL, &d), "test model: tensor 'unet.c' missing");
    cd_weight *wa = cd_weights_find(&ws, "unet.a");
    float *own = cd_weights_own(wa);
    own[0] = 9;
    CHECK(wa->owned && wa->data[0] == 9);
    cd_weights_free(&ws);
    free(p); free(dir);
}

int main(void) {
    RUN(cli_parses_types_and_defaults);
    RUN(json_errors_name_the_file);
    RUN(half_round_trip_and_rounding);
    RUN(safetensors_round_trip);
    RUN(safetensors_rejects_bad_headers);
    RUN(rng_is_deterministic_and_normal);
    RUN(weights_load_rename_and_shape_errors);
    return tl_done();
}
