// CLIP text encoder throughput at the real ViT-L/14 text shape (SD v1's text encoder:
// 12 layers, width 768, 12 heads, MLP 3072, 77 tokens; random weights), in prompts/s and
// achieved GFLOP/s, against the BLAS SGEMM rate measured in the same run.
//   build/bench/bench_clip [batch ...]      (default batches: 1 8)
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "core/err.h"
#include "kernels/kernels.h"
#include "model/clip.h"
#include "model/clip_tiny.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// FLOPs of one prompt: projections and MLP as GEMMs, causal attention as computed
// (L(L+1)/2 score and value rows per head).
static double flops_per_prompt(const cd_clip_text_config *c, int L) {
    double C = c->hidden, I = c->intermediate, lin = 2.0 * L * C * (4 * C + 2 * I);
    double att = 2.0 * 2.0 * (L * (L + 1) / 2.0) * C;
    return c->layers * (lin + att);
}

int main(int argc, char **argv) {
    cd_clip_text_config c;
    cd_clip_text_config_vit_l14(&c);
    cd_weights ws;
    cd_weights_init(&ws, "random ViT-L/14 text");
    cd_tiny_clip_weights(&ws, &c, 1, NULL, 1);
    cd_clip_text m;
    if (cd_clip_text_bind(&m, &c, &ws)) { fprintf(stderr, "bench_clip: %s\n", cd_errmsg()); return 1; }
    int L = 77, nb = argc > 1 ? argc - 1 : 2, batches[16] = {1, 8};
    for (int i = 1; i < argc && i <= 16; i++) batches[i - 1] = atoi(argv[i]);
    double gemm = cd_gemm_rate_gflops(1024);
    printf("bench_clip: CLIP text encoder ViT-L/14 shape (layers %d, width %d, heads %d, mlp %d, %d tokens), "
           "CPU, %d OpenMP threads\n", c.layers, c.hidden, c.heads, c.intermediate, L, omp_get_max_threads());
    printf("SGEMM 1024^3 (OpenBLAS, same run): %.1f GFLOP/s\n", gemm);
    double fpp = flops_per_prompt(&c, L);
    printf("%.2f GFLOP per prompt\n", fpp * 1e-9);
    for (int k = 0; k < nb; k++) {
        int B = batches[k] > 0 ? batches[k] : 1;
        int32_t *ids = malloc(sizeof(int32_t) * B * L);
        for (int i = 0; i < B * L; i++) ids[i] = i % L == 0 ? 49406 : (i % L < 10 ? 320 + (i * 37) % 4000 : 49407);
        float *hid = malloc(sizeof(float) * (size_t)B * L * c.hidden), *pooled = malloc(sizeof(float) * B * c.hidden);
        cd_clip_text_forward(&m, ids, B, L, hid, pooled);   // warm-up
        double best = 1e30, total = 0;
        for (int r = 0; r < 5 && (r < 2 || total < 3.0); r++) {
            double t0 = now_s();
            cd_clip_text_forward(&m, ids, B, L, hid, pooled);
            double dt = now_s() - t0;
            total += dt;
            if (dt < best) best = dt;
        }
        double gf = fpp * B / best * 1e-9;
        printf("batch %3d: %8.2f prompts/s  %7.1f ms/batch  %6.1f GFLOP/s  = %.2fx of SGEMM rate\n",
               B, B / best, best * 1e3, gf, gf / gemm);
        free(ids); free(hid); free(pooled);
    }
    cd_clip_text_release(&m);
    cd_weights_free(&ws);
    return 0;
}
