// The project functions a single kernel file needs (kernels/cuda_runtime.cu's, simplified), for the
// simulator's single-file test programs (test.cpp, test_norm.cpp) only: the whole-library
// simulation links the real kernels/cuda_runtime.cu instead. Allocations are malloc'ed and
// registered with the simulator (exact sizes: one byte past the end is out of range).
#include "cusim.h"
extern "C" {
#include "kernels/kernels_cuda.h"
}

int cusim_fp16;          // the 16-bit format cd_cuda_get_fp16 reports (tests set it)
int cusim_cuda_failures; // cd_cuda_fail calls (a test fails on any)
int cd_cuda_fail(const char *file, int line, const char *what, const char *msg) {
    fprintf(stderr, "cd_cuda_fail %s:%d: %s: %s\n", file, line, what, msg);
    cusim_cuda_failures++;
    return -1;
}
extern "C" {
int cd_cuda_get_fp16(void) { return cusim_fp16; }
void *cd_cuda_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    memset(p, 0xFF, n ? n : 1); // NaN: reads of what nobody wrote show
    cusim_register(p, n);
    return p;
}
void cd_cuda_free(void *p) {
    if (!p) return;
    cusim_unregister(p);
    free(p);
}
static std::vector<void *> g_scratch;
void *cd_cuda_scratch(void *stream, size_t n) {
    (void)stream;
    void *p = cd_cuda_malloc(n); // NaN-filled: the kernel must write what it reads
    g_scratch.push_back(p);
    return p;
}
// cuda_attention_bf16.cu widens the D=160 backward to the fp32 kernels (kernels/cuda_attention.cu).
void cd_cuda_attention_bwd(float *, float *, float *, const float *, const float *, const float *, const float *,
                           const float *, const float *, int, int, int, int, int, float, int, void *) {
    fprintf(stderr, "D=160 fp32 path not simulated\n");
    abort();
}
void cd_cuda_attention_causal_bwd(float *, float *, float *, const float *, const float *, const float *,
                                  const float *, const float *, const float *, int, int, int, int, float, void *) {
    fprintf(stderr, "D=160 fp32 path not simulated\n");
    abort();
}
}
void cusim_free_scratch() {
    for (void *p : g_scratch) cd_cuda_free(p);
    g_scratch.clear();
}
