// Resumable checkpoints: RUN/checkpoints/checkpoint-NNNNNN/
//   state.safetensors  param.<name>, adam_m.<name>, adam_v.<name> (fp32) for every trainable
//                      tensor (UNet K/V..., token_embedding.<tok>)
//   state.json         step, Adam step, RNG states, data position, the run's settings
// Written into RUN/checkpoints/.tmp-checkpoint-NNNNNN.PID and renamed into place, so a kill
// at any moment leaves every earlier checkpoint complete; state.json is written last and a
// checkpoint without it is never picked.
#include "train/train.h"
#include "train/ckpt_base.h"
#include "model/precision.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/log.h"
#include "core/safetensors.h"
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void put_u64(cJSON *o, const char *k, uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, v);
    cJSON_AddStringToObject(o, k, b);
}

static int get_u64(const cJSON *o, const char *k, const char *what, uint64_t *v) {
    const char *s;
    CD_TRY(cd_json_req_str(o, k, what, &s));
    char *end;
    *v = strtoull(s, &end, 10);
    if (*end) return cd_err("%s: key '%s' is not an unsigned integer", what, k);
    return 0;
}

static cJSON *rng_json(const cd_rng *r) {
    cJSON *o = cJSON_CreateObject();
    put_u64(o, "key", r->key);
    put_u64(o, "counter", r->counter);
    return o;
}

static char g_base_fp[80];   // cd_ckpt_set_base
void cd_ckpt_set_base(const char *fingerprint) { snprintf(g_base_fp, sizeof g_base_fp, "%s", fingerprint); }

static cJSON *state_json(const cd_run *r) {
    const cd_train_args *a = r->a;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "format", 1);
    cJSON_AddNumberToObject(o, "step", (double)r->step);
    cJSON_AddNumberToObject(o, "adam_step", (double)r->tr.adam_step);
    if (r->tr.loss_scale > 0) {   // fp16's loss scaler (model/trainer.h)
        cJSON *ls = cJSON_AddObjectToObject(o, "loss_scaler");
        cJSON_AddNumberToObject(ls, "scale", r->tr.loss_scale);
        cJSON_AddNumberToObject(ls, "good_steps", (double)r->tr.scale_good);
        cJSON_AddNumberToObject(ls, "skipped_steps", (double)r->tr.skipped_steps);
    }
    cJSON_AddItemToObject(o, "rng_aug", rng_json(&r->rng_aug));
    cJSON_AddItemToObject(o, "rng_noise", rng_json(&r->rng_noise));
    cJSON *d = cJSON_AddObjectToObject(o, "data");
    cJSON_AddNumberToObject(d, "epoch", (double)r->data.epoch);
    cJSON_AddNumberToObject(d, "pos", (double)r->data.pos);
    cJSON_AddNumberToObject(d, "len", r->data.len);
    cJSON *t = cJSON_AddArrayToObject(o, "modifier_tokens");
    for (int i = 0; i < r->tr.nmod; i++) cJSON_AddItemToArray(t, cJSON_CreateString(r->tr.mod_tok[i]));
    cJSON_AddStringToObject(o, "model", a->model ? a->model : "");
    if (g_base_fp[0]) cJSON_AddStringToObject(o, "base_fingerprint", g_base_fp);
    cJSON_AddStringToObject(o, "train_mode", a->train_mode ? a->train_mode : "");
    put_u64(o, "seed", (uint64_t)a->seed);
    cJSON_AddNumberToObject(o, "resolution", a->resolution);
    cJSON_AddNumberToObject(o, "train_batch_size", a->batch);
    cJSON_AddNumberToObject(o, "gradient_accumulation_steps", a->accum);
    cJSON_AddNumberToObject(o, "learning_rate", r->lr);
    cJSON_AddNumberToObject(o, "max_train_steps", a->max_steps);
    // how the numbers were made (provenance; a resume may use another device)
    cJSON_AddStringToObject(o, "device", r->gpu ? "cuda" : "cpu");
    cJSON_AddStringToObject(o, "precision", r->gpu ? cd_precision_name(cd_trainer_cuda_precision(r->gpu)) : "fp32");
    cJSON_AddBoolToObject(o, "deterministic", !r->gpu || a->deterministic);
    return o;
}

static void add_params(cd_st_writer *w, const cd_trainer *tr) {
    int64_t off = 0;
    for (int i = 0; i < tr->nparams; i++) {
        const cd_param *p = &tr->params[i];
        char name[256];
        snprintf(name, sizeof name, "param.%s", p->name);
        cd_st_writer_add(w, name, CD_F32, p->ndim, p->shape, p->w);
        snprintf(name, sizeof name, "adam_m.%s", p->name);
        cd_st_writer_add(w, name, CD_F32, p->ndim, p->shape, tr->adam_m + off);
        snprintf(name, sizeof name, "adam_v.%s", p->name);
        cd_st_writer_add(w, name, CD_F32, p->ndim, p->shape, tr->adam_v + off);
        off += p->numel;
    }
}

