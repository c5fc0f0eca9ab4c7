// Host emulation of the runtime part of kernels/kernels_cuda.h (kernels/cuda_runtime.cu):
// device, memory, streams, scratch, the sticky error flag, TF32 mode, graph capture (not
// emulated: cd_cuda_graph_begin fails so that callers take their fallback). See emu.h for what
// the emulation is and is not.
//
// Device memory and host access. One virtual range is reserved at the first allocation (2 x
// 1 TiB, PROT_NONE, MAP_NORESERVE: address space only). Its lower half holds HANDLES: what
// cd_cuda_malloc / cd_cuda_scratch return and callers hold, do arithmetic on and pass to ops; it
// is never made accessible, so C code that dereferences a device pointer on the host (which
// works on host memory and crashes on a GPU) faults here too, at once, whichever thread, with no
// per-op cost (a SIGSEGV handler, installed when none is, names the cause before the crash).
// The bytes of handle h live at h + emu_half in the upper half, which is made readable and
// writable one allocation at a time (whole pages, a PROT_NONE guard page before each; the
// block ends at its last page's end, rounded to 256 bytes, so an overrun by the host code of an
// op hits the next guard page). Ops check each pointer against a sorted table of allocations
// and translate it (EMU_DEV / EMU_OPT in emu.h: a constant add). Freed blocks go back to
// PROT_NONE and their pages to the system; addresses are handed out in increasing order and
// reused only once the range is used up, so a stale handle stays invalid for a long time. New
// blocks are filled with 0xFF bytes (NaN as fp32, bf16 and fp16). Capacity: CD_EMU_MEM_GIB (default
// 80, an H100); an allocation past it fails as cudaMalloc would. Cost: one mmap/mprotect per
// allocation and free (fine: the model code allocates arenas), nothing per op beyond the table
// lookup the pointer checks already made. ASan: the blocks are not heap memory, so ASan's
// shadow says "addressable" for them and the guard pages / the handle range catch what it
// cannot; a host dereference of a handle is an ASan "SEGV on unknown address".
//
// Stream races. On a GPU, streams made by cd_cuda_stream_create are non-blocking: their work
// runs concurrently with each other and with the default (NULL) stream. Each allocation keeps
// two masks of streams (slot bits: 0 the default stream, 1..62 created streams, 63 streams
// destroyed with accesses still pending): the ones with a write (wmask) and with a read (rmask)
// that no synchronisation has retired yet. An op on stream s that reads memory with a pending
// write of another stream, or writes memory with a pending read or write of another stream, is
// a race: recorded with cd_err and the sticky flag ("stream race: <op> on stream 2 reads memory
// written on stream 1 without a synchronisation"). Retired, as on the GPU, by: cd_cuda_sync(s)
// (the accesses of s), cd_cuda_sync(NULL) (cudaDeviceSynchronize: all), the copies to and from
// the host (cudaMemcpyAsync + cudaStreamSynchronize of their stream), cd_cuda_mse_fwd_bwd and
// cd_cuda_sumsq (synchronise their stream), a scratch that grows (synchronises its stream), and
// cd_cuda_stream_destroy of a stream with a context (library handle or scratch; its release
// synchronises). Granularity: a whole allocation (an arena shared by two streams would need
// finer tracking; the model code runs each model on one stream). Host buffers are not tracked:
// cudaMemcpyAsync from pageable memory stages the bytes before it returns. Cost: two mask tests
// per pointer check; a synchronisation walks the allocation table.
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/emu/emu.h"

static int g_sticky, g_tf32;
int emu_fp16;   // the 16-bit storage format (emu.h): 0 bf16, 1 IEEE fp16

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
void cd_cuda_set_fp16(int on) { emu_fp16 = on != 0; }
int cd_cuda_get_fp16(void) { return emu_fp16; }
// The emulation is sequential: every run repeats bit for bit; the flag is kept for its getter.
static int emu_det;
void cd_cuda_set_deterministic(int on) { emu_det = on != 0; }
int cd_cuda_get_deterministic(void) { return emu_det; }

