// Mock of the CUDA runtime for the simulator (the calls kernels/*.cu make), written from the CUDA
// Runtime API reference with the real declarations of cuda_runtime_api.h. One device, an H100 as
// far as the properties go; "device" memory is host memory registered with the simulator
// (cusim_register: kernels and the cuBLAS / cuDNN mocks check their address ranges against it),
// 256-byte aligned and NaN-filled (0xFF bytes) on allocation and on free. All work is synchronous:
// every stream is in order with every other, synchronizations return at once. Every call that
// fails sets the calling host thread's last error (cudaGetLastError returns and clears it,
// cudaPeekAtLastError returns it), as a launch with a bad configuration does (cusim.cpp). Stream
// capture follows the runtime API: a capturing stream records its work (kernels, memset / memcpy
// async, library calls deferred by the mocks) into a graph that cudaGraphLaunch replays; calls
// that are illegal during a capture fail as CUDA's do and invalidate it (see "stream capture"
// below). Misuse that is a program bug (a bad pointer to cudaFree or cudaMemcpy, an unknown
// stream, a replayed node that uses freed memory) is also reported as a SIMFAULT.
#include "cusim.h"
#include <atomic>
#include <set>
#include <unordered_map>
#include <vector>
#include <map>
#include <memory>
#include <thread>

int cusim_sms = 132; // multiProcessorCount (tests vary it)
// device memory: 80 GiB (an H100), or CUSIM_MEM_MB (out-of-memory paths)
static size_t total_mem() {
    static size_t t;
    if (!t) {
        const char *e = getenv("CUSIM_MEM_MB");
        t = e && atol(e) > 0 ? (size_t)atol(e) << 20 : 80ull << 30;
    }
    return t;
}
#define TOTAL_MEM total_mem()

static thread_local cudaError_t t_last = cudaSuccess;
static cudaError_t ret(cudaError_t e) {
    if (e != cudaSuccess) t_last = e;
    return e;
}
void cusim_set_last_error(cudaError_t e) { ret(e); }

// ---- streams and kernel attributes (also read by the executor) --------------------------------
static std::mutex g_mu;
static std::map<cudaStream_t, unsigned> &g_streams = *new std::map<cudaStream_t, unsigned>(); // live streams -> flags
static std::unordered_map<const void *, size_t> &g_maxdyn = *new std::unordered_map<const void *, size_t>(); // cudaFuncAttributeMaxDynamicSharedMemorySize
int cusim_stream_ok(cudaStream_t s) {
    if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return 1;
    std::lock_guard<std::mutex> l(g_mu);
    return g_streams.count(s) != 0;
}
size_t cusim_func_max_dyn_smem(const void *fn) {
    std::lock_guard<std::mutex> l(g_mu);
    auto it = g_maxdyn.find(fn);
    return it == g_maxdyn.end() ? 49152 : it->second;
}
static cudaError_t check_stream(cudaStream_t s, const char *fn) {
    if (cusim_stream_ok(s)) return cudaSuccess;
    cusim_fault("%s: stream %p is not a live stream", fn, (void *)s);
    return ret(cudaErrorInvalidResourceHandle);
}

