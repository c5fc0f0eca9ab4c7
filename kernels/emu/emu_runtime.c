// Host emulation of the runtime part of kernels/kernels_cuda.h (kernels/cuda_runtime.cu):
// device, memory, streams, scratch, the sticky error flag, TF32 mode, graph capture (not
// emulated: cd_cuda_graph_begin fails so that callers take their fallback). See emu.h for what
// the emulation is and is not.
//
// Device memory: host memory from posix_memalign (exact sizes, so ASan sees overruns), filled
// with 0xFF bytes (NaN as fp32 and bf16) and registered in a sorted table, which every op uses
// to check that its pointers lie inside device memory. Capacity: CD_EMU_MEM_GIB (default 80, an
// H100); an allocation past it fails as cudaMalloc would.
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/emu/emu.h"

static int g_sticky, g_tf32;

int emu_fail(const char *file, int line, const char *what, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%d: %s: %s\n", file, line, what, msg);
    __atomic_store_n(&g_sticky, 1, __ATOMIC_SEQ_CST);
    return cd_err("%s:%d: %s: %s", file, line, what, msg);
}

int cd_cuda_status(void) { return __atomic_exchange_n(&g_sticky, 0, __ATOMIC_SEQ_CST) ? -1 : 0; }

int cd_cuda_available(char *why, size_t why_cap) {
    if (why && why_cap) why[0] = 0;
    return 1;
}

int cd_cuda_device_name(char *buf, size_t cap) {
    if (buf && cap) snprintf(buf, cap, "host emulation (CPU reference ops)");
    return 0;
}

void cd_cuda_set_tf32(int on) { g_tf32 = on != 0; }
int cd_cuda_get_tf32(void) { return g_tf32; }

// ---- the device-memory table ----------------------------------------------------------------
typedef struct { char *base; size_t size; int scratch; } region;
static region *g_reg;
static int g_nreg, g_capreg;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_alloc, g_peak, g_scratch_bytes;   // through cd_cuda_malloc; scratch apart

// Index of the last region with base <= p, or -1 (call with g_mu held).
static int reg_find(const char *p) {
    int lo = 0, hi = g_nreg - 1, r = -1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (g_reg[m].base <= p) { r = m; lo = m + 1; }
        else hi = m - 1;
    }
    return r;
}

static void reg_add(char *p, size_t size, int scratch) {
    pthread_mutex_lock(&g_mu);
    if (g_nreg == g_capreg) {
        g_capreg = g_capreg ? 2 * g_capreg : 256;
        g_reg = cd_realloc(g_reg, g_capreg * sizeof *g_reg);
    }
    int i = reg_find(p) + 1;
    memmove(g_reg + i + 1, g_reg + i, (g_nreg - i) * sizeof *g_reg);
    g_reg[i] = (region){p, size, scratch};
    g_nreg++;
    if (scratch) g_scratch_bytes += size;
    else {
        g_alloc += size;
        if (g_alloc > g_peak) g_peak = g_alloc;
    }
    pthread_mutex_unlock(&g_mu);
}

