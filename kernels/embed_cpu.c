// Embedding lookups and the sinusoidal timestep embedding. See kernels.h.
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"

// diffusers get_timestep_embedding, float32 arithmetic as PyTorch does it:
//   exponent_i = (-ln(max_period) * i) / (half - freq_shift); f_i = exp(exponent_i);
//   a = t * f_i; out = [sin(a), cos(a)] (flip: [cos, sin]); odd dim: zero last column.
void cd_timestep_embedding(float *out, const float *t, int n, int dim, int flip_sin_to_cos,
                           float freq_shift, float max_period) {
    int half = dim / 2;
    float nl = (float)(-log((double)max_period));
    float den = (float)half - freq_shift;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        float *o = out + (int64_t)r * dim;
        for (int i = 0; i < half; i++) {
            float e = (nl * (float)i) / den;
            float a = t[r] * expf(e);
            float s = sinf(a), c = cosf(a);
            o[i] = flip_sin_to_cos ? c : s;
            o[half + i] = flip_sin_to_cos ? s : c;
        }
        if (dim % 2) o[dim - 1] = 0.f;
    }
}

void cd_embedding_fwd(float *out, const int32_t *ids, const float *table, int n, int c) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) memcpy(out + (int64_t)i * c, table + (int64_t)ids[i] * c, sizeof(float) * c);
}

// dtable[ids[i], :] += dout[i, :] (rows with row_mask[id] only). Threads split the
// channels; each adds the rows in order i = 0..n-1, so results do not depend on threads.
void cd_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int n, int c,
                      const uint8_t *row_mask) {
#pragma omp parallel for schedule(static)
    for (int j = 0; j < c; j++)
        for (int i = 0; i < n; i++) {
            if (row_mask && !row_mask[ids[i]]) continue;
            dtable[(int64_t)ids[i] * c + j] += dout[(int64_t)i * c + j];
        }
}
