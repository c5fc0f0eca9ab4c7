// Simulator runtime: barriers, grid executor, memory registry, CUDA runtime / project stubs.
#include "cusim.h"
#include <stdarg.h>
#include <atomic>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CUSIM_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define CUSIM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define CUSIM_POISON(p, n) ((void)0)
#define CUSIM_UNPOISON(p, n) ((void)0)
#endif
extern "C" {
#include "kernels/kernels_cuda.h"
}

int cusim_errors;
static std::mutex g_fault_mu;
const char *cusim_cur_kernel = "";
void cusim_fault(const char *fmt, ...) {
    std::lock_guard<std::mutex> l(g_fault_mu);
    if (++cusim_errors > 50) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "SIMFAULT [%s block (%u,%u,%u) thread %u]: ", cusim_cur_kernel, cusim_bIdx.x, cusim_bIdx.y,
            cusim_bIdx.z, cusim_tIdx.x);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

thread_local uint3 cusim_tIdx, cusim_bIdx;
thread_local dim3 cusim_bDim, cusim_gDim;
thread_local CusimBlock *cusim_blk;
thread_local unsigned char *cusim_smem_ptr;
thread_local int cusim_tlin;

void CusimBar::wait() {
    std::unique_lock<std::mutex> l(m);
    unsigned g = gen;
    if (++arrived == expected) {
        arrived = 0;
        gen++;
        cv.notify_all();
        return;
    }
    while (gen == g) {
        if (cv.wait_for(l, std::chrono::seconds(60)) == std::cv_status::timeout && gen == g) {
            fprintf(stderr, "SIMFAULT deadlock: %s barrier %s waited 60 s (%d of %d arrived) in %s block (%u,%u,%u)\n",
                    name, name, arrived, expected, cusim_cur_kernel, cusim_bIdx.x, cusim_bIdx.y, cusim_bIdx.z);
            abort();
        }
    }
}
void CusimBar::drop() {
    std::lock_guard<std::mutex> l(m);
    expected--;
    if (arrived > 0 && arrived == expected) {
        arrived = 0;
        gen++;
        cv.notify_all();
    }
}

// ---- registry ----------------------------------------------------------------------------
static std::mutex g_reg_mu;
static std::map<uintptr_t, size_t> g_reg;
void cusim_register(const void *p, size_t bytes) {
    std::lock_guard<std::mutex> l(g_reg_mu);
    g_reg[(uintptr_t)p] = bytes;
}
void cusim_unregister(const void *p) {
    std::lock_guard<std::mutex> l(g_reg_mu);
    g_reg.erase((uintptr_t)p);
}
void cusim_check_range(const void *p, size_t bytes, const char *what) {
    uintptr_t a = (uintptr_t)p;
    if (cusim_blk && cusim_blk->smem) {
        uintptr_t s = (uintptr_t)cusim_blk->smem;
        if (a >= s && a + bytes <= s + cusim_blk->smem_size) return;
        if (a + bytes > s && a < s + cusim_blk->smem_size + 4096) {
            cusim_fault("%s: shared tile [%zu, %zu) outside dynamic smem of %zu bytes", what, (size_t)(a - s),
                        (size_t)(a - s + bytes), cusim_blk->smem_size);
            return;
        }
    }
    std::lock_guard<std::mutex> l(g_reg_mu);
    auto it = g_reg.upper_bound(a);
    if (it != g_reg.begin()) {
        --it;
        if (a >= it->first && a + bytes <= it->first + it->second) return;
    }
    cusim_fault("%s: [%p, +%zu) not inside any device buffer or the block's smem", what, p, bytes);
}

// ---- grid executor -----------------------------------------------------------------------
size_t cusim_max_smem = 232448; // H100 / H200: 227 KiB dynamic shared memory per block
static const size_t GUARD = 1024;

