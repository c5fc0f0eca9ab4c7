// Golden case schedulers.safetensors: alphas_cumprod, add_noise, velocity, and the 20-step
// trajectories of ddim (eta 0), ddpm, pndm, euler, euler_a under the stand-in model
// eps = 0.3 * scale_model_input(x, t) + 0.05, with the recorded noise injected. The config
// is MODEL/scheduler/scheduler_config.json (or schedulers.json's "config" when no --model).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "model/scheduler.h"
#include "verify/verify.h"

#define NAME "schedulers"

typedef struct { const float *noise; int64_t per; } rec_noise;
static int rec_noise_fn(void *ctx, int step, float *out, int64_t n) {
    rec_noise *r = ctx;
    if (!r->noise) return cd_err("the case file has no recorded noise for this scheduler");
    if (n != r->per) return cd_err("noise of %lld values asked, %lld recorded", (long long)n, (long long)r->per);
    memcpy(out, r->noise + (int64_t)step * r->per, sizeof(float) * n);
    return 0;
}

static int load_config(cd_verify_ctx *v, const char *path, cd_sched_config *cfg) {
    if (v->model) {
        char *p = cd_path_join(v->model, "scheduler/scheduler_config.json");
        int rc = cd_sched_config_load(cfg, p);
        free(p);
        return rc;
    }
    char *dir = cd_strdup(path), *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    char *jp = cd_path_join(dir, "schedulers.json");
    free(dir);
    cJSON *j;
    int rc = cd_json_load(jp, &j);
    if (!rc) rc = cd_sched_config_from_json(cfg, cJSON_GetObjectItemCaseSensitive(j, "config"), jp);
    if (!rc) cJSON_Delete(j);
    free(jp);
    return rc;
}

static void run_tables(cd_verify_ctx *v, const cd_st_file *f, const cd_sched_config *cfg) {
    float *ac = NULL, *x0 = NULL, *nz = NULL, *tt = NULL, *want = NULL, *vel = NULL;
    int64_t n, nx, nt;
    float *mine = cd_malloc(sizeof(float) * cfg->num_train_timesteps);
    cd_sched_alphas_cumprod(cfg, mine);
    if (cd_st_load_f32(f, "alphas_cumprod", &ac, &n) == 0 && n == cfg->num_train_timesteps)
        cd_verify_check(v, NAME, "alphas_cumprod", mine, ac, n, CD_TOL_LAYER);
    else cd_verify_fail(v, NAME, "alphas_cumprod", "missing or wrong length");
    if (cd_st_load_f32(f, "add_noise.x0", &x0, &nx) || cd_st_load_f32(f, "add_noise.noise", &nz, &nx) ||
        cd_st_load_f32(f, "add_noise.t", &tt, &nt) || cd_st_load_f32(f, "add_noise.out", &want, &nx) ||
        cd_st_load_f32(f, "velocity.out", &vel, &nx) || nt < 1 || nt > 64) {
        cd_verify_fail(v, NAME, "add_noise", cd_errmsg());
    } else {
        int t[64];
        for (int b = 0; b < nt; b++) t[b] = (int)tt[b];
        float *out = cd_malloc(sizeof(float) * nx);
        cd_sched_add_noise(mine, out, x0, nz, t, (int)nt, nx / nt);
        cd_verify_check(v, NAME, "add_noise.out", out, want, nx, CD_TOL_LAYER);
        cd_sched_velocity(mine, out, x0, nz, t, (int)nt, nx / nt);
        cd_verify_check(v, NAME, "velocity.out", out, vel, nx, CD_TOL_LAYER);
        free(out);
    }
    free(mine); free(ac); free(x0); free(nz); free(tt); free(want); free(vel);
}