// Removes the region starting at p; -1 when p starts none.
static int reg_remove(char *p) {
    pthread_mutex_lock(&g_mu);
    int i = reg_find(p), rc = -1;
    if (i >= 0 && g_reg[i].base == p) {
        if (g_reg[i].scratch) g_scratch_bytes -= g_reg[i].size;
        else g_alloc -= g_reg[i].size;
        memmove(g_reg + i, g_reg + i + 1, (g_nreg - i - 1) * sizeof *g_reg);
        g_nreg--;
        rc = 0;
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int emu_is_dev(const void *p) {
    if (!p) return 0;
    pthread_mutex_lock(&g_mu);
    int i = reg_find(p);
    int in = i >= 0 && (const char *)p < g_reg[i].base + (g_reg[i].size ? g_reg[i].size : 1);
    pthread_mutex_unlock(&g_mu);
    return in;
}

int emu_dev_check(const void *p, size_t bytes, const char *op, const char *arg) {
    if (!bytes) return 0;
    if (!p) return emu_fail(__FILE__, __LINE__, op, "%s is NULL (%zu bytes expected)", arg, bytes);
    pthread_mutex_lock(&g_mu);
    int i = reg_find(p);
    size_t off = i >= 0 ? (size_t)((const char *)p - g_reg[i].base) : 0;
    int in = i >= 0 && off < g_reg[i].size, fits = in && bytes <= g_reg[i].size - off;
    size_t rsize = in ? g_reg[i].size : 0;
    pthread_mutex_unlock(&g_mu);
    if (!in)
        return emu_fail(__FILE__, __LINE__, op, "%s (%p, %zu bytes) is not device memory (a host pointer, or freed)",
                        arg, p, bytes);
    if (!fits)
        return emu_fail(__FILE__, __LINE__, op,
                        "%s: %zu bytes at offset %zu run past the end of its %zu-byte device allocation", arg, bytes,
                        off, rsize);
    return 0;
}

static size_t capacity(void) {
    const char *e = getenv("CD_EMU_MEM_GIB");
    double gib = e && atof(e) > 0 ? atof(e) : 80.0;
    return (size_t)(gib * 1073741824.0);
}

// A fresh device block filled with NaN bytes, registered; NULL (recorded) past the capacity.
static void *dev_alloc(size_t bytes, int scratch, const char *what) {
    size_t n = bytes ? bytes : 1;
    pthread_mutex_lock(&g_mu);
    size_t used = (size_t)(g_alloc + g_scratch_bytes);
    pthread_mutex_unlock(&g_mu);
    void *p = NULL;
    if (used + n > capacity() || posix_memalign(&p, 256, n)) {
        emu_fail(__FILE__, __LINE__, what, "out of memory (%zu bytes more, %zu in use, emulated capacity %zu)", n,
                 used, capacity());
        return NULL;
    }
    memset(p, 0xff, n);
    reg_add(p, n, scratch);
    return p;
}

void *cd_cuda_malloc(size_t bytes) { return dev_alloc(bytes, 0, "cudaMalloc(&p, bytes ? bytes : 1)"); }

void cd_cuda_free(void *p) {
    if (!p) return;
    if (reg_remove(p)) {
        emu_fail(__FILE__, __LINE__, "cudaFree(p)", "%p is not the start of a device allocation", p);
        return;
    }
    free(p);
}

int64_t cd_cuda_alloc_bytes(int64_t *peak) {
    pthread_mutex_lock(&g_mu);
    int64_t a = g_alloc;
    if (peak) *peak = g_peak;
    pthread_mutex_unlock(&g_mu);
    return a;
}

void cd_cuda_alloc_reset_peak(void) {
    pthread_mutex_lock(&g_mu);
    g_peak = g_alloc;
    pthread_mutex_unlock(&g_mu);
}

int cd_cuda_mem_info(size_t *used, size_t *total) {
    pthread_mutex_lock(&g_mu);
    size_t u = (size_t)(g_alloc + g_scratch_bytes);
    pthread_mutex_unlock(&g_mu);
    if (used) *used = u;
    if (total) *total = capacity();
    return 0;
}

// ---- copies -----------------------------------------------------------------------------------
static int host_check(const void *p, size_t bytes, const char *op, const char *arg) {
    if (!bytes) return 0;
    if (!p) return emu_fail(__FILE__, __LINE__, op, "%s is NULL", arg);
    if (emu_is_dev(p)) return emu_fail(__FILE__, __LINE__, op, "%s (%p) is device memory, a host pointer was expected", arg, p);
    return 0;
}

int cd_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream) {
    const char *op = "cudaMemcpyAsync(HostToDevice)";
    if (EMU_DEV(op, dst, bytes) || host_check(src, bytes, op, "src")) return -1;
    if (bytes) memmove(dst, src, bytes);
    return 0;
}
int cd_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream) {
    const char *op = "cudaMemcpyAsync(DeviceToHost)";
    if (EMU_DEV(op, src, bytes) || host_check(dst, bytes, op, "dst")) return -1;
    if (bytes) memmove(dst, src, bytes);
    return 0;
}
int cd_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes, void *stream) {
    const char *op = "cudaMemcpyAsync(DeviceToDevice)";
    if (EMU_DEV(op, dst, bytes) || EMU_DEV(op, src, bytes)) return -1;
    if (bytes) memmove(dst, src, bytes);
    return 0;
}
int cd_cuda_memset(void *dst, int byte, size_t bytes, void *stream) {
    if (EMU_DEV("cudaMemsetAsync", dst, bytes)) return -1;
    if (bytes) memset(dst, byte, bytes);
    return 0;
}
int cd_cuda_sync(void *stream) { return 0; }   // every op ran to completion when it returned

