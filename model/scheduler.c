// Schedulers (see scheduler.h). Formulas follow diffusers 0.25.1:
// scheduling_ddim.py, scheduling_ddpm.py, scheduling_pndm.py, scheduling_euler_discrete.py,
// scheduling_euler_ancestral_discrete.py.
#include "model/scheduler.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/json.h"

static const char *kind_names[CD_SCHED_COUNT] = {"ddim", "ddpm", "pndm", "euler", "euler_a"};

int cd_sched_kind_parse(const char *s, cd_sched_kind *out) {
    static const struct { const char *name; cd_sched_kind k; } alias[] = {
        {"ddim", CD_SCHED_DDIM}, {"DDIMScheduler", CD_SCHED_DDIM},
        {"ddpm", CD_SCHED_DDPM}, {"DDPMScheduler", CD_SCHED_DDPM},
        {"pndm", CD_SCHED_PNDM}, {"plms", CD_SCHED_PNDM}, {"PNDMScheduler", CD_SCHED_PNDM},
        {"euler", CD_SCHED_EULER}, {"EulerDiscreteScheduler", CD_SCHED_EULER},
        {"euler_a", CD_SCHED_EULER_A}, {"euler-a", CD_SCHED_EULER_A},
        {"EulerAncestralDiscreteScheduler", CD_SCHED_EULER_A}};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (s && strcmp(s, alias[i].name) == 0) { *out = alias[i].k; return 0; }
    return cd_err("unknown scheduler '%s' (expected ddim, ddpm, pndm, euler or euler_a)", s ? s : "(null)");
}

const char *cd_sched_kind_name(cd_sched_kind k) {
    return (k >= 0 && k < CD_SCHED_COUNT) ? kind_names[k] : "?";
}

void cd_sched_config_default(cd_sched_config *c) {
    memset(c, 0, sizeof *c);
    c->num_train_timesteps = 1000;
    c->beta_start = 0.0001;
    c->beta_end = 0.02;
    c->beta_schedule = CD_BETAS_LINEAR;
    c->timestep_spacing = CD_SPACING_DEFAULT;
    c->set_alpha_to_one = -1;
    c->clip_sample = -1;
    c->clip_sample_range = 1.0;
    c->skip_prk_steps = -1;
    c->prediction_type = CD_PRED_EPSILON;
}

static int json_tristate(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) return -1;
    return cJSON_IsTrue(v) ? 1 : 0;
}

static int parse_strings(const cJSON *j, cd_sched_config *c, const char *what) {
    const char *bs = cd_json_str(j, "beta_schedule", "linear");
    if (strcmp(bs, "linear") == 0) c->beta_schedule = CD_BETAS_LINEAR;
    else if (strcmp(bs, "scaled_linear") == 0) c->beta_schedule = CD_BETAS_SCALED_LINEAR;
    else if (strcmp(bs, "squaredcos_cap_v2") == 0) c->beta_schedule = CD_BETAS_COSINE;
    else return cd_err("%s: beta_schedule '%s' is not supported (linear, scaled_linear, squaredcos_cap_v2)", what, bs);
    const char *sp = cd_json_str(j, "timestep_spacing", NULL);
    if (!sp) c->timestep_spacing = CD_SPACING_DEFAULT;
    else if (strcmp(sp, "leading") == 0) c->timestep_spacing = CD_SPACING_LEADING;
    else if (strcmp(sp, "trailing") == 0) c->timestep_spacing = CD_SPACING_TRAILING;
    else if (strcmp(sp, "linspace") == 0) c->timestep_spacing = CD_SPACING_LINSPACE;
    else return cd_err("%s: timestep_spacing '%s' is not supported (leading, trailing, linspace)", what, sp);
    const char *pt = cd_json_str(j, "prediction_type", "epsilon");
    if (strcmp(pt, "epsilon") == 0) c->prediction_type = CD_PRED_EPSILON;
    else if (strcmp(pt, "v_prediction") == 0) c->prediction_type = CD_PRED_V;
    else if (strcmp(pt, "sample") == 0) c->prediction_type = CD_PRED_SAMPLE;
    else return cd_err("%s: prediction_type '%s' is not supported (epsilon, v_prediction, sample)", what, pt);
    const char *vt = cd_json_str(j, "variance_type", "fixed_small");
    if (strcmp(vt, "fixed_small") == 0) c->variance_type_large = 0;
    else if (strcmp(vt, "fixed_large") == 0) c->variance_type_large = 1;
    else return cd_err("%s: variance_type '%s' is not supported (fixed_small, fixed_large)", what, vt);
    return 0;
}

