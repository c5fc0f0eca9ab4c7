// UNet forward (and optionally a Custom Diffusion training step) at the SD v1.5 shape on the
// CPU with random weights: seconds per step and achieved GFLOP/s against the SGEMM rate
// measured in the same run (cd_gemm_rate_gflops).
//   bench_unet [--steps N] [--latent S] [--batch B] [--train] [--ckpt] [--vae]
// (--ckpt: training step with per-block gradient checkpointing)
// Defaults: 1 step, 64x64 latent (512 px), batch 1, context 77x768.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "model/unet.h"
#include "model/vae.h"
#include "model/tiny.h"
#include "kernels/kernels.h"
#include "core/err.h"

char *openblas_get_corename(void);   // OpenBLAS: the kernel family it picked

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill(float *x, int64_t n, unsigned s) {
    for (int64_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; x[i] = (float)(s >> 8) / (1 << 24) * 2 - 1; }
}

static int bench_vae(int S, double gemm) {
    cd_vae_config vc;
    memset(&vc, 0, sizeof vc);
    vc.in_channels = vc.out_channels = 3; vc.latent_channels = 4; vc.nblocks = 4;
    int bo[4] = {128, 256, 512, 512};
    memcpy(vc.block_out, bo, sizeof bo);
    vc.layers_per_block = 2; vc.groups = 32; vc.scaling_factor = 0.18215f;
    cd_weights ws;
    cd_weights_init(&ws, "random vae");
    cd_vae *v;
    if (cd_vae_new_random(&v, &vc, &ws, 2)) return -1;
    int64_t nz = 4LL * S * S, ni = 3LL * 64 * S * S;
    float *z = malloc(nz * 4), *img = malloc(ni * 4);
    fill(z, nz, 3);
    double t0 = now_s();
    int rc = cd_vae_decode(v, img, z, 1, S, S);
    double dt = now_s() - t0;
    printf("vae decode %dx%d -> %dx%d: %.2f s (GEMM %.1f GFLOP/s)\n", S, S, 8 * S, 8 * S, dt, gemm);
    free(z); free(img);
    cd_vae_free(v);
    cd_weights_free(&ws);
    return rc;
}

int main(int argc, char **argv) {
    int steps = 1, S = 64, B = 1, train = 0, vae = 0, M = 77, ckpt = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--latent") && i + 1 < argc) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--train")) train = 1;
        else if (!strcmp(argv[i], "--vae")) vae = 1;
        else if (!strcmp(argv[i], "--ckpt")) ckpt = train = 1;
        else { fprintf(stderr, "usage: %s [--steps N] [--latent S] [--batch B] [--train] [--ckpt] [--vae]\n", argv[0]); return 2; }
    }
    double gemm = cd_gemm_rate_gflops(2048);
    printf("sgemm 2048^3: %.1f GFLOP/s (OpenBLAS core %s; OPENBLAS_CORETYPE=%s, OMP_WAIT_POLICY=%s)\n", gemm,
           openblas_get_corename(), getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset",
           getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "unset");
    if (vae) return bench_vae(S, gemm) ? 1 : 0;
    cd_unet_config c;
    cd_unet_config_sd15(&c);
    cd_weights ws;
    cd_weights_init(&ws, "random sd15 unet");
    cd_unet *u;
    double t0 = now_s();
    if (cd_unet_new_random(&u, &c, &ws, 1)) { fprintf(stderr, "%s\n", cd_errmsg()); return 1; }
    printf("random SD1.5 UNet built in %.1f s\n", now_s() - t0);
    int64_t nx = (int64_t)B * 4 * S * S, nc = (int64_t)B * M * 768;
    float *x = malloc(nx * 4), *o = malloc(nx * 4), *ctx = malloc(nc * 4), *dctx = malloc(nc * 4);
    float *t = malloc(B * 4);
    fill(x, nx, 1); fill(ctx, nc, 2);
    for (int b = 0; b < B; b++) t[b] = 500 + b;
    double macs = cd_unet_forward_macs(&c, B, S, S, M);
    if (train) cd_unet_set_train(u, CD_TRAIN_CROSSATTN_KV, NULL, NULL);
    cd_unet_set_checkpointing(u, ckpt);
    for (int s = 0; s < steps; s++) {
        t0 = now_s();
        int rc = train ? cd_unet_forward_train(u, o, x, t, ctx, B, S, S, M) : cd_unet_forward(u, o, x, t, ctx, B, S, S, M, NULL, NULL);
        double tf = now_s() - t0;
        if (rc) { fprintf(stderr, "%s\n", cd_errmsg()); return 1; }
        double gf = 2 * macs / tf * 1e-9;
        printf("unet forward%s %dx%d latent, batch %d: %.2f s, %.1f GFLOP/s (%.0f%% of sgemm), %.1f GFLOP\n",
               train ? " (train)" : "", S, S, B, tf, gf, 100 * gf / gemm, 2 * macs * 1e-9);
        if (train) {
            t0 = now_s();
            cd_unet_backward(u, dctx, o);
            double tb = now_s() - t0;
            printf("unet backward: %.2f s (arena %.2f GB); step %.2f s\n", tb, cd_unet_arena_bytes(u) / 1e9, tf + tb);
        }
    }
    free(x); free(o); free(ctx); free(dctx); free(t);
    cd_unet_free(u);
    cd_weights_free(&ws);
    return 0;
}