// One scheduler's trajectory: timesteps, init_noise_sigma, and every step within 1e-3.
static int run_traj(cd_verify_ctx *v, const cd_st_file *f, const cd_sched_config *cfg, cd_sched_kind kind) {
    const char *nm = cd_sched_kind_name(kind);
    char key[64], what[64];
    float *ts = NULL, *sig = NULL, *traj = NULL, *noise = NULL, *start = NULL;
    int64_t nts, nsig, ntraj, nn, n;
    snprintf(key, sizeof key, "%s.trajectory", nm);
    if (!cd_st_find(f, key)) return 0;
    cd_scheduler s;
    CD_TRY(cd_sched_init(&s, kind, cfg));
    int rc = cd_sched_set_timesteps(&s, 20);
    snprintf(key, sizeof key, "%s.timesteps", nm);
    if (!rc) rc = cd_st_load_f32(f, key, &ts, &nts);
    snprintf(key, sizeof key, "%s.init_noise_sigma", nm);
    if (!rc) rc = cd_st_load_f32(f, key, &sig, &nsig);
    snprintf(key, sizeof key, "%s.trajectory", nm);
    if (!rc) rc = cd_st_load_f32(f, key, &traj, &ntraj);
    if (!rc) rc = cd_st_load_f32(f, "trajectory.start", &start, &n);
    snprintf(key, sizeof key, "%s.noise", nm);
    if (!rc && cd_st_find(f, key)) rc = cd_st_load_f32(f, key, &noise, &nn);
    if (!rc && (nts != s.n || ntraj != nts * n)) rc = cd_err("%s: %d steps here, %lld in the case", nm, s.n, (long long)nts);
    if (!rc) {
        int bad = 0;   // the case stores Euler's fractional timesteps truncated
        for (int i = 0; i < s.n; i++) bad += (float)(int)s.timesteps[i] != ts[i];
        snprintf(what, sizeof what, "%s.timesteps", nm);
        cd_verify_result(v, NAME, what, "mismatches", bad, 0);
        snprintf(what, sizeof what, "%s.init_noise_sigma", nm);
        cd_verify_check(v, NAME, what, &s.init_noise_sigma, sig, 1, CD_TOL_LAYER);
        rec_noise rn = {noise, n};
        s.noise = rec_noise_fn; s.noise_ctx = &rn;
        float *x = cd_malloc(sizeof(float) * n), *xin = cd_malloc(sizeof(float) * n), *e = cd_malloc(sizeof(float) * n);
        for (int64_t k = 0; k < n; k++) x[k] = start[k] * s.init_noise_sigma;
        double worst = 0;
        for (int i = 0; i < s.n && !rc; i++) {
            cd_sched_scale_input(&s, i, xin, x, n);
            for (int64_t k = 0; k < n; k++) e[k] = 0.3f * xin[k] + 0.05f;
            rc = cd_sched_step(&s, i, e, x, n);
            double err = cd_verify_relerr(x, traj + i * n, n);
            if (err > worst) worst = err;
        }
        snprintf(what, sizeof what, "%s.trajectory", nm);
        if (!rc) cd_verify_result(v, NAME, what, "max_rel_err", worst, CD_TOL_GRAD);
        free(x); free(xin); free(e);
    }
    free(ts); free(sig); free(traj); free(noise); free(start);
    cd_sched_free(&s);
    return rc;
}

static int run(cd_verify_ctx *v, const char *path) {
    cd_sched_config cfg;
    CD_TRY(load_config(v, path, &cfg));
    cd_st_file f;
    CD_TRY(cd_st_open(&f, path));
    run_tables(v, &f, &cfg);
    for (int k = 0; k < CD_SCHED_COUNT; k++)
        if (run_traj(v, &f, &cfg, (cd_sched_kind)k))
            cd_verify_fail(v, NAME, cd_sched_kind_name((cd_sched_kind)k), cd_errmsg());
    cd_st_close(&f);
    return 0;
}

const cd_verify_case cd_verify_case_schedulers = {NAME, "schedulers.safetensors", run};