// ---- the device-memory table ----------------------------------------------------------------
typedef struct {
    char *base;            // the handle
    size_t size;           // bytes asked for (at least 1)
    size_t span_off, span; // the pages (guard page first) in either half, as offsets from emu_va
    int scratch;
    uint64_t wmask, rmask; // streams (slot bits) with a write / a read not yet synchronised
} region;
static region *g_reg;
static int g_nreg, g_capreg;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_alloc, g_peak, g_scratch_bytes;   // through cd_cuda_malloc; scratch apart
char *emu_va;
size_t emu_half;
static size_t g_page, g_bump;   // the next free offset in the handle half

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

// p as a handle (p may be a handle or the host address of one); NULL when neither.
static const char *as_handle(const void *p) {
    const char *c = p;
    if (!emu_va || !c || c < emu_va || c >= emu_va + 2 * emu_half) return NULL;
    return c < emu_va + emu_half ? c : c - emu_half;
}

// A host dereference of a handle: say so before the default action (the crash) runs.
static void on_segv(int sig, siginfo_t *si, void *uc) {
    const char *a = si ? si->si_addr : NULL;
    if (emu_va && a >= emu_va && a < emu_va + 2 * emu_half) {
        static const char m[] = "customdiff host emulation: the host dereferenced a device pointer "
                                "(or freed/guard device memory): this crashes on a GPU too; read it with "
                                "cd_cuda_memcpy_d2h\n";
        ssize_t w = write(2, m, sizeof m - 1);
        (void)w;
    }
    signal(sig, SIG_DFL);   // returning re-runs the access: the default action now
}

static void reserve_once(void) {
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t half = (size_t)1 << 40; half >= ((size_t)1 << 34) && !emu_va; half /= 4) {
        void *p = mmap(NULL, 2 * half, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) { emu_va = p; emu_half = half; }
    }
    if (!emu_va) return;
    struct sigaction old;
    if (!sigaction(SIGSEGV, NULL, &old) && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, NULL);
    }
}

// A free span of `span` bytes (offset into the half) for a new block, or (size_t)-1 (g_mu held).
static size_t span_find(size_t span) {
    if (g_bump + span <= emu_half) {
        size_t o = g_bump;
        g_bump += span;
        return o;
    }
    size_t at = 0;   // the range is used up: the first gap between live blocks (sorted by handle)
    for (int i = 0; i < g_nreg; i++) {
        if (g_reg[i].span_off >= at + span) return at;
        at = g_reg[i].span_off + g_reg[i].span;
    }
    return at + span <= emu_half ? at : (size_t)-1;
}

static void reg_insert(region r) {
    if (g_nreg == g_capreg) {
        g_capreg = g_capreg ? 2 * g_capreg : 256;
        g_reg = cd_realloc(g_reg, g_capreg * sizeof *g_reg);
    }
    int i = reg_find(r.base) + 1;
    memmove(g_reg + i + 1, g_reg + i, (g_nreg - i) * sizeof *g_reg);
    g_reg[i] = r;
    g_nreg++;
    if (r.scratch) g_scratch_bytes += r.size;
    else {
        g_alloc += r.size;
        if (g_alloc > g_peak) g_peak = g_alloc;
    }
}

