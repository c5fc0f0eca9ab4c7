// Device, memory, error flag and per-stream library handles for the CUDA twins.
#include "kernels/cuda_common.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unordered_map>

static int g_sticky_error;
static int g_tf32;
static int g_deterministic; // 1: kernels that would add floats with atomics use ordered sums (cd_cuda_set_deterministic)
static int g_fp16; // the 16-bit storage format: 0 bf16, 1 IEEE fp16 (cd_cuda_set_fp16)

int cd_cuda_fail(const char *file, int line, const char *what, const char *msg) {
    fprintf(stderr, "%s:%d: %s: %s\n", file, line, what, msg);
    g_sticky_error = 1;
    return cd_err("%s:%d: %s: %s", file, line, what, msg);
}

const char *cd_cublas_msg(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "cuBLAS invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "cuBLAS architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR: return "cuBLAS mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "cuBLAS execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "cuBLAS internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "cuBLAS not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "cuBLAS license error";
    default: return "cuBLAS error";
    }
}

extern "C" int cd_cuda_status(void) {
    int e = g_sticky_error;
    g_sticky_error = 0;
    return e ? -1 : 0;
}

extern "C" int cd_cuda_available(char *why, size_t why_cap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (why && why_cap)
            snprintf(why, why_cap, "no CUDA device: %s",
                     e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        cudaGetLastError(); // clear
        return 0;
    }
    // The build holds sm_90 code and compute_80 PTX (Makefile NVCCFLAGS): bf16 / fp16 tensor
    // cores need compute capability 8.0 (Ampere) or newer; an older GPU would fail every launch.
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major < 8) {
        if (why && why_cap)
            snprintf(why, why_cap, "the GPU has compute capability %d.%d; customdiff's kernels need 8.0 or newer "
                     "(Ampere, Ada, Hopper, Blackwell)", major, minor);
        return 0;
    }
    cudaGetLastError(); // clear
    return 1;
}

extern "C" int cd_cuda_device_name(char *buf, size_t cap) {
    int dev = 0;
    cudaDeviceProp pr;
    if (cudaCheck(cudaGetDevice(&dev)) || cudaCheck(cudaGetDeviceProperties(&pr, dev))) return -1;
    snprintf(buf, cap, "%s, sm_%d%d, %d SMs, %.1f GiB", pr.name, pr.major, pr.minor,
             pr.multiProcessorCount, pr.totalGlobalMem / 1073741824.0);
    return 0;
}

// Bytes allocated through cd_cuda_malloc: per pointer, now and at the peak.
static std::unordered_map<void *, size_t> *g_sizes;
static int64_t g_alloc, g_peak;
static pthread_mutex_t g_alloc_mu = PTHREAD_MUTEX_INITIALIZER;

extern "C" void *cd_cuda_malloc(size_t bytes) {
    void *p = NULL;
    size_t n = bytes ? bytes : 1;
    if (cudaCheck(cudaMalloc(&p, n))) return NULL;
    pthread_mutex_lock(&g_alloc_mu);
    if (!g_sizes) g_sizes = new std::unordered_map<void *, size_t>();
    (*g_sizes)[p] = n;
    g_alloc += (int64_t)n;
    if (g_alloc > g_peak) g_peak = g_alloc;
    pthread_mutex_unlock(&g_alloc_mu);
    return p;
}
extern "C" void cd_cuda_free(void *p) {
    if (!p) return;
    pthread_mutex_lock(&g_alloc_mu);
    if (g_sizes) {
        auto it = g_sizes->find(p);
        if (it != g_sizes->end()) {
            g_alloc -= (int64_t)it->second;
            g_sizes->erase(it);
        }
    }
    pthread_mutex_unlock(&g_alloc_mu);
    cudaCheck(cudaFree(p));
}
extern "C" int64_t cd_cuda_alloc_bytes(int64_t *peak) {
    pthread_mutex_lock(&g_alloc_mu);
    int64_t a = g_alloc;
    if (peak) *peak = g_peak;
    pthread_mutex_unlock(&g_alloc_mu);
    return a;
}
extern "C" void cd_cuda_alloc_reset_peak(void) {
    pthread_mutex_lock(&g_alloc_mu);
    g_peak = g_alloc;
    pthread_mutex_unlock(&g_alloc_mu);
}
extern "C" int cd_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream) {
    CD_CU_TRY(cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cd_stream(stream))));
    return cudaCheck(cudaStreamSynchronize(cd_stream(stream)));
}
extern "C" int cd_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream) {
    CD_CU_TRY(cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cd_stream(stream))));
    return cudaCheck(cudaStreamSynchronize(cd_stream(stream)));
}
extern "C" int cd_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes, void *stream) {
    return cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cd_stream(stream)));
}
extern "C" int cd_cuda_memset(void *dst, int byte, size_t bytes, void *stream) {
    return cudaCheck(cudaMemsetAsync(dst, byte, bytes, cd_stream(stream)));
}
extern "C" int cd_cuda_sync(void *stream) {
    if (!stream) return cudaCheck(cudaDeviceSynchronize());
    return cudaCheck(cudaStreamSynchronize(cd_stream(stream)));
}
extern "C" void *cd_cuda_stream_create(void) {
    cudaStream_t s = NULL;
    if (cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking))) return NULL;
    return (void *)s;
}
static void ctx_release(cudaStream_t s);
extern "C" void cd_cuda_stream_destroy(void *stream) {
    if (!stream) return;
    ctx_release(cd_stream(stream));   // its handles and scratch go with it (the slot is free again)
    cudaCheck(cudaStreamDestroy(cd_stream(stream)));
}
extern "C" int cd_cuda_mem_info(size_t *used, size_t *total) {
    size_t fr = 0, tot = 0;
    CD_CU_TRY(cudaCheck(cudaMemGetInfo(&fr, &tot)));
    if (used) *used = tot - fr;
    if (total) *total = tot;
    return 0;
}
extern "C" void cd_cuda_set_tf32(int on) { g_tf32 = on != 0; }
extern "C" int cd_cuda_get_tf32(void) { return g_tf32; }
extern "C" void cd_cuda_set_fp16(int on) { g_fp16 = on != 0; }
extern "C" int cd_cuda_get_fp16(void) { return g_fp16; }
extern "C" void cd_cuda_set_deterministic(int on) { g_deterministic = on != 0; }
extern "C" int cd_cuda_get_deterministic(void) { return g_deterministic; }

