// Host emulation (see kernels/emu/emu.h) of the fp32 element-wise, activation, layout and
// embedding twins of kernels/cuda_elementwise.cu: pointer checks, then the CPU reference.
// Ops whose GPU kernel reads other elements than the one it writes (transposes, upsampling,
// concat/split, GEGLU) refuse overlapping input and output, which would race on the GPU.
#include <stdlib.h>
#include "kernels/emu/emu.h"

int emu_no_overlap(const char *op, const void *a, size_t an, const void *b, size_t bn) {
    const char *x = emu_real(a), *y = emu_real(b);   // handles or host addresses, compared alike
    if (!a || !b || !an || !bn || x + an <= y || y + bn <= x) return 0;
    return emu_fail(__FILE__, __LINE__, op, "output and input overlap (the GPU kernel would race)");
}
#define no_overlap emu_no_overlap

#define UNARY(name, cpu)                                                                           \
    void cd_cuda_##name(float *y, const float *x, int64_t n, void *stream) {                       \
        if (n <= 0 || EMU_DEV("cd_cuda_" #name, x, F4(n)) || EMU_DEV("cd_cuda_" #name, y, F4(n))) \
            return;                                                                                \
        cpu(y, x, n);                                                                              \
    }
#define UNARY_BWD(name, cpu)                                                                          \
    void cd_cuda_##name(float *dx, const float *dy, const float *x, int64_t n, void *stream) {        \
        if (n <= 0 || EMU_DEV("cd_cuda_" #name, dy, F4(n)) || EMU_DEV("cd_cuda_" #name, x, F4(n)) ||   \
            EMU_DEV("cd_cuda_" #name, dx, F4(n)))                                                      \
            return;                                                                                   \
        cpu(dx, dy, x, n);                                                                            \
    }
UNARY(silu_fwd, cd_silu_fwd)
UNARY(gelu_fwd, cd_gelu_fwd)
UNARY(quick_gelu_fwd, cd_quick_gelu_fwd)
UNARY_BWD(silu_bwd, cd_silu_bwd)
UNARY_BWD(gelu_bwd, cd_gelu_bwd)
UNARY_BWD(quick_gelu_bwd, cd_quick_gelu_bwd)

// ---- GEGLU ------------------------------------------------------------------------------------
// x [n, 2c] + bias [2c] (NULL: x itself), as a fresh host copy when there is a bias.
static const float *biased(const float *x, const float *bias, int64_t n, int c, float **owned) {
    *owned = NULL;
    if (!bias) return x;
    float *t = emu_tmp(n * 2 * c);
    for (int64_t r = 0; r < n; r++)
        for (int j = 0; j < 2 * c; j++) t[r * 2 * c + j] = x[r * 2 * c + j] + bias[j];
    *owned = t;
    return t;
}

// (the caller translates y, x, bias afterwards)
static int geglu_check(const char *op, float *y, const float *x, const float *bias, int64_t n, int c, void *stream) {
    return EMU_DEV(op, x, F4(n * 2 * c)) || EMU_DEV(op, y, F4(n * c)) || EMU_OPT(op, bias, F4(2 * c)) ||
           no_overlap(op, y, F4(n * c), x, F4(n * 2 * c));
}

void cd_cuda_geglu_fwd(float *y, const float *x, int64_t n, int c, void *stream) {
    cd_cuda_bias_geglu_fwd(y, x, NULL, n, c, stream);
}
void cd_cuda_bias_geglu_fwd(float *y, const float *x, const float *bias, int64_t n, int c, void *stream) {
    if (n * c <= 0 || geglu_check("cd_cuda_bias_geglu_fwd", y, x, bias, n, c, stream)) return;
    EMU_XLATE(y), EMU_XLATE(x), EMU_XLATE(bias);
    float *o;
    const float *xb = biased(x, bias, n, c, &o);
    cd_geglu_fwd(y, xb, n, c);
    free(o);
}
void cd_cuda_geglu_bwd(float *dx, const float *dy, const float *x, int64_t n, int c, void *stream) {
    cd_cuda_bias_geglu_bwd(dx, dy, x, NULL, n, c, stream);
}
void cd_cuda_bias_geglu_bwd(float *dx, const float *dy, const float *x, const float *bias, int64_t n, int c,
                            void *stream) {
    const char *op = "cd_cuda_bias_geglu_bwd";
    if (n * c <= 0 || EMU_DEV(op, dy, F4(n * c)) || geglu_check(op, dx, x, bias, n, c, stream) ||
        EMU_DEV(op, dx, F4(n * 2 * c)))
        return;
    EMU_XLATE(x), EMU_XLATE(bias);
    float *o;
    const float *xb = biased(x, bias, n, c, &o);
    cd_geglu_bwd(dx, dy, xb, n, c);
    free(o);
}

// ---- arithmetic --------------------------------------------------------------------------------
void cd_cuda_add(float *y, const float *a, const float *b, int64_t n, void *stream) {
    const char *op = "cd_cuda_add";
    if (n <= 0 || EMU_DEV(op, a, F4(n)) || EMU_DEV(op, b, F4(n)) || EMU_DEV(op, y, F4(n))) return;
    cd_add(y, a, b, n);
}
void cd_cuda_acc(float *y, const float *x, int64_t n, void *stream) {
    if (n <= 0 || EMU_DEV("cd_cuda_acc", x, F4(n)) || EMU_DEV("cd_cuda_acc", y, F4(n))) return;
    cd_acc(y, x, n);
}
void cd_cuda_scale(float *y, float sc, int64_t n, void *stream) {
    if (n <= 0 || EMU_DEV("cd_cuda_scale", y, F4(n))) return;
    cd_scale(y, sc, n);
}
void cd_cuda_clamp(float *y, float lo, float hi, int64_t n, void *stream) {
    if (n <= 0 || EMU_DEV("cd_cuda_clamp", y, F4(n))) return;
    cd_clamp(y, lo, hi, n);
}
void cd_cuda_add_bias_nc(float *y, const float *bias, int n, int c, int hw, void *stream) {
    const char *op = "cd_cuda_add_bias_nc";
    int64_t nc = (int64_t)n * c;
    if (nc * hw <= 0 || EMU_DEV(op, y, F4(nc * hw)) || EMU_DEV(op, bias, F4(nc))) return;
    cd_add_bias_nc(y, bias, n, c, hw);
}

// ---- resampling and layout ------------------------------------------------------------------------
void cd_cuda_upsample2x_fwd(float *y, const float *x, int n, int c, int h, int w, void *stream) {
    const char *op = "cd_cuda_upsample2x_fwd";
    int64_t nx = (int64_t)n * c * h * w;
    if (nx <= 0 || EMU_DEV(op, x, F4(nx)) || EMU_DEV(op, y, F4(4 * nx)) || no_overlap(op, y, F4(4 * nx), x, F4(nx)))
        return;
    cd_upsample2x_fwd(y, x, n, c, h, w);
}
void cd_cuda_upsample2x_bwd(float *dx, const float *dy, int n, int c, int h, int w, void *stream) {
    const char *op = "cd_cuda_upsample2x_bwd";
    int64_t nx = (int64_t)n * c * h * w;
    if (nx <= 0 || EMU_DEV(op, dy, F4(4 * nx)) || EMU_DEV(op, dx, F4(nx)) ||
        no_overlap(op, dx, F4(nx), dy, F4(4 * nx)))
        return;
    cd_upsample2x_bwd(dx, dy, n, c, h, w);
}
// (the caller translates y, x afterwards)
static int layout_check(const char *op, void *y, const void *x, int64_t bytes, void *stream) {
    return EMU_DEV(op, x, bytes) || EMU_DEV(op, y, bytes) || no_overlap(op, y, bytes, x, bytes);
}
void cd_cuda_nchw_to_nhwc(float *y, const float *x, int n, int c, int hw, void *stream) {
    if (n <= 0 || c <= 0 || hw <= 0 || layout_check("cd_cuda_nchw_to_nhwc", y, x, F4((int64_t)n * c * hw), stream)) return;
    EMU_XLATE(y), EMU_XLATE(x);
    cd_nchw_to_nhwc(y, x, n, c, hw);
}
void cd_cuda_nhwc_to_nchw(float *y, const float *x, int n, int c, int hw, void *stream) {
    if (n <= 0 || c <= 0 || hw <= 0 || layout_check("cd_cuda_nhwc_to_nchw", y, x, F4((int64_t)n * c * hw), stream)) return;
    EMU_XLATE(y), EMU_XLATE(x);
    cd_nhwc_to_nchw(y, x, n, c, hw);
}
void cd_cuda_concat_c(float *y, const float *a, const float *b, int n, int ca, int cb, int hw, void *stream) {
    const char *op = "cd_cuda_concat_c";
    int64_t na = (int64_t)n * ca * hw, nb = (int64_t)n * cb * hw;
    if (na + nb <= 0 || EMU_DEV(op, y, F4(na + nb)) || EMU_DEV(op, a, F4(na)) || EMU_DEV(op, b, F4(nb)) ||
        no_overlap(op, y, F4(na + nb), a, F4(na)) || no_overlap(op, y, F4(na + nb), b, F4(nb)))
        return;
    cd_concat_c(y, a, b, n, ca, cb, hw);
}
void cd_cuda_split_c(float *da, float *db, const float *dy, int n, int ca, int cb, int hw, void *stream) {
    const char *op = "cd_cuda_split_c";
    int64_t na = (int64_t)n * ca * hw, nb = (int64_t)n * cb * hw;
    if (na + nb <= 0 || EMU_DEV(op, dy, F4(na + nb)) || EMU_OPT(op, da, F4(na)) || EMU_OPT(op, db, F4(nb)) ||
        no_overlap(op, da, F4(na), dy, F4(na + nb)) || no_overlap(op, db, F4(nb), dy, F4(na + nb)))
        return;
    cd_split_c(da, db, dy, n, ca, cb, hw);
}

// ---- embeddings -------------------------------------------------------------------------------------
void cd_cuda_timestep_embedding(float *out, const float *t, int n, int dim, int flip_sin_to_cos, float freq_shift,
                                float max_period, void *stream) {
    const char *op = "cd_cuda_timestep_embedding";
    if ((int64_t)n * dim <= 0 || EMU_DEV(op, t, F4(n)) || EMU_DEV(op, out, F4((int64_t)n * dim))) return;
    cd_timestep_embedding(out, t, n, dim, flip_sin_to_cos, freq_shift, max_period);
}

// The ids (device memory) must be >= 0; returns the largest, or -1 (recorded).
static int max_id(const char *op, const int32_t *ids, int n, void *stream) {
    if (EMU_DEV(op, ids, (size_t)n * sizeof(int32_t))) return -1;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0) return emu_fail(__FILE__, __LINE__, op, "ids[%d] = %d is negative", i, ids[i]);
        if (ids[i] > m) m = ids[i];
    }
    return m;
}

void cd_cuda_embedding_fwd(float *out, const int32_t *ids, const float *table, int n, int c, void *stream) {
    const char *op = "cd_cuda_embedding_fwd";
    if ((int64_t)n * c <= 0) return;
    int m = max_id(op, ids, n, stream);
    EMU_XLATE(ids);
    if (m < 0 || EMU_DEV(op, out, F4((int64_t)n * c)) || EMU_DEV(op, table, F4((int64_t)(m + 1) * c))) return;
    cd_embedding_fwd(out, ids, table, n, c);
}

void cd_cuda_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int n, int c,
                           const uint8_t *row_mask, void *stream) {
    const char *op = "cd_cuda_embedding_bwd";
    if ((int64_t)n * c <= 0) return;
    int m = max_id(op, ids, n, stream);
    EMU_XLATE(ids);
    if (m < 0 || EMU_DEV(op, dout, F4((int64_t)n * c)) || EMU_DEV(op, dtable, F4((int64_t)(m + 1) * c)) ||
        EMU_OPT(op, row_mask, (size_t)m + 1))
        return;
    cd_embedding_bwd(dtable, dout, ids, n, c, row_mask);
}
