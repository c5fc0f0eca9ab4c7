// Schedulers against the golden references (diffusers 0.25.1): alphas_cumprod, add_noise,
// v-prediction velocity, and for ddim (eta 0), ddpm, pndm, euler, euler_a the 20-step
// timesteps, init_noise_sigma and the trajectory under the stand-in model
// eps = 0.3 * scale_model_input(x, t) + 0.05, injecting the recorded noise. Both golden sets
// (tiny-sd: epsilon, tiny-sd2: v_prediction). Plus config parsing and error cases.
#include "tests/testlib.h"
#include "model/scheduler.h"
#include "core/safetensors.h"
#include "core/json.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const float *noise; int64_t per; } rec_noise;
static int rec_noise_fn(void *ctx, int step, float *out, int64_t n) {
    rec_noise *r = ctx;
    if (!r->noise) return cd_err("no recorded noise");
    if (n != r->per) return cd_err("noise size %lld != %lld", (long long)n, (long long)r->per);
    memcpy(out, r->noise + (int64_t)step * r->per, sizeof(float) * n);
    return 0;
}

static int load_set(const char *set, cd_st_file *f, cd_sched_config *cfg) {
    char *p = cd_fmt("%s/%s/cases/schedulers.safetensors", tl_golden(), set);
    char *c = cd_fmt("%s/%s/model/scheduler/scheduler_config.json", tl_golden(), set);
    int rc = cd_st_open(f, p);
    if (rc == 0) rc = cd_sched_config_load(cfg, c);
    free(p); free(c);
    return rc;
}

// Run one scheduler for 20 steps from trajectory.start and compare every step.
// Free-running: the whole trajectory within 1e-3; teacher-forced (one step from the golden
// previous sample, not for PNDM whose history is internal): each step within 1e-4.
static void check_traj(const char *set, cd_sched_kind kind) {
    cd_st_file f; cd_sched_config cfg;
    CHECK_OK(load_set(set, &f, &cfg));
    const char *nm = cd_sched_kind_name(kind);
    cd_scheduler s;
    CHECK_OK(cd_sched_init(&s, kind, &cfg));
    CHECK_OK(cd_sched_set_timesteps(&s, 20));
    char key[64];
    float *ts = NULL, *sig = NULL, *traj = NULL, *noise = NULL, *start = NULL;
    int64_t nts, nsig, ntraj, nnoise = 0, nstart;
    snprintf(key, sizeof key, "%s.timesteps", nm);
    CHECK_OK(cd_st_load_f32(&f, key, &ts, &nts));
    CHECKF(nts == s.n, "%s: %d model calls, golden %lld", nm, s.n, (long long)nts);
    for (int i = 0; i < s.n; i++)   // golden stores Euler's fractional timesteps truncated
        CHECKF(floorf(s.timesteps[i]) == ts[i], "%s timestep %d: %g, golden %g", nm, i, s.timesteps[i], ts[i]);
    snprintf(key, sizeof key, "%s.init_noise_sigma", nm);
    CHECK_OK(cd_st_load_f32(&f, key, &sig, &nsig));
    CHECKF(fabsf(s.init_noise_sigma - sig[0]) <= 1e-5f * sig[0], "%s init_noise_sigma %.7g golden %.7g", nm, s.init_noise_sigma, sig[0]);
    snprintf(key, sizeof key, "%s.trajectory", nm);
    CHECK_OK(cd_st_load_f32(&f, key, &traj, &ntraj));
    CHECK_OK(cd_st_load_f32(&f, "trajectory.start", &start, &nstart));
    snprintf(key, sizeof key, "%s.noise", nm);
    if (cd_st_find(&f, key)) CHECK_OK(cd_st_load_f32(&f, key, &noise, &nnoise));
    int64_t n = nstart;
    rec_noise rn = {noise, n};
    s.noise = rec_noise_fn; s.noise_ctx = &rn;
    float *x = malloc(sizeof(float) * n), *xin = malloc(sizeof(float) * n), *eps = malloc(sizeof(float) * n);
    for (int64_t k = 0; k < n; k++) x[k] = start[k] * s.init_noise_sigma;
    double worst = 0;
    for (int i = 0; i < s.n && !tl_failed_now; i++) {
        cd_sched_scale_input(&s, i, xin, x, n);
        for (int64_t k = 0; k < n; k++) eps[k] = 0.3f * xin[k] + 0.05f;
        CHECK_OK(cd_sched_step(&s, i, eps, x, n));
        double e = tl_relerr(x, traj + i * n, n);
        if (e > worst) worst = e;
        CHECKF(e <= 1e-3, "%s/%s: trajectory step %d relerr %.3g > 1e-3", set, nm, i, e);
    }
    if (getenv("TL_VERBOSE")) fprintf(stderr, "%s/%s: worst trajectory relerr %.3g\n", set, nm, worst);
    if (kind != CD_SCHED_PNDM && !tl_failed_now) {   // one step from the golden state
        cd_scheduler s1;
        CHECK_OK(cd_sched_init(&s1, kind, &cfg));
        CHECK_OK(cd_sched_set_timesteps(&s1, 20));
        s1.noise = rec_noise_fn; s1.noise_ctx = &rn;
        for (int i = 0; i < s1.n && !tl_failed_now; i++) {
            const float *prev = i == 0 ? NULL : traj + (i - 1) * n;
            for (int64_t k = 0; k < n; k++) x[k] = prev ? prev[k] : start[k] * s1.init_noise_sigma;
            cd_sched_scale_input(&s1, i, xin, x, n);
            for (int64_t k = 0; k < n; k++) eps[k] = 0.3f * xin[k] + 0.05f;
            CHECK_OK(cd_sched_step(&s1, i, eps, x, n));
            double e = tl_relerr(x, traj + i * n, n);
            CHECKF(e <= 1e-4, "%s/%s: single step %d relerr %.3g > 1e-4", set, nm, i, e);
        }
        cd_sched_free(&s1);
    }
    free(x); free(xin); free(eps); free(ts); free(sig); free(traj); free(noise); free(start);
    cd_sched_free(&s);
    cd_st_close(&f);
}

