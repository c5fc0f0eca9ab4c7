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
// bf16 tensor-core math (on = 1): bf16 copies of the weights (+50% device memory), bf16
// activations between layers in the inference forward (model/nn16_cuda.h; x, t, ctx and out stay
// fp32 at this API), fp32 accumulation, norm statistics and softmax. The training forward keeps
// fp32 activations with bf16 GEMM/conv/attention inputs. Off (default): fp32, or TF32 per
// cd_cuda_set_tf32.
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
// ---- training on the device (model/unet_train_cuda.c; owner: helper "unettrain") ----
// After cd_unet_set_train(u, mode, ...) and cd_unet_set_checkpointing(u, on) on the host model:
// device gradient buffers for u's trainable params (zeroed). The trainable weights' device
// copies are the fp32 masters the optimizer updates in place. Calling it again rebuilds the
// training state (after the mode or the parameter list changed).
int cd_unet_cuda_train_setup(cd_unet_cuda *g);
// Frees the training state (gradients, activation heap); cd_unet_cuda_free does it too.
void cd_unet_cuda_train_free(cd_unet_cuda *g);
int cd_unet_cuda_nparams(const cd_unet_cuda *g);             // == u's trainable param count, same order
float *cd_unet_cuda_param_dev(cd_unet_cuda *g, int i);       // device fp32 weight of param i
float *cd_unet_cuda_grad_dev(cd_unet_cuda *g, int i);        // device fp32 gradient [numel]
void cd_unet_cuda_zero_grad(cd_unet_cuda *g);                // async on the handle's stream
// Every gradient in one device buffer of *n floats (the params' ranges, zero padding between
// them): one reduction or one scaling covers them all.
float *cd_unet_cuda_grad_all(cd_unet_cuda *g, int64_t *n);
int cd_unet_cuda_params_changed(cd_unet_cuda *g);            // refresh bf16 copies of trainable weights (bf16 mode)
int cd_unet_cuda_params_to_host(cd_unet_cuda *g);            // device trainable weights -> u's host params (synchronises)
int cd_unet_cuda_params_from_host(cd_unet_cuda *g);          // host -> device (after a resume)
// Forward keeping what backward needs; device in/out, async on the stream. Checkpointing per
// u's setting. The first call at a shape (B, H, W, Nctx, bf16, checkpointing, mode) plans the
// activation heap with a dry pass of forward + backward and allocates it once; later calls at
// that shape allocate nothing. d_ctx is copied (it need not outlive the call).
int cd_unet_cuda_forward_train(cd_unet_cuda *g, float *d_out, const float *d_x, const float *d_t,
                               const float *d_ctx, int B, int H, int W, int Nctx);
// Backward of the last forward_train: d_dout [B,out,H,W] -> d_dctx [B,Nctx,cross] (overwritten;
// NULL when not needed) and += into the device gradients.
int cd_unet_cuda_backward(cd_unet_cuda *g, float *d_dctx, const float *d_dout);
// Device bytes of saved activations + temporaries at the last shape (the planned heap).
int64_t cd_unet_cuda_train_arena_bytes(const cd_unet_cuda *g);
// FLOPs (2 per multiply-add: GEMMs, convolutions, attention) of the last forward_train +
// backward, checkpoint recomputation included.
double cd_unet_cuda_train_flops(const cd_unet_cuda *g);
// The planning pass alone, on the host (no device, no weights touched): heap bytes that one
// training step of u (its mode and checkpointing) needs at this shape, and its FLOPs
// (flops may be NULL). -1 when built without CUDA.
int64_t cd_unet_cuda_train_plan(cd_unet *u, int bf16, int B, int H, int W, int Nctx, double *flops);
#endif
