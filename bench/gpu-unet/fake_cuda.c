// CPU stand-in for the cd_cuda_* twins that model/nn_cuda.c, unet_cuda.c, vae_cuda.c and
// sampler_cuda.c call: "device" memory is host memory and each op runs its CPU reference
// (bf16 ops round like bf16). Not a GPU test: it checks the GPU walk (weight map, arena
// planning and LIFO release, block order, skips, bf16 plumbing) on a machine without a GPU.
// Used by bench/gpu-unet/check-cpu.sh only; never linked into the project.
#include <stdlib.h>
#include <string.h>
#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
#include "core/err.h"
static int tf;
int cd_cuda_available(char *why, size_t cap) { return 1; }
int cd_cuda_device_name(char *b, size_t cap) { strncpy(b, "fake (CPU)", cap); return 0; }
int cd_cuda_status(void) { return 0; }
void *cd_cuda_malloc(size_t n) { return aligned_alloc(256, (n + 255) & ~(size_t)255); }
void cd_cuda_free(void *p) { free(p); }
int cd_cuda_memcpy_h2d(void *d, const void *s, size_t n, void *st) { memcpy(d, s, n); return 0; }
int cd_cuda_memcpy_d2h(void *d, const void *s, size_t n, void *st) { memcpy(d, s, n); return 0; }
int cd_cuda_sync(void *st) { return 0; }
void cd_cuda_set_tf32(int on) { tf = on; }
int cd_cuda_get_tf32(void) { return tf; }
void cd_cuda_conv2d_fwd(float *y, const float *x, const float *W, const float *b, int n, int cin, int h, int w, int cout, int k, int s, int p, void *st) { cd_conv2d_fwd(y, x, W, b, n, cin, h, w, cout, k, s, p); }
void cd_cuda_linear_fwd(float *y, const float *x, const float *W, const float *b, int n, int in, int out, void *st) { cd_linear_fwd(y, x, W, b, n, in, out); }
void cd_cuda_layernorm_fwd(float *y, float *m, float *r, const float *x, const float *g, const float *b, int n, int c, float eps, void *st) { cd_layernorm_fwd(y, m, r, x, g, b, n, c, eps); }
void cd_cuda_groupnorm_fwd(float *y, float *m, float *r, const float *x, const float *g, const float *b, int n, int c, int hw, int G, float eps, int silu, void *st) { cd_groupnorm_fwd(y, m, r, x, g, b, n, c, hw, G, eps, silu); }
void cd_cuda_attention_fwd(float *o, float *l, const float *q, const float *k, const float *v, int B, int H, int Nq, int Nk, int D, float sc, void *st) { cd_attention_fwd(o, l, q, k, v, B, H, Nq, Nk, D, sc); }
int cd_cuda_attention_naive_fwd(float *o, float *l, const float *q, const float *k, const float *v, int B, int H, int Nq, int Nk, int D, float sc, void *st) { cd_attention_fwd(o, l, q, k, v, B, H, Nq, Nk, D, sc); return 0; }
void cd_cuda_silu_fwd(float *y, const float *x, int64_t n, void *st) { cd_silu_fwd(y, x, n); }
void cd_cuda_bias_geglu_fwd(float *y, const float *x, const float *bias, int64_t n, int c, void *st) {
    float *t = malloc(n * 2 * c * sizeof(float));
    for (int64_t i = 0; i < n; i++) for (int j = 0; j < 2 * c; j++) t[i * 2 * c + j] = x[i * 2 * c + j] + bias[j];
    cd_geglu_fwd(y, t, n, c); free(t);
}
void cd_cuda_add(float *y, const float *a, const float *b, int64_t n, void *st) { cd_add(y, a, b, n); }
void cd_cuda_acc(float *y, const float *x, int64_t n, void *st) { cd_acc(y, x, n); }
void cd_cuda_add_bias_nc(float *y, const float *b, int n, int c, int hw, void *st) { cd_add_bias_nc(y, b, n, c, hw); }
void cd_cuda_upsample2x_fwd(float *y, const float *x, int n, int c, int h, int w, void *st) { cd_upsample2x_fwd(y, x, n, c, h, w); }
void cd_cuda_nchw_to_nhwc(float *y, const float *x, int n, int c, int hw, void *st) { cd_nchw_to_nhwc(y, x, n, c, hw); }
void cd_cuda_nhwc_to_nchw(float *y, const float *x, int n, int c, int hw, void *st) { cd_nhwc_to_nchw(y, x, n, c, hw); }
void cd_cuda_concat_c(float *y, const float *a, const float *b, int n, int ca, int cb, int hw, void *st) { cd_concat_c(y, a, b, n, ca, cb, hw); }
void cd_cuda_timestep_embedding(float *o, const float *t, int n, int dim, int f, float s, float mp, void *st) { cd_timestep_embedding(o, t, n, dim, f, s, mp); }
int cd_cuda_mem_info(size_t *u, size_t *t) { *u = 0; *t = 0; return 0; }
static uint16_t f2b(float f) { uint32_t u; memcpy(&u, &f, 4); u += 0x7fff + ((u >> 16) & 1); return (uint16_t)(u >> 16); }
static float b2f(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
void cd_cuda_f32_to_bf16(uint16_t *y, const float *x, int64_t n, void *s) { for (int64_t i = 0; i < n; i++) y[i] = f2b(x[i]); }
void cd_cuda_bf16_to_f32(float *y, const uint16_t *x, int64_t n, void *s) { for (int64_t i = 0; i < n; i++) y[i] = b2f(x[i]); }
static float *wide(const uint16_t *x, int64_t n) { float *y = malloc(n * 4); cd_cuda_bf16_to_f32(y, x, n, 0); return y; }
void cd_cuda_linear_fwd_bf16(float *y, const uint16_t *x, const uint16_t *W, const float *b, int n, int in, int out, void *st) {
    float *xf = wide(x, (int64_t)n * in), *wf = wide(W, (int64_t)in * out); cd_linear_fwd(y, xf, wf, b, n, in, out); free(xf); free(wf); }
void cd_cuda_linear_fwd_bf16_out(uint16_t *y, const uint16_t *x, const uint16_t *W, const float *b, int n, int in, int out, void *st) {
    float *t = malloc((int64_t)n * out * 4); cd_cuda_linear_fwd_bf16(t, x, W, NULL, n, in, out, st);
    for (int64_t i = 0; i < (int64_t)n * out; i++) t[i] = b2f(f2b(t[i])) + (b ? b[i % out] : 0);
    cd_cuda_f32_to_bf16(y, t, (int64_t)n * out, st); free(t); }
void cd_cuda_conv2d_fwd_bf16(uint16_t *y, const uint16_t *x, const uint16_t *W, const float *b, int n, int cin, int h, int w, int cout, int k, int s, int p, void *st) {
    int ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1; int64_t ny = (int64_t)n * cout * ho * wo;
    float *xf = wide(x, (int64_t)n * cin * h * w), *wf = wide(W, (int64_t)cout * cin * k * k), *t = malloc(ny * 4);
    cd_conv2d_fwd(t, xf, wf, b, n, cin, h, w, cout, k, s, p); cd_cuda_f32_to_bf16(y, t, ny, st); free(xf); free(wf); free(t); }
void cd_cuda_attention_fwd_bf16(void *out, int ob, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v, int B, int H, int Nq, int Nk, int D, float sc, void *st) {
    int64_t nq = (int64_t)B * Nq * H * D, nk = (int64_t)B * Nk * H * D;
    float *qf = wide(q, nq), *kf = wide(k, nk), *vf = wide(v, nk), *o = ob ? malloc(nq * 4) : out;
    cd_attention_fwd(o, lse, qf, kf, vf, B, H, Nq, Nk, D, sc);
    if (ob) { cd_cuda_f32_to_bf16(out, o, nq, st); free(o); }
    free(qf); free(kf); free(vf); }
void *cd_cuda_stream_create(void) { return NULL; }   // no streams: graph tests skip
void cd_cuda_stream_destroy(void *s) { (void)s; }
int cd_cuda_memset(void *d, int b, size_t n, void *st) { memset(d, b, n); return 0; }
