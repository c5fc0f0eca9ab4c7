// Runs the simulated LayerNorm / GroupNorm(+SiLU) kernels (kernels/cuda_norm.cu) against the CPU
// references (kernels/norm_cpu.c, groupnorm_cpu.c): fp32 forward and backward within 1e-5, the
// 16-bit-storage forwards (bf16 and fp16) on 16-bit-rounded inputs within 1e-2 / 2e-3 (y) and 1e-5
// (mean, rstd). Outputs NaN-poisoned; dg/db accumulate (+=) into equal random starts on both sides.
// Usage: test_norm [filter-substring]; keys ln/<n>/<c>/<mode>, gn/<n>/<c>/<h>x<w>/<G>/<silu>/<mode>.
#include "cusim.h"
#include <string>
extern "C" {
#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
}

uint32_t g_seed = 7654321;
#include "simtest.h"

template <typename X> static X *dcopy(const std::vector<X> &h) {
    X *p = dalloc<X>(h.size());
    memcpy(p, h.data(), sizeof(X) * h.size());
    return p;
}
static std::vector<float> rnd(int64_t n, float scale, float off) {
    std::vector<float> v(n);
    for (auto &x : v) x = scale * frand() + off;
    return v;
}
static void finish(const char *tag, std::string &line, int err0) {
    if (case_end() || cusim_errors - err0) { g_fail++; line += " SIMFAULTS/cudafail!"; }
    printf("%-34s%s %s\n", tag, line.c_str(), line.find('!') == std::string::npos ? "PASS" : "FAIL");
    fflush(stdout);
    g_runs++;
}

// mode 0 fp32 fwd+bwd, 1 bf16 fwd, 2 fp16 fwd
static void ln_case(int mode, int n, int c, const char *tag) {
    const int64_t nt = (int64_t)n * c;
    const float eps = 1e-5f;
    int err0 = cusim_errors, fp16 = mode == 2;
    case_begin(fp16);
    std::vector<float> x = rnd(nt, 2.f, 0.3f), g = rnd(c, 1.f, 0.f), b = rnd(c, 1.f, 0.f), dy = rnd(nt, 1.f, 0.f);
    std::vector<float> dg = rnd(c, 1.f, 0.f), db = rnd(c, 1.f, 0.f), y(nt), mean(n), rstd(n), dx(nt);
    std::vector<uint16_t> x16(nt);
    if (mode) for (int64_t i = 0; i < nt; i++) { x16[i] = to16(x[i], fp16); x[i] = to32(x16[i], fp16); }
    cd_layernorm_fwd(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), n, c, eps);
    float *gg = dcopy(g), *gb = dcopy(b), *gm = dalloc<float>(n), *gr = dalloc<float>(n);
    std::string line;
    std::vector<float> gy(nt);
    if (mode == 0) {
        float *gx = dcopy(x), *gyd = dalloc<float>(nt);
        cd_cuda_layernorm_fwd(gyd, gm, gr, gx, gg, gb, n, c, eps, g_st);
        check(tag, "y", gyd, y.data(), nt, 1e-5, line);
        check(tag, "mean", gm, mean.data(), n, 1e-5, line);
        check(tag, "rstd", gr, rstd.data(), n, 1e-5, line);
        // backward on the CPU's statistics
        float *gdy = dcopy(dy), *gdg = dcopy(dg), *gdb = dcopy(db), *gdx = dalloc<float>(nt), *cm = dcopy(mean),
              *cr = dcopy(rstd);
        cd_layernorm_bwd(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(), g.data(), n, c);
        cd_cuda_layernorm_bwd(gdx, gdg, gdb, gdy, gx, cm, cr, gg, n, c, g_st);
        check(tag, "dx", gdx, dx.data(), nt, 1e-5, line);
        check(tag, "dg", gdg, dg.data(), c, 1e-5, line);
        check(tag, "db", gdb, db.data(), c, 1e-5, line);
        for (void *p : {(void *)gx, (void *)gyd, (void *)gdy, (void *)gdg, (void *)gdb, (void *)gdx, (void *)cm, (void *)cr})
            cd_cuda_free(p);
    } else {
        uint16_t *gx = dcopy(x16), *gyd = dalloc<uint16_t>(nt);
        cd_cuda_layernorm_fwd_bf16(gyd, gm, gr, gx, gg, gb, n, c, eps, g_st);
        for (int64_t i = 0; i < nt; i++) gy[i] = to32(gyd[i], fp16);
        check(tag, "y", gy.data(), y.data(), nt, fp16 ? 2e-3 : 1e-2, line);
        check(tag, "mean", gm, mean.data(), n, 1e-5, line);
        check(tag, "rstd", gr, rstd.data(), n, 1e-5, line);
        cd_cuda_free(gx); cd_cuda_free(gyd);
    }
    for (void *p : {(void *)gg, (void *)gb, (void *)gm, (void *)gr}) cd_cuda_free(p);
    finish(tag, line, err0);
}

