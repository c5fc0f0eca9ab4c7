// Runs the simulated 16-bit flash-attention kernels against the fp32 CPU reference
// (kernels/attention_cpu.c) on 16-bit-rounded inputs. Usage: test [filter-substring] [--quick]
#include "cusim.h"
#include <string>
extern "C" {
#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
}
extern int cusim_sms;

uint32_t g_seed = 1234567;
#include "simtest.h"

struct Case { int causal, B, H, Nq, Nk, detach, sms, out_f32; };


// The device backward of one case: the atomic (default) mode, then the deterministic mode
// twice; each checked against the reference, and the two deterministic runs must agree bit for
// bit (the simulator starts blocks in a different order at every launch, so float atomics from
// different blocks would not).
struct Bwd16 {
    const Case &c;
    int B, H, Nq, Nk, D;
    float scale;
    double tol;
    const char *tag;
    const uint16_t *ddo16, *dq16, *dk16, *dv16, *dout16;
    const float *dlse;
    int64_t nq, nk;
};
static void bwd_runs(const Bwd16 &k, const std::vector<float> &rdq, const std::vector<float> &rdk,
                     const std::vector<float> &rdv, std::string &line) {
    const int64_t nq = k.nq, nk = k.nk;
    std::vector<float> first;
    for (int run = 0; run < 3; run++) {
        const int det = run > 0;
        cd_cuda_set_deterministic(det);
        float *gdq = dalloc<float>(nq), *gdk = dalloc<float>(nk), *gdv = dalloc<float>(nk);
        if (k.c.causal)
            cd_cuda_attention_causal_bwd_bf16(gdq, gdk, gdv, k.ddo16, k.dq16, k.dk16, k.dv16, k.dout16, k.dlse, k.B, k.H,
                                              k.Nq, k.D, k.scale, g_st);
        else
            cd_cuda_attention_bwd_bf16(gdq, gdk, gdv, k.ddo16, k.dq16, k.dk16, k.dv16, k.dout16, k.dlse, k.B, k.H, k.Nq,
                                       k.Nk, k.D, k.scale, k.c.detach, g_st);
        cd_cuda_sync(g_st);
        std::vector<float> all(gdq, gdq + nq);
        all.insert(all.end(), gdk, gdk + nk);
        all.insert(all.end(), gdv, gdv + nk);
        if (run == 2) {
            const bool same = !memcmp(all.data(), first.data(), 4 * first.size());
            line += same ? " rep=same" : " rep=DIFFERS!";
            if (!same) g_fail++;
        } else {
            if (run == 1) first = all;
            std::string pre = det ? " det:" : "";
            check(k.tag, (pre + "dq").c_str(), gdq, rdq.data(), nq, k.tol, line);
            check(k.tag, (pre + "dk").c_str(), gdk, rdk.data(), nk, k.tol, line);
            check(k.tag, (pre + "dv").c_str(), gdv, rdv.data(), nk, k.tol, line);
            if (k.c.detach) { // token-0 key/value rows exactly zero
                const int C = k.H * k.D;
                int bad = 0;
                for (int b = 0; b < k.B; b++)
                    for (int j = 0; j < C; j++)
                        if (gdk[(int64_t)b * k.Nk * C + j] != 0.f || gdv[(int64_t)b * k.Nk * C + j] != 0.f) bad++;
                line += (det ? pre : std::string(" ")) + (bad ? "k0=NONZERO!" : "k0=0");
                if (bad) g_fail++;
            }
        }
        for (void *p : {(void *)gdq, (void *)gdk, (void *)gdv}) cd_cuda_free(p);
    }
    cd_cuda_set_deterministic(0);
}