static int rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = cd_path_join(dir, e->d_name);
        if (cd_is_dir(p)) rm_tree(p);
        else unlink(p);
        free(p);
    }
    closedir(d);
    return rmdir(dir);
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
}

// Step numbers of the complete checkpoints in dir, ascending.
static int list_ckpts(const char *dir, int64_t **steps, int *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "checkpoint-%lld%c", &s, &tail) != 1) continue;
        char *sub = cd_path_join(dir, e->d_name), *js = cd_path_join(sub, "state.json");
        int ok = cd_path_exists(js);
        free(sub);
        free(js);
        if (!ok) continue;
        if (*n == cap) *steps = cd_realloc(*steps, sizeof(int64_t) * (cap = cap ? 2 * cap : 16));
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    for (int i = 1; i < *n; i++)
        for (int j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
            int64_t t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = t;
        }
    return 0;
}

int cd_ckpt_save(const cd_run *r, const char *run_dir, int keep_last) {
    char *cdir = cd_path_join(run_dir, "checkpoints");
    char name[64], tmpname[96];
    snprintf(name, sizeof name, "checkpoint-%06lld", (long long)r->step);
    snprintf(tmpname, sizeof tmpname, ".tmp-%s.%d", name, (int)getpid());
    char *fin = cd_path_join(cdir, name), *tmp = cd_path_join(cdir, tmpname);
    char *st = cd_path_join(tmp, "state.safetensors"), *js = cd_path_join(tmp, "state.json");
    int rc = cd_mkdirs(tmp);
    if (rc == 0) {
        cd_st_writer *w = cd_st_writer_new();
        add_params(w, &r->tr);
        cd_st_writer_meta(w, "format", "customdiff-train-checkpoint-1");
        rc = cd_st_writer_save(w, st);
        cd_st_writer_free(w);
    }
    // Test hook: die here, with the checkpoint half written (tests/test_train.sh).
    const char *kill_at = getenv("CD_TRAIN_TEST_KILL_IN_CHECKPOINT");
    if (rc == 0 && kill_at && atoll(kill_at) == r->step) raise(SIGKILL);
    if (rc == 0) {
        cJSON *o = state_json(r);
        rc = cd_json_save(js, o);
        cJSON_Delete(o);
    }
    if (rc == 0) {
        fsync_dir(tmp);
        if (cd_is_dir(fin)) rm_tree(fin);   // a stale one from an earlier run past this step
        if (rename(tmp, fin) != 0) rc = cd_errno("rename %s -> %s", tmp, fin);
        else fsync_dir(cdir);
    }
    if (rc) rm_tree(tmp);
    if (rc == 0 && keep_last > 0) {
        int64_t *steps;
        int n;
        list_ckpts(cdir, &steps, &n);
        for (int i = 0; i + keep_last < n; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "checkpoint-%06lld", (long long)steps[i]);
            char *p = cd_path_join(cdir, nm);
            rm_tree(p);
            free(p);
        }
        free(steps);
    }
    if (rc == 0) cd_info("checkpoint %s", fin);
    free(cdir); free(fin); free(tmp); free(st); free(js);
    return rc;
}

int cd_ckpt_find_latest(const char *path, char **dir, int *found) {
    *dir = NULL;
    *found = 0;
    char *js = cd_path_join(path, "state.json");
    int direct = cd_path_exists(js);
    free(js);
    if (direct) {
        *dir = cd_strdup(path);
        *found = 1;
        return 0;
    }
    char *cdir = cd_path_join(path, "checkpoints");
    int64_t *steps;
    int n;
    list_ckpts(cdir, &steps, &n);
    if (n > 0) {
        char nm[64];
        snprintf(nm, sizeof nm, "checkpoint-%06lld", (long long)steps[n - 1]);
        *dir = cd_path_join(cdir, nm);
        *found = 1;
    }
    free(steps);
    free(cdir);
    return 0;
}

static int load_rng(const cJSON *o, const char *k, const char *what, cd_rng *r) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsObject(x)) return cd_err("%s: key '%s' missing", what, k);
    uint64_t key, ctr;
    CD_TRY(get_u64(x, "key", what, &key));
    CD_TRY(get_u64(x, "counter", what, &ctr));
    r->key = key;
    r->counter = ctr;
    return 0;
}

static int load_tensors(cd_run *r, const char *path) {
    cd_st_file f;
    CD_TRY(cd_st_open(&f, path));
    int rc = 0;
    int64_t off = 0;
    cd_trainer *tr = &r->tr;
    for (int i = 0; i < tr->nparams && rc == 0; i++) {
        cd_param *p = &tr->params[i];
        char name[256];
        snprintf(name, sizeof name, "param.%s", p->name);
        rc = cd_st_read_f32(&f, name, p->w, p->numel);
        snprintf(name, sizeof name, "adam_m.%s", p->name);
        if (rc == 0) rc = cd_st_read_f32(&f, name, tr->adam_m + off, p->numel);
        snprintf(name, sizeof name, "adam_v.%s", p->name);
        if (rc == 0) rc = cd_st_read_f32(&f, name, tr->adam_v + off, p->numel);
        off += p->numel;
    }
    if (rc == 0 && f.n != 3 * tr->nparams)
        rc = cd_err("%s: %d tensors, expected %d (3 per trainable tensor): a checkpoint of another "
                    "training setup", path, f.n, 3 * tr->nparams);
    cd_st_close(&f);
    return rc;
}

