// The real UNet forward on the GPU (model/unet_cuda.c, the model's own walk, not a proxy) at
// SD1.5's shape with random weights from SD1.5's config: batch 2 (one classifier-free-guidance
// step), 4x64x64 latents (512x512 images), 77x768 context. Prints ms per forward and TFLOP/s in
// fp32, TF32, bf16 (cd_unet_cuda_set_bf16: bf16 weights and activations, model/nn16_cuda.c) and
// bf16 replayed from a CUDA graph, then sampling it/s at 512 with CFG: per step the latents go up, the UNet runs
// on the batch [uncond, cond], eps comes back, guidance and a DDIM-style update run on the CPU
// (what model/sampler_cuda.c does per step). Built by make (CUDA=0: prints why it is skipped)
// and by bench/gpu-check.sh's minimal build (no cJSON needed).
// Usage: bench_unet_cuda [iters=10] [steps=20] [tiny]   (tiny: tiny-sd's shapes, a smoke run)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "model/unet.h"
#include "model/unet_cuda.h"
#include "model/tiny.h"
#include "core/err.h"
#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#ifdef CD_CUDA

enum { B = 2, M = 77 };
static int HL = 64, CTXD = 768;   // latent side, context width ("tiny": 16, 32)

static int g_graph;   // replay the forward from a CUDA graph
static int fwd(cd_unet_cuda *g, float *dout, float *dx, float *dt, float *dc) {
    return g_graph ? cd_unet_cuda_forward_graph(g, dout, dx, dt, dc, B, HL, HL, M)
                   : cd_unet_cuda_forward_dev(g, dout, dx, dt, dc, B, HL, HL, M);
}

// ms per forward (device buffers, synchronised once per forward).
static double time_forward(cd_unet_cuda *g, float *dout, float *dx, float *dt, float *dc, int iters) {
    void *st = cd_unet_cuda_stream(g);
    for (int i = 0; i < 2; i++)   // warm-up: plans the arena, cuDNN/cuBLAS choices (graph: captures)
        if (fwd(g, dout, dx, dt, dc) || cd_cuda_sync(st) || cd_cuda_status()) return -1;
    double t0 = now();
    for (int i = 0; i < iters; i++) {
        if (fwd(g, dout, dx, dt, dc)) return -1;
        cd_cuda_sync(st);
    }
    double ms = (now() - t0) * 1e3 / iters;
    return cd_cuda_status() ? -1 : ms;
}