#define TRAJ_TEST(set, sname, kind) \
    TEST(sname) { if (!tl_golden()) return; check_traj(set, kind); }
TRAJ_TEST("tiny-sd", ddim_eps, CD_SCHED_DDIM)
TRAJ_TEST("tiny-sd", ddpm_eps, CD_SCHED_DDPM)
TRAJ_TEST("tiny-sd", pndm_eps, CD_SCHED_PNDM)
TRAJ_TEST("tiny-sd", euler_eps, CD_SCHED_EULER)
TRAJ_TEST("tiny-sd", euler_a_eps, CD_SCHED_EULER_A)
TRAJ_TEST("tiny-sd2", ddim_v, CD_SCHED_DDIM)
TRAJ_TEST("tiny-sd2", ddpm_v, CD_SCHED_DDPM)
TRAJ_TEST("tiny-sd2", pndm_v, CD_SCHED_PNDM)
TRAJ_TEST("tiny-sd2", euler_v, CD_SCHED_EULER)
TRAJ_TEST("tiny-sd2", euler_a_v, CD_SCHED_EULER_A)

static void check_tables(const char *set) {
    cd_st_file f; cd_sched_config cfg;
    CHECK_OK(load_set(set, &f, &cfg));
    float *ac = NULL, *x0 = NULL, *nz = NULL, *tt = NULL, *want = NULL, *vel = NULL;
    int64_t n, nx, nt;
    CHECK_OK(cd_st_load_f32(&f, "alphas_cumprod", &ac, &n));
    CHECK(n == 1000);
    float mine[1000];
    CHECK_OK(cd_sched_alphas_cumprod(&cfg, mine));
    double e = tl_relerr(mine, ac, 1000);
    CHECKF(e <= 1e-6, "alphas_cumprod relerr %.3g", e);
    CHECK_OK(cd_st_load_f32(&f, "add_noise.x0", &x0, &nx));
    CHECK_OK(cd_st_load_f32(&f, "add_noise.noise", &nz, &nx));
    CHECK_OK(cd_st_load_f32(&f, "add_noise.t", &tt, &nt));
    CHECK_OK(cd_st_load_f32(&f, "add_noise.out", &want, &nx));
    CHECK_OK(cd_st_load_f32(&f, "velocity.out", &vel, &nx));
    int t[8];
    for (int b = 0; b < nt; b++) t[b] = (int)tt[b];
    float *out = malloc(sizeof(float) * nx);
    cd_sched_add_noise(mine, out, x0, nz, t, (int)nt, nx / nt);
    e = tl_relerr(out, want, nx);
    CHECKF(e <= 1e-5, "add_noise relerr %.3g", e);
    cd_sched_velocity(mine, out, x0, nz, t, (int)nt, nx / nt);
    e = tl_relerr(out, vel, nx);
    CHECKF(e <= 1e-5, "velocity relerr %.3g", e);
    free(out); free(ac); free(x0); free(nz); free(tt); free(want); free(vel);
    cd_st_close(&f);
}
TEST(tables_tiny_sd) { if (tl_golden()) check_tables("tiny-sd"); }
TEST(tables_tiny_sd2) { if (tl_golden()) check_tables("tiny-sd2"); }

