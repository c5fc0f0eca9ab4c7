// Internal: the GPU side of model/nn.h's layers, shared by model/unet_cuda.c and
// model/vae_cuda.c. A device context holds a model's weights (every tensor of a cd_weights,
// uploaded once; the host pointers the nn_* structs hold map to their device copies) and an
// activation arena: callers allocate a layer's output, layers take a mark, allocate their
// temporaries and release them on return (LIFO). The arena grows only while a shape is seen
// the first time; later forwards at that shape allocate nothing. Only with CD_CUDA.
#ifndef CD_NN_CUDA_H
#define CD_NN_CUDA_H
#ifdef CD_CUDA
#include <stdint.h>
#include <stddef.h>
#include "model/nn.h"

typedef struct { const float *h; int64_t n; float *d; uint16_t *b; int ndim; } nn_dmap;   // b: bf16 copy
typedef struct { char *base; size_t size, used; } nn_dchunk;
typedef struct { int c; size_t used; } nn_dmark;

typedef struct {
    void *st;              // cudaStream_t (NULL: default stream)
    char *wbuf;            // all weights, one allocation
    size_t wbytes;
    nn_dmap *map;          // sorted by host pointer
    int nmap;
    nn_dchunk *c;          // activation arena
    int nc, cur;
    int bf16;              // GEMMs, convolutions and attention in bf16 (fp32 accumulate)
    int dropped;           // nn_dev_drop_f32 freed fp32 copies (map entries with d == NULL)
    char *wbuf16;          // bf16 copies of the weights (bf16 mode)
    int fp16;              // the 16-bit format they were made in (cd_cuda_get_fp16 then)
    size_t wbytes16;
    int err;               // sticky for one forward: a weight not uploaded or out of memory
    double flops;          // FLOPs of GEMMs, convolutions and attention since nn_dev_begin
    unsigned gen;          // bumped whenever a device buffer of this handle is freed or replaced:
                           // a CUDA graph captured before holds stale pointers (re-capture)
} nn_dev;

// Upload every tensor of ws (again: after the host weights changed).
int nn_dev_upload(nn_dev *g, cd_weights *ws, const char *what);
void nn_dev_free(nn_dev *g);
// bf16 mode: activations stay fp32 between layers; each GEMM, convolution and attention
// rounds its inputs (and the weights: bf16 copies made here) to bf16 and accumulates in fp32
// (tensor cores). Attention head dims other than 40/64/80/160 stay fp32.
int nn_dev_set_bf16(nn_dev *g, int on);
// 0, or -1 (cd_err) when g's 16-bit copies were made in the other 16-bit format than the process
// computes in now (cd_cuda_set_fp16 switched after the upload). nn_dev_begin checks it.
int nn_dev_format_ok(const nn_dev *g);
// bf16 mode only: free the fp32 copies of the frozen matrices and convolution kernels (tensors
// of 2 or more dims; biases and norm parameters stay) that keep(ctx, host pointer) does not claim (the trainable masters), leaving their bf16 copies
// (the UNet's frozen weights are then bf16 only on the device: SD1.5 3.4 GB -> 1.7 GB). An fp32
// op that still asks for a dropped weight (nn_dw) fails with a message. nn_dev_set_bf16(g, 0)
// and nn_dev_upload bring every fp32 copy back from the host weights.
int nn_dev_drop_f32(nn_dev *g, int (*keep)(void *ctx, const float *h), void *ctx);
// Start a forward: arena reset, error flag and FLOP count cleared.
void nn_dev_begin(nn_dev *g);
const float *nn_dw(nn_dev *g, const float *host);   // device copy of a weight (NULL stays NULL)
float *nn_da(nn_dev *g, int64_t nfloats);           // arena allocation; NULL (g->err) on failure
nn_dmark nn_dmark_get(nn_dev *g);
void nn_drelease(nn_dev *g, nn_dmark m);
int64_t nn_dev_arena_bytes(const nn_dev *g);

// Layers (all pointers device; shapes as model/nn.h).
void nn_dconv(nn_dev *g, const nn_conv *c, float *y, const float *x, int B, int H, int W);
void nn_dlin(nn_dev *g, const nn_lin *l, float *y, const float *x, int n);
void nn_dgn(nn_dev *g, const nn_gn *n, float *y, const float *x, int B, int hw, int silu);
void nn_dln(nn_dev *g, const nn_ln *l, float *y, const float *x, int n);
// emb = silu(temb) [B, temb_dim] or NULL.
void nn_dresnet(nn_dev *g, const nn_resnet *r, float *y, const float *x, const float *emb,
                int B, int H, int W);
// y [B,N,C] = attention(x [B,N,C], ctx [B,M,cdim], or x when ctx == NULL); y != x.
void nn_dattn(nn_dev *g, const nn_attn *a, float *y, const float *x, const float *ctx, int B,
              int N, int M);
void nn_dtransformer(nn_dev *g, const nn_transformer *t, float *y, const float *x,
                     const float *ctx, int B, int H, int W, int M);
