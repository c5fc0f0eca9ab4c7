// CPU simulator shim for CUDA kernels (force-included before the kernel source).
// Each block's threads run as cooperative fibers on one OS thread (cusim.cpp); __syncthreads is a
// block barrier; warp collectives (shuffles, votes, __syncwarp, every wmma call) are per-warp
// barriers. Every barrier arrival yields to the block's scheduler, which runs the warps in a
// seeded random order, each as far as it can (lanes in a random order between warp barriers), so
// a missing barrier shows as a read of NaN-filled / stale memory or a wrong value. Threads that
// return drop out of barriers; a block whose live threads all wait on barriers that cannot
// complete is reported as a deadlock (SIMFAULT). WMMA fragments hold the whole 16x16 tile in
// every lane (mma.h). Device built-ins below follow the CUDA C++ Programming Guide semantics.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <mutex>
#include <vector>
#include <tuple>
#include <map>
#include <utility>
#include <type_traits>
#include <initializer_list>

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __launch_bounds__
#define __launch_bounds__(...)
#ifndef __restrict__
#define __restrict__ __restrict
#endif

// ---- diagnostics ------------------------------------------------------------------------
extern int cusim_errors;          // count of simulator-detected faults
void cusim_fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- fibers and barriers (cusim.cpp) -----------------------------------------------------
struct CusimFiber;
// A barrier over a fixed set of fibers with a dynamic participant count (threads that exit
// drop out). wait(): arrive and yield until all live participants have arrived.
struct CusimBar {
    int expected = 0, arrived = 0;
    unsigned gen = 0;
    const char *name = "";
    CusimFiber *fib = nullptr; // the fibers that may wait on it: fib[0 .. nfib)
    int nfib = 0;
    void wait();
    void drop();
    void release();
};

struct CusimBlock {
    CusimBar block_bar;
    CusimBar warp_bar[32];
    // per-warp shuffle / vote payloads, double-buffered by the warp barrier's generation parity;
    // xtag records the generation a lane wrote its slot in (a read of a lane that did not take
    // part in this collective is a fault)
    uint64_t xch[2][32][32];
    unsigned xtag[2][32][32];
    // wmma: argument-uniformity slots; per-warp staging tiles of loads (double-buffered like xch)
    uintptr_t argslot[2][32][32][2];
    float stage[2][32][256];
    // wmma mma_sync: the first lane's inputs and product per warp (later lanes with the same
    // inputs copy the product), double-buffered, tag = the warp barrier generation
    struct Mma { unsigned tag; float a[256], b[256], c[256], r[256]; } mma[2][32];
    unsigned char *smem = nullptr;
    size_t smem_size = 0;
    // static __shared__ arrays (rewrite.py: one key per declaration), allocated on first use
    struct Static { int key; void *p; size_t bytes; };
    std::vector<Static> statics;
    size_t static_size = 0;
};

// Per OS thread (the scheduler sets them when it resumes a fiber / starts a block).
extern thread_local uint3 cusim_tIdx, cusim_bIdx;
extern thread_local dim3 cusim_bDim, cusim_gDim;
extern thread_local CusimBlock *cusim_blk;
extern thread_local unsigned char *cusim_smem_ptr;
extern thread_local int cusim_tlin; // linear thread index x + y*bx + z*bx*by (warps and lanes)
#define threadIdx cusim_tIdx
#define blockIdx cusim_bIdx
#define blockDim cusim_bDim
#define gridDim cusim_gDim
static const int warpSize = 32;

static inline int cusim_lane() { return cusim_tlin & 31; }
static inline int cusim_warp() { return cusim_tlin >> 5; }
static inline CusimBar &cusim_wbar() { return cusim_blk->warp_bar[cusim_warp()]; }
static inline unsigned char *cusim_smem() { return cusim_smem_ptr; }