// Timestep derivations (diffusers 0.25 set_timesteps), independent of golden files.
TEST(spacing_leading_trailing_linspace) {
    cd_sched_config c;
    cd_sched_config_default(&c);
    c.steps_offset = 1;
    cd_scheduler s;
    CHECK_OK(cd_sched_init(&s, CD_SCHED_DDIM, &c));
    CHECK_OK(cd_sched_set_timesteps(&s, 3));   // leading: arange(3)*333 + 1, reversed
    CHECK(s.timesteps[0] == 667 && s.timesteps[1] == 334 && s.timesteps[2] == 1);
    cd_sched_free(&s);
    c.timestep_spacing = CD_SPACING_TRAILING;   // round(arange(1000, 0, -333.33)) - 1
    CHECK_OK(cd_sched_init(&s, CD_SCHED_DDIM, &c));
    CHECK_OK(cd_sched_set_timesteps(&s, 3));
    CHECK(s.timesteps[0] == 999 && s.timesteps[1] == 666 && s.timesteps[2] == 332);
    cd_sched_free(&s);
    c.timestep_spacing = CD_SPACING_LINSPACE;   // linspace(0, 999, 4).round() reversed
    CHECK_OK(cd_sched_init(&s, CD_SCHED_DDPM, &c));
    CHECK_OK(cd_sched_set_timesteps(&s, 4));
    CHECK(s.timesteps[0] == 999 && s.timesteps[1] == 666 && s.timesteps[2] == 333 && s.timesteps[3] == 0);
    cd_sched_free(&s);
    c.timestep_spacing = CD_SPACING_LEADING;    // Euler leading: init sigma sqrt(max^2+1)
    CHECK_OK(cd_sched_init(&s, CD_SCHED_EULER, &c));
    CHECK_OK(cd_sched_set_timesteps(&s, 10));
    CHECK(s.timesteps[0] == 901 && s.timesteps[9] == 1);
    CHECK(fabsf(s.init_noise_sigma - sqrtf(s.sigmas[0] * s.sigmas[0] + 1)) < 1e-5f);
    cd_sched_free(&s);
}

TEST(config_defaults_follow_the_reading_class) {
    cJSON *j;
    const char *txt = "{\"_class_name\":\"PNDMScheduler\",\"beta_schedule\":\"scaled_linear\","
                      "\"beta_start\":0.00085,\"beta_end\":0.012,\"steps_offset\":1}";
    CHECK_OK(cd_json_parse(txt, strlen(txt), "cfg", &j));
    cd_sched_config c;
    CHECK_OK(cd_sched_config_from_json(&c, j, "cfg"));
    cJSON_Delete(j);
    cd_scheduler s;
    CHECK_OK(cd_sched_init(&s, CD_SCHED_DDIM, &c));   // DDIM: clip_sample and set_alpha_to_one default true
    CHECK(s.cfg.clip_sample == 1 && s.final_alpha_cumprod == 1.0f);
    CHECK(s.cfg.timestep_spacing == CD_SPACING_LEADING);
    cd_sched_free(&s);
    CHECK_ERR(cd_sched_init(&s, CD_SCHED_PNDM, &c), "skip_prk_steps");
    CHECK_OK(cd_sched_init(&s, CD_SCHED_EULER_A, &c));
    CHECK(s.cfg.timestep_spacing == CD_SPACING_LINSPACE);
    CHECK_OK(cd_sched_set_timesteps(&s, 5));
    float x[4] = {0}, e[4] = {0};
    CHECK_ERR(cd_sched_step(&s, 0, e, x, 4), "noise source");
    cd_sched_free(&s);
}

TEST(config_errors_name_the_file_and_key) {
    cJSON *j;
    const char *txt = "{\"beta_schedule\":\"sigmoid_x\"}";
    CHECK_OK(cd_json_parse(txt, strlen(txt), "x", &j));
    cd_sched_config c;
    CHECK_ERR(cd_sched_config_from_json(&c, j, "sched.json"), "sched.json: beta_schedule 'sigmoid_x'");
    cJSON_Delete(j);
    txt = "{\"use_karras_sigmas\":true}";
    CHECK_OK(cd_json_parse(txt, strlen(txt), "x", &j));
    CHECK_ERR(cd_sched_config_from_json(&c, j, "sched.json"), "use_karras_sigmas");
    cJSON_Delete(j);
    cd_sched_kind k;
    CHECK_ERR(cd_sched_kind_parse("lms", &k), "unknown scheduler 'lms'");
    CHECK_OK(cd_sched_kind_parse("EulerAncestralDiscreteScheduler", &k));
    CHECK(k == CD_SCHED_EULER_A);
}

int main(void) {
    RUN(ddim_eps); RUN(ddpm_eps); RUN(pndm_eps); RUN(euler_eps); RUN(euler_a_eps);
    RUN(ddim_v); RUN(ddpm_v); RUN(pndm_v); RUN(euler_v); RUN(euler_a_v);
    RUN(tables_tiny_sd); RUN(tables_tiny_sd2);
    RUN(spacing_leading_trailing_linspace);
    RUN(config_defaults_follow_the_reading_class);
    RUN(config_errors_name_the_file_and_key);
    return tl_done();
}