int cd_sched_config_from_json(cd_sched_config *c, const cJSON *j, const char *what) {
    cd_sched_config_default(c);
    if (!cJSON_IsObject(j)) return cd_err("%s: scheduler config is not a JSON object", what);
    c->num_train_timesteps = cd_json_int(j, "num_train_timesteps", 1000);
    c->beta_start = cd_json_num(j, "beta_start", 0.0001);
    c->beta_end = cd_json_num(j, "beta_end", 0.02);
    c->steps_offset = cd_json_int(j, "steps_offset", 0);
    c->set_alpha_to_one = json_tristate(j, "set_alpha_to_one");
    c->clip_sample = json_tristate(j, "clip_sample");
    c->clip_sample_range = cd_json_num(j, "clip_sample_range", 1.0);
    c->skip_prk_steps = json_tristate(j, "skip_prk_steps");
    if (c->num_train_timesteps < 2 || c->num_train_timesteps > 100000)
        return cd_err("%s: num_train_timesteps %d out of range", what, c->num_train_timesteps);
    if (!(c->beta_start > 0 && c->beta_start < 1) || !(c->beta_end > 0 && c->beta_end < 1))
        return cd_err("%s: beta_start %g / beta_end %g must be in (0, 1)", what, c->beta_start, c->beta_end);
    CD_TRY(parse_strings(j, c, what));
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(j, "trained_betas");
    if (tb && !cJSON_IsNull(tb)) return cd_err("%s: trained_betas is not supported", what);
    static const char *unsupported[] = {"use_karras_sigmas", "thresholding", "rescale_betas_zero_snr"};
    for (size_t i = 0; i < 3; i++)
        if (json_tristate(j, unsupported[i]) == 1) return cd_err("%s: %s=true is not supported", what, unsupported[i]);
    const char *it = cd_json_str(j, "interpolation_type", "linear");
    if (strcmp(it, "linear") != 0) return cd_err("%s: interpolation_type '%s' is not supported", what, it);
    return 0;
}

int cd_sched_config_load(cd_sched_config *c, const char *path) {
    cJSON *j;
    CD_TRY(cd_json_load(path, &j));
    int rc = cd_sched_config_from_json(c, j, path);
    cJSON_Delete(j);
    return rc;
}

// torch.linspace(a, b, n, dtype=float32): step in fp32, first half from a, second from b.
static void linspace_f32(float *out, float a, float b, int n) {
    float step = (b - a) / (float)(n - 1);
    int half = n / 2;
    for (int i = 0; i < n; i++)
        out[i] = i < half ? a + step * (float)i : b - step * (float)(n - i - 1);
}

