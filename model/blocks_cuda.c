// Single-block runs on the GPU (see model/blocks_cuda.h): bind as model/blocks.c does, upload
// the weights (nn_dev), plan the activation heap with a dry pass, run the device layers of
// model/nn_train_cuda.c, copy the results back.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/blocks_cuda.h"
#include "model/nn.h"
#include "core/err.h"

#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#include "model/nn_cuda.h"

typedef struct {
    const nn_transformer *t;
    nn_ttr s;
    const float *x, *ctx, *gout;
    float *out, *gx, *gc;
    int B, H, W, M;
} brun;

// Forward (saving when a backward follows) and backward; the same walk plans and runs.
static void run_block(nn_tctx *T, brun *r) {
    int64_t nc = (int64_t)r->B * r->M * r->t->tb[0].a2.cdim;
    T->save_tag = 1;
    T->ctx16 = T->g->bf16 ? nn_tto16(T, r->ctx, nc, 1) : NULL;
    nn_ttransformer_fwd(T, r->t, r->gout ? &r->s : NULL, r->out, r->x, r->ctx, r->B, r->H, r->W, r->M);
    if (!r->gout) return;
    NN_T_RUN(T) cd_cuda_memset(r->gc, 0, nc * sizeof(float), T->g->st);
    nn_ttransformer_bwd(T, r->t, &r->s, r->gx, r->gc, r->gout);
}

// Plans the heap with a dry pass of fn, allocates it, runs fn for real.
static int plan_and_run(nn_tctx *T, void (*fn)(nn_tctx *, void *), void *arg) {
    T->dry = 1; T->h.dry = 1;
    fn(T, arg);
    size_t need = T->h.end;
    nn_dheap_release(&T->h);
    T->dry = 0; T->err = 0; T->flops = 0;
    T->h.base = cd_cuda_malloc(need ? need : 256);
    T->h.cap = need;
    if (!T->h.base) return cd_errctx("cuda block: activations (%.1f MiB)", need / 1048576.0);
    fn(T, arg);
    return T->err || T->g->err ? -1 : 0;
}
static void run_block_v(nn_tctx *T, void *a) { run_block(T, a); }

static char *strip_dot(const char *prefix) {
    size_t n = strlen(prefix);
    return cd_fmt("%.*s", (int)(n - (n && prefix[n - 1] == '.')), prefix);
}

// Uploads ws; on failure nothing is left to free.
static int dev_open(nn_dev *d, cd_weights *ws, int bf16) {
    char why[256] = "";
    memset(d, 0, sizeof *d);
    if (!cd_cuda_available(why, sizeof why)) return cd_err("cuda block: no usable GPU: %s", why);
    if (nn_dev_upload(d, ws, "blocks") || (bf16 && nn_dev_set_bf16(d, 1))) { nn_dev_free(d); return -1; }
    return 0;
}

// Device copy of n host floats (NULL host -> NULL; *fail set on failure).
static float *up(const float *h, int64_t n, int *fail) {
    if (!h || *fail) return NULL;
    float *d = cd_cuda_malloc((size_t)n * sizeof(float));
    if (!d || cd_cuda_memcpy_h2d(d, h, (size_t)n * sizeof(float), NULL)) { *fail = 1; cd_cuda_free(d); return NULL; }
    return d;
}
static float *dalloc(int64_t n, int want, int *fail) {
    if (!want || *fail) return NULL;
    float *d = cd_cuda_malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!d) *fail = 1;
    return d;
}