// ---- errors -----------------------------------------------------------------------------------
static const struct { cudaError_t e; const char *name, *str; } g_errs[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
    {cudaErrorInvalidDeviceFunction, "cudaErrorInvalidDeviceFunction", "invalid device function"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the operation cannot be performed in the present state"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources", "too many resources requested for launch"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated", "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureImplicit, "cudaErrorStreamCaptureImplicit", "operation would make the legacy stream depend on a capturing blocking stream"},
    {cudaErrorStreamCaptureWrongThread, "cudaErrorStreamCaptureWrongThread", "attempt to terminate a thread-local capture sequence from another thread"},
    {cudaErrorStreamCaptureUnmatched, "cudaErrorStreamCaptureUnmatched", "capture was not initiated in this stream"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
};

// ---- stream capture state (CUDA Runtime API: cudaStreamBeginCapture, capture modes) ----------
// A capture sequence per capturing stream records its work as nodes; the graph / exec objects
// hold the nodes by value, each node's payload (a kernel's argument tuple, a deferred library
// call) behind a shared_ptr, so a graph destroyed after instantiation leaves the exec intact.
int cusim_capture_count;
namespace {
struct GNode {
    enum Kind { KERNEL, HOST, MEMSET, MEMCPY } kind;
    const char *name;
    dim3 g, b;
    size_t smem = 0;
    const void *fn = nullptr;
    void (*body)(void *) = nullptr;
    std::shared_ptr<void> ctx;
    std::vector<const void *> live_ptrs; // pointer arguments that lay in a device buffer at capture
    void *dst = nullptr;                 // memset / memcpy
    const void *src = nullptr;
    size_t n = 0;
    int val = 0;
    cudaMemcpyKind mk = cudaMemcpyDefault;
};
struct Capture {
    cudaStreamCaptureMode mode;
    std::thread::id owner;
    bool blocking; // the stream synchronizes with the legacy stream
    bool invalid = false;
    std::vector<GNode> nodes;
};
} // namespace
struct CUgraph_st { std::vector<GNode> nodes; };
struct CUgraphExec_st { std::vector<GNode> nodes; };
static std::mutex g_cap_mu; // guards the three below
static std::map<cudaStream_t, Capture> &g_caps = *new std::map<cudaStream_t, Capture>();
static std::set<CUgraph_st *> &g_graphs = *new std::set<CUgraph_st *>();
static std::set<CUgraphExec_st *> &g_execs = *new std::set<CUgraphExec_st *>();
static thread_local cudaStreamCaptureMode t_mode = cudaStreamCaptureModeGlobal; // cudaThreadExchangeStreamCaptureMode

static void invalidate(cudaStream_t s, Capture &c, const char *why) { // under g_cap_mu
    if (c.invalid) return;
    c.invalid = true;
    c.nodes.clear();
    fprintf(stderr, "cusim: the capture on stream %p is invalidated by %s\n", (void *)s, why);
}
// A potentially unsafe call (cudaMalloc, cudaFree, synchronous copies): prohibited, and then it
// invalidates the capture that prohibits it, when the calling thread has a capture of its own
// not begun in Relaxed mode, or (thread mode Global) another thread has a Global capture.
static cudaError_t unsafe_call(const char *fn, cudaError_t err) {
    if (!cusim_capture_count) return cudaSuccess;
    std::lock_guard<std::mutex> l(g_cap_mu);
    const std::thread::id me = std::this_thread::get_id();
    bool bad = false;
    for (auto &kv : g_caps) {
        Capture &c = kv.second;
        if (t_mode == cudaStreamCaptureModeRelaxed) break;
        const bool own = c.owner == me && c.mode != cudaStreamCaptureModeRelaxed;
        const bool other = c.owner != me && c.mode == cudaStreamCaptureModeGlobal && t_mode == cudaStreamCaptureModeGlobal;
        if (own || other) { invalidate(kv.first, c, fn); bad = true; }
    }
    return bad ? ret(err) : cudaSuccess;
}
// Work on the legacy stream waits for every blocking stream: one that is capturing would join the
// capture implicitly, which CUDA refuses (cudaErrorStreamCaptureImplicit) and which invalidates it.
static cudaError_t legacy_work(const char *fn) {
    if (!cusim_capture_count) return cudaSuccess;
    std::lock_guard<std::mutex> l(g_cap_mu);
    bool bad = false;
    for (auto &kv : g_caps)
        if (kv.second.blocking) { invalidate(kv.first, kv.second, fn); bad = true; }
    return bad ? ret(cudaErrorStreamCaptureImplicit) : cudaSuccess;
}
// A synchronizing call on stream s (cudaStreamSynchronize, cudaStreamQuery): not permitted while
// s captures (cudaErrorStreamCaptureUnsupported, the capture is invalidated).
static cudaError_t sync_call(cudaStream_t s, const char *fn) {
    if (!cusim_capture_count) return cudaSuccess;
    if (s == nullptr || s == cudaStreamLegacy) return legacy_work(fn);
    std::lock_guard<std::mutex> l(g_cap_mu);
    auto it = g_caps.find(s);
    if (it == g_caps.end()) return cudaSuccess;
    invalidate(s, it->second, fn);
    return ret(cudaErrorStreamCaptureUnsupported);
}
int cusim_capture_route(cudaStream_t st, const char *what) {
    if (!cusim_capture_count) return 0;
    if (st == nullptr || st == cudaStreamLegacy) return legacy_work(what) ? -1 : 0;
    std::lock_guard<std::mutex> l(g_cap_mu);
    auto it = g_caps.find(st);
    if (it == g_caps.end()) return 0;
    if (it->second.invalid) { ret(cudaErrorStreamCaptureInvalidated); return -1; }
    return 1;
}
static cudaError_t record(cudaStream_t st, GNode &&n) {
    std::lock_guard<std::mutex> l(g_cap_mu);
    auto it = g_caps.find(st);
    if (it == g_caps.end()) return ret(cudaErrorStreamCaptureUnmatched);
    if (it->second.invalid) return ret(cudaErrorStreamCaptureInvalidated);
    it->second.nodes.push_back(std::move(n));
    return cudaSuccess;
}
static void invalidate_stream(cudaStream_t st, const char *why) {
    std::lock_guard<std::mutex> l(g_cap_mu);
    auto it = g_caps.find(st);
    if (it != g_caps.end()) invalidate(st, it->second, why);
}
cudaError_t cusim_capture_node(cudaStream_t st, const char *name, dim3 g, dim3 b, size_t smem, const void *fn,
                               void (*body)(void *), void (*destroy)(void *), void *ctx, const void *const *ptrs,
                               size_t nptrs) {
    GNode n;
    n.kind = fn ? GNode::KERNEL : GNode::HOST;
    n.name = name;
    n.g = g; n.b = b; n.smem = smem; n.fn = fn; n.body = body;
    n.ctx = std::shared_ptr<void>(ctx, destroy);
    for (size_t i = 0; i < nptrs; i++)
        if (ptrs[i] && cusim_lookup(ptrs[i], nullptr, nullptr)) n.live_ptrs.push_back(ptrs[i]);
    if (fn && !cusim_launch_config_ok(g, b, smem, fn, name)) { // the launch fails, and so does the capture
        cudaError_t e = t_last;
        invalidate_stream(st, name);
        return e;
    }
    return record(st, std::move(n));
}

extern "C" {
cudaError_t cudaGetLastError(void) {
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last; }
const char *cudaGetErrorString(cudaError_t e) {
    for (auto &x : g_errs)
        if (x.e == e) return x.str;
    return "unrecognized error code";
}
const char *cudaGetErrorName(cudaError_t e) {
    for (auto &x : g_errs)
        if (x.e == e) return x.name;
    return "cudaErrorUnknown";
}

// ---- device ---------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return ret(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
    if (!device) return ret(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : ret(cudaErrorInvalidDevice); }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int device) {
    if (!p) return ret(cudaErrorInvalidValue);
    if (device != 0) return ret(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "cusim (CPU simulation of an H100)");
    p->totalGlobalMem = TOTAL_MEM;
    p->sharedMemPerBlock = 49152;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->memPitch = 2147483647;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024; p->maxThreadsDim[1] = 1024; p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647; p->maxGridSize[1] = 65535; p->maxGridSize[2] = 65535;
    p->totalConstMem = 65536;
    p->major = 9;
    p->minor = 0;
    p->textureAlignment = 512;
    p->texturePitchAlignment = 32;
    p->multiProcessorCount = cusim_sms;
    p->concurrentKernels = 1;
    p->asyncEngineCount = 2;
    p->unifiedAddressing = 1;
    p->memoryBusWidth = 5120;
    p->l2CacheSize = 50 << 20;
    p->maxThreadsPerMultiProcessor = 2048;
    p->globalL1CacheSupported = 1;
    p->localL1CacheSupported = 1;
    p->sharedMemPerMultiprocessor = 233472;
    p->regsPerMultiprocessor = 65536;
    p->managedMemory = 1;
    p->computePreemptionSupported = 1;
    p->cooperativeLaunch = 1;
    p->sharedMemPerBlockOptin = cusim_max_smem;
    p->maxBlocksPerMultiProcessor = 32;
    p->reservedSharedMemPerBlock = 1024;
    p->clusterLaunch = 1;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    if (!value) return ret(cudaErrorInvalidValue);
    if (device != 0) return ret(cudaErrorInvalidDevice);
    int v;
    switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: v = 0; break;
    case cudaDevAttrMultiProcessorCount: v = cusim_sms; break;
    case cudaDevAttrMaxThreadsPerBlock: v = 1024; break;
    case cudaDevAttrMaxBlockDimX: case cudaDevAttrMaxBlockDimY: v = 1024; break;
    case cudaDevAttrMaxBlockDimZ: v = 64; break;
    case cudaDevAttrMaxGridDimX: v = 2147483647; break;
    case cudaDevAttrMaxGridDimY: case cudaDevAttrMaxGridDimZ: v = 65535; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: v = 49152; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: v = (int)cusim_max_smem; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: v = 233472; break;
    case cudaDevAttrWarpSize: v = 32; break;
    case cudaDevAttrMaxRegistersPerBlock: case cudaDevAttrMaxRegistersPerMultiprocessor: v = 65536; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: v = 2048; break;
    case cudaDevAttrTotalConstantMemory: v = 65536; break;
    case cudaDevAttrL2CacheSize: v = 50 << 20; break;
    case cudaDevAttrGlobalMemoryBusWidth: v = 5120; break;
    case cudaDevAttrConcurrentKernels: case cudaDevAttrUnifiedAddressing: case cudaDevAttrCooperativeLaunch: v = 1; break;
    case cudaDevAttrIntegrated: case cudaDevAttrMemoryPoolsSupported: v = 0; break;
    default:
        fprintf(stderr, "cusim: cudaDeviceGetAttribute(%d) is not simulated\n", (int)attr);
        return ret(cudaErrorInvalidValue);
    }
    *value = v;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { // would wait for the capturing streams: refused, invalidates them
    if (!cusim_capture_count) return cudaSuccess;
    std::lock_guard<std::mutex> l(g_cap_mu);
    if (g_caps.empty()) return cudaSuccess;
    for (auto &kv : g_caps) invalidate(kv.first, kv.second, "cudaDeviceSynchronize");
    return ret(cudaErrorStreamCaptureUnsupported);
}
cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
    if (!func) return ret(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > cusim_max_smem) return ret(cudaErrorInvalidValue);
        std::lock_guard<std::mutex> l(g_mu);
        g_maxdyn[func] = (size_t)value;
        return cudaSuccess;
    }
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return value >= -1 && value <= 100 ? cudaSuccess : ret(cudaErrorInvalidValue);
    return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *func) {
    if (!attr || !func) return ret(cudaErrorInvalidValue);
    memset(attr, 0, sizeof *attr);
    attr->maxThreadsPerBlock = 1024;
    attr->maxDynamicSharedSizeBytes = (int)cusim_func_max_dyn_smem(func);
    attr->ptxVersion = 90;
    attr->binaryVersion = 90;
    return cudaSuccess;
}

