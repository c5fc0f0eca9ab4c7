// WMMA 16x16x16 for the simulator: every lane holds the whole tile; each call is a warp
// collective (barrier before and after), checks that all lanes pass the same pointer / ldm,
// that the tile lies inside a registered buffer or the block's shared memory, the pointer is
// 256-bit aligned and ldm is a multiple of 16 bytes.
#pragma once
#include "cusim.h"

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "sim supports 16x16x16 only");
    static_assert(std::is_same<Use, accumulator>::value ? std::is_same<T, float>::value
                                                         : (std::is_same<T, __half>::value ||
                                                            std::is_same<T, __nv_bfloat16>::value),
                  "fragment element type");
    static constexpr int num_elements = 256;
    float x[256]; // [row][col] of the logical matrix (A: 16xK, B: Kx16, C: 16x16)
};

static inline float cusim_f(float v) { return v; }
static inline float cusim_f(__half v) { return __half2float(v); }
static inline float cusim_f(__nv_bfloat16 v) { return __bfloat162float(v); }

// Warp-collective prologue: records (p, ldm), barrier, checks uniformity across lanes.
static inline void cusim_wmma_pre(const void *p, unsigned ldm, const char *what) {
    const int w = cusim_warp(), lane = cusim_lane();
    cusim_blk->argslot[w][lane][0] = (uintptr_t)p;
    cusim_blk->argslot[w][lane][1] = ldm;
    cusim_wbar().wait();
    if (cusim_blk->argslot[w][lane][0] != cusim_blk->argslot[w][0][0] ||
        cusim_blk->argslot[w][lane][1] != cusim_blk->argslot[w][0][1])
        cusim_fault("%s: lane %d passes different pointer/ldm than lane 0 (warp %d)", what, lane, w);
}
static inline void cusim_wmma_post() { cusim_wbar().wait(); }

template <typename T> static inline void cusim_tile_check(const T *p, unsigned ldm, const char *what) {
    if (cusim_lane() != 0) return;
    if ((uintptr_t)p % 32) cusim_fault("%s: pointer %p not 256-bit aligned", what, (const void *)p);
    if ((ldm * sizeof(T)) % 16) cusim_fault("%s: ldm %u not a multiple of 16 bytes", what, ldm);
    cusim_check_range(p, ((size_t)15 * ldm + 16) * sizeof(T), what);
}

template <typename Use, typename T, typename L>
static inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, float v) {
    cusim_wmma_pre(nullptr, 0, "fill_fragment");
    for (int i = 0; i < 256; i++) f.x[i] = cusim_f((T)v);
    cusim_wmma_post();
}

// matrix_a (16 x K): row_major a(i,k) = p[i*ldm + k]; col_major a(i,k) = p[i + k*ldm]
template <typename T, typename L>
static inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    cusim_wmma_pre(p, ldm, "load_matrix_sync(a)");
    cusim_tile_check(p, ldm, "load_matrix_sync(a)");
    for (int i = 0; i < 16; i++)
        for (int k = 0; k < 16; k++)
            f.x[i * 16 + k] = cusim_f(std::is_same<L, row_major>::value ? p[i * ldm + k] : p[i + k * ldm]);
    cusim_wmma_post();
}
// matrix_b (K x 16): row_major b(k,j) = p[k*ldm + j]; col_major b(k,j) = p[k + j*ldm]
template <typename T, typename L>
static inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    cusim_wmma_pre(p, ldm, "load_matrix_sync(b)");
    cusim_tile_check(p, ldm, "load_matrix_sync(b)");
    for (int k = 0; k < 16; k++)
        for (int j = 0; j < 16; j++)
            f.x[k * 16 + j] = cusim_f(std::is_same<L, row_major>::value ? p[k * ldm + j] : p[k + j * ldm]);
    cusim_wmma_post();
}
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm,
                                    layout_t lay) {
    cusim_wmma_pre(p, ldm, "load_matrix_sync(acc)");
    cusim_tile_check(p, ldm, "load_matrix_sync(acc)");
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) f.x[i * 16 + j] = lay == mem_row_major ? p[i * ldm + j] : p[i + j * ldm];
    cusim_wmma_post();
}
static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                                     layout_t lay) {
    cusim_wmma_pre(p, ldm, "store_matrix_sync");
    cusim_tile_check(p, ldm, "store_matrix_sync");
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float *d = lay == mem_row_major ? &p[i * ldm + j] : &p[i + j * ldm];
            uint32_t u; memcpy(&u, &f.x[i * 16 + j], 4); __atomic_store_n((uint32_t *)d, u, __ATOMIC_RELAXED);
        }
    cusim_wmma_post();
}
// d = a b + c, fp32 products of the 16-bit values, fp32 sums (k ascending, c first).
template <typename T, typename LA, typename LB>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, T, LB> &b,
                            const fragment<accumulator, 16, 16, 16, float> &c) {
    cusim_wmma_pre(nullptr, 0, "mma_sync");
    float r[256];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = c.x[i * 16 + j];
            for (int k = 0; k < 16; k++) s += a.x[i * 16 + k] * b.x[k * 16 + j];
            r[i * 16 + j] = s;
        }
    memcpy(d.x, r, sizeof r);
    cusim_wmma_post();
}
} // namespace wmma
} // namespace nvcuda