// ---- per-stream context: cuBLAS handle, cuDNN handle, scratch buffer -----------------
typedef struct {
    cudaStream_t stream;
    int used;
    cublasHandle_t cublas;
    void *cudnn;
    void *scratch[2];  // [0] cd_cuda_scratch, [1] cd_cuda_scratch_outer
    size_t scratch_bytes[2];
    int captured;      // a CUDA graph was captured on this stream: it may hold the scratch pointers
    void **retired;    // scratch buffers replaced after a capture (freed with the stream)
    int nretired;
} StreamCtx;
#define CD_MAX_STREAMS 32
static StreamCtx g_ctx[CD_MAX_STREAMS];
static pthread_mutex_t g_ctx_mu = PTHREAD_MUTEX_INITIALIZER;

static StreamCtx *ctx_for(void *stream) {
    cudaStream_t s = cd_stream(stream);
    StreamCtx *c = NULL;
    pthread_mutex_lock(&g_ctx_mu);
    for (int i = 0; i < CD_MAX_STREAMS && !c; i++)
        if (g_ctx[i].used && g_ctx[i].stream == s) c = &g_ctx[i];
    for (int i = 0; i < CD_MAX_STREAMS && !c; i++)
        if (!g_ctx[i].used) {
            c = &g_ctx[i];
            memset(c, 0, sizeof *c);
            c->used = 1;
            c->stream = s;
        }
    pthread_mutex_unlock(&g_ctx_mu);
    if (!c) cd_cuda_fail(__FILE__, __LINE__, "ctx_for", "more than 32 streams in use");
    return c;
}

// Frees the context of stream s (if it has one): waits for its work, destroys its library
// handles, frees its scratch.
static void ctx_release(cudaStream_t s) {
    StreamCtx c;
    int found = 0;
    pthread_mutex_lock(&g_ctx_mu);
    for (int i = 0; i < CD_MAX_STREAMS && !found; i++)
        if (g_ctx[i].used && g_ctx[i].stream == s) {
            c = g_ctx[i];
            memset(&g_ctx[i], 0, sizeof g_ctx[i]);
            found = 1;
        }
    pthread_mutex_unlock(&g_ctx_mu);
    if (!found) return;
    cudaCheck(cudaStreamSynchronize(s));
    if (c.cublas) cublasDestroy(c.cublas);
#if CD_HAVE_CUDNN
    if (c.cudnn) cudnnDestroy((cudnnHandle_t)c.cudnn);
#endif
    for (int i = 0; i < 2; i++)
        if (c.scratch[i]) cudaCheck(cudaFree(c.scratch[i]));
    for (int i = 0; i < c.nretired; i++) cudaCheck(cudaFree(c.retired[i]));
    free(c.retired);
}