// ---- memory ---------------------------------------------------------------------------------
// cudaMalloc'ed blocks (under g_mu); never destroyed: what is left at exit is not a leak (as with CUDA)
static std::unordered_map<void *, size_t> &g_allocs = *new std::unordered_map<void *, size_t>();
static size_t g_allocated;

// Freed blocks stay allocated (NaN-filled, unregistered) in a FIFO of up to CUSIM_QUARANTINE_MB
// (default 512) before going back to the C heap, as ASan's quarantine does: a new cudaMalloc then
// gets another address, so a stale pointer (a graph node over a replaced buffer) faults in the
// registry instead of silently reading the new owner's memory.
static void quarantine(void *p, size_t n) {
    static std::mutex mu;
    static std::vector<std::pair<void *, size_t>> &q = *new std::vector<std::pair<void *, size_t>>();
    static size_t held, head;
    static size_t cap = [] {
        const char *e = getenv("CUSIM_QUARANTINE_MB");
        return (size_t)(e ? atol(e) : 512) << 20;
    }();
    std::lock_guard<std::mutex> l(mu);
    q.emplace_back(p, n);
    held += n;
    while (held > cap && head < q.size()) {
        free(q[head].first);
        held -= q[head].second;
        head++;
    }
    if (head > 1024 && head * 2 > q.size()) {
        q.erase(q.begin(), q.begin() + head);
        head = 0;
    }
}