int cd_sched_alphas_cumprod(const cd_sched_config *c, float *out) {
    int n = c->num_train_timesteps;
    float *betas = cd_malloc(sizeof(float) * n);
    if (c->beta_schedule == CD_BETAS_LINEAR) {
        linspace_f32(betas, (float)c->beta_start, (float)c->beta_end, n);
    } else if (c->beta_schedule == CD_BETAS_SCALED_LINEAR) {
        linspace_f32(betas, (float)sqrt(c->beta_start), (float)sqrt(c->beta_end), n);
        for (int i = 0; i < n; i++) betas[i] = betas[i] * betas[i];
    } else {   // squaredcos_cap_v2 (betas_for_alpha_bar, max_beta 0.999), in double
        for (int i = 0; i < n; i++) {
            double t1 = (double)i / n, t2 = (double)(i + 1) / n;
            double a1 = cos((t1 + 0.008) / 1.008 * M_PI / 2), a2 = cos((t2 + 0.008) / 1.008 * M_PI / 2);
            double b = 1 - (a2 * a2) / (a1 * a1);
            betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
    }
    double acc = 1.0;   // torch's CPU cumprod accumulates float in double
    for (int i = 0; i < n; i++) {
        float alpha = 1.0f - betas[i];
        acc *= alpha;
        out[i] = (float)acc;
    }
    free(betas);
    return 0;
}

int cd_sched_init(cd_scheduler *s, cd_sched_kind kind, const cd_sched_config *cfg) {
    memset(s, 0, sizeof *s);
    if (kind < 0 || kind >= CD_SCHED_COUNT) return cd_err("scheduler: bad kind %d", (int)kind);
    s->kind = kind;
    s->cfg = *cfg;
    cd_sched_config *c = &s->cfg;
    int euler = kind == CD_SCHED_EULER || kind == CD_SCHED_EULER_A;
    if (c->timestep_spacing == CD_SPACING_DEFAULT)
        c->timestep_spacing = euler ? CD_SPACING_LINSPACE : CD_SPACING_LEADING;
    if (c->set_alpha_to_one < 0) c->set_alpha_to_one = kind == CD_SCHED_DDIM ? 1 : 0;
    if (c->clip_sample < 0) c->clip_sample = (kind == CD_SCHED_DDIM || kind == CD_SCHED_DDPM) ? 1 : 0;
    if (c->skip_prk_steps < 0) c->skip_prk_steps = 0;
    if (kind == CD_SCHED_PNDM && !c->skip_prk_steps)
        return cd_err("scheduler pndm: only PLMS with skip_prk_steps=true is implemented "
                      "(set \"skip_prk_steps\": true in scheduler_config.json)");
    if (kind == CD_SCHED_EULER_A && c->prediction_type == CD_PRED_SAMPLE)
        return cd_err("scheduler euler_a: prediction_type 'sample' is not supported");
    if (kind == CD_SCHED_PNDM && c->prediction_type == CD_PRED_SAMPLE)
        return cd_err("scheduler pndm: prediction_type 'sample' is not supported");
    s->ntrain = c->num_train_timesteps;
    s->alphas_cumprod = cd_malloc(sizeof(float) * s->ntrain);
    cd_sched_alphas_cumprod(c, s->alphas_cumprod);
    s->final_alpha_cumprod = c->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    s->init_noise_sigma = 1.0f;
    return 0;
}

static void free_state(cd_scheduler *s) {
    for (int i = 0; i < 4; i++) { free(s->ets[i]); s->ets[i] = NULL; }
    free(s->cur_sample); s->cur_sample = NULL;
    free(s->tmp); s->tmp = NULL;
    s->buf_n = 0; s->nets = 0; s->counter = 0;
}

void cd_sched_free(cd_scheduler *s) {
    free_state(s);
    free(s->alphas_cumprod);
    free(s->timesteps);
    free(s->sigmas);
    memset(s, 0, sizeof *s);
}

// Integer timesteps of DDIM/DDPM/PNDM (descending), nsteps values, into ts (double).
static void discrete_timesteps(const cd_scheduler *s, int steps, double *ts) {
    int N = s->ntrain;
    switch (s->cfg.timestep_spacing) {
    case CD_SPACING_LINSPACE:
        for (int i = 0; i < steps; i++) {
            double v = steps == 1 ? 0 : (double)(N - 1) * i / (steps - 1);
            ts[steps - 1 - i] = nearbyint(v);   // numpy round: half to even
        }
        break;
    case CD_SPACING_TRAILING: {
        double ratio = (double)N / steps;   // np.arange(N, 0, -ratio), rounded, minus 1
        for (int i = 0; i < steps; i++) ts[i] = nearbyint(N - i * ratio) - 1;
        break;
    }
    default: {
        int ratio = N / steps;
        for (int i = 0; i < steps; i++) ts[steps - 1 - i] = (double)i * ratio + s->cfg.steps_offset;
    }
    }
}

// Euler pair: float32 timesteps, sigmas interpolated (np.interp) over the fp32 sigma table.
static void euler_timesteps(cd_scheduler *s, int steps, double *ts) {
    int N = s->ntrain;
    switch (s->cfg.timestep_spacing) {
    case CD_SPACING_LINSPACE:
        for (int i = 0; i < steps; i++) {
            double v = steps == 1 ? 0 : (double)(N - 1) * i / (steps - 1);
            ts[steps - 1 - i] = (float)v;
        }
        break;
    case CD_SPACING_TRAILING: {
        double ratio = (double)N / steps;
        for (int i = 0; i < steps; i++) ts[i] = (float)nearbyint(N - i * ratio) - 1.0f;
        break;
    }
    default: {
        int ratio = N / steps;
        for (int i = 0; i < steps; i++)
            ts[steps - 1 - i] = (float)((double)i * ratio) + (float)s->cfg.steps_offset;
    }
    }
    for (int i = 0; i < steps; i++) {
        double t = ts[i];
        if (t < 0) t = 0;
        if (t > N - 1) t = N - 1;
        int lo = (int)floor(t);
        if (lo >= N - 1) lo = N - 2;
        double w = t - lo;
        float a0 = s->alphas_cumprod[lo], a1 = s->alphas_cumprod[lo + 1];
        float s0 = sqrtf((1.0f - a0) / a0), s1 = sqrtf((1.0f - a1) / a1);
        s->sigmas[i] = (float)((1 - w) * s0 + w * s1);
    }
    s->sigmas[steps] = 0.0f;
}

int cd_sched_set_timesteps(cd_scheduler *s, int steps) {
    if (steps < 1 || steps > s->ntrain)
        return cd_err("scheduler %s: steps %d out of range 1..%d", cd_sched_kind_name(s->kind), steps, s->ntrain);
    free_state(s);
    free(s->timesteps); free(s->sigmas);
    s->timesteps = NULL; s->sigmas = NULL;
    s->nsteps = steps;
    double *ts = cd_malloc(sizeof(double) * steps);
    if (s->kind == CD_SCHED_EULER || s->kind == CD_SCHED_EULER_A) {
        s->sigmas = cd_malloc(sizeof(float) * (steps + 1));
        euler_timesteps(s, steps, ts);
        s->n = steps;
        s->timesteps = cd_malloc(sizeof(float) * steps);
        float mx = 0;
        for (int i = 0; i < steps; i++) {
            s->timesteps[i] = (float)ts[i];
            if (s->sigmas[i] > mx) mx = s->sigmas[i];
        }
        int lin = s->cfg.timestep_spacing == CD_SPACING_LINSPACE || s->cfg.timestep_spacing == CD_SPACING_TRAILING;
        s->init_noise_sigma = lin ? mx : sqrtf(mx * mx + 1.0f);
    } else if (s->kind == CD_SCHED_PNDM) {
        discrete_timesteps(s, steps, ts);   // descending
        // PLMS timesteps: _timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:] reversed, i.e.
        // in descending order the second one is repeated (951, 901, 901, 851, ...).
        s->n = steps + 1;
        s->timesteps = cd_malloc(sizeof(float) * s->n);
        if (steps == 1) { s->timesteps[0] = s->timesteps[1] = (float)ts[0]; }
        else {
            s->timesteps[0] = (float)ts[0];
            for (int i = 1; i < steps; i++) s->timesteps[i + 1] = (float)ts[i];
            s->timesteps[1] = (float)ts[1];
        }
    } else {
        discrete_timesteps(s, steps, ts);
        s->n = steps;
        s->timesteps = cd_malloc(sizeof(float) * steps);
        for (int i = 0; i < steps; i++) s->timesteps[i] = (float)ts[i];
    }
    free(ts);
    for (int i = 0; i < s->n; i++)
        if (s->kind != CD_SCHED_EULER && s->kind != CD_SCHED_EULER_A &&
            (s->timesteps[i] < 0 || s->timesteps[i] >= s->ntrain))
            return cd_err("scheduler %s: timestep %g outside 0..%d (steps_offset too large?)",
                          cd_sched_kind_name(s->kind), s->timesteps[i], s->ntrain - 1);
    return 0;
}

float cd_sched_input_scale(const cd_scheduler *s, int i) {
    if ((s->kind == CD_SCHED_EULER || s->kind == CD_SCHED_EULER_A) && s->sigmas && i >= 0 && i < s->n) {
        float sg = s->sigmas[i];
        return 1.0f / sqrtf(sg * sg + 1.0f);
    }
    return 1.0f;
}

void cd_sched_scale_input(const cd_scheduler *s, int i, float *xin, const float *x, int64_t n) {
    if (cd_sched_input_scale(s, i) == 1.0f) { if (xin != x) memcpy(xin, x, sizeof(float) * n); return; }
    float d = sqrtf(s->sigmas[i] * s->sigmas[i] + 1.0f);   // torch: sample / (sigma^2 + 1)^0.5
    for (int64_t k = 0; k < n; k++) xin[k] = x[k] / d;
}

static double ac_at(const cd_scheduler *s, int t, double final) {
    return t >= 0 ? (double)s->alphas_cumprod[t] : final;
}

// Scratch and PNDM history buffers sized for n floats.
static void ensure_buffers(cd_scheduler *s, int64_t n) {
    if (s->buf_n == n) return;
    for (int i = 0; i < 4; i++) { free(s->ets[i]); s->ets[i] = NULL; }
    free(s->cur_sample); free(s->tmp);
    s->tmp = cd_malloc(sizeof(float) * n);
    s->cur_sample = NULL;
    s->buf_n = n;
    s->nets = 0;
}

static int get_noise(cd_scheduler *s, int i, int64_t n) {
    if (!s->noise)
        return cd_err("scheduler %s: a noise source is needed (none set)", cd_sched_kind_name(s->kind));
    ensure_buffers(s, n);
    if (s->noise(s->noise_ctx, i, s->tmp, n) != 0)
        return cd_errctx("scheduler %s step %d: noise", cd_sched_kind_name(s->kind), i);
    return 0;
}

// x0 prediction and eps prediction from the model output (DDIM/DDPM formulas).
static inline void predict(cd_pred_type p, float sa, float sb, float mo, float x, float *x0, float *eps) {
    if (p == CD_PRED_EPSILON) { *x0 = (x - sb * mo) / sa; *eps = mo; }
    else if (p == CD_PRED_SAMPLE) { *x0 = mo; *eps = (x - sa * mo) / sb; }
    else { *x0 = sa * x - sb * mo; *eps = sa * mo + sb * x; }
}

static int step_ddim(cd_scheduler *s, int i, const float *mo, float *x, int64_t n) {
    int t = (int)s->timesteps[i], prev = t - s->ntrain / s->nsteps;
    double at = s->alphas_cumprod[t], ap = ac_at(s, prev, s->final_alpha_cumprod), bt = 1 - at;
    float sa = (float)sqrt(at), sb = (float)sqrt(bt);
    double var = (1 - ap) / bt * (1 - at / ap);
    double std = s->eta * sqrt(var);
    float cx = (float)sqrt(ap), ce = (float)sqrt(fmax(1 - ap - std * std, 0.0));
    if (s->eta > 0) CD_TRY(get_noise(s, i, n));
    float lim = (float)s->cfg.clip_sample_range, fstd = (float)std;
    int clip = s->cfg.clip_sample;
    cd_pred_type pt = s->cfg.prediction_type;
    #pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float x0, eps;
        predict(pt, sa, sb, mo[k], x[k], &x0, &eps);
        if (clip) x0 = x0 < -lim ? -lim : x0 > lim ? lim : x0;
        float v = cx * x0 + ce * eps;
        if (s->eta > 0) v += fstd * s->tmp[k];
        x[k] = v;
    }
    return 0;
}