static void run_case(int fp16, int D, const Case &c) {
    const int B = c.B, H = c.H, Nq = c.Nq, Nk = c.Nk, C = H * D;
    const int64_t nq = (int64_t)B * Nq * C, nk = (int64_t)B * Nk * C, nl = (int64_t)B * H * Nq;
    const float scale = 1.f / sqrtf((float)D);
    const double tol = fp16 ? 2e-3 : 1e-2;
    char tag[160];
    snprintf(tag, sizeof tag, "%s D=%d %s B=%d H=%d Nq=%d Nk=%d detach=%d sms=%d out=%s", fp16 ? "fp16" : "bf16", D,
             c.causal ? "causal" : "plain ", B, H, Nq, Nk, c.detach, c.sms, c.out_f32 ? "f32" : "16");
    case_begin(fp16);
    cusim_sms = c.sms;
    int err0 = cusim_errors;
    // inputs: q, k scaled up so the softmax is peaked; rounded to 16 bits
    std::vector<uint16_t> hq(nq), hk(nk), hv(nk), hdo(nq);
    std::vector<float> fq(nq), fk(nk), fv(nk), fdo(nq);
    for (int64_t i = 0; i < nq; i++) { hq[i] = to16(2.5f * frand(), fp16); fq[i] = to32(hq[i], fp16); }
    for (int64_t i = 0; i < nk; i++) { hk[i] = to16(2.5f * frand(), fp16); fk[i] = to32(hk[i], fp16); }
    for (int64_t i = 0; i < nk; i++) { hv[i] = to16(frand(), fp16); fv[i] = to32(hv[i], fp16); }
    for (int64_t i = 0; i < nq; i++) { hdo[i] = to16(frand(), fp16); fdo[i] = to32(hdo[i], fp16); }
    // reference forward
    std::vector<float> ro(nq), rl(nl);
    if (c.causal) cd_attention_causal_fwd(ro.data(), rl.data(), fq.data(), fk.data(), fv.data(), B, H, Nq, D, scale);
    else cd_attention_fwd(ro.data(), rl.data(), fq.data(), fk.data(), fv.data(), B, H, Nq, Nk, D, scale);
    // device buffers
    uint16_t *dq16 = dalloc<uint16_t>(nq), *dk16 = dalloc<uint16_t>(nk), *dv16 = dalloc<uint16_t>(nk),
             *ddo16 = dalloc<uint16_t>(nq), *dout16 = dalloc<uint16_t>(nq);
    memcpy(dq16, hq.data(), 2 * nq); memcpy(dk16, hk.data(), 2 * nk); memcpy(dv16, hv.data(), 2 * nk);
    memcpy(ddo16, hdo.data(), 2 * nq);
    float *dlse = dalloc<float>(nl);
    void *out = c.out_f32 ? (void *)dalloc<float>(nq) : (void *)dalloc<uint16_t>(nq);
    if (c.causal) cd_cuda_attention_causal_fwd_bf16(out, !c.out_f32, dlse, dq16, dk16, dv16, B, H, Nq, D, scale, g_st);
    else cd_cuda_attention_fwd_bf16(out, !c.out_f32, dlse, dq16, dk16, dv16, B, H, Nq, Nk, D, scale, g_st);
    std::vector<float> go(nq);
    for (int64_t i = 0; i < nq; i++) go[i] = c.out_f32 ? ((float *)out)[i] : to32(((uint16_t *)out)[i], fp16);
    std::string line;
    check(tag, "out", go.data(), ro.data(), nq, tol, line);
    check(tag, "lse", dlse, rl.data(), nl, tol, line);
    // backward: both sides get the reference out rounded to 16 bits and the reference lse
    std::vector<float> fo(nq);
    for (int64_t i = 0; i < nq; i++) { dout16[i] = to16(ro[i], fp16); fo[i] = to32(dout16[i], fp16); }
    memcpy(dlse, rl.data(), 4 * nl);
    std::vector<float> rdq(nq), rdk(nk), rdv(nk);
    if (c.causal)
        cd_attention_causal_bwd(rdq.data(), rdk.data(), rdv.data(), fdo.data(), fq.data(), fk.data(), fv.data(),
                                fo.data(), rl.data(), B, H, Nq, D, scale);
    else
        cd_attention_bwd(rdq.data(), rdk.data(), rdv.data(), fdo.data(), fq.data(), fk.data(), fv.data(), fo.data(),
                         rl.data(), B, H, Nq, Nk, D, scale, c.detach);
    Bwd16 k = {c, B, H, Nq, Nk, D, scale, tol, tag, ddo16, dq16, dk16, dv16, dout16, dlse, nq, nk};
    bwd_runs(k, rdq, rdk, rdv, line);
    int faults = cusim_errors - err0, cf = case_end();
    if (faults || cf) { g_fail++; line += " SIMFAULTS/cudafail!"; }
    printf("%-78s%s %s\n", tag, line.c_str(), line.find('!') == std::string::npos ? "PASS" : "FAIL");
    fflush(stdout);
    g_runs++;
    for (void *p : {(void *)dq16, (void *)dk16, (void *)dv16, (void *)ddo16, (void *)dout16, (void *)dlse, out})
        cd_cuda_free(p);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : "";
    if (getenv("CUSIM_SEED")) g_seed = (uint32_t)atoi(getenv("CUSIM_SEED"));
    // causal, B, H, Nq, Nk, detach, sms, out_f32
    const Case all[] = {
        {0, 1, 2, 77, 77, 0, 132, 0},  {0, 1, 2, 77, 77, 1, 132, 1},  {0, 1, 2, 64, 77, 1, 132, 0},
        {0, 2, 1, 130, 20, 0, 132, 0}, {0, 1, 1, 37, 37, 0, 132, 0},  {0, 1, 1, 131, 131, 0, 1, 0},
        {0, 1, 1, 131, 77, 1, 4, 1},   {1, 1, 2, 77, 77, 0, 132, 0},  {1, 2, 2, 37, 37, 0, 132, 1},
        {1, 1, 1, 131, 131, 0, 132, 0}, {1, 1, 1, 131, 131, 0, 1, 0}, {1, 1, 2, 131, 131, 0, 4, 0},
    };
    for (int fp16 = 0; fp16 < 2; fp16++)
        for (int D : {40, 64, 80, 160})
            for (const Case &c : all) {
                char key[64];
                snprintf(key, sizeof key, "%s/%d/%d/%d/%d", fp16 ? "fp16" : "bf16", D, c.causal, c.Nq, c.Nk);
                if (!strstr(key, filter)) continue;
                if (D == 160 && !(argc > 2 && !strcmp(argv[2], "--d160"))) continue;
                if (D != 160 && argc > 2 && !strcmp(argv[2], "--d160")) continue;
                run_case(fp16, D, c);
            }
    printf("%d runs, %d failures, %d simulator faults\n", g_runs, g_fail, cusim_errors);
    return g_fail ? 1 : 0;
}