// Removes the region whose handle is p; its pages go back to PROT_NONE. -1 when p starts none.
static int reg_remove(char *p) {
    pthread_mutex_lock(&g_mu);
    int i = reg_find(p), rc = -1;
    if (i >= 0 && g_reg[i].base == p) {
        region r = g_reg[i];
        if (r.scratch) g_scratch_bytes -= r.size;
        else g_alloc -= r.size;
        memmove(g_reg + i, g_reg + i + 1, (g_nreg - i - 1) * sizeof *g_reg);
        g_nreg--;
        // fresh PROT_NONE pages in place of the block: its memory goes back to the system
        mmap(emu_va + emu_half + r.span_off, r.span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
             -1, 0);
        rc = 0;
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int emu_is_dev(const void *p) {
    const char *h = as_handle(p);
    if (!h) return 0;
    pthread_mutex_lock(&g_mu);
    int i = reg_find(h);
    int in = i >= 0 && h < g_reg[i].base + g_reg[i].size;
    pthread_mutex_unlock(&g_mu);
    return in;
}

// ---- streams: slots of the race tracker --------------------------------------------------------
// A stream handle points at its context; the default stream (NULL) has a static one. As
// kernels/cuda_runtime.cu, at most 32 stream contexts are live at once.
#define EMU_STREAM_MAGIC 0x5e7ea3c0u
#define EMU_MAX_STREAMS 32
#define SLOT_GONE 63   // destroyed streams whose accesses no synchronisation has retired
typedef struct { uint32_t magic; int id, slot, has_ctx; void *scratch[2]; size_t scratch_bytes[2]; } emu_stream; // [1]: outer
static emu_stream g_default = {EMU_STREAM_MAGIC, 0, 0, 0, {NULL, NULL}, {0, 0}};
static int g_nstreams = 1, g_next_id = 1;
static uint64_t g_slots_used = 1;       // slot 0: the default stream
static int g_slot_id[64];               // stream id of each slot (for messages)

// The tracker slot of a stream argument, or -1 when it is no stream (ctx_for reports that).
static int slot_of(void *stream) {
    if (!stream) return 0;
    const emu_stream *s = stream;
    return s->magic == EMU_STREAM_MAGIC ? s->slot : -1;
}

static int first_bit(uint64_t m) { return __builtin_ctzll(m); }

// Clears the slot bits `bits` in every region (g_mu held).
static void clear_bits(uint64_t bits) {
    for (int i = 0; i < g_nreg; i++) {
        g_reg[i].wmask &= ~bits;
        g_reg[i].rmask &= ~bits;
    }
}

void emu_retire(void *stream, int all) {
    int slot = all ? 0 : slot_of(stream);
    if (slot < 0) return;
    pthread_mutex_lock(&g_mu);
    clear_bits(all ? ~(uint64_t)0 : (uint64_t)1 << slot);
    pthread_mutex_unlock(&g_mu);
}

static int race(const char *op, const char *arg, int role, int slot, uint64_t wother, uint64_t rother,
                const char *base, size_t size) {
    int me = g_slot_id[slot], by_w = wother != 0, other = first_bit(by_w ? wother : rother);
    char them[48];
    if (other == SLOT_GONE) snprintf(them, sizeof them, "a stream since destroyed");
    else snprintf(them, sizeof them, "stream %d", g_slot_id[other]);
    return emu_fail(__FILE__, __LINE__, op,
                    "stream race: %s on stream %d %s memory %s on %s without a synchronisation (%s: the "
                    "%zu-byte device allocation at %p)",
                    op, me, role == EMU_W ? "writes" : "reads", by_w ? "written" : "read", them, arg, size,
                    (const void *)base);
}

int emu_dev_access(const void *p, size_t bytes, const char *op, const char *arg, void *stream, int role) {
    if (!bytes) return 0;
    if (!p) return emu_fail(__FILE__, __LINE__, op, "%s is NULL (%zu bytes expected)", arg, bytes);
    const char *h = as_handle(p);
    int slot = role ? slot_of(stream) : -1;
    pthread_mutex_lock(&g_mu);
    int i = h ? reg_find(h) : -1;
    size_t off = i >= 0 ? (size_t)(h - g_reg[i].base) : 0;
    int in = i >= 0 && off < g_reg[i].size, fits = in && bytes <= g_reg[i].size - off;
    size_t rsize = in ? g_reg[i].size : 0;
    uint64_t wother = 0, rother = 0;
    const char *base = NULL;
    if (fits && slot >= 0) {
        region *r = &g_reg[i];
        uint64_t me = (uint64_t)1 << slot;
        wother = r->wmask & ~me;
        rother = role == EMU_W ? r->rmask & ~me : 0;
        base = r->base;
        if (wother | rother) r->wmask = r->rmask = 0;   // reported once: the race starts over
        if (role == EMU_W) r->wmask |= me;
        else r->rmask |= me;
    }
    pthread_mutex_unlock(&g_mu);
    if (!in)
        return emu_fail(__FILE__, __LINE__, op, "%s (%p, %zu bytes) is not device memory (a host pointer, or freed)",
                        arg, p, bytes);
    if (!fits)
        return emu_fail(__FILE__, __LINE__, op,
                        "%s: %zu bytes at offset %zu run past the end of its %zu-byte device allocation", arg, bytes,
                        off, rsize);
    if (wother | rother) return race(op, arg, role, slot, wother, rother, base, rsize);
    return 0;
}

static size_t capacity(void) {
    const char *e = getenv("CD_EMU_MEM_GIB");
    double gib = e && atof(e) > 0 ? atof(e) : 80.0;
    return (size_t)(gib * 1073741824.0);
}

// A fresh device block filled with NaN bytes, registered; its handle. NULL (recorded) past the
// capacity or when the address range is used up.
static void *dev_alloc(size_t bytes, int scratch, const char *what) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, reserve_once);
    size_t n = bytes ? bytes : 1, pages = (n + g_page - 1) / g_page * g_page, span = pages + g_page;
    pthread_mutex_lock(&g_mu);
    size_t used = (size_t)(g_alloc + g_scratch_bytes);
    size_t off = emu_va && used + n <= capacity() ? span_find(span) : (size_t)-1;
    char *handle = NULL;
    if (off != (size_t)-1 &&
        !mprotect(emu_va + emu_half + off + g_page, pages, PROT_READ | PROT_WRITE)) {
        size_t lead = pages - (n + 255) / 256 * 256;   // the block ends at its last page's end
        handle = emu_va + off + g_page + lead;
        reg_insert((region){handle, n, off, span, scratch, 0, 0});
    }
    pthread_mutex_unlock(&g_mu);
    if (!handle) {
        emu_fail(__FILE__, __LINE__, what, "out of memory (%zu bytes more, %zu in use, emulated capacity %zu)", n,
                 used, capacity());
        return NULL;
    }
    memset(emu_real(handle), 0xff, n);
    return handle;
}