static inline void __syncthreads() { cusim_blk->block_bar.wait(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) cusim_fault("__syncwarp with partial mask %08x (the simulator supports full warps only)", mask);
    cusim_wbar().wait();
}
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- warp shuffles and votes -------------------------------------------------------------
// One warp collective: every lane publishes v, the warp barrier, then the value of lane src(lane).
void cusim_xch_fault(const char *what, int src);
template <typename V> static inline V cusim_xch(unsigned mask, V v, int width, int src, bool in_range, const char *what) {
    static_assert(sizeof(V) <= 8 && std::is_trivially_copyable<V>::value, "shfl payload");
    if (mask != 0xffffffffu) cusim_fault("%s with partial mask %08x (the simulator supports full warps only)", what, mask);
    if (width < 1 || width > 32 || (width & (width - 1))) cusim_fault("%s: width %d not a power of 2 in [1, 32]", what, width);
    CusimBar &b = cusim_wbar();
    const int lane = cusim_lane(), w = cusim_warp();
    const unsigned g = b.gen, p = g & 1;
    memcpy(&cusim_blk->xch[p][w][lane], &v, sizeof(V));
    cusim_blk->xtag[p][w][lane] = g;
    b.wait();
    if (!in_range) return v;
    src &= 31;
    if (cusim_blk->xtag[p][w][src] != g) cusim_xch_fault(what, src);
    V r;
    memcpy(&r, &cusim_blk->xch[p][w][src], sizeof(V));
    return r;
}
// PTX shfl semantics with width w (segments of w lanes): idx reads srcLane mod w of its segment;
// up/down read lane -/+ delta unless that leaves the segment (then the own value); xor reads
// lane ^ m unless that lies above the segment's end.
template <typename V> static inline V __shfl_sync(unsigned mask, V v, int src, int width = 32) {
    const int lane = cusim_lane(), seg = lane & ~(width - 1);
    return cusim_xch(mask, v, width, seg + (src & (width - 1)), true, "__shfl_sync");
}
template <typename V> static inline V __shfl_up_sync(unsigned mask, V v, unsigned d, int width = 32) {
    const int lane = cusim_lane();
    return cusim_xch(mask, v, width, lane - (int)d, (int)(lane & (width - 1)) >= (int)d, "__shfl_up_sync");
}
template <typename V> static inline V __shfl_down_sync(unsigned mask, V v, unsigned d, int width = 32) {
    const int lane = cusim_lane();
    return cusim_xch(mask, v, width, lane + (int)d, (int)(lane & (width - 1)) + (int)d < width, "__shfl_down_sync");
}
template <typename V> static inline V __shfl_xor_sync(unsigned mask, V v, int m, int width = 32) {
    const int lane = cusim_lane(), j = lane ^ m, end = (lane & ~(width - 1)) + width - 1;
    return cusim_xch(mask, v, width, j, j <= end, "__shfl_xor_sync");
}
unsigned cusim_vote(unsigned mask, int pred, const char *what); // ballot of the warp's live lanes
static inline unsigned __ballot_sync(unsigned mask, int pred) { return cusim_vote(mask, pred, "__ballot_sync"); }
static inline int __any_sync(unsigned mask, int pred) { return cusim_vote(mask, pred, "__any_sync") != 0; }
static inline int __all_sync(unsigned mask, int pred) { return cusim_vote(mask, !pred, "__all_sync") == 0; }
unsigned cusim_activemask();
static inline unsigned __activemask() { return cusim_activemask(); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}

