// Internal: the layout of the GPU UNet handle, shared by model/unet_cuda.c (weights, forward,
// graph replay) and model/unet_train_cuda.c (the training state it hangs on `train`).
// Only with CD_CUDA.
#ifndef CD_UNET_CUDA_INTERNAL_H
#define CD_UNET_CUDA_INTERNAL_H
#ifdef CD_CUDA
#include "model/unet_cuda.h"
#include "model/nn_cuda.h"

struct cd_unet_train_state;    // model/unet_train_cuda.c

struct cd_unet_cuda {
    nn_dev d;              // weights and activation arena
    cd_unet *u;
    float *hact;           // host copy buffer for the act callback
    int64_t hact_n;
    cd_unet_act_fn acts;
    void *act_ctx;
    void *gexec;           // the captured forward (cd_cuda_graph_*), valid for gkey
    const void *gkey[4];   // out, x, t, ctx of the capture
    int gshape[4], gbf, gtf;
    unsigned ggen;          // U->d.gen at capture: device buffers replaced since -> re-capture
    int b16;               // the walk in progress keeps bf16 activations (bf16 mode)
    struct cd_unet_train_state *train;   // cd_unet_cuda_train_setup .. cd_unet_cuda_train_free
};
#endif
#endif