static void gn_case(int mode, int n, int c, int hw, int G, int silu, const char *tag) {
    const int64_t nt = (int64_t)n * c * hw;
    const float eps = 1e-6f;
    int err0 = cusim_errors, fp16 = mode == 2;
    case_begin(fp16);
    std::vector<float> x = rnd(nt, 3.f, 0.5f), g = rnd(c, 1.f, 0.f), b = rnd(c, 1.f, 0.f), dy = rnd(nt, 1.f, 0.f);
    std::vector<float> dg = rnd(c, 1.f, 0.f), db = rnd(c, 1.f, 0.f), y(nt), mean(n * G), rstd(n * G), dx(nt);
    std::vector<uint16_t> x16(nt);
    if (mode) for (int64_t i = 0; i < nt; i++) { x16[i] = to16(x[i], fp16); x[i] = to32(x16[i], fp16); }
    cd_groupnorm_fwd(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), n, c, hw, G, eps, silu);
    float *gg = dcopy(g), *gb = dcopy(b), *gm = dalloc<float>(n * G), *gr = dalloc<float>(n * G);
    std::string line;
    std::vector<float> gy(nt);
    if (mode == 0) {
        float *gx = dcopy(x), *gyd = dalloc<float>(nt);
        cd_cuda_groupnorm_fwd(gyd, gm, gr, gx, gg, gb, n, c, hw, G, eps, silu, g_st);
        check(tag, "y", gyd, y.data(), nt, 1e-5, line);
        check(tag, "mean", gm, mean.data(), n * G, 1e-5, line);
        check(tag, "rstd", gr, rstd.data(), n * G, 1e-5, line);
        float *gdy = dcopy(dy), *gdg = dcopy(dg), *gdb = dcopy(db), *gdx = dalloc<float>(nt), *cm = dcopy(mean),
              *cr = dcopy(rstd);
        cd_groupnorm_bwd(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(), g.data(),
                         b.data(), n, c, hw, G, silu);
        cd_cuda_groupnorm_bwd(gdx, gdg, gdb, gdy, gx, cm, cr, gg, gb, n, c, hw, G, silu, g_st);
        check(tag, "dx", gdx, dx.data(), nt, 1e-5, line);
        check(tag, "dg", gdg, dg.data(), c, 1e-5, line);
        check(tag, "db", gdb, db.data(), c, 1e-5, line);
        for (void *p : {(void *)gx, (void *)gyd, (void *)gdy, (void *)gdg, (void *)gdb, (void *)gdx, (void *)cm, (void *)cr})
            cd_cuda_free(p);
    } else {
        uint16_t *gx = dcopy(x16), *gyd = dalloc<uint16_t>(nt);
        cd_cuda_groupnorm_fwd_bf16(gyd, gm, gr, gx, gg, gb, n, c, hw, G, eps, silu, g_st);
        for (int64_t i = 0; i < nt; i++) gy[i] = to32(gyd[i], fp16);
        check(tag, "y", gy.data(), y.data(), nt, fp16 ? 2e-3 : 1e-2, line);
        check(tag, "mean", gm, mean.data(), n * G, 1e-5, line);
        check(tag, "rstd", gr, rstd.data(), n * G, 1e-5, line);
        cd_cuda_free(gx); cd_cuda_free(gyd);
    }
    for (void *p : {(void *)gg, (void *)gb, (void *)gm, (void *)gr}) cd_cuda_free(p);
    finish(tag, line, err0);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : "";
    static const char *modes[] = {"f32", "bf16", "fp16"};
    const int ln[][2] = {{77, 768}, {130, 320}, {9, 40}};
    const int gn[][5] = {{2, 64, 16, 16, 32}, {2, 64, 7, 9, 32}, {1, 96, 7, 7, 3}, {1, 32, 33, 33, 8}, {1, 32, 7, 9, 8}};
    char key[96];
    for (auto &s : ln)
        for (int m = 0; m < 3; m++) {
            snprintf(key, sizeof key, "ln/%d/%d/%s", s[0], s[1], modes[m]);
            if (strstr(key, filter)) ln_case(m, s[0], s[1], key);
        }
    for (auto &s : gn)
        for (int silu = 0; silu < 2; silu++)
            for (int m = 0; m < 3; m++) {
                snprintf(key, sizeof key, "gn/%d/%d/%dx%d/%d/%s/%s", s[0], s[1], s[2], s[3], s[4],
                         silu ? "silu" : "plain", modes[m]);
                if (strstr(key, filter)) gn_case(m, s[0], s[1], s[2] * s[3], s[4], silu, key);
            }
    printf("%d runs, %d failures, %d simulator faults\n", g_runs, g_fail, cusim_errors);
    return g_fail || !g_runs ? 1 : 0;
}