void *cd_cuda_malloc(size_t bytes) { return dev_alloc(bytes, 0, "cudaMalloc(&p, bytes ? bytes : 1)"); }

void cd_cuda_free(void *p) {
    if (!p) return;
    if (!as_handle(p) || as_handle(p) != (const char *)p || reg_remove(p)) {
        emu_fail(__FILE__, __LINE__, "cudaFree(p)", "%p is not the start of a device allocation", p);
        return;
    }
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
    if (as_handle(p)) return emu_fail(__FILE__, __LINE__, op, "%s (%p) is device memory, a host pointer was expected", arg, p);
    return 0;
}

// H2D and D2H: cudaMemcpyAsync on the stream, then cudaStreamSynchronize of it (cuda_runtime.cu).
int cd_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream) {
    const char *op = "cudaMemcpyAsync(HostToDevice)";
    if (EMU_DEV(op, dst, bytes) || host_check(src, bytes, op, "src")) return -1;
    if (bytes) memmove(dst, src, bytes);
    emu_retire(stream, 0);
    return 0;
}
int cd_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream) {
    const char *op = "cudaMemcpyAsync(DeviceToHost)";
    if (EMU_ACCESS(op, src, bytes, EMU_R) || host_check(dst, bytes, op, "dst")) return -1;
    if (bytes) memmove(dst, src, bytes);
    emu_retire(stream, 0);
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
// Every op ran to completion when it returned; the tracker retires the stream's accesses
// (NULL: cudaDeviceSynchronize, all streams).
int cd_cuda_sync(void *stream) {
    if (stream && slot_of(stream) < 0)
        return emu_fail(__FILE__, __LINE__, "cudaStreamSynchronize", "%p is not a stream made by cd_cuda_stream_create", stream);
    emu_retire(stream, stream == NULL);
    return 0;
}

// ---- streams and their contexts (library handles, scratch) ---------------------------------------
static void free_scratch(void *p) { reg_remove(p); }

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
    int full = g_nstreams >= EMU_MAX_STREAMS, slot = -1;
    for (int i = 1; i < SLOT_GONE && !full && slot < 0; i++)
        if (!(g_slots_used >> i & 1)) slot = i;
    if (!full && slot > 0) {
        g_nstreams++;
        g_slots_used |= (uint64_t)1 << slot;
    }
    int id = g_next_id++;
    if (slot > 0) g_slot_id[slot] = id;
    pthread_mutex_unlock(&g_mu);
    if (full || slot < 0) {
        emu_fail(__FILE__, __LINE__, "ctx_for", "more than 32 streams in use");
        return NULL;
    }
    emu_stream *s = cd_calloc(1, sizeof *s);
    s->magic = EMU_STREAM_MAGIC;
    s->id = id;
    s->slot = slot;
    return s;
}