// ---- streams and their contexts (library handles, scratch) ---------------------------------------
// A stream handle points at its context; the default stream (NULL) has a static one. As
// kernels/cuda_runtime.cu, at most 32 stream contexts are live at once.
#define EMU_STREAM_MAGIC 0x5e7ea3c0u
#define EMU_MAX_STREAMS 32
typedef struct { uint32_t magic; int id; void *scratch; size_t scratch_bytes; } emu_stream;
static emu_stream g_default = {EMU_STREAM_MAGIC, 0, NULL, 0};
static int g_nstreams = 1, g_next_id = 1;

static void free_scratch(void *p) {
    if (!reg_remove(p)) free(p);
}

static emu_stream *ctx_for(void *stream, const char *op) {
    emu_stream *s = stream ? (emu_stream *)stream : &g_default;
    if (s->magic != EMU_STREAM_MAGIC) {
        emu_fail(__FILE__, __LINE__, op, "%p is not a stream made by cd_cuda_stream_create (or was destroyed)", stream);
        return NULL;
    }
    return s;
}

void *cd_cuda_stream_create(void) {
    pthread_mutex_lock(&g_mu);
    int full = g_nstreams >= EMU_MAX_STREAMS;
    if (!full) g_nstreams++;
    int id = g_next_id++;
    pthread_mutex_unlock(&g_mu);
    if (full) {
        emu_fail(__FILE__, __LINE__, "ctx_for", "more than 32 streams in use");
        return NULL;
    }
    emu_stream *s = cd_calloc(1, sizeof *s);
    s->magic = EMU_STREAM_MAGIC;
    s->id = id;
    return s;
}

void cd_cuda_stream_destroy(void *stream) {
    if (!stream) return;
    emu_stream *s = ctx_for(stream, "cudaStreamDestroy");
    if (!s) return;
    if (s->scratch) free_scratch(s->scratch);
    s->magic = 0;
    free(s);
    pthread_mutex_lock(&g_mu);
    g_nstreams--;
    pthread_mutex_unlock(&g_mu);
}

void *cd_cuda_cublas(void *stream) { return ctx_for(stream, "cd_cuda_cublas"); }
void *cd_cuda_cudnn(void *stream) { return ctx_for(stream, "cd_cuda_cudnn"); }

void *cd_cuda_scratch(void *stream, size_t bytes) {
    emu_stream *s = ctx_for(stream, "cd_cuda_scratch");
    if (!s) return NULL;
    if (bytes > s->scratch_bytes) {   // as the GPU: the old buffer goes, a bigger one (NaN-filled) comes
        if (s->scratch) free_scratch(s->scratch);
        s->scratch = NULL;
        s->scratch_bytes = 0;
        size_t want = bytes + bytes / 4 + 256;
        s->scratch = dev_alloc(want, 1, "cudaMalloc(&c->scratch, want)");
        if (!s->scratch) return NULL;
        s->scratch_bytes = want;
    }
    return s->scratch;
}

// ---- CUDA graphs: not emulated ------------------------------------------------------------------
// Not through the sticky flag: the caller reads the return value and takes its fallback.
int cd_cuda_graph_begin(void *stream) {
    return cd_err("cd_cuda_graph_begin: graph capture is not emulated (host emulation of the CUDA ops)");
}
int cd_cuda_graph_end(void *stream, void **exec) {
    if (exec) *exec = NULL;
    return cd_err("cd_cuda_graph_end: no capture in progress (graph capture is not emulated)");
}
int cd_cuda_graph_launch(void *exec, void *stream) {
    return cd_err("cd_cuda_graph_launch: graph capture is not emulated");
}
void cd_cuda_graph_destroy(void *exec) { (void)exec; }

// ---- helpers of the op files ----------------------------------------------------------------------
float *emu_tmp(int64_t n) { return cd_malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

float *emu_widen(const uint16_t *x, int64_t n) {
    float *y = emu_tmp(n);
    for (int64_t i = 0; i < n; i++) y[i] = emu_bf2f(x[i]);
    return y;
}

void emu_narrow(uint16_t *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = emu_f2bf(x[i]);
}

const float *emu_tf32_copy(const float *x, int64_t n, float **owned) {
    *owned = NULL;
    if (!g_tf32 || !x || n <= 0) return x;
    float *c = emu_tmp(n);
    for (int64_t i = 0; i < n; i++) c[i] = emu_tf32(x[i]);
    *owned = c;
    return c;
}