cudaError_t cudaMalloc(void **p, size_t size) {
    if (!p) return ret(cudaErrorInvalidValue);
    *p = nullptr;
    if (cudaError_t e = unsafe_call("cudaMalloc", cudaErrorStreamCaptureUnsupported)) return e;
    if (size == 0) return cudaSuccess; // as the driver does: success, no allocation
    {
        std::lock_guard<std::mutex> l(g_mu);
        if (size > TOTAL_MEM - g_allocated) return ret(cudaErrorMemoryAllocation);
    }
    void *q = nullptr;
    if (posix_memalign(&q, 256, size)) return ret(cudaErrorMemoryAllocation);
    memset(q, 0xFF, size); // "not cleared": NaN shows a read of what nobody wrote
    {
        std::lock_guard<std::mutex> l(g_mu);
        g_allocs[q] = size;
        g_allocated += size;
    }
    cusim_register(q, size);
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (cudaError_t e = unsafe_call("cudaFree", cudaErrorStreamCaptureUnsupported)) return e;
    if (!p) return cudaSuccess;
    size_t n;
    {
        std::lock_guard<std::mutex> l(g_mu);
        auto it = g_allocs.find(p);
        if (it == g_allocs.end()) {
            cusim_fault("cudaFree(%p): not a pointer cudaMalloc returned (or freed twice)", p);
            return ret(cudaErrorInvalidValue);
        }
        n = it->second;
        g_allocated -= n;
        g_allocs.erase(it);
    }
    cusim_unregister(p);
    memset(p, 0xFF, n); // a stale device pointer reads NaN
    quarantine(p, n);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t size) {
    if (!p) return ret(cudaErrorInvalidValue);
    *p = nullptr;
    if (size && posix_memalign(p, 256, size)) return ret(cudaErrorMemoryAllocation);
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    if (cudaError_t e = unsafe_call("cudaFreeHost", cudaErrorStreamCaptureUnsupported)) return e;
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *fr, size_t *total) {
    if (!fr || !total) return ret(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> l(g_mu);
    *total = TOTAL_MEM;
    *fr = TOTAL_MEM - g_allocated;
    return cudaSuccess;
}

// Checks a copy's device side(s) (kind Default: a pointer inside a device buffer is device).
static cudaError_t memcpy_check(void *dst, const void *src, size_t n, enum cudaMemcpyKind &kind, const char *fn) {
    if (kind == cudaMemcpyDefault) {
        int dd = cusim_lookup(dst, nullptr, nullptr), sd = cusim_lookup(src, nullptr, nullptr);
        kind = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                  : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    }
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice) return ret(cudaErrorInvalidMemcpyDirection);
    if (!dst || !src) {
        cusim_fault("%s: NULL %s of %zu bytes", fn, dst ? "source" : "destination", n);
        return ret(cudaErrorInvalidValue);
    }
    int e0 = cusim_errors;
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) cusim_check_range(dst, n, fn);
    if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) cusim_check_range(src, n, fn);
    if (cusim_errors != e0) return ret(cudaErrorInvalidValue);
    if ((uintptr_t)dst < (uintptr_t)src + n && (uintptr_t)src < (uintptr_t)dst + n) {
        cusim_fault("%s: overlapping source and destination ([%p, +%zu), [%p, +%zu))", fn, src, n, dst, n);
        return ret(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}
// synchronous copies / sets go to the legacy stream and synchronize: unsafe during a capture
static cudaError_t sync_mem_op(const char *fn) {
    if (cudaError_t e = unsafe_call(fn, cudaErrorStreamCaptureImplicit)) return e;
    return legacy_work(fn);
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
    if (cudaError_t e = sync_mem_op("cudaMemcpy")) return e;
    if (n == 0) return cudaSuccess;
    cudaError_t e = memcpy_check(dst, src, n, kind, "cudaMemcpy");
    if (e) return e;
    memcpy(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t st) {
    cudaError_t e = check_stream(st, "cudaMemcpyAsync");
    if (e || n == 0) return e;
    const int route = cusim_capture_route(st, "cudaMemcpyAsync");
    if (route < 0) return t_last;
    if ((e = memcpy_check(dst, src, n, kind, "cudaMemcpyAsync"))) {
        if (route == 1) invalidate_stream(st, "a failed cudaMemcpyAsync");
        return e;
    }
    if (route == 1) { // recorded: the bytes are read at replay
        GNode nd;
        nd.kind = GNode::MEMCPY; nd.name = "cudaMemcpyAsync";
        nd.dst = dst; nd.src = src; nd.n = n; nd.mk = kind;
        return record(st, std::move(nd));
    }
    memcpy(dst, src, n);
    return cudaSuccess;
}
static cudaError_t memset_dev(void *p, int v, size_t n, const char *fn) {
    if (n == 0) return cudaSuccess;
    int e0 = cusim_errors;
    cusim_check_range(p, n, fn);
    if (cusim_errors != e0) return ret(cudaErrorInvalidValue);
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (cudaError_t e = sync_mem_op("cudaMemset")) return e;
    return memset_dev(p, v, n, "cudaMemset");
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st) {
    cudaError_t e = check_stream(st, "cudaMemsetAsync");
    if (e) return e;
    const int route = cusim_capture_route(st, "cudaMemsetAsync");
    if (route < 0) return t_last;
    if (route == 0) return memset_dev(p, v, n, "cudaMemsetAsync");
    if (n == 0) return cudaSuccess;
    int e0 = cusim_errors;
    cusim_check_range(p, n, "cudaMemsetAsync");
    if (cusim_errors != e0) {
        invalidate_stream(st, "a failed cudaMemsetAsync");
        return ret(cudaErrorInvalidValue);
    }
    GNode nd;
    nd.kind = GNode::MEMSET; nd.name = "cudaMemsetAsync";
    nd.dst = p; nd.val = v; nd.n = n;
    return record(st, std::move(nd));
}

// ---- streams --------------------------------------------------------------------------------
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    if (!s || (flags != cudaStreamDefault && flags != cudaStreamNonBlocking)) return ret(cudaErrorInvalidValue);
    cudaStream_t h = (cudaStream_t)malloc(64); // an opaque, unique handle
    std::lock_guard<std::mutex> l(g_mu);
    g_streams[h] = flags;
    *s = h;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    std::lock_guard<std::mutex> l(g_mu);
    if (!g_streams.erase(s)) {
        cusim_fault("cudaStreamDestroy(%p): not a live stream", (void *)s);
        return ret(cudaErrorInvalidResourceHandle);
    }
    {
        std::lock_guard<std::mutex> lc(g_cap_mu);
        if (g_caps.erase(s)) __atomic_sub_fetch(&cusim_capture_count, 1, __ATOMIC_SEQ_CST);
    }
    free((void *)s);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    cudaError_t e = check_stream(s, "cudaStreamSynchronize");
    return e ? e : sync_call(s, "cudaStreamSynchronize");
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
    cudaError_t e = check_stream(s, "cudaStreamQuery");
    return e ? e : sync_call(s, "cudaStreamQuery");
}


// ---- stream capture and graphs ----------------------------------------------------------------
// Capture records (cusim_launch, cudaMemsetAsync, cudaMemcpyAsync, cusim_defer), replay runs the
// nodes in order, synchronously, reading device memory at replay. Checked at replay: each
// memset / memcpy range and each kernel / library pointer argument that lay in a device buffer
// at capture must lie in a live one (else a SIMFAULT "uses freed memory" and
// cudaErrorIllegalAddress); pointers inside by-value structs are not seen.
cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode *mode) {
    if (!mode || *mode < cudaStreamCaptureModeGlobal || *mode > cudaStreamCaptureModeRelaxed) return ret(cudaErrorInvalidValue);
    std::swap(*mode, t_mode);
    return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode) {
    cudaError_t e = check_stream(s, "cudaStreamBeginCapture");
    if (e) return e;
    if (s == nullptr || s == cudaStreamLegacy) return ret(cudaErrorStreamCaptureUnsupported); // as CUDA: not the legacy stream
    if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) return ret(cudaErrorInvalidValue);
    bool blocking = s == cudaStreamPerThread;
    {
        std::lock_guard<std::mutex> l(g_mu);
        auto it = g_streams.find(s);
        if (it != g_streams.end()) blocking = !(it->second & cudaStreamNonBlocking);
    }
    std::lock_guard<std::mutex> l(g_cap_mu);
    if (g_caps.count(s)) return ret(cudaErrorIllegalState); // already capturing
    Capture &c = g_caps[s];
    c.mode = mode;
    c.owner = std::this_thread::get_id();
    c.blocking = blocking;
    __atomic_add_fetch(&cusim_capture_count, 1, __ATOMIC_SEQ_CST);
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, enum cudaStreamCaptureStatus *status) {
    if (!status) return ret(cudaErrorInvalidValue);
    *status = cudaStreamCaptureStatusNone;
    cudaError_t e = check_stream(s, "cudaStreamIsCapturing");
    if (e) return e;
    std::lock_guard<std::mutex> l(g_cap_mu);
    if (s == nullptr || s == cudaStreamLegacy) {
        for (auto &kv : g_caps)
            if (kv.second.blocking) return ret(cudaErrorStreamCaptureImplicit);
        return cudaSuccess;
    }
    auto it = g_caps.find(s);
    if (it != g_caps.end())
        *status = it->second.invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    if (!graph) return ret(cudaErrorInvalidValue);
    *graph = nullptr;
    cudaError_t e = check_stream(s, "cudaStreamEndCapture");
    if (e) return e;
    std::lock_guard<std::mutex> l(g_cap_mu);
    auto it = g_caps.find(s);
    if (it == g_caps.end()) return ret(cudaErrorIllegalState); // the stream is not capturing
    Capture &c = it->second;
    if (c.mode != cudaStreamCaptureModeRelaxed && c.owner != std::this_thread::get_id())
        return ret(cudaErrorStreamCaptureWrongThread);
    const bool invalid = c.invalid;
    std::vector<GNode> nodes = std::move(c.nodes);
    g_caps.erase(it);
    __atomic_sub_fetch(&cusim_capture_count, 1, __ATOMIC_SEQ_CST);
    if (invalid) return ret(cudaErrorStreamCaptureInvalidated);
    if (getenv("CUSIM_GRAPH_VERBOSE")) { // a summary of what was captured
        size_t cnt[4] = {0, 0, 0, 0};
        for (auto &n : nodes) cnt[n.kind]++;
        fprintf(stderr, "cusim: captured a graph of %zu nodes on stream %p: %zu kernels, %zu library calls, %zu memsets, %zu memcpys\n",
                nodes.size(), (void *)s, cnt[GNode::KERNEL], cnt[GNode::HOST], cnt[GNode::MEMSET], cnt[GNode::MEMCPY]);
        for (auto &n : nodes)
            if (n.kind == GNode::MEMCPY)
                fprintf(stderr, "cusim:   memcpy node kind %d, %zu bytes, src %p (%s), dst %p\n", (int)n.mk, n.n, n.src,
                        cusim_lookup(n.src, nullptr, nullptr) ? "device" : "host", n.dst);
    }
    CUgraph_st *g = new CUgraph_st{std::move(nodes)};
    g_graphs.insert(g);
    *graph = g;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    if (!exec) return ret(cudaErrorInvalidValue);
    *exec = nullptr;
    if (flags & ~(unsigned long long)(cudaGraphInstantiateFlagAutoFreeOnLaunch | cudaGraphInstantiateFlagUseNodePriority))
        return ret(cudaErrorInvalidValue); // upload / device launch are not simulated
    std::lock_guard<std::mutex> l(g_cap_mu);
    if (!g_graphs.count(graph)) {
        cusim_fault("cudaGraphInstantiate(%p): not a live graph", (void *)graph);
        return ret(cudaErrorInvalidValue);
    }
    CUgraphExec_st *x = new CUgraphExec_st{graph->nodes}; // copies; the payloads are shared
    g_execs.insert(x);
    *exec = x;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    return cudaGraphInstantiate(exec, graph, flags);
}
static bool ptr_live(const void *p) { return cusim_lookup(p, nullptr, nullptr) != 0; }
// Runs node i of a replay into stream s.
static cudaError_t run_node(const GNode &n, size_t i, cudaStream_t s) {
    const char *what = n.kind == GNode::KERNEL ? "kernel" : n.kind == GNode::HOST ? "library call" : "operation";
    for (size_t j = 0; j < n.live_ptrs.size(); j++)
        if (!ptr_live(n.live_ptrs[j])) {
            cusim_fault("graph node %zu of %s %s uses freed memory (pointer argument %p, device memory at capture, "
                        "in no live buffer at replay)", i, what, n.name, n.live_ptrs[j]);
            return ret(cudaErrorIllegalAddress);
        }
    switch (n.kind) {
    case GNode::KERNEL: {
        cudaError_t before = t_last;
        t_last = cudaSuccess;
        cusim_run_grid(n.g, n.b, n.smem, s, n.fn, n.name, n.body, n.ctx.get());
        cudaError_t e = t_last;
        if (e == cudaSuccess) t_last = before;
        return e;
    }
    case GNode::HOST: n.body(n.ctx.get()); return cudaSuccess;
    case GNode::MEMSET:
        if (!cusim_range_ok(n.dst, n.n, "graph memset", false)) {
            cusim_fault("graph node %zu of cudaMemsetAsync uses freed memory ([%p, +%zu) is in no live device buffer at replay)",
                        i, n.dst, n.n);
            return ret(cudaErrorIllegalAddress);
        }
        memset(n.dst, n.val, n.n);
        return cudaSuccess;
    case GNode::MEMCPY: {
        const bool dd = n.mk == cudaMemcpyHostToDevice || n.mk == cudaMemcpyDeviceToDevice;
        const bool sd = n.mk == cudaMemcpyDeviceToHost || n.mk == cudaMemcpyDeviceToDevice;
        if ((dd && !cusim_range_ok(n.dst, n.n, "graph memcpy", false)) || (sd && !cusim_range_ok(n.src, n.n, "graph memcpy", false))) {
            cusim_fault("graph node %zu of cudaMemcpyAsync uses freed memory (dst [%p, +%zu), src %p: a device side is in "
                        "no live device buffer at replay)", i, n.dst, n.n, n.src);
            return ret(cudaErrorIllegalAddress);
        }
        memcpy(n.dst, n.src, n.n);
        return cudaSuccess;
    }
    }
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    std::vector<GNode> nodes;
    {
        std::lock_guard<std::mutex> l(g_cap_mu);
        if (!g_execs.count(exec)) {
            cusim_fault("cudaGraphLaunch(%p): not a live graph exec", (void *)exec);
            return ret(cudaErrorInvalidResourceHandle);
        }
        nodes = exec->nodes; // the exec may be destroyed by a node? no: but keep the lock short
    }
    cudaError_t e = check_stream(s, "cudaGraphLaunch");
    if (e) return e;
    const int route = cusim_capture_route(s, "cudaGraphLaunch");
    if (route < 0) return t_last;
    if (route == 1) { // launched into a capturing stream: its nodes join the capture
        for (auto &n : nodes)
            if ((e = record(s, GNode(n)))) return e;
        return cudaSuccess;
    }
    for (size_t i = 0; i < nodes.size(); i++)
        if ((e = run_node(nodes[i], i, s))) return e;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    std::lock_guard<std::mutex> l(g_cap_mu);
    if (!g_graphs.erase(graph)) {
        cusim_fault("cudaGraphDestroy(%p): not a live graph (destroyed twice?)", (void *)graph);
        return ret(cudaErrorInvalidValue);
    }
    delete graph;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    std::lock_guard<std::mutex> l(g_cap_mu);
    if (!g_execs.erase(exec)) {
        cusim_fault("cudaGraphExecDestroy(%p): not a live graph exec (destroyed twice?)", (void *)exec);
        return ret(cudaErrorInvalidValue);
    }
    delete exec;
    return cudaSuccess;
}
} // extern "C"