// ==== training on the device (model/nn_train_cuda.c; owner: helper "unettrain") ============
// Training forward (keeps what backward needs) and backward of the layers above, the same math
// as model/nn.c and model/transformer.c. The host nn_* structs are only read (shapes, host
// weight pointers mapped through nn_dev); every saved device pointer lives in the tapes below.
//
// Memory: one planned device heap (nn_dheap). A planning pass (dry = 1) runs the same walk
// without launching anything and records the highest offset any allocation reached; the heap
// is then allocated once with that size, and every real pass at that shape replays the same
// allocation sequence (first fit, so the same offsets): nothing is allocated after planning.
// Blocks carry a tag: 0 temporaries (freed by the layer that made them), 1 kept for the step,
// 2 kept for one checkpointed block (freed before the next block is recomputed).
typedef struct { size_t off, size; int tag; } nn_dblk;
typedef struct {
    char *base;            // device memory of cap bytes (a fake base while planning)
    size_t cap;
    size_t end;            // high-water mark of offset + size since the last nn_dheap_mark
    size_t live, peak;     // bytes in use, their maximum
    nn_dblk *blk;          // live blocks sorted by offset
    int nblk, capblk;
    int dry;               // planning: offsets only
    int over;              // an allocation did not fit in cap (a plan violation)
} nn_dheap;
void *nn_dheap_alloc(nn_dheap *h, size_t bytes, int tag);   // 256-byte aligned; NULL if over
void nn_dheap_free(nn_dheap *h, const void *p);              // NULL is ignored
void nn_dheap_free_tag(nn_dheap *h, int tag);                // every block with this tag
void nn_dheap_release(nn_dheap *h);                          // device memory and lists

// The training context: weights (through g), the heap, planning flag, FLOP count.
typedef struct {
    nn_dev *g;
    nn_dheap h;
    int dry;               // planning pass: allocations only, no kernel, no weight lookup
    int err;               // sticky: an allocation or a weight lookup failed
    int save_tag;          // tag of saved activations (1 or 2) in a saving forward
    double flops;          // GEMM/conv/attention FLOPs (2 per MAC) since reset
    const uint16_t *ctx16; // bf16 copy of the context shared by the cross-attentions (bf16)
} nn_tctx;
float *nn_talloc(nn_tctx *T, int64_t nfloats, int tag);      // NULL (T->err) on failure
uint16_t *nn_talloc16(nn_tctx *T, int64_t n, int tag);
void nn_tfree(nn_tctx *T, const void *p);
// bf16 copy of n fp32 values (tag as nn_talloc).
uint16_t *nn_tto16(nn_tctx *T, const float *x, int64_t n, int tag);

// Tapes: what a saving forward keeps for backward (device pointers; x pointers are the
// caller's buffers, which must stay valid until backward).
typedef struct { const float *x; float *h, *st; int B, H, W; } nn_tres;   // st: m1,r1,m2,r2
typedef struct {
    const float *x, *ctx;  // inputs (x: the normed hidden states; ctx == x for self-attention)
    void *Q, *K, *V, *O;   // fp32, or bf16 when b16
    float *lse;
    int B, N, M, self, b16;
    float *gq, *gk, *gv, *go, *gob;   // device weight gradients (+=), NULL = frozen
} nn_tattn;
typedef struct { nn_tattn a1, a2; const float *h0; float *h1, *h2, *ffh, *st, *l2; } nn_ttb;
typedef struct { const float *x; float *gst; nn_ttb *tb; int ntb, B, H, W, M; } nn_ttr;
void nn_ttr_init(nn_ttr *s, const nn_transformer *t);   // host array of ntb block tapes
void nn_ttr_free(nn_ttr *s);

// Forwards: s != NULL saves into s (tag T->save_tag), NULL runs without saving.
void nn_tresnet_fwd(nn_tctx *T, const nn_resnet *r, nn_tres *s, float *y, const float *x,
                    const float *emb, int B, int H, int W);
// dx [B,cin,H,W] overwritten from dy [B,cout,H,W] (frozen weights).
void nn_tresnet_bwd(nn_tctx *T, const nn_resnet *r, nn_tres *s, float *dx, const float *dy);
void nn_tattn_fwd(nn_tctx *T, const nn_attn *a, nn_tattn *s, float *y, const float *x,
                  const float *ctx, int B, int N, int M);
// dx overwritten; dctx += (cross only, may be NULL); weight grads += where s->g* are set.
void nn_tattn_bwd(nn_tctx *T, const nn_attn *a, nn_tattn *s, float *dx, float *dctx,
                  const float *dy, int detach_k0);
void nn_ttransformer_fwd(nn_tctx *T, const nn_transformer *t, nn_ttr *s, float *y,
                         const float *x, const float *ctx, int B, int H, int W, int M);
// dx overwritten; dctx += (may be NULL); cross-attention K/V token 0 detached.
void nn_ttransformer_bwd(nn_tctx *T, const nn_transformer *t, nn_ttr *s, float *dx,
                         float *dctx, const float *dy);
// Plain ops of the walk (skipped while planning): conv, GroupNorm(+SiLU) with saved stats,
// Linear, and the frozen conv's dx.
void nn_tconv(nn_tctx *T, const nn_conv *c, float *y, const float *x, int B, int H, int W);
void nn_tconv_bx(nn_tctx *T, const nn_conv *c, float *dx, const float *dy, int B, int H, int W);
void nn_tgn(nn_tctx *T, const nn_gn *n, float *y, float *st, const float *x, int B, int hw, int silu);
void nn_tgn_bwd(nn_tctx *T, const nn_gn *n, float *dx, const float *dy, const float *x,
                const float *st, int B, int hw, int silu);
void nn_tlin(nn_tctx *T, const nn_lin *l, float *y, const float *x, int n);
// Device pointer of a weight's bf16 copy (bf16 mode), NULL while planning or when absent.
const uint16_t *nn_dw16(nn_dev *g, const float *host);
#define NN_T_RUN(T) if (!(T)->dry && !(T)->err)
#endif
#endif
