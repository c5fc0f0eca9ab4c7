// Single-block runs (see model/blocks.h).
#include <stdlib.h>
#include <string.h>
#include "model/blocks.h"
#include "model/nn.h"
#include "kernels/kernels.h"
#include "core/err.h"

int cd_block_transformer_run(cd_weights *ws, const char *prefix, const cd_tblock_spec *s,
                             const float *x, const float *ctx, int B, int H, int W, int M,
                             float *out, const float *grad_out, float *grad_x, float *grad_ctx,
                             float *gk, float *gv) {
    nn_binder bd = {.ws = ws};
    nn_transformer t;
    memset(&t, 0, sizeof t);
    char *p = cd_fmt("%.*s", (int)strlen(prefix) - (prefix[0] && prefix[strlen(prefix) - 1] == '.'), prefix);
    nn_transformer_bind(&bd, &t, p, s->channels, s->heads, s->cross_dim, s->layers, s->linear_proj, s->groups);
    free(p);
    if (nn_bind_done(&bd, "transformer block")) { nn_transformer_free(&t); return -1; }
    int64_t wn = (int64_t)s->channels * s->cross_dim;
    for (int i = 0; i < s->layers; i++) {
        t.tb[i].a2.gk = gk ? gk + i * wn : NULL;
        t.tb[i].a2.gv = gv ? gv + i * wn : NULL;
    }
    nn_arena ar = {0};
    nn_transformer_fwd(&t, out, x, ctx, B, H, W, M, grad_out ? &ar : NULL);
    if (grad_out) {
        if (grad_ctx) memset(grad_ctx, 0, (size_t)B * M * s->cross_dim * sizeof(float));
        float *gx = grad_x ? grad_x : cd_malloc((size_t)B * s->channels * H * W * sizeof(float));
        nn_transformer_bwd(&t, gx, grad_ctx, grad_out);
        if (!grad_x) free(gx);
    }
    nn_arena_free(&ar);
    nn_transformer_free(&t);
    return 0;
}

int cd_block_resnet_run(cd_weights *ws, const char *prefix, int cin, int cout, int temb_dim,
                        int groups, float eps, const float *x, const float *temb, int B, int H,
                        int W, float *out) {
    nn_binder bd = {.ws = ws};
    nn_resnet r;
    memset(&r, 0, sizeof r);
    char *p = cd_fmt("%.*s", (int)strlen(prefix) - (prefix[0] && prefix[strlen(prefix) - 1] == '.'), prefix);
    nn_resnet_bind(&bd, &r, p, cin, cout, temb ? temb_dim : 0, groups, eps);
    free(p);
    CD_TRY(nn_bind_done(&bd, "resnet block"));
    float *ta = NULL;
    if (temb) {
        ta = cd_malloc((size_t)B * temb_dim * sizeof(float));
        cd_silu_fwd(ta, temb, (int64_t)B * temb_dim);
    }
    nn_resnet_fwd(&r, out, x, ta, B, H, W, NULL);
    free(ta);
    return 0;
}
