// Tiny random UNet + VAE + scheduler config writer (see model/tiny.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/tiny.h"
#include "core/err.h"
#include "core/json.h"
#include "core/fileio.h"
#include "core/safetensors.h"

void cd_tiny_unet_config(cd_unet_config *c) {
    cd_unet_config_sd15(c);
    int bo[4] = {32, 64, 64, 64};
    for (int i = 0; i < 4; i++) c->block_out[i] = bo[i];
    c->cross_dim = 32;
    c->sample_size = 16;
    c->time_embed_dim = 4 * bo[0];
}

void cd_tiny_vae_config(cd_vae_config *c) {
    memset(c, 0, sizeof *c);
    c->in_channels = c->out_channels = 3;
    c->latent_channels = 4;
    c->nblocks = 4;
    int bo[4] = {32, 32, 64, 64};
    memcpy(c->block_out, bo, sizeof bo);
    c->layers_per_block = 2;
    c->groups = 32;
    c->scaling_factor = 0.18215f;
    c->sample_size = 128;
}

static int write_weights(const cd_weights *ws, const char *path) {
    cd_st_writer *w = cd_st_writer_new();
    for (int i = 0; i < ws->n; i++)
        cd_st_writer_add_f32(w, ws->w[i].name, CD_F32, ws->w[i].ndim, ws->w[i].shape, ws->w[i].data);
    cd_st_writer_meta(w, "format", "pt");
    int rc = cd_st_writer_save(w, path);
    cd_st_writer_free(w);
    return rc;
}

static int write_component(const char *dir, const char *sub, cJSON *cfg, const cd_weights *ws) {
    char *d = cd_path_join(dir, sub), *cp = cd_path_join(d, "config.json");
    char *wp = cd_path_join(d, "diffusion_pytorch_model.safetensors");
    int rc = cd_mkdirs(d);
    if (!rc) rc = cd_json_save(cp, cfg);
    if (!rc) rc = write_weights(ws, wp);
    free(d); free(cp); free(wp);
    return rc;
}

static cJSON *tiny_scheduler(void) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "_class_name", "PNDMScheduler");
    cJSON_AddStringToObject(j, "_diffusers_version", "0.25.1");
    cJSON_AddNumberToObject(j, "num_train_timesteps", 1000);
    cJSON_AddNumberToObject(j, "beta_start", 0.00085);
    cJSON_AddNumberToObject(j, "beta_end", 0.012);
    cJSON_AddStringToObject(j, "beta_schedule", "scaled_linear");
    cJSON_AddBoolToObject(j, "clip_sample", 0);
    cJSON_AddBoolToObject(j, "set_alpha_to_one", 0);
    cJSON_AddNumberToObject(j, "steps_offset", 1);
    cJSON_AddBoolToObject(j, "skip_prk_steps", 1);
    cJSON_AddStringToObject(j, "prediction_type", "epsilon");
    cJSON_AddNullToObject(j, "trained_betas");
    return j;
}

int cd_tiny_unet_vae_write(const char *dir, uint64_t seed) {
    cd_unet_config uc;
    cd_vae_config vc;
    cd_tiny_unet_config(&uc);
    cd_tiny_vae_config(&vc);
    cd_weights uw, vw;
    cd_weights_init(&uw, "tiny unet");
    cd_weights_init(&vw, "tiny vae");
    cd_unet *u = NULL;
    cd_vae *v = NULL;
    int rc = cd_unet_new_random(&u, &uc, &uw, seed);
    if (!rc) rc = cd_vae_new_random(&v, &vc, &vw, seed + 1);
    cJSON *j;
    if (!rc) { j = cd_unet_config_to_json(&uc); rc = write_component(dir, "unet", j, &uw); cJSON_Delete(j); }
    if (!rc) { j = cd_vae_config_to_json(&vc); rc = write_component(dir, "vae", j, &vw); cJSON_Delete(j); }
    if (!rc) {
        char *d = cd_path_join(dir, "scheduler"), *p = cd_path_join(d, "scheduler_config.json");
        j = tiny_scheduler();
        rc = cd_mkdirs(d);
        if (!rc) rc = cd_json_save(p, j);
        cJSON_Delete(j);
        free(d); free(p);
    }
    cd_unet_free(u);
    cd_vae_free(v);
    cd_weights_free(&uw);
    cd_weights_free(&vw);
    return rc;
}
