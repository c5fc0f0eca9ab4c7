// Planned device memory and FLOPs of one Custom Diffusion UNet training step on the GPU
// (model/unet_cuda.h: cd_unet_cuda_train_plan, the dry planning pass of the device walk; no GPU
// needed, but a CUDA=1 build). Real SD v1.5 shapes (random weights: ~3.4 GB of host memory
// for a few seconds), latent 64x64 (512 px), 77 context tokens, batch 4 by default.
//
//   bench_unet_train_plan [--batch N] [--latent N]
//
// Device memory of a step = weights (fp32: every tensor fp32; bf16: every tensor as bf16, plus
// fp32 copies of the vectors (biases, norms) and of the trainable tensors, as model/nn_cuda.c's
// nn_dev_drop_f32 leaves them) + trainable gradients + AdamW moments (2 x params) +
// the planned activation heap. Not counted: cuDNN/cuBLAS workspaces (cd_cuda_scratch), the
// CUDA context, the VAE and text encoder.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "model/unet.h"
#include "model/unet_cuda.h"
#include "model/tiny.h"
#include "core/err.h"

int main(int argc, char **argv) {
    int B = 4, L = 64, M = 77;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--latent")) L = atoi(argv[i + 1]);
    }
    cd_unet_config c;
    cd_unet_config_sd15(&c);
    cd_weights ws;
    cd_weights_init(&ws, "sd15 random");
    cd_unet *u = NULL;
    if (cd_unet_new_random(&u, &c, &ws, 1)) { fprintf(stderr, "bench_unet_train_plan: %s\n", cd_errmsg()); return 1; }
    int64_t nw = 0, nvec = 0;
    for (int i = 0; i < ws.n; i++) {
        nw += ws.w[i].numel;
        if (ws.w[i].ndim < 2) nvec += ws.w[i].numel;
    }
    printf("SD v1.5 UNet: %.1f M parameters; step at batch %d, latent %dx%d (%d px), %d context tokens\n",
           nw / 1e6, B, L, L, 8 * L, M);
    printf("%-14s %-5s %-6s %12s %12s %12s %12s %10s\n", "mode", "prec", "ckpt", "weights GB", "optim GB",
           "activ. GB", "total GB", "TFLOP");
    const int modes[2] = {CD_TRAIN_CROSSATTN_KV, CD_TRAIN_CROSSATTN};
    for (int mi = 0; mi < 2; mi++) {
        cd_param *ps;
        int np;
        if (cd_unet_set_train(u, modes[mi], &ps, &np)) { fprintf(stderr, "%s\n", cd_errmsg()); return 1; }
        int64_t ntr = 0;
        for (int i = 0; i < np; i++) ntr += ps[i].numel;
        for (int bf = 1; bf >= 0; bf--)
            for (int ck = 1; ck >= 0; ck--) {
                cd_unet_set_checkpointing(u, ck);
                double flops = 0, t0 = (double)clock() / CLOCKS_PER_SEC;
                int64_t heap = cd_unet_cuda_train_plan(u, bf, B, L, L, M, &flops);
                double dt = (double)clock() / CLOCKS_PER_SEC - t0;
                if (heap < 0) { fprintf(stderr, "bench_unet_train_plan: %s\n", cd_errmsg()); return 1; }
                double wgb = (bf ? nw * 2.0 + (nvec + ntr) * 4.0 : nw * 4.0) / 1e9, ogb = ntr * 12.0 / 1e9;   // grads + m + v
                printf("%-14s %-5s %-6s %12.2f %12.3f %12.2f %12.2f %10.2f   (planned in %.2f s)\n",
                       modes[mi] == CD_TRAIN_CROSSATTN ? "crossattn" : "crossattn_kv", bf ? "bf16" : "fp32",
                       ck ? "on" : "off", wgb, ogb, heap / 1e9, wgb + ogb + heap / 1e9, flops / 1e12, dt);
            }
    }
    cd_unet_free(u);
    cd_weights_free(&ws);
    return 0;
}
