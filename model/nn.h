// Internal building blocks of the UNet and VAE (not a public API): weight binding with error
// collection, an activation arena, and the layers (conv, GroupNorm, Linear, LayerNorm,
// ResnetBlock2D, Attention, Transformer2DModel) with forward and backward.
// Tensors are NCHW [B,C,H,W] or tokens [B,N,C], fp32.
#ifndef CD_NN_H
#define CD_NN_H
#include <stdint.h>
#include <stddef.h>
#include "model/weights.h"
#include "core/rng.h"

// ---- binding ---------------------------------------------------------------------------
typedef struct {
    cd_weights *ws;
    cd_rng *rng;      // when set, missing tensors are created with random values (tiny models)
    int nerr;
    char *msg;        // accumulated "; "-separated messages (first few)
} nn_binder;
// Bind a tensor by printf-style name; shape checked; on failure records the message.
void nn_bind(nn_binder *b, float **out, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
// 1 when a tensor exists (no error recorded).
int nn_has(nn_binder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// 0 when all bindings succeeded, else -1 with one error naming them (count + first ones).
int nn_bind_done(nn_binder *b, const char *what);

// ---- arena: bump allocation, reset per training step; sized once per shape -------------
typedef struct {
    struct nn_chunk { char *base; size_t size, used; } *c;
    int nc, cur;
} nn_arena;
float *nn_arena_alloc(nn_arena *a, int64_t nfloats);
void nn_arena_reset(nn_arena *a);
void nn_arena_free(nn_arena *a);
size_t nn_arena_bytes(const nn_arena *a);

// Allocate from the arena when a != NULL (kept for backward), else from the heap.
float *nn_alloc(nn_arena *a, int64_t nfloats);
void nn_free(nn_arena *a, float *p);   // frees only heap buffers (a == NULL)

// ---- layers ----------------------------------------------------------------------------
typedef struct { float *w, *b; int cin, cout, k, s, p; } nn_conv;
typedef struct { float *g, *b; int c, groups; float eps; } nn_gn;
typedef struct { float *w, *b; int in, out; } nn_lin;
typedef struct { float *g, *b; int c; float eps; } nn_ln;

void nn_conv_bind(nn_binder *bd, nn_conv *c, const char *prefix, int cin, int cout, int k, int s, int p, int bias);
void nn_gn_bind(nn_binder *bd, nn_gn *g, const char *prefix, int c, int groups, float eps);
void nn_lin_bind(nn_binder *bd, nn_lin *l, const char *prefix, int in, int out, int bias);
void nn_ln_bind(nn_binder *bd, nn_ln *l, const char *prefix, int c, float eps);

void nn_conv_fwd(const nn_conv *c, float *y, const float *x, int B, int H, int W);
// dx (overwritten) of a frozen conv; Ho/Wo derived.
void nn_conv_bwd_x(const nn_conv *c, float *dx, const float *dy, int B, int H, int W);
void nn_lin_fwd(const nn_lin *l, float *y, const float *x, int n);
// dx[n,in] = dy @ W (overwrite, or accumulate when acc=1).
void nn_lin_bwd_x(const nn_lin *l, float *dx, const float *dy, int n, int acc);

// ResnetBlock2D: GN+SiLU, conv3x3, (+ time_emb_proj(silu(temb))), GN+SiLU, conv3x3,
// + shortcut (conv1x1 when cin != cout). temb may be absent (VAE).
typedef struct {
    int cin, cout, has_temb, has_sc;
    nn_gn n1, n2;
    nn_conv c1, c2, sc;
    nn_lin tp;
    // saved by a training forward
    const float *x;
    float *h, *m1, *r1, *m2, *r2;
    int B, H, W;
} nn_resnet;
void nn_resnet_bind(nn_binder *bd, nn_resnet *r, const char *prefix, int cin, int cout,
                    int temb_dim, int groups, float eps);
// y [B,cout,H,W]; temb_act = silu(temb) [B,temb_dim] or NULL. ar != NULL keeps for backward
// (x must then stay valid until backward).
void nn_resnet_fwd(nn_resnet *r, float *y, const float *x, const float *temb_act,
                   int B, int H, int W, nn_arena *ar);
// dx [B,cin,H,W] overwritten from dy [B,cout,H,W] (frozen weights, no temb gradient).
void nn_resnet_bwd(nn_resnet *r, float *dx, const float *dy);

// Attention (diffusers Attention): q from x [B,N,C], k/v from ctx [B,M,Cc] (ctx = x for
// self-attention), heads, to_out.0 with bias. VAE variant has biases on q/k/v.
typedef struct {
    nn_lin q, k, v, o;
    int heads, dim, cdim;   // inner = heads * dim; cdim: context width
    int cross;
    // trainable: grads (NULL = frozen)
    float *gq, *gk, *gv, *go, *gob;
    // saved
    const float *xin, *ctx;     // inputs (x: the normed hidden states)
    float *Q, *K, *V, *O, *lse;
    int B, N, M;
} nn_attn;
void nn_attn_bind(nn_binder *bd, nn_attn *a, const char *prefix, int c, int cdim, int heads,
                  int qkv_bias);
// y [B,N,C] = attention; y may not alias x. ar != NULL keeps for backward.
void nn_attn_fwd(nn_attn *a, float *y, const float *x, const float *ctx, int B, int N, int M,
                 nn_arena *ar);
// dx [B,N,C] overwritten; dctx [B,M,cdim] accumulated (+=) when not NULL (cross only);
// weight grads += where gq/gk/gv/go are set. detach_k0: token-0 K/V detach.
void nn_attn_bwd(nn_attn *a, float *dx, float *dctx, const float *dy, int detach_k0);

// Transformer2DModel with BasicTransformerBlocks (self-attn, cross-attn, GEGLU FF).
typedef struct {
    nn_ln n1, n2, n3;
    nn_attn a1, a2;
    nn_lin ff1, ff2;
    // saved
    float *h0, *h1, *h2, *ffh;               // inputs of norm1/2/3 [B,N,C]; ff1 out [B,N,8C]
    float *m1, *r1, *m2, *r2, *m3, *r3;      // LayerNorm stats [B*N]
    float *l1, *l2, *l3;                      // LayerNorm outputs (kept only when needed)
} nn_tblock;
typedef struct {
    int c, heads, ntb, linear;
    nn_gn norm;
    nn_conv pin_c, pout_c;
    nn_lin pin_l, pout_l;
    nn_tblock *tb;
    // saved
    const float *x;
    float *gm, *gr;
    int B, H, W, M;
} nn_transformer;
void nn_transformer_bind(nn_binder *bd, nn_transformer *t, const char *prefix, int c,
                         int heads, int cdim, int layers, int linear, int groups);
void nn_transformer_free(nn_transformer *t);
// y [B,C,H,W] = x + proj_out(blocks(proj_in(GN(x)))); ctx [B,M,cdim].
void nn_transformer_fwd(nn_transformer *t, float *y, const float *x, const float *ctx,
                        int B, int H, int W, int M, nn_arena *ar);
// dx overwritten; dctx += (may be NULL). Cross-attention K/V token 0 detached.
void nn_transformer_bwd(nn_transformer *t, float *dx, float *dctx, const float *dy);
#endif
