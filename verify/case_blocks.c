// blocks-sd15 case: SD v1.5-size Transformer2DModel blocks (forward and Custom Diffusion
// backward: grad_x, grad_context, attn2.to_k/to_v gradients) and a ResnetBlock2D, with
// weights.safetensors and blocks.json beside cases.safetensors.
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "verify/verify.h"
#include "verify/device.h"
#include "model/blocks.h"
#include "core/safetensors.h"
#include "core/json.h"
#include "core/fileio.h"
#include "core/err.h"

static float *get(const cd_st_file *f, const char *blk, const char *t, int64_t *n) {
    char *k = cd_fmt("%s.%s", blk, t);
    float *d = NULL;
    if (cd_st_load_f32(f, k, &d, n)) d = NULL;
    free(k);
    return d;
}

static int run_transformer(cd_verify_ctx *v, const cd_st_file *f, cd_weights *ws, const char *blk, const cJSON *b) {
    cd_tblock_spec s = {cd_json_int(b, "in_channels", 320), cd_json_int(b, "num_attention_heads", 8),
                        cd_json_int(b, "cross_attention_dim", 768), 1, cd_json_bool(b, "use_linear_projection", 0),
                        cd_json_int(b, "norm_num_groups", 32)};
    int64_t nx, nc, no, ng, n1, n2, n3, n4;
    float *x = get(f, blk, "x", &nx), *ctx = get(f, blk, "context", &nc), *out = get(f, blk, "out", &no);
    float *gout = get(f, blk, "grad_out", &ng), *gx = get(f, blk, "grad_x", &n1), *gc = get(f, blk, "grad_context", &n2);
    float *gk = get(f, blk, "grad.transformer_blocks.0.attn2.to_k.weight", &n3);
    float *gv = get(f, blk, "grad.transformer_blocks.0.attn2.to_v.weight", &n4);
    const cd_st_tensor *tx = NULL, *tc = NULL;
    char *kx = cd_fmt("%s.x", blk), *kc = cd_fmt("%s.context", blk);
    tx = cd_st_find(f, kx); tc = cd_st_find(f, kc);
    free(kx); free(kc);
    int rc = -1;
    if (!x || !ctx || !out || !gout || !gx || !gc || !gk || !gv || !tx || !tc) { cd_err("%s: case tensors missing", blk); goto done; }
    float *o = cd_malloc(no * sizeof(float)), *dx = cd_malloc(n1 * sizeof(float)), *dc = cd_malloc(n2 * sizeof(float));
    float *dk = cd_calloc(n3, sizeof(float)), *dv = cd_calloc(n4, sizeof(float));
    char *prefix = cd_fmt("%s.", blk);
    rc = vd_block_transformer(v, ws, prefix, &s, x, ctx, tx->shape[0], tx->shape[2], tx->shape[3], tc->shape[1],
                                  o, gout, dx, dc, dk, dv);
    free(prefix);
    if (!rc) {
        char *name = cd_fmt("blocks.%s", blk);
        cd_verify_check(v, name, "out", o, out, no, CD_TOL_MODEL);
        cd_verify_check(v, name, "grad_x", dx, gx, n1, CD_TOL_GRAD);
        cd_verify_check(v, name, "grad_context", dc, gc, n2, CD_TOL_GRAD);
        cd_verify_check(v, name, "grad.attn2.to_k.weight", dk, gk, n3, CD_TOL_GRAD);
        cd_verify_check(v, name, "grad.attn2.to_v.weight", dv, gv, n4, CD_TOL_GRAD);
        free(name);
    }
    free(o); free(dx); free(dc); free(dk); free(dv);
done:
    free(x); free(ctx); free(out); free(gout); free(gx); free(gc); free(gk); free(gv);
    return rc;
}

static int run_resnet(cd_verify_ctx *v, const cd_st_file *f, cd_weights *ws, const char *blk, const cJSON *b) {
    int64_t nx, nt, no;
    float *x = get(f, blk, "x", &nx), *temb = get(f, blk, "temb", &nt), *out = get(f, blk, "out", &no);
    char *kx = cd_fmt("%s.x", blk);
    const cd_st_tensor *tx = cd_st_find(f, kx);
    free(kx);
    int rc = -1;
    if (!x || !temb || !out || !tx) { cd_err("%s: case tensors missing", blk); goto done; }
    float *o = cd_malloc(no * sizeof(float));
    char *prefix = cd_fmt("%s.", blk);
    rc = vd_block_resnet(v, ws, prefix, cd_json_int(b, "in_channels", 320), cd_json_int(b, "out_channels", 320),
                             cd_json_int(b, "temb_channels", 1280), cd_json_int(b, "groups", 32),
                             (float)cd_json_num(b, "eps", 1e-5), x, temb, tx->shape[0], tx->shape[2], tx->shape[3], o);
    free(prefix);
    if (!rc) {
        char *name = cd_fmt("blocks.%s", blk);
        cd_verify_check(v, name, "out", o, out, no, CD_TOL_MODEL);
        free(name);
    }
    free(o);
done:
    free(x); free(temb); free(out);
    return rc;
}

static int run(cd_verify_ctx *v, const char *path) {
    char *tmp = cd_strdup(path), *dir = cd_strdup(dirname(tmp));
    free(tmp);
    char *wpath = cd_path_join(dir, "weights.safetensors"), *jpath = cd_path_join(dir, "blocks.json");
    free(dir);
    cJSON *j = NULL;
    cd_weights ws;
    cd_weights_init(&ws, wpath);
    cd_st_file f;
    int rc = cd_json_load(jpath, &j);
    if (!rc) rc = cd_weights_load(&ws, wpath, NULL, NULL, NULL);
    if (!rc) rc = cd_st_open(&f, path);
    if (!rc) {
        const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(j, "blocks"), *b;
        cJSON_ArrayForEach(b, blocks) {
            const char *type = cd_json_str(b, "type", "");
            int r = !strcmp(type, "Transformer2DModel") ? run_transformer(v, &f, &ws, b->string, b)
                  : !strcmp(type, "ResnetBlock2D") ? run_resnet(v, &f, &ws, b->string, b)
                  : cd_err("%s: unknown block type '%s'", b->string, type);
            if (r) { cd_verify_fail(v, "blocks", b->string, cd_errmsg()); }
        }
        cd_st_close(&f);
    }
    cJSON_Delete(j);
    cd_weights_free(&ws);
    free(wpath); free(jpath);
    return rc;
}

const cd_verify_case cd_verify_case_blocks = {"blocks", "cases.safetensors", run, 1};