static int step_ddpm(cd_scheduler *s, int i, const float *mo, float *x, int64_t n) {
    int t = (int)s->timesteps[i], prev = t - s->ntrain / s->nsteps;
    double at = s->alphas_cumprod[t], ap = ac_at(s, prev, 1.0), bt = 1 - at, bp = 1 - ap;
    double cur_a = at / ap, cur_b = 1 - cur_a;
    float sa = (float)sqrt(at), sb = (float)sqrt(bt);
    float c0 = (float)(sqrt(ap) * cur_b / bt), cs = (float)(sqrt(cur_a) * bp / bt);
    float sd = 0;
    if (t > 0) {
        double var = s->cfg.variance_type_large ? cur_b : fmax(bp / bt * cur_b, 1e-20);
        sd = (float)sqrt(var);
        CD_TRY(get_noise(s, i, n));
    }
    float lim = (float)s->cfg.clip_sample_range;
    int clip = s->cfg.clip_sample;
    cd_pred_type pt = s->cfg.prediction_type;
    #pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float x0, eps;
        predict(pt, sa, sb, mo[k], x[k], &x0, &eps);
        if (clip) x0 = x0 < -lim ? -lim : x0 > lim ? lim : x0;
        float v = c0 * x0 + cs * x[k];
        if (t > 0) v += sd * s->tmp[k];
        x[k] = v;
    }
    return 0;
}