void cusim_run_grid(dim3 g, dim3 b, size_t smem, const char *kname, void (*body)(void *), void *ctx) {
    cusim_cur_kernel = kname;
    int nt = (int)(b.x * b.y * b.z);
    if (nt <= 0 || nt > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535) {
        cusim_fault("launch: bad configuration grid (%u,%u,%u) block %d", g.x, g.y, g.z, nt);
        return;
    }
    if (smem > cusim_max_smem) { cusim_fault("launch: %zu bytes of dynamic smem > device max", smem); return; }
    for (unsigned bz = 0; bz < g.z; bz++)
        for (unsigned by = 0; by < g.y; by++)
            for (unsigned bx = 0; bx < g.x; bx++) {
                CusimBlock *blk = new CusimBlock();
                blk->block_bar.expected = nt;
                blk->block_bar.name = "__syncthreads";
                for (int w = 0; w < 32; w++) {
                    int n = nt - 32 * w;
                    blk->warp_bar[w].expected = n > 32 ? 32 : (n > 0 ? n : 0);
                    blk->warp_bar[w].name = "warp";
                }
                unsigned char *raw = nullptr;
                if (posix_memalign((void **)&raw, 128, smem + 2 * GUARD)) abort();
                memset(raw, 0xA5, GUARD);
                memset(raw + GUARD, 0xFF, smem); // NaN in fp32, bf16 and fp16: uninitialised reads show
                memset(raw + GUARD + smem, 0xA5, GUARD);
                CUSIM_POISON(raw, GUARD);
                CUSIM_POISON(raw + GUARD + smem, GUARD);
                blk->smem = raw + GUARD;
                blk->smem_size = smem;
                std::vector<std::thread> th;
                th.reserve(nt);
                for (int t = 0; t < nt; t++)
                    th.emplace_back([=]() {
                        cusim_blk = blk;
                        cusim_smem_ptr = smem ? blk->smem : nullptr;
                        cusim_tlin = t;
                        cusim_tIdx = make_uint3((unsigned)t % b.x, ((unsigned)t / b.x) % b.y,
                                                (unsigned)t / (b.x * b.y));
                        cusim_bIdx = make_uint3(bx, by, bz);
                        cusim_bDim = b;
                        cusim_gDim = g;
                        body(ctx);
                        blk->warp_bar[t >> 5].drop();
                        blk->block_bar.drop();
                    });
                for (auto &x : th) x.join();
                CUSIM_UNPOISON(raw, smem + 2 * GUARD);
                for (size_t i = 0; i < GUARD; i++)
                    if (raw[i] != 0xA5 || raw[GUARD + smem + i] != 0xA5) {
                        fprintf(stderr, "SIMFAULT %s block (%u,%u,%u): smem guard byte %s+%zu overwritten\n", kname, bx,
                                by, bz, raw[i] != 0xA5 ? "before" : "after", i);
                        cusim_errors++;
                        break;
                    }
                free(raw);
                for (auto &kv : blk->static_smem) free(kv.second);
                delete blk;
            }
}

void *cusim_static_alloc(int key, size_t bytes) {
    CusimBlock *blk = cusim_blk;
    std::lock_guard<std::mutex> l(blk->static_mu);
    auto it = blk->static_smem.find(key);
    if (it != blk->static_smem.end()) return it->second;
    blk->static_size += bytes;
    if (blk->static_size > 48 * 1024) cusim_fault("static __shared__ %zu bytes > 48 KiB", blk->static_size);
    void *p = malloc(bytes);
    memset(p, 0xFF, bytes); // NaN: uninitialised reads show
    blk->static_smem[key] = p;
    return p;
}

// ---- CUDA runtime stubs ------------------------------------------------------------------
static cudaError_t g_last = cudaSuccess;
int cusim_sms = 132;
extern "C" {
cudaError_t cudaGetLastError(void) { cudaError_t e = g_last; g_last = cudaSuccess; return e; }
const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "simulated error"; }
cudaError_t cudaFuncSetAttribute(const void *f, enum cudaFuncAttribute a, int v) {
    (void)f;
    if (a == cudaFuncAttributeMaxDynamicSharedMemorySize && (size_t)v > cusim_max_smem) return cudaErrorInvalidValue;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int d) {
    (void)d;
    *v = a == cudaDevAttrMultiProcessorCount ? cusim_sms : 0;
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    (void)s;
    cusim_check_range(p, n, "cudaMemsetAsync");
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) { (void)s; return cudaSuccess; }
}

// ---- project stubs -----------------------------------------------------------------------
int cusim_fp16;
int cusim_cuda_failures;
int cd_cuda_fail(const char *file, int line, const char *what, const char *msg) {
    fprintf(stderr, "cd_cuda_fail %s:%d: %s: %s\n", file, line, what, msg);
    cusim_cuda_failures++;
    return -1;
}
extern "C" {
int cd_cuda_get_fp16(void) { return cusim_fp16; }
void *cd_cuda_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
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
    void *p = cd_cuda_malloc(n);
    memset(p, 0xFF, n); // NaN: the kernel must write what it reads
    g_scratch.push_back(p);
    return p;
}
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
