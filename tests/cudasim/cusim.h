// CPU simulator shim for CUDA kernels (force-included before the kernel source).
// Each block's threads run as real std::threads; __syncthreads is a block barrier; warp
// collectives (__shfl_xor_sync, every wmma call, __syncwarp) are per-warp barriers.
// WMMA fragments hold the whole 16x16 tile in every lane.
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
#include <condition_variable>
#include <chrono>
#include <thread>
#include <vector>
#include <tuple>
#include <map>
#include <utility>
#include <type_traits>

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __launch_bounds__
#define __launch_bounds__(...)

// ---- diagnostics ------------------------------------------------------------------------
extern int cusim_errors;          // count of simulator-detected faults
void cusim_fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- barrier with dynamic participant count (threads that exit drop out) -----------------
struct CusimBar {
    std::mutex m;
    std::condition_variable cv;
    int expected = 0, arrived = 0;
    unsigned gen = 0;
    const char *name = "";
    void wait();
    void drop();
};

struct CusimBlock {
    CusimBar block_bar;
    CusimBar warp_bar[32];
    // per-warp exchange: shuffle payloads and wmma argument-uniformity slots
    uint64_t xch[32][32];
    uintptr_t argslot[32][32][2];
    unsigned char *smem = nullptr;
    size_t smem_size = 0;
    dim3 bidx;
    // static __shared__ arrays (rewrite.py: one key per declaration), allocated on first use
    std::mutex static_mu;
    std::map<int, void *> static_smem;
    size_t static_size = 0;
};

extern thread_local uint3 cusim_tIdx, cusim_bIdx;
extern thread_local dim3 cusim_bDim, cusim_gDim;
extern thread_local CusimBlock *cusim_blk;
extern thread_local unsigned char *cusim_smem_ptr;
extern thread_local int cusim_tlin; // linear thread index x + y*bx + z*bx*by (warps and lanes)
#define threadIdx cusim_tIdx
#define blockIdx cusim_bIdx
#define blockDim cusim_bDim
#define gridDim cusim_gDim

static inline int cusim_lane() { return cusim_tlin & 31; }
static inline int cusim_warp() { return cusim_tlin >> 5; }
static inline CusimBar &cusim_wbar() { return cusim_blk->warp_bar[cusim_warp()]; }
static inline unsigned char *cusim_smem() { return cusim_smem_ptr; }

static inline void __syncthreads() { cusim_blk->block_bar.wait(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) cusim_fault("__syncwarp with partial mask %08x", mask);
    cusim_wbar().wait();
}

template <typename V> static inline V __shfl_xor_sync(unsigned mask, V v, int o, int width = 32) {
    static_assert(sizeof(V) <= 8, "shfl payload");
    if (mask != 0xffffffffu || width != 32) cusim_fault("__shfl_xor_sync mask %08x width %d", mask, width);
    CusimBar &b = cusim_wbar();
    const int lane = cusim_lane(), w = cusim_warp();
    b.wait();  // before: every lane finished its previous read of the exchange
    memcpy(&cusim_blk->xch[w][lane], &v, sizeof(V));
    b.wait();
    V r;
    memcpy(&r, &cusim_blk->xch[w][(lane ^ o) & 31], sizeof(V));
    b.wait();  // after
    return r;
}

static inline float atomicAdd(float *p, float v) {
    uint32_t *u = (uint32_t *)p;
    uint32_t old = __atomic_load_n(u, __ATOMIC_RELAXED), nw;
    float f;
    do {
        memcpy(&f, &old, 4);
        float s = f + v;
        memcpy(&nw, &s, 4);
    } while (!__atomic_compare_exchange_n(u, &old, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return f;
}

#ifndef CUSIM_HAVE_MINMAX
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
#endif

// ---- memory registry: device buffers and the current block's shared memory ----------------
void cusim_register(const void *p, size_t bytes);
void cusim_unregister(const void *p);
// Checks that [p, p+bytes) lies in one registered buffer or the block's smem.
void cusim_check_range(const void *p, size_t bytes, const char *what);

// A static `__shared__ A name;` (rewritten to `auto &name = cusim_static_smem<A>(key);`): one
// NaN-filled copy per block, shared by its threads.
void *cusim_static_alloc(int key, size_t bytes);
template <typename A> static inline A &cusim_static_smem(int key) { return *(A *)cusim_static_alloc(key, sizeof(A)); }

// ---- launch ------------------------------------------------------------------------------
void cusim_run_grid(dim3 g, dim3 b, size_t smem, const char *kname, void (*body)(void *), void *ctx);
extern size_t cusim_max_smem;      // the device limit cudaFuncSetAttribute checks
extern const char *cusim_cur_kernel;

template <typename... KA, typename... A>
static void cusim_launch(dim3 g, dim3 b, size_t smem, cudaStream_t st, void (*k)(KA...), A &&...args) {
    (void)st;
    struct Ctx { void (*k)(KA...); std::tuple<KA...> a; };
    Ctx c{k, std::tuple<KA...>(std::forward<A>(args)...)};
    cusim_run_grid(g, b, smem, __PRETTY_FUNCTION__, [](void *p) {
        Ctx *c = (Ctx *)p;
        std::apply(c->k, c->a);
    }, &c);
}

// the C++ template overload nvcc's cuda_runtime.h provides for kernel pointers
template <typename... KA>
static inline cudaError_t cudaFuncSetAttribute(void (*f)(KA...), enum cudaFuncAttribute a, int v) {
    return ::cudaFuncSetAttribute((const void *)f, a, v);
}
