// WMMA 16x16x16 for the simulator: every lane holds the whole tile in its fragment.
// load_matrix_sync: each lane reads its share of the tile (elements i with i % 32 == lane) when it
// arrives, into a per-warp staging tile; after the warp barrier every lane copies the whole staged
// tile. store_matrix_sync: warp barrier, then each lane writes its share. So, as on the GPU, a
// lane that reads memory other lanes have not written yet (a missing __syncwarp / __syncthreads
// before a load, or reading another lane's part of a stored tile before a __syncwarp) sees NaN /
// stale data. mma_sync is a warp barrier then a per-lane product; fill_fragment is per lane.
// Each load / store checks that all lanes pass the same pointer and ldm, that the tile lies inside
// a registered buffer or the block's shared memory, the pointer is 256-bit aligned and ldm is a
// multiple of 16 bytes; a collective of a warp with exited lanes is a fault.
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

// Checks the tile (every lane; lane 0 reports). Returns whether it may be accessed.
template <typename T> static inline bool cusim_tile_ok(const T *p, unsigned ldm, const char *what) {
    const bool rep = cusim_lane() == 0;
    bool ok = true;
    if ((uintptr_t)p % 32) { ok = false; if (rep) cusim_fault("%s: pointer %p not 256-bit aligned", what, (const void *)p); }
    if ((ldm * sizeof(T)) % 16) { ok = false; if (rep) cusim_fault("%s: ldm %u not a multiple of 16 bytes", what, ldm); }
    if (ldm < 16) { ok = false; if (rep) cusim_fault("%s: ldm %u < 16", what, ldm); }
    if (!cusim_range_ok(p, ((size_t)15 * ldm + 16) * sizeof(T), what, rep)) ok = false;
    return ok;
}
// Before the barrier: record (p, ldm). After: all lanes of the warp must be live and agree.
// The slots are double-buffered by the warp barrier's generation parity (returned).
static inline unsigned cusim_wmma_args(const void *p, unsigned ldm) {
    const int w = cusim_warp(), lane = cusim_lane();
    const unsigned g = cusim_wbar().gen & 1;
    cusim_blk->argslot[g][w][lane][0] = (uintptr_t)p;
    cusim_blk->argslot[g][w][lane][1] = ldm;
    return g;
}
static inline void cusim_wmma_check(unsigned g, const char *what) {
    const int w = cusim_warp(), lane = cusim_lane();
    const uintptr_t(*argslot)[32][2] = cusim_blk->argslot[g];
    if (cusim_wbar().expected != 32 && lane == 0)
        cusim_fault("%s: warp %d has only %d live lanes", what, w, cusim_wbar().expected);
    if (argslot[w][lane][0] != argslot[w][0][0] ||
        argslot[w][lane][1] != argslot[w][0][1])
        cusim_fault("%s: lane %d passes different pointer/ldm than lane 0 (warp %d)", what, lane, w);
}

template <typename Use, typename T, typename L>
static inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, float v) {
    const float x = cusim_f((T)v);
    for (int i = 0; i < 256; i++) f.x[i] = x;
}

// A load: this lane's share into the warp's staging tile now, the whole tile after the barrier.
// at(i) is element i (row-major over the logical matrix).
template <typename F> static inline void cusim_wmma_load(float *dst, const void *p, unsigned ldm, bool ok, F at,
                                                         const char *what) {
    CusimBar &b = cusim_wbar();
    const int w = cusim_warp(), lane = cusim_lane();
    float *st = cusim_blk->stage[b.gen & 1][w];
    for (int i = lane; i < 256; i += 32) st[i] = ok ? at(i) : NAN;
    const unsigned g = cusim_wmma_args(p, ldm);
    b.wait();
    cusim_wmma_check(g, what);
    memcpy(dst, st, 256 * sizeof(float));
}
// matrix_a (16 x K): row_major a(i,k) = p[i*ldm + k]; col_major a(i,k) = p[i + k*ldm]
template <typename T, typename L>
static inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    const bool ok = cusim_tile_ok(p, ldm, "load_matrix_sync(a)");
    cusim_wmma_load(f.x, p, ldm, ok, [&](int e) {
        const int i = e >> 4, k = e & 15;
        return cusim_f(std::is_same<L, row_major>::value ? p[i * ldm + k] : p[i + k * ldm]);
    }, "load_matrix_sync(a)");
}
// matrix_b (K x 16): row_major b(k,j) = p[k*ldm + j]; col_major b(k,j) = p[k + j*ldm]
template <typename T, typename L>
static inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    const bool ok = cusim_tile_ok(p, ldm, "load_matrix_sync(b)");
    cusim_wmma_load(f.x, p, ldm, ok, [&](int e) {
        const int k = e >> 4, j = e & 15;
        return cusim_f(std::is_same<L, row_major>::value ? p[k * ldm + j] : p[k + j * ldm]);
    }, "load_matrix_sync(b)");
}
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm,
                                    layout_t lay) {
    const bool ok = cusim_tile_ok(p, ldm, "load_matrix_sync(acc)");
    cusim_wmma_load(f.x, p, ldm, ok, [&](int e) {
        const int i = e >> 4, j = e & 15;
        return lay == mem_row_major ? p[i * ldm + j] : p[i + j * ldm];
    }, "load_matrix_sync(acc)");
}
static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                                     layout_t lay) {
    const unsigned g = cusim_wmma_args(p, ldm);
    cusim_wbar().wait();
    cusim_wmma_check(g, "store_matrix_sync");
    if (!cusim_tile_ok(p, ldm, "store_matrix_sync")) return;
    for (int e = cusim_lane(); e < 256; e += 32) {
        const int i = e >> 4, j = e & 15;
        float *d = lay == mem_row_major ? &p[i * ldm + j] : &p[i + j * ldm];
        uint32_t u;
        memcpy(&u, &f.x[e], 4);
        __atomic_store_n((uint32_t *)d, u, __ATOMIC_RELAXED);
    }
}
// d = a b + c, fp32 products of the 16-bit values, fp32 sums (k ascending, c first).
template <typename T, typename LA, typename LB>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, T, LB> &b,
                            const fragment<accumulator, 16, 16, 16, float> &c) {
    const unsigned g = cusim_wmma_args(nullptr, 0);
    cusim_wbar().wait();
    cusim_wmma_check(g, "mma_sync");
    // every lane holds the same tiles in a correct program: the product is computed once per warp
    CusimBlock::Mma &m = cusim_blk->mma[g & 1][cusim_warp()];
    const unsigned gen = cusim_wbar().gen - 1; // this collective's generation (the barrier has passed)
    if (m.tag == gen && !memcmp(m.a, a.x, sizeof m.a) && !memcmp(m.b, b.x, sizeof m.b) && !memcmp(m.c, c.x, sizeof m.c)) {
        memcpy(d.x, m.r, sizeof m.r);
        return;
    }
    float r[256];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = c.x[i * 16 + j];
            for (int k = 0; k < 16; k++) s += a.x[i * 16 + k] * b.x[k * 16 + j];
            r[i * 16 + j] = s;
        }
    if (m.tag != gen) {
        memcpy(m.a, a.x, sizeof m.a);
        memcpy(m.b, b.x, sizeof m.b);
        memcpy(m.c, c.x, sizeof m.c);
        memcpy(m.r, r, sizeof r);
        m.tag = gen;
    }
    memcpy(d.x, r, sizeof r);
}
} // namespace wmma
} // namespace nvcuda