// As cuda_runtime.cu: a stream with a context (library handle or scratch) is synchronised when
// its context is released; cudaStreamDestroy itself does not wait, so the pending accesses of a
// stream without one stay pending (slot SLOT_GONE) until a device-wide synchronisation.
void cd_cuda_stream_destroy(void *stream) {
    if (!stream) return;
    emu_stream *s = ctx_for(stream, "cudaStreamDestroy");
    if (!s) return;
    for (int i = 0; i < 2; i++)
        if (s->scratch[i]) free_scratch(s->scratch[i]);
    pthread_mutex_lock(&g_mu);
    uint64_t bit = (uint64_t)1 << s->slot;
    for (int i = 0; i < g_nreg; i++) {
        region *r = &g_reg[i];
        if (!s->has_ctx && (r->wmask & bit)) r->wmask |= (uint64_t)1 << SLOT_GONE;
        if (!s->has_ctx && (r->rmask & bit)) r->rmask |= (uint64_t)1 << SLOT_GONE;
        r->wmask &= ~bit;
        r->rmask &= ~bit;
    }
    g_slots_used &= ~bit;
    g_nstreams--;
    pthread_mutex_unlock(&g_mu);
    s->magic = 0;
    free(s);
}

void *cd_cuda_cublas(void *stream) {
    emu_stream *s = ctx_for(stream, "cd_cuda_cublas");
    if (s) s->has_ctx = 1;
    return s;
}
void *cd_cuda_cudnn(void *stream) {
    emu_stream *s = ctx_for(stream, "cd_cuda_cudnn");
    if (s) s->has_ctx = 1;
    return s;
}

static void *scratch_slot(void *stream, int slot, size_t bytes, const char *what) {
    emu_stream *s = ctx_for(stream, what);
    if (!s) return NULL;
    s->has_ctx = 1;
    if (bytes > s->scratch_bytes[slot]) {   // as the GPU: the old buffer goes, a bigger one (NaN-filled) comes
        if (s->scratch[slot]) {
            emu_retire(stream, 0);    // the .cu synchronises the stream before it frees the old one
            free_scratch(s->scratch[slot]);
        }
        s->scratch[slot] = NULL;
        s->scratch_bytes[slot] = 0;
        size_t want = bytes + bytes / 4 + 256;
        s->scratch[slot] = dev_alloc(want, 1, "cudaMalloc(&c->scratch[slot], want)");
        if (!s->scratch[slot]) return NULL;
        s->scratch_bytes[slot] = want;
    }
    return s->scratch[slot];
}
void *cd_cuda_scratch(void *stream, size_t bytes) { return scratch_slot(stream, 0, bytes, "cd_cuda_scratch"); }
void *cd_cuda_scratch_outer(void *stream, size_t bytes) { return scratch_slot(stream, 1, bytes, "cd_cuda_scratch_outer"); }

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
