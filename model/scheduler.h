// Noise schedulers as diffusers 0.25 computes them: DDIM (eta), DDPM, PNDM (PLMS with
// skip_prk_steps), Euler and Euler ancestral, configured from a scheduler_config.json.
//
// A config written for one scheduler class is read by another the way diffusers'
// from_config does it: keys that are present win, keys that are absent take the defaults of
// the scheduler that reads them (e.g. timestep_spacing: "leading" for DDIM/DDPM/PNDM,
// "linspace" for the Euler pair; clip_sample: true for DDIM/DDPM).
//
// Usage (one image batch, latents x of n floats):
//   cd_scheduler s; cd_sched_init(&s, CD_SCHED_DDIM, &cfg); cd_sched_set_timesteps(&s, 50);
//   s.eta = 0; s.noise = fn; s.noise_ctx = ctx;       // noise source (DDPM, DDIM eta>0, euler_a)
//   for x *= s.init_noise_sigma; for (i = 0; i < s.n; i++) {
//       cd_sched_scale_input(&s, i, xin, x, n);          // xin = x / sqrt(sigma^2+1) for Euler
//       model(xin, s.timesteps[i]) -> eps;  cd_sched_step(&s, i, eps, x, n);   // x updated
//   }
// Arrays are fp32; coefficients are computed in double from the fp32 alphas_cumprod.
#ifndef CD_SCHEDULER_H
#define CD_SCHEDULER_H
#include <stdint.h>
#include <cjson/cJSON.h>

typedef enum { CD_SCHED_DDIM = 0, CD_SCHED_DDPM, CD_SCHED_PNDM, CD_SCHED_EULER, CD_SCHED_EULER_A,
               CD_SCHED_COUNT } cd_sched_kind;
typedef enum { CD_PRED_EPSILON = 0, CD_PRED_V, CD_PRED_SAMPLE } cd_pred_type;
typedef enum { CD_SPACING_DEFAULT = 0, CD_SPACING_LEADING, CD_SPACING_TRAILING,
               CD_SPACING_LINSPACE } cd_spacing;
typedef enum { CD_BETAS_LINEAR = 0, CD_BETAS_SCALED_LINEAR, CD_BETAS_COSINE } cd_beta_schedule;

// "ddim", "ddpm", "pndm", "euler", "euler_a" (also diffusers class names, e.g. "DDIMScheduler").
int cd_sched_kind_parse(const char *s, cd_sched_kind *out);
const char *cd_sched_kind_name(cd_sched_kind k);

// scheduler_config.json. Tri-state fields: -1 = absent (the reading scheduler's default).
typedef struct {
    int num_train_timesteps;         // 1000
    double beta_start, beta_end;     // 0.0001, 0.02 (diffusers defaults)
    cd_beta_schedule beta_schedule;  // linear
    int steps_offset;                // 0
    cd_spacing timestep_spacing;     // DEFAULT: per scheduler
    int set_alpha_to_one;            // -1: DDIM true, PNDM false
    int clip_sample;                 // -1: DDIM/DDPM true
    double clip_sample_range;        // 1.0
    int skip_prk_steps;              // -1: false (PNDM with PRK steps is not implemented)
    cd_pred_type prediction_type;    // epsilon
    int variance_type_large;         // DDPM: 0 fixed_small (default), 1 fixed_large
} cd_sched_config;

void cd_sched_config_default(cd_sched_config *c);
// Parse a cJSON object (diffusers keys); unknown keys are ignored, unsupported values
// (karras sigmas, thresholding, rescale_betas_zero_snr, trained_betas) are an error.
int cd_sched_config_from_json(cd_sched_config *c, const cJSON *j, const char *what);
int cd_sched_config_load(cd_sched_config *c, const char *path);

// Fill out[0..n) with N(0,1) noise for step `step` (index into timesteps). Returns 0/-1.
typedef int (*cd_noise_fn)(void *ctx, int step, float *out, int64_t n);

typedef struct {
    cd_sched_kind kind;
    cd_sched_config cfg;
    int ntrain;                 // num_train_timesteps
    float *alphas_cumprod;      // [ntrain]
    float final_alpha_cumprod;  // DDIM/PNDM: 1 or alphas_cumprod[0]
    int nsteps;                 // num_inference_steps
    int n;                      // number of model calls: nsteps (PNDM+skip_prk: nsteps + 1)
    float *timesteps;           // [n] the timestep given to the model (Euler: fractional)
    float *sigmas;              // Euler pair: [nsteps + 1], last 0
    float init_noise_sigma;     // scale of the initial noise
    double eta;                 // DDIM only (0 = deterministic)
    cd_noise_fn noise;          // noise source; needed by DDPM, DDIM eta>0, euler_a
    void *noise_ctx;
    // PNDM state (reset by set_timesteps)
    int counter, nets;
    int64_t buf_n;
    float *ets[4];              // last model outputs, ets[nets-1] newest
    float *cur_sample;
    float *tmp;                 // [buf_n] scratch
} cd_scheduler;

int cd_sched_init(cd_scheduler *s, cd_sched_kind kind, const cd_sched_config *cfg);
int cd_sched_set_timesteps(cd_scheduler *s, int steps);
// The factor scale_model_input multiplies the sample by at call i (1 except Euler).
float cd_sched_input_scale(const cd_scheduler *s, int i);
// xin[n] = scale_model_input(x, timesteps[i]); xin may equal x.
void cd_sched_scale_input(const cd_scheduler *s, int i, float *xin, const float *x, int64_t n);
// One step for call i: sample[n] (in place) from model_out[n]. n is the whole batch.
int cd_sched_step(cd_scheduler *s, int i, const float *model_out, float *sample, int64_t n);
// Training/utility: out[b] = sqrt(ac[t_b]) x0[b] + sqrt(1-ac[t_b]) noise[b], each of `per`
// floats, b < B; and the v-prediction target v = sqrt(ac) noise - sqrt(1-ac) x0.
void cd_sched_add_noise(const float *alphas_cumprod, float *out, const float *x0, const float *noise,
                        const int *t, int B, int64_t per);
void cd_sched_velocity(const float *alphas_cumprod, float *out, const float *x0, const float *noise,
                       const int *t, int B, int64_t per);
// alphas_cumprod[ntrain] from a config (betas in double, rounded to fp32 like torch, fp32 cumprod).
int cd_sched_alphas_cumprod(const cd_sched_config *c, float *out);
void cd_sched_free(cd_scheduler *s);
#endif