int cd_block_transformer_run_cuda(cd_weights *ws, const char *prefix, const cd_tblock_spec *s,
                                  const float *x, const float *ctx, int B, int H, int W, int M,
                                  float *out, const float *grad_out, float *grad_x,
                                  float *grad_ctx, float *gk, float *gv, int bf16) {
    nn_binder bd = {.ws = ws};
    nn_transformer t;
    memset(&t, 0, sizeof t);
    char *p = strip_dot(prefix);
    nn_transformer_bind(&bd, &t, p, s->channels, s->heads, s->cross_dim, s->layers, s->linear_proj, s->groups);
    free(p);
    if (nn_bind_done(&bd, "transformer block")) { nn_transformer_free(&t); return -1; }
    nn_dev d;
    if (dev_open(&d, ws, bf16)) { nn_transformer_free(&t); return -1; }
    int64_t nx = (int64_t)B * s->channels * H * W, nc = (int64_t)B * M * s->cross_dim;
    int64_t wn = (int64_t)s->channels * s->cross_dim, L = s->layers;
    int fail = 0, bwd = grad_out != NULL;
    brun r = {.t = &t, .B = B, .H = H, .W = W, .M = M};
    nn_ttr_init(&r.s, &t);
    r.x = up(x, nx, &fail); r.ctx = up(ctx, nc, &fail); r.gout = up(grad_out, nx, &fail);
    r.out = dalloc(nx, 1, &fail); r.gx = dalloc(nx, bwd, &fail); r.gc = dalloc(nc, bwd, &fail);
    float *dgk = dalloc(L * wn, bwd && gk, &fail), *dgv = dalloc(L * wn, bwd && gv, &fail);
    for (int i = 0; i < L; i++) {
        r.s.tb[i].a2.gk = dgk ? dgk + i * wn : NULL;
        r.s.tb[i].a2.gv = dgv ? dgv + i * wn : NULL;
    }
    if (!fail && dgk) fail = cd_cuda_memset(dgk, 0, L * wn * sizeof(float), NULL) != 0;
    if (!fail && dgv) fail = cd_cuda_memset(dgv, 0, L * wn * sizeof(float), NULL) != 0;
    nn_tctx T = {.g = &d};
    int rc = fail ? cd_err("cuda block: device buffers") : plan_and_run(&T, run_block_v, &r);
    if (!rc) rc = cd_cuda_memcpy_d2h(out, r.out, nx * sizeof(float), NULL);
    if (!rc && bwd && grad_x) rc = cd_cuda_memcpy_d2h(grad_x, r.gx, nx * sizeof(float), NULL);
    if (!rc && bwd && grad_ctx) rc = cd_cuda_memcpy_d2h(grad_ctx, r.gc, nc * sizeof(float), NULL);
    if (!rc && dgk) rc = cd_cuda_memcpy_d2h(gk, dgk, L * wn * sizeof(float), NULL);
    if (!rc && dgv) rc = cd_cuda_memcpy_d2h(gv, dgv, L * wn * sizeof(float), NULL);
    if (cd_cuda_sync(NULL) || cd_cuda_status()) rc = -1;
    nn_dheap_release(&T.h);
    cd_cuda_free((void *)r.x); cd_cuda_free((void *)r.ctx); cd_cuda_free((void *)r.gout);
    cd_cuda_free(r.out); cd_cuda_free(r.gx); cd_cuda_free(r.gc); cd_cuda_free(dgk); cd_cuda_free(dgv);
    nn_ttr_free(&r.s);
    nn_dev_free(&d);
    nn_transformer_free(&t);
    if (rc) return cd_errctx("cuda transformer block '%s' (batch %d, %dx%d)", prefix, B, H, W);
    return 0;
}

typedef struct {
    const nn_resnet *r;
    const float *x, *temb;
    float *out;
    int B, H, W, te;
} rrun;
static void run_resnet_v(nn_tctx *T, void *a) {
    rrun *r = a;
    float *emb = r->temb ? nn_talloc(T, (int64_t)r->B * r->te, 0) : NULL;
    if (emb) NN_T_RUN(T) cd_cuda_silu_fwd(emb, r->temb, (int64_t)r->B * r->te, T->g->st);
    nn_tresnet_fwd(T, r->r, NULL, r->out, r->x, emb, r->B, r->H, r->W);
    nn_tfree(T, emb);
}

int cd_block_resnet_run_cuda(cd_weights *ws, const char *prefix, int cin, int cout, int temb_dim,
                             int groups, float eps, const float *x, const float *temb, int B,
                             int H, int W, float *out, int bf16) {
    nn_binder bd = {.ws = ws};
    nn_resnet res;
    memset(&res, 0, sizeof res);
    char *p = strip_dot(prefix);
    nn_resnet_bind(&bd, &res, p, cin, cout, temb ? temb_dim : 0, groups, eps);
    free(p);
    CD_TRY(nn_bind_done(&bd, "resnet block"));
    nn_dev d;
    if (dev_open(&d, ws, bf16)) return -1;
    int64_t nx = (int64_t)B * cin * H * W, no = (int64_t)B * cout * H * W;
    int fail = 0;
    rrun r = {.r = &res, .B = B, .H = H, .W = W, .te = temb_dim};
    r.x = up(x, nx, &fail); r.temb = up(temb, (int64_t)B * temb_dim, &fail); r.out = dalloc(no, 1, &fail);
    nn_tctx T = {.g = &d};
    int rc = fail ? cd_err("cuda block: device buffers") : plan_and_run(&T, run_resnet_v, &r);
    if (!rc) rc = cd_cuda_memcpy_d2h(out, r.out, no * sizeof(float), NULL);
    if (cd_cuda_sync(NULL) || cd_cuda_status()) rc = -1;
    nn_dheap_release(&T.h);
    cd_cuda_free((void *)r.x); cd_cuda_free((void *)r.temb); cd_cuda_free(r.out);
    nn_dev_free(&d);
    if (rc) return cd_errctx("cuda resnet block '%s' (batch %d, %dx%d)", prefix, B, H, W);
    return 0;
}

#else
#define NOCUDA cd_err("cuda block: customdiff was built without CUDA (CUDA=0); rebuild with CUDA=1")
int cd_block_transformer_run_cuda(cd_weights *ws, const char *prefix, const cd_tblock_spec *s,
                                  const float *x, const float *ctx, int B, int H, int W, int M,
                                  float *out, const float *grad_out, float *grad_x,
                                  float *grad_ctx, float *gk, float *gv, int bf16) { return NOCUDA; }
int cd_block_resnet_run_cuda(cd_weights *ws, const char *prefix, int cin, int cout, int temb_dim,
                             int groups, float eps, const float *x, const float *temb, int B,
                             int H, int W, float *out, int bf16) { return NOCUDA; }
#endif