// PNDM _get_prev_sample: x[n] <- from sample[n] and combined model output e[n].
static void pndm_prev(const cd_scheduler *s, int t, int prev, const float *sample, const float *e,
                      float *out, int64_t n) {
    double at = s->alphas_cumprod[t], ap = ac_at(s, prev, s->final_alpha_cumprod);
    double bt = 1 - at, bp = 1 - ap;
    float sc = (float)sqrt(ap / at), num = (float)(ap - at);
    float den = (float)(at * sqrt(bp) + sqrt(at * bt * ap));
    float sa = (float)sqrt(at), sb = (float)sqrt(bt);
    int v = s->cfg.prediction_type == CD_PRED_V;
    #pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float m = v ? sa * e[k] + sb * sample[k] : e[k];
        out[k] = sc * sample[k] - num * m / den;
    }
}

static int step_pndm(cd_scheduler *s, int i, const float *mo, float *x, int64_t n) {
    ensure_buffers(s, n);
    int ratio = s->ntrain / s->nsteps;
    int t = (int)s->timesteps[i], prev = t - ratio;
    if (s->counter != 1) {   // keep the last 3, append the new output
        if (s->nets == 4) {
            float *old = s->ets[0];
            memmove(s->ets, s->ets + 1, 3 * sizeof(float *));
            s->ets[3] = old;
            s->nets = 3;
        }
        if (!s->ets[s->nets]) s->ets[s->nets] = cd_malloc(sizeof(float) * n);
        memcpy(s->ets[s->nets], mo, sizeof(float) * n);
        s->nets++;
    } else {
        prev = t;
        t = t + ratio;
    }
    float *e = s->tmp, *const *E = s->ets;
    int m = s->nets;
    const float *sample = x;
    if (m == 1 && s->counter == 0) {
        memcpy(e, mo, sizeof(float) * n);
        if (!s->cur_sample) s->cur_sample = cd_malloc(sizeof(float) * n);
        memcpy(s->cur_sample, x, sizeof(float) * n);
    } else if (m == 1 && s->counter == 1) {
        for (int64_t k = 0; k < n; k++) e[k] = (mo[k] + E[0][k]) / 2;
        sample = s->cur_sample;
    } else if (m == 2) {
        for (int64_t k = 0; k < n; k++) e[k] = (3 * E[1][k] - E[0][k]) / 2;
    } else if (m == 3) {
        for (int64_t k = 0; k < n; k++) e[k] = (23 * E[2][k] - 16 * E[1][k] + 5 * E[0][k]) / 12;
    } else {
        for (int64_t k = 0; k < n; k++)
            e[k] = (1.0f / 24) * (55 * E[3][k] - 59 * E[2][k] + 37 * E[1][k] - 9 * E[0][k]);
    }
    pndm_prev(s, t, prev, sample, e, x, n);
    s->counter++;
    return 0;
}

