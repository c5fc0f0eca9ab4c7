// Loss, AdamW and sum of squares on the GPU: twins of kernels/optim_cpu.c.
// Reductions are deterministic: each block sums its share in double into its own slot, then one
// block adds the slots in a fixed order (k_sum_slots), so a run repeats bit for bit.
#include "kernels/cuda_common.h"
#include <math.h>

// acc[block] = this block's share of sum((a-b)^2 m); grad = scale * 2 (a-b) m (grad may be NULL,
// m may be NULL = 1).
__global__ void k_mse(double *acc, float *grad, const float *a, const float *b, const float *m,
                      int64_t n, float scale) {
    __shared__ double sh[32];
    double s = 0;
    CD_GRID_LOOP(i, n) {
        float d = a[i] - b[i], w = m ? m[i] : 1.f;
        s += (double)d * d * w;
        if (grad) grad[i] = scale * 2.f * d * w;
    }
    s = cd_block_sum_d(s, sh);
    if (threadIdx.x == 0) acc[blockIdx.x] = s;
}

__global__ void k_sumsq(double *acc, const float *x, int64_t n) {
    __shared__ double sh[32];
    double s = 0;
    CD_GRID_LOOP(i, n) s += (double)x[i] * x[i];
    s = cd_block_sum_d(s, sh);
    if (threadIdx.x == 0) acc[blockIdx.x] = s;
}

// acc[0] = acc[0] + ... + acc[n-1]: one block; thread t sums slots t, t+256, ... in order, then
// the block's fixed reduction tree.
__global__ void k_sum_slots(double *acc, int n) {
    __shared__ double sh[32];
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += acc[i];
    s = cd_block_sum_d(s, sh);
    if (threadIdx.x == 0) acc[0] = s;
}

static unsigned red_blocks(int64_t n) {
    unsigned b = cd_blocks(n, 256);
    return b > 1024 ? 1024 : b;
}

// After a reduction kernel wrote nb slots of acc: adds them and returns the sum (synchronizes).
static double finish(double *acc, unsigned nb, cudaStream_t st) {
    double h = NAN;
    if (cudaCheckLaunch()) return NAN;
    k_sum_slots<<<1, 256, 0, st>>>(acc, (int)nb);
    if (cudaCheckLaunch() || cudaCheck(cudaMemcpyAsync(&h, acc, sizeof h, cudaMemcpyDeviceToHost, st)) ||
        cudaCheck(cudaStreamSynchronize(st)))
        return NAN;
    return h;
}

extern "C" double cd_cuda_mse_fwd_bwd(float *grad, const float *a, const float *b, const float *mask,
                                      int64_t n, float scale, void *stream) {
    if (n <= 0) return 0;
    cudaStream_t st = cd_stream(stream);
    const unsigned nb = red_blocks(n);
    double *acc = (double *)cd_cuda_scratch(stream, sizeof(double) * nb);
    if (!acc) return NAN;
    k_mse<<<nb, 256, 0, st>>>(acc, grad, a, b, mask, n, scale);
    return finish(acc, nb, st);
}

extern "C" double cd_cuda_sumsq(const float *x, int64_t n, void *stream) {
    if (n <= 0) return 0;
    cudaStream_t st = cd_stream(stream);
    const unsigned nb = red_blocks(n);
    double *acc = (double *)cd_cuda_scratch(stream, sizeof(double) * nb);
    if (!acc) return NAN;
    k_sumsq<<<nb, 256, 0, st>>>(acc, x, n);
    return finish(acc, nb, st);
}

// PyTorch AdamW: p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
// Scalars formed in double on the host, applied in fp32 (as kernels/optim_cpu.c).
__global__ void k_adamw(float *p, const float *g, float *m, float *v, int64_t n, float decay, float b1,
                        float b2, float omb1, float omb2, float eps, float step_size, float bc2_sqrt) {
    CD_GRID_LOOP(i, n) {
        float gi = g[i], pi = p[i] * decay;
        float mi = m[i] * b1 + gi * omb1;
        float vi = v[i] * b2 + gi * gi * omb2;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

extern "C" void cd_cuda_adamw_step(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                                   float beta1, float beta2, float eps, float wd, int step, void *stream) {
    if (n <= 0) return;
    double bc1 = 1.0 - pow((double)beta1, step), bc2 = 1.0 - pow((double)beta2, step);
    float decay = (float)(1.0 - (double)lr * (double)wd);
    float omb1 = (float)(1.0 - (double)beta1), omb2 = (float)(1.0 - (double)beta2);
    k_adamw<<<cd_ew_blocks(n), 256, 0, cd_stream(stream)>>>(p, g, m, v, n, decay, beta1, beta2, omb1, omb2, eps,
                                                            (float)((double)lr / bc1), (float)sqrt(bc2));
    cudaCheckLaunch();
}