// fp16's loss scaler, when this run scales (tr->loss_scale > 0) and the checkpoint has one (a
// checkpoint of a bf16 or fp32 run starts the scaler afresh; a non-fp16 run ignores it).
static int load_scaler(const cJSON *o, const char *js, cd_trainer *tr) {
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(o, "loss_scaler");
    if (!ls || !(tr->loss_scale > 0)) return 0;
    double scale = 0, good = 0, skipped = 0;
    if (!cJSON_IsObject(ls)) return cd_err("%s: 'loss_scaler' is not an object", js);
    CD_TRY(cd_json_req_num(ls, "scale", js, &scale));
    CD_TRY(cd_json_req_num(ls, "good_steps", js, &good));
    CD_TRY(cd_json_req_num(ls, "skipped_steps", js, &skipped));
    if (!(scale >= 1 && scale <= 1e38 && good >= 0 && good < 1e12 && skipped >= 0 && skipped < 1e12))
        return cd_err("%s: loss_scaler scale %g, good_steps %g, skipped_steps %g out of range", js, scale, good, skipped);
    tr->loss_scale = scale;
    tr->scale_good = (int64_t)good;
    tr->skipped_steps = (int64_t)skipped;
    return 0;
}

int cd_ckpt_load(cd_run *r, const char *dir) {
    char *js = cd_path_join(dir, "state.json"), *st = cd_path_join(dir, "state.safetensors");
    cJSON *o = NULL;
    int rc = cd_json_load(js, &o);
    if (rc == 0) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "modifier_tokens");
        int nt = cJSON_IsArray(t) ? cJSON_GetArraySize(t) : -1;
        if (nt != r->tr.nmod) rc = cd_err("%s: checkpoint has %d modifier tokens, this run %d", js, nt, r->tr.nmod);
        for (int i = 0; i < nt && rc == 0; i++) {
            const cJSON *s = cJSON_GetArrayItem(t, i);
            if (!cJSON_IsString(s) || strcmp(s->valuestring, r->tr.mod_tok[i]))
                rc = cd_err("%s: modifier token %d differs from this run's '%s'", js, i, r->tr.mod_tok[i]);
        }
    }
    const char *bfp = rc == 0 ? cd_json_str(o, "base_fingerprint", NULL) : NULL;
    if (bfp && g_base_fp[0] && strcmp(bfp, g_base_fp))
        rc = cd_err("%s: the checkpoint was trained on another base model (its base fingerprint %.19s..., "
                    "this --model's %.19s...)", js, bfp, g_base_fp);
    double step = 0, adam = 0, epoch = 0, pos = 0, len = 0;
    const cJSON *d = o ? cJSON_GetObjectItemCaseSensitive(o, "data") : NULL;
    if (rc == 0) rc = cd_json_req_num(o, "step", js, &step);
    if (rc == 0) rc = cd_json_req_num(o, "adam_step", js, &adam);
    if (rc == 0 && !cJSON_IsObject(d)) rc = cd_err("%s: key 'data' missing", js);
    if (rc == 0) rc = cd_json_req_num(d, "epoch", js, &epoch);
    if (rc == 0) rc = cd_json_req_num(d, "pos", js, &pos);
    if (rc == 0) rc = cd_json_req_num(d, "len", js, &len);
    if (rc == 0 && !(step >= 0 && adam >= 0 && epoch >= 0 && pos >= 0 && pos <= len && step < 1e12 && epoch < 1e12))
        rc = cd_err("%s: step %g, adam_step %g, data epoch %g / pos %g / len %g out of range", js, step, adam, epoch, pos, len);
    if (rc == 0 && (int)len != r->data.len)
        rc = cd_err("%s: the dataset had %d samples per epoch, now %d: the data changed", js, (int)len, r->data.len);
    if (rc == 0) rc = load_scaler(o, js, &r->tr);
    if (rc == 0) rc = load_rng(o, "rng_aug", js, &r->rng_aug);
    if (rc == 0) rc = load_rng(o, "rng_noise", js, &r->rng_noise);
    if (rc == 0) rc = load_tensors(r, st);
    if (rc == 0) {
        r->step = (int64_t)step;
        r->tr.adam_step = (int64_t)adam;
        r->data.epoch = (int64_t)epoch;
        r->data.pos = (int64_t)pos;
        r->data.perm_epoch = -1;
    }
    cJSON_Delete(o);
    free(js);
    free(st);
    return rc;
}