// ---- atomics (return the old value; relaxed device-scope semantics are met by seq_cst) ---
template <typename T> static inline T cusim_atomic_rmw(T *p, T (*f)(T, T), T v) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomic size");
    typedef typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type U;
    U *u = (U *)p, old = __atomic_load_n(u, __ATOMIC_RELAXED), nw;
    T o;
    do {
        memcpy(&o, &old, sizeof(T));
        T s = f(o, v);
        memcpy(&nw, &s, sizeof(T));
    } while (!__atomic_compare_exchange_n(u, &old, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return o;
}
static inline float atomicAdd(float *p, float v) { return cusim_atomic_rmw<float>(p, [](float a, float b) { return a + b; }, v); }
static inline double atomicAdd(double *p, double v) { return cusim_atomic_rmw<double>(p, [](double a, double b) { return a + b; }, v); }
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline int atomicSub(int *p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
static inline unsigned atomicSub(unsigned *p, unsigned v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
template <typename T> static inline T atomicExch(T *p, T v) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomicExch size");
    return cusim_atomic_rmw<T>(p, [](T, T b) { return b; }, v);
}
template <typename T> static inline T atomicMax(T *p, T v) {
    static_assert(std::is_integral<T>::value, "atomicMax: integer types only");
    return cusim_atomic_rmw<T>(p, [](T a, T b) { return a > b ? a : b; }, v);
}
template <typename T> static inline T atomicMin(T *p, T v) {
    static_assert(std::is_integral<T>::value, "atomicMin: integer types only");
    return cusim_atomic_rmw<T>(p, [](T a, T b) { return a < b ? a : b; }, v);
}
template <typename T> static inline T atomicCAS(T *p, T cmp, T v) {
    static_assert(std::is_integral<T>::value, "atomicCAS: integer types only");
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp; // the old value either way
}
template <typename T> static inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
template <typename T> static inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
template <typename T> static inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }

// ---- math built-ins (device intrinsics computed at full precision) ------------------------
#ifndef CUSIM_HAVE_MINMAX
// CUDA's min/max overloads: the usual arithmetic conversions of the two operands.
template <typename A, typename B, typename = typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>::type>
static inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)a < (C)b ? (C)a : (C)b;
}
template <typename A, typename B, typename = typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value>::type>
static inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)a > (C)b ? (C)a : (C)b;
}
#endif
static inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// glibc's math.h declares (but does not export) __expf & co.: the device intrinsics are macros
#define __expf cusim_expf
#define __exp10f cusim_exp10f
#define __logf cusim_logf
#define __log2f cusim_log2f
#define __log10f cusim_log10f
#define __powf cusim_powf
#define __sinf cusim_sinf
#define __cosf cusim_cosf
#define __tanf cusim_tanf
#define __sincosf cusim_sincosf
static inline float cusim_expf(float x) { return expf(x); }
static inline float cusim_exp10f(float x) { return exp10f(x); }
static inline float cusim_logf(float x) { return logf(x); }
static inline float cusim_log2f(float x) { return log2f(x); }
static inline float cusim_log10f(float x) { return log10f(x); }
static inline float cusim_powf(float x, float y) { return powf(x, y); }
static inline float cusim_sinf(float x) { return sinf(x); }
static inline float cusim_cosf(float x) { return cosf(x); }
static inline float cusim_tanf(float x) { return tanf(x); }
static inline void cusim_sincosf(float x, float *s, float *c) { *s = sinf(x); *c = cosf(x); }
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __frcp_rn(float x) { return 1.f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.f / sqrtf(x); }
static inline float __fadd_rn(float x, float y) { return x + y; }
static inline float __fsub_rn(float x, float y) { return x - y; }
static inline float __fmul_rn(float x, float y) { return x * y; }
static inline float __fdiv_rn(float x, float y) { return x / y; }
static inline float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
static inline float __saturatef(float x) { return x >= 1.f ? 1.f : (x > 0.f ? x : 0.f); } // NaN -> 0
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
static inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
static inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
static inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
static inline double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
static inline int __mul24(int a, int b) { return (int)((int64_t)(a << 8 >> 8) * (b << 8 >> 8)); }
static inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
// read-only cache loads: plain loads
template <typename T> static inline T __ldg(const T *p) { return *p; }
template <typename T> static inline T __ldcg(const T *p) { return *p; }
template <typename T> static inline T __ldca(const T *p) { return *p; }
template <typename T> static inline T __ldcs(const T *p) { return *p; }
template <typename T> static inline T __ldlu(const T *p) { return *p; }
template <typename T> static inline T __ldcv(const T *p) { return *p; }
template <typename T> static inline void __stcg(T *p, T v) { *p = v; }
template <typename T> static inline void __stcs(T *p, T v) { *p = v; }
template <typename T> static inline void __stwb(T *p, T v) { *p = v; }
long long cusim_clock64();
static inline long long clock64() { return cusim_clock64(); }

// ---- memory registry: device buffers and the current block's shared memory ----------------
void cusim_register(const void *p, size_t bytes);
void cusim_unregister(const void *p);
// Checks that [p, p+bytes) lies in one registered buffer or the block's (dynamic or static) smem.
void cusim_check_range(const void *p, size_t bytes, const char *what);
// The same check, returning whether the range is fine; reports (a SIMFAULT) only when report.
bool cusim_range_ok(const void *p, size_t bytes, const char *what, bool report);
// Whether p lies inside a registered device buffer; *base / *bytes (may be NULL) get the buffer.
int cusim_lookup(const void *p, void **base, size_t *bytes);

// A static `__shared__ A name;` (rewritten to `auto &name = cusim_static_smem<A>(key);`): one
// NaN-filled copy per block, shared by its threads.
void *cusim_static_alloc(int key, size_t bytes);
template <typename A> static inline A &cusim_static_smem(int key) { return *(A *)cusim_static_alloc(key, sizeof(A)); }

#define CUSIM_STR_(x) #x
#define CUSIM_STR(x) CUSIM_STR_(x)

// ---- launch ------------------------------------------------------------------------------
// Runs the grid (synchronously). A bad configuration or an unknown stream is a launch error:
// it sets CUDA's last error (cudaGetLastError) and is reported as a SIMFAULT.
void cusim_run_grid(dim3 g, dim3 b, size_t smem, cudaStream_t st, const void *fn, const char *kname,
                    void (*body)(void *), void *ctx);
extern size_t cusim_max_smem;      // sharedMemPerBlockOptin (227 KiB)
extern const char *cusim_cur_kernel;

