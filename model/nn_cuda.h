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

typedef struct { const float *h; int64_t n; float *d; uint16_t *b; } nn_dmap;   // b: bf16 copy
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
    char *wbuf16;          // bf16 copies of the weights (bf16 mode)
    size_t wbytes16;
    int err;               // sticky for one forward: a weight not uploaded or out of memory
    double flops;          // FLOPs of GEMMs, convolutions and attention since nn_dev_begin
} nn_dev;

// Upload every tensor of ws (again: after the host weights changed).
int nn_dev_upload(nn_dev *g, cd_weights *ws, const char *what);
void nn_dev_free(nn_dev *g);
// bf16 mode: activations stay fp32 between layers; each GEMM, convolution and attention
// rounds its inputs (and the weights: bf16 copies made here) to bf16 and accumulates in fp32
// (tensor cores). Attention head dims other than 40/64/80/160 stay fp32.
int nn_dev_set_bf16(nn_dev *g, int on);
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
#endif
#endif