// Sampling steps/s: host latents up, forward, eps down, CFG + update on the CPU.
static double sampling_its(cd_unet_cuda *g, float *dout, float *dx, float *dt, float *dc, int steps) {
    int64_t n = 4 * HL * HL;
    float *lat = malloc(n * 4), *xin = malloc(2 * n * 4), *eps = malloc(2 * n * 4);
    for (int64_t k = 0; k < n; k++) lat[k] = (float)((k * 2654435761u) % 1000) / 500.f - 1.f;
    void *st = cd_unet_cuda_stream(g);
    double t0 = now();
    int rc = 0;
    for (int i = 0; i < steps && !rc; i++) {
        float t[2] = {999.f - i * 50.f, 999.f - i * 50.f};
        memcpy(xin, lat, n * 4);
        memcpy(xin + n, lat, n * 4);
        rc = cd_cuda_memcpy_h2d(dx, xin, 2 * n * 4, st) || cd_cuda_memcpy_h2d(dt, t, sizeof t, st) ||
             fwd(g, dout, dx, dt, dc) || cd_cuda_memcpy_d2h(eps, dout, 2 * n * 4, st) || cd_cuda_sync(st);
        for (int64_t k = 0; k < n; k++) {
            float e = eps[k] + 7.5f * (eps[n + k] - eps[k]);
            lat[k] = 0.98f * lat[k] - 0.01f * e;
        }
    }
    double s = now() - t0;
    free(lat); free(xin); free(eps);
    return rc || cd_cuda_status() ? -1 : steps / s;
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 10, steps = argc > 2 ? atoi(argv[2]) : 20;
    char why[256] = "", dev[256] = "?";
    if (!cd_cuda_available(why, sizeof why)) { printf("bench_unet_cuda: skipped: %s\n", why); return 0; }
    cd_cuda_device_name(dev, sizeof dev);
    cd_unet_config c;
    cd_unet_config_sd15(&c);
    if (argc > 3 && !strcmp(argv[3], "tiny")) {   // tiny-sd's UNet (cd_tiny_unet_config)
        int bo[4] = {32, 64, 64, 64};
        for (int i = 0; i < 4; i++) c.block_out[i] = bo[i];
        c.cross_dim = CTXD = 32;
        c.time_embed_dim = 128;
        HL = 16;
    }
    cd_weights ws;
    cd_weights_init(&ws, "random SD1.5 UNet");
    cd_unet *u = NULL;
    cd_unet_cuda *g = NULL;
    double t0 = now();
    if (cd_unet_new_random(&u, &c, &ws, 1)) { fprintf(stderr, "bench_unet_cuda: %s\n", cd_errmsg()); return 1; }
    double t1 = now();
    void *st = cd_cuda_stream_create();   // a stream of its own (CUDA graphs need one)
    if (cd_unet_cuda_new(&g, u, st)) { fprintf(stderr, "bench_unet_cuda: %s\n", cd_errmsg()); return 1; }
    printf("device %s; random %s UNet built in %.1f s, uploaded (%.2f GiB fp32) in %.1f s\n", dev, HL == 64 ? "SD1.5" : "tiny", t1 - t0,
           cd_unet_cuda_weight_bytes(g) / 1073741824.0, now() - t1);
    int64_t nx = (int64_t)B * 4 * HL * HL, nc = (int64_t)B * M * CTXD;
    float *hx = malloc(nx * 4), *hc = malloc(nc * 4), ht[2] = {999.f, 999.f};
    for (int64_t k = 0; k < nx; k++) hx[k] = (float)((k * 40503u) % 2000) / 1000.f - 1.f;
    for (int64_t k = 0; k < nc; k++) hc[k] = (float)((k * 69069u) % 2000) / 1000.f - 1.f;
    float *dx = cd_cuda_malloc(nx * 4), *dout = cd_cuda_malloc(nx * 4), *dc = cd_cuda_malloc(nc * 4), *dt = cd_cuda_malloc(8);
    if (!dx || !dout || !dc || !dt || cd_cuda_memcpy_h2d(dx, hx, nx * 4, st) ||
        cd_cuda_memcpy_h2d(dc, hc, nc * 4, st) || cd_cuda_memcpy_h2d(dt, ht, 8, st) || cd_cuda_sync(st)) {
        fprintf(stderr, "bench_unet_cuda: %s\n", cd_errmsg());
        return 1;
    }
    printf("| UNet forward (model/unet_cuda.c, %s, B2 4x%dx%d, ctx 77x%d) | ms | TFLOP/s | CFG it/s at %d px (%d steps, incl. copies + CPU step) |\n",
           HL == 64 ? "SD1.5" : "tiny", HL, HL, CTXD, HL * 8, steps);
    printf("|---|---|---|---|\n");
    int rc = 0;
    const char *mode[4] = {"fp32", "tf32", "bf16 (bf16 activations: model/nn16_cuda.c)", "bf16 + CUDA graph"};
    for (int m = 0; m < 4; m++) {
        cd_cuda_set_tf32(m == 1);
        g_graph = m == 3;
        if (m == 3 && !st) { printf("| %s | skipped: no stream | | |\n", mode[m]); continue; }
        if (m == 2 && cd_unet_cuda_set_bf16(g, 1)) { printf("| %s | FAILED: %s | | |\n", mode[m], cd_errmsg()); rc = 1; break; }
        double ms = time_forward(g, dout, dx, dt, dc, iters);
        double its = ms > 0 ? sampling_its(g, dout, dx, dt, dc, steps) : -1;
        if (ms <= 0 || its <= 0) { printf("| %s | FAILED: %s | | |\n", mode[m], cd_errmsg()); rc = 1; continue; }
        double fl = cd_unet_cuda_flops(g);
        printf("| %s | %.1f | %.1f (%.3f TFLOP per forward) | %.2f |\n", mode[m], ms, fl / ms / 1e9, fl / 1e12, its);
        fflush(stdout);
    }
    cd_cuda_set_tf32(0);
    cd_unet_cuda_set_bf16(g, 0);
    size_t used = 0, tot = 0;
    cd_cuda_mem_info(&used, &tot);
    printf("activation arena %.2f GiB; device memory in use %.1f of %.1f GiB\n",
           cd_unet_cuda_arena_bytes(g) / 1073741824.0, used / 1073741824.0, tot / 1073741824.0);
    // a short fp32 sanity figure of the output (random weights: only finite-ness matters)
    float *ho = malloc(nx * 4);
    if (!cd_cuda_memcpy_d2h(ho, dout, nx * 4, st) && !cd_cuda_sync(st)) {
        int bad = 0;
        for (int64_t k = 0; k < nx; k++) bad += !(ho[k] == ho[k]) || ho[k] > 1e30f || ho[k] < -1e30f;
        printf("output: %d non-finite of %lld\n", bad, (long long)nx);
        if (bad) rc = 1;
    }
    free(ho); free(hx); free(hc);
    cd_cuda_free(dx); cd_cuda_free(dout); cd_cuda_free(dc); cd_cuda_free(dt);
    cd_unet_cuda_free(g);
    if (st) cd_cuda_stream_destroy(st);
    cd_unet_free(u);
    cd_weights_free(&ws);
    return rc;
}
#else
int main(void) {
    (void)now;
    printf("bench_unet_cuda: skipped: built without CUDA (CUDA=0)\n");
    return 0;
}
#endif