// The configuration checks of a launch (grid / block limits, dynamic smem against the kernel's
// limit); false: the last error is set and a SIMFAULT reported (cusim_run_grid does the same).
bool cusim_launch_config_ok(dim3 g, dim3 b, size_t smem, const void *fn, const char *kname);

// ---- stream capture (cudart.cpp) -----------------------------------------------------------
// cusim_capture_count: capture sequences in progress (a cheap test before the locked lookups).
// cusim_capture_route(st, what): 1 when work issued into st now is to be recorded (st is
// capturing), 0 when it is to run now, -1 when it is refused (legacy-stream work that would
// synchronize implicitly with a capturing blocking stream: the last error is set and that
// capture invalidated, as CUDA does).
extern int cusim_capture_count;
int cusim_capture_route(cudaStream_t st, const char *what);
// Records one node on capturing stream st: at each replay (cudaGraphLaunch) a kernel node
// (fn != NULL) runs cusim_run_grid(g, b, smem, replay stream, fn, name, body, ctx), a host node
// (fn == NULL: a library call deferred by a mock, see cusim_defer) runs body(ctx). destroy(ctx)
// runs when the last graph / exec holding the node goes. ptrs[0 .. nptrs): the device pointers
// the node uses (checked against the memory registry at replay: a pointer that lay in a live
// device buffer at capture and lies in none at replay is a use of freed memory, a SIMFAULT).
// Returns the error the call returns (a bad launch configuration invalidates the capture).
cudaError_t cusim_capture_node(cudaStream_t st, const char *name, dim3 g, dim3 b, size_t smem, const void *fn,
                               void (*body)(void *), void (*destroy)(void *), void *ctx, const void *const *ptrs,
                               size_t nptrs);

template <typename T> static inline void cusim_argptr(std::vector<const void *> &v, const T &x) {
    if constexpr (std::is_pointer<T>::value) v.push_back((const void *)x);
}
// For the library mocks (cuBLAS, cuDNN): when st is capturing, records f (a copy; it must hold
// everything by value: host scalars such as alpha / beta are read at the call, as the libraries
// do) as a graph node that runs at replay, and returns true with *err set; otherwise returns
// false and the caller does the work now. ptrs: the device pointers f uses.
template <typename F>
static inline bool cusim_defer(cudaStream_t st, const char *name, F f, std::initializer_list<const void *> ptrs,
                               cudaError_t *err = nullptr) {
    if (!cusim_capture_count || cusim_capture_route(st, name) != 1) return false;
    struct H { static void run(void *p) { (*(F *)p)(); } static void del(void *p) { delete (F *)p; } };
    std::vector<const void *> v(ptrs);
    cudaError_t e = cusim_capture_node(st, name, dim3(1), dim3(1), 0, nullptr, H::run, H::del, new F(std::move(f)),
                                       v.data(), v.size());
    if (err) *err = e;
    return true;
}

template <typename... KA, typename... A>
static void cusim_launch(const char *kname, dim3 g, dim3 b, size_t smem, cudaStream_t st, void (*k)(KA...), A &&...args) {
    struct Ctx {
        void (*k)(KA...);
        std::tuple<KA...> a;
        static void run(void *p) {
            Ctx *c = (Ctx *)p;
            std::apply(c->k, c->a);
        }
        static void del(void *p) { delete (Ctx *)p; }
    };
    if (cusim_capture_count) {
        int r = cusim_capture_route(st, kname);
        if (r < 0) return;
        if (r == 1) { // recorded, not run: a heap copy of the converted arguments
            Ctx *h = new Ctx{k, std::tuple<KA...>(std::forward<A>(args)...)};
            std::vector<const void *> ptrs;
            std::apply([&](const auto &...a) { (cusim_argptr(ptrs, a), ...); }, h->a);
            cusim_capture_node(st, kname, g, b, smem, (const void *)k, Ctx::run, Ctx::del, h, ptrs.data(), ptrs.size());
            return;
        }
    }
    Ctx c{k, std::tuple<KA...>(std::forward<A>(args)...)};
    cusim_run_grid(g, b, smem, st, (const void *)k, kname, Ctx::run, &c);
}

// the C++ template overloads nvcc's cuda_runtime.h provides for kernel pointers
template <typename... KA>
static inline cudaError_t cudaFuncSetAttribute(void (*f)(KA...), enum cudaFuncAttribute a, int v) {
    return ::cudaFuncSetAttribute((const void *)f, a, v);
}
template <typename... KA>
static inline cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, void (*f)(KA...)) {
    return ::cudaFuncGetAttributes(attr, (const void *)f);
}