extern "C" void *cd_cuda_cublas(void *stream) {
    StreamCtx *c = ctx_for(stream);
    if (!c) return NULL;
    if (!c->cublas) {
        if (cublasCheck(cublasCreate(&c->cublas))) return NULL;
        if (cublasCheck(cublasSetStream(c->cublas, c->stream))) return NULL;
    }
    return (void *)c->cublas;
}

extern "C" void *cd_cuda_cudnn(void *stream) {
#if CD_HAVE_CUDNN
    StreamCtx *c = ctx_for(stream);
    if (!c) return NULL;
    if (!c->cudnn) {
        cudnnHandle_t h;
        if (cudnnCheck(cudnnCreate(&h))) return NULL;
        if (cudnnCheck(cudnnSetStream(h, c->stream))) return NULL;
        c->cudnn = (void *)h;
    }
    return c->cudnn;
#else
    cd_cuda_fail(__FILE__, __LINE__, "cd_cuda_cudnn", "built without cuDNN");
    return NULL;
#endif
}

static void *scratch_slot(void *stream, int slot, size_t bytes) {
    StreamCtx *c = ctx_for(stream);
    if (!c) return NULL;
    if (bytes > c->scratch_bytes[slot]) {
        void *old = c->scratch[slot];
        if (old && c->captured) {
            // A graph captured on this stream has the old pointer baked into its nodes and may
            // be replayed later: keep that buffer alive until the stream is destroyed.
            void **r = (void **)realloc(c->retired, sizeof(void *) * (c->nretired + 1));
            if (!r) { cd_cuda_fail(__FILE__, __LINE__, "cd_cuda_scratch", "out of host memory"); return NULL; }
            c->retired = r;
            c->retired[c->nretired++] = old;
        } else if (old) {
            // The old buffer may still be in use by queued work on this stream.
            if (cudaCheck(cudaStreamSynchronize(c->stream))) return NULL;
            cudaCheck(cudaFree(old));
        }
        c->scratch[slot] = NULL;
        c->scratch_bytes[slot] = 0;
        size_t want = bytes + bytes / 4 + 256;
        if (cudaCheck(cudaMalloc(&c->scratch[slot], want))) return NULL;
        c->scratch_bytes[slot] = want;
    }
    return c->scratch[slot];
}
extern "C" void *cd_cuda_scratch(void *stream, size_t bytes) { return scratch_slot(stream, 0, bytes); }
extern "C" void *cd_cuda_scratch_outer(void *stream, size_t bytes) { return scratch_slot(stream, 1, bytes); }

// ---- CUDA graphs (plain-C API: model code needs no CUDA header) --------------------------------
// Failures are returned (cd_err) and CUDA's last error is cleared; the sticky flag stays as it
// was, since the caller falls back to running without a graph.
extern "C" int cd_cuda_graph_begin(void *stream) {
    if (!stream) return cd_err("cd_cuda_graph_begin: a graph needs a stream of its own, not the default stream");
    cudaError_t e = cudaStreamBeginCapture(cd_stream(stream), cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return cd_err("cudaStreamBeginCapture: %s", cudaGetErrorString(e));
    }
    return 0;
}

extern "C" int cd_cuda_graph_end(void *stream, void **exec) {
    cudaGraph_t gr = NULL;
    if (exec) *exec = NULL;
    cudaError_t e = cudaStreamEndCapture(cd_stream(stream), &gr);
    if (e != cudaSuccess || !gr) {
        if (gr) cudaGraphDestroy(gr);
        cudaGetLastError();
        return cd_err("cudaStreamEndCapture: %s", e != cudaSuccess ? cudaGetErrorString(e) : "no graph captured");
    }
    StreamCtx *c = ctx_for(stream);   // the captured nodes may use this stream's scratch
    if (c) c->captured = 1;
    if (!exec) { cudaGraphDestroy(gr); return 0; }
    cudaGraphExec_t ge = NULL;
    e = cudaGraphInstantiateWithFlags(&ge, gr, 0);
    cudaGraphDestroy(gr);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return cd_err("cudaGraphInstantiate: %s", cudaGetErrorString(e));
    }
    *exec = (void *)ge;
    return 0;
}

extern "C" int cd_cuda_graph_launch(void *exec, void *stream) {
    if (!exec) return cd_err("cd_cuda_graph_launch: no graph");
    cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)exec, cd_stream(stream));
    if (e != cudaSuccess) {
        cudaGetLastError();
        return cd_err("cudaGraphLaunch: %s", cudaGetErrorString(e));
    }
    return 0;
}

extern "C" void cd_cuda_graph_destroy(void *exec) {
    if (exec) cudaGraphExecDestroy((cudaGraphExec_t)exec);
}
