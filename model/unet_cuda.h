// The UNet forward on an NVIDIA GPU: the same walk and math as model/unet.c (cd_unet_forward),
// every op through its CUDA twin (kernels/kernels_cuda.h), fp32 (TF32 tensor-core GEMMs and
// convolutions when cd_cuda_set_tf32(1)). Plain C, no CUDA headers: builds with CUDA=0, where
// every call fails with "built without CUDA".
//
// Weights: every tensor of the model's cd_weights is uploaded once (one device allocation),
// host pointers held by the model are mapped to their device copies. After deltas change the
// host weights (cd_unet_rebind), call cd_unet_cuda_upload again.
// Activations: a device arena planned by the first forward at a shape and reused by every
// later forward at that shape (no allocation, no host synchronisation inside a forward).
//
// Shapes as model/unet.h: x [B, in_channels, H, W], t [B] (float), ctx [B, Nctx, cross_dim],
// out [B, out_channels, H, W].
#ifndef CD_UNET_CUDA_H
#define CD_UNET_CUDA_H
#include <stdint.h>
#include "model/unet.h"

typedef struct cd_unet_cuda cd_unet_cuda;

// Upload u's weights to the device; stream: a cudaStream_t or NULL (the default stream).
// u must outlive the handle. Errors: no GPU / built without CUDA / out of device memory.
int cd_unet_cuda_new(cd_unet_cuda **out, cd_unet *u, void *stream);
void cd_unet_cuda_free(cd_unet_cuda *g);
// Re-upload every weight (after cd_unet_rebind, e.g. when deltas were applied).
int cd_unet_cuda_upload(cd_unet_cuda *g);
// bf16 tensor-core math (on = 1): bf16 copies of the weights (+50% device memory), GEMM /
// convolution / attention inputs rounded to bf16, fp32 accumulation and fp32 activations
// between layers. Off (default): fp32, or TF32 per cd_cuda_set_tf32.
int cd_unet_cuda_set_bf16(cd_unet_cuda *g, int on);

// Host in, host out (copies in, runs, copies out, synchronises). acts as cd_unet_forward
// (called with host copies of each block output; slow: a copy and a sync per block).
int cd_unet_cuda_forward(cd_unet_cuda *g, float *out, const float *x, const float *t,
                         const float *ctx, int B, int H, int W, int Nctx, cd_unet_act_fn acts,
                         void *act_ctx);
// Device in, device out, asynchronous on the handle's stream (no synchronisation; errors of
// the ops show in cd_cuda_status() afterwards). d_t: device float [B].
int cd_unet_cuda_forward_dev(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                             const float *d_ctx, int B, int H, int W, int Nctx);

// The same forward replayed from a CUDA graph: captured on the first call (after a warm-up
// forward) and again whenever the shape, the four buffers, bf16 or TF32 change; later calls
// are one cudaGraphLaunch. Needs a handle made with its own stream (cd_cuda_stream_create),
// and that stream's scratch must not be regrown by other work between calls (run the VAE and
// other models on other streams). -1 with a message when the driver refuses the capture
// (callers fall back to cd_unet_cuda_forward_dev).
int cd_unet_cuda_forward_graph(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                               const float *d_ctx, int B, int H, int W, int Nctx);

// Device bytes held by the weights and by the activation arena.
int64_t cd_unet_cuda_weight_bytes(const cd_unet_cuda *g);
int64_t cd_unet_cuda_arena_bytes(const cd_unet_cuda *g);
void *cd_unet_cuda_stream(const cd_unet_cuda *g);
// FLOPs (2 per multiply-add) of the GEMMs, convolutions and attention of the last forward.
double cd_unet_cuda_flops(const cd_unet_cuda *g);
#endif