static int step_euler(cd_scheduler *s, int i, const float *mo, float *x, int64_t n, int ancestral) {
    float sg = s->sigmas[i], sn = s->sigmas[i + 1];
    float up = 0, dt;
    if (ancestral) {
        up = sqrtf(sn * sn * (sg * sg - sn * sn) / (sg * sg));
        float down = sqrtf(sn * sn - up * up);
        dt = down - sg;
        if (up > 0) CD_TRY(get_noise(s, i, n));
    } else {
        dt = sn - sg;
    }
    float vden = sqrtf(sg * sg + 1.0f), v2 = sg * sg + 1.0f;
    cd_pred_type pt = s->cfg.prediction_type;
    #pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float x0;
        if (pt == CD_PRED_EPSILON) x0 = x[k] - sg * mo[k];
        else if (pt == CD_PRED_V) x0 = mo[k] * (-sg / vden) + x[k] / v2;
        else x0 = mo[k];
        float d = (x[k] - x0) / sg;
        float v = x[k] + d * dt;
        if (up > 0) v += s->tmp[k] * up;
        x[k] = v;
    }
    return 0;
}

int cd_sched_step(cd_scheduler *s, int i, const float *model_out, float *sample, int64_t n) {
    if (!s->timesteps) return cd_err("scheduler %s: set_timesteps was not called", cd_sched_kind_name(s->kind));
    if (i < 0 || i >= s->n) return cd_err("scheduler %s: step %d out of range 0..%d", cd_sched_kind_name(s->kind), i, s->n - 1);
    switch (s->kind) {
    case CD_SCHED_DDIM: return step_ddim(s, i, model_out, sample, n);
    case CD_SCHED_DDPM: return step_ddpm(s, i, model_out, sample, n);
    case CD_SCHED_PNDM: return step_pndm(s, i, model_out, sample, n);
    case CD_SCHED_EULER: return step_euler(s, i, model_out, sample, n, 0);
    case CD_SCHED_EULER_A: return step_euler(s, i, model_out, sample, n, 1);
    default: return cd_err("scheduler: bad kind");
    }
}

void cd_sched_add_noise(const float *ac, float *out, const float *x0, const float *noise,
                        const int *t, int B, int64_t per) {
    for (int b = 0; b < B; b++) {
        float a = sqrtf(ac[t[b]]), c = sqrtf(1.0f - ac[t[b]]);
        for (int64_t k = 0; k < per; k++) out[b * per + k] = a * x0[b * per + k] + c * noise[b * per + k];
    }
}

void cd_sched_velocity(const float *ac, float *out, const float *x0, const float *noise,
                       const int *t, int B, int64_t per) {
    for (int b = 0; b < B; b++) {
        float a = sqrtf(ac[t[b]]), c = sqrtf(1.0f - ac[t[b]]);
        for (int64_t k = 0; k < per; k++) out[b * per + k] = a * noise[b * per + k] - c * x0[b * per + k];
    }
}
