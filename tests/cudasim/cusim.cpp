// Simulator core: fibers, barriers, the grid executor, the memory registry.
//
// Fibers: a block's threads are fibers, each started on a stack from a per-executor-thread pool
// (mmap'ed on demand, lazily committed, a PROT_NONE guard page below each; a thread that ends
// gives its stack back, so a block without barriers runs on one hot stack), switched by a
// hand-written x86-64 context switch (callee-saved registers, MXCSR and the x87 control word;
// ucontext elsewhere or with -DCUSIM_UCONTEXT). Every barrier arrival switches back to the
// block's scheduler. It passes over the warps in a seeded random order and runs each warp as far
// as it can (lanes in a random order between two warp barriers), so warps drift as far apart as
// the barriers allow and a missing barrier shows as a read of NaN-filled or stale memory; a pass
// in which no fiber can run while some are still live is a deadlock (reported, the rest of the
// grid is skipped). Blocks start in a seeded random order that changes from launch to launch
// (block_at), spread over CUSIM_THREADS executor threads (default 2 on a multi-core machine;
// 1 = the same program and seed always run the same schedule). Built with -fsanitize=address, every switch is annotated
// (__sanitizer_start/finish_switch_fiber), so ASan checks the kernels' own stacks too.
// Environment: CUSIM_THREADS, CUSIM_SEED (another schedule), CUSIM_SCHED=fwd|rev (blocks, lanes and warps
// in index order / reversed instead of random), CUSIM_STACK_KB (fiber stack, default 256),
// CUSIM_FAIL_ON_FAULT=1 (exit status 86 when there were simulator faults).
#include "cusim.h"
#include <stdarg.h>
#include <atomic>
#include <string>
#include <thread>
#include <condition_variable>
#include <chrono>
#include <sys/mman.h>
#include <unistd.h>
#include <signal.h>
#include <pthread.h>
#if defined(__SANITIZE_ADDRESS__)
#define CUSIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUSIM_ASAN 1
#endif
#endif
#ifdef CUSIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUSIM_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define CUSIM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define CUSIM_POISON(p, n) ((void)0)
#define CUSIM_UNPOISON(p, n) ((void)0)
#endif
#if !defined(__x86_64__) || defined(CUSIM_UCONTEXT)
#define CUSIM_USE_UCONTEXT 1
#include <ucontext.h>
#endif

// cudart.cpp: the runtime state a launch checks
void cusim_set_last_error(cudaError_t e);
int cusim_stream_ok(cudaStream_t s);
size_t cusim_func_max_dyn_smem(const void *fn);

int cusim_errors;
static std::mutex g_fault_mu;
const char *cusim_cur_kernel = "";
thread_local uint3 cusim_tIdx, cusim_bIdx;
thread_local dim3 cusim_bDim, cusim_gDim;
thread_local CusimBlock *cusim_blk;
thread_local unsigned char *cusim_smem_ptr;
thread_local int cusim_tlin;

void cusim_fault(const char *fmt, ...) {
    std::lock_guard<std::mutex> l(g_fault_mu);
    if (++cusim_errors > 50) return;
    va_list ap;
    va_start(ap, fmt);
    if (cusim_blk)
        fprintf(stderr, "SIMFAULT [%s block (%u,%u,%u) thread (%u,%u,%u)]: ", cusim_cur_kernel, cusim_bIdx.x,
                cusim_bIdx.y, cusim_bIdx.z, cusim_tIdx.x, cusim_tIdx.y, cusim_tIdx.z);
    else
        fprintf(stderr, "SIMFAULT [host]: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
// At exit: a summary line when there were faults; with CUSIM_FAIL_ON_FAULT=1 in the environment
// the process then exits with status 86 (so a program that does not look at cusim_errors fails).
static void at_exit_summary() {
    if (!cusim_errors) return;
    fflush(stdout);
    fprintf(stderr, "cusim: %d simulator fault%s (SIMFAULT lines above)\n", cusim_errors, cusim_errors == 1 ? "" : "s");
    const char *e = getenv("CUSIM_FAIL_ON_FAULT");
    if (e && atoi(e)) {
        fflush(NULL);
        _exit(86);
    }
}
static int g_atexit_registered = atexit(at_exit_summary);
long long cusim_clock64() {
    return (long long)std::chrono::steady_clock::now().time_since_epoch().count();
}

// ---- context switch ------------------------------------------------------------------------
#ifndef CUSIM_USE_UCONTEXT
// void cusim_switch(void **save_sp, void *new_sp): saves the callee-saved state on the current
// stack, stores its sp in *save_sp, continues on new_sp (a stack saved the same way, or a new
// fiber's initial frame returning into cusim_tramp with r12 = the fiber, r13 = its entry).
extern "C" void cusim_switch(void **save_sp, void *new_sp);
extern "C" void cusim_tramp();
asm(R"(
    .text
    .globl cusim_switch
    .type cusim_switch,@function
cusim_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size cusim_switch,.-cusim_switch
    .globl cusim_tramp
    .type cusim_tramp,@function
cusim_tramp:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size cusim_tramp,.-cusim_tramp
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

enum { F_RUN, F_BLOCKED, F_DONE };
struct CusimFiber {
    void *sp = nullptr;
#ifdef CUSIM_USE_UCONTEXT
    ucontext_t uc;
#endif
    char *stack = nullptr; // lowest usable byte (a guard page lies below); set when it starts
    size_t stack_size = 0;
    int stack_id = -1;     // the Sched's stack it runs on (-1: not started)
    int state = F_DONE;
    CusimBar *wait_on = nullptr;
    int tlin = 0;
    uint3 tid;
    void *asan_fake = nullptr;
};

namespace {
struct Sched {
    void *sp = nullptr; // the scheduler's saved context
#ifdef CUSIM_USE_UCONTEXT
    ucontext_t uc;
#endif
    std::vector<CusimFiber> fib;
    CusimFiber *cur = nullptr;
    void (*body)(void *) = nullptr;
    void *ctx = nullptr;
    CusimBlock blk;
    // Stacks: allocated on demand, taken when a fiber starts and given back when it ends (LIFO:
    // a block whose threads never wait runs them all on one hot stack).
    std::vector<char *> stacks;
    std::vector<int> free_stacks;
    // the scheduler's current step: lanes fib[it_base + it_ord[k]], k < it_n, now at it_k (a fiber
    // whose thread ends runs the step's next thread itself when that one has not started)
    const int *it_ord = nullptr;
    int it_base = 0, it_n = 0, it_k = 0;
    int ndone = 0; // threads of the block that ended
    const void *asan_bottom = nullptr;
    size_t asan_size = 0;
    Sched() { fib.reserve(1024); }
};
thread_local Sched *t_sched;
size_t g_stack_bytes;
size_t g_page;
} // namespace

static void fiber_main(CusimFiber *f);
static void fiber_start(Sched *s, CusimFiber *f);
// Runs f until it waits or ends; returns the fiber that switched back (f, or a thread it adopted).
static CusimFiber *sched_to(Sched *s, CusimFiber *f) {
    if (f->stack_id < 0) fiber_start(s, f);
    s->cur = f;
    cusim_tIdx = f->tid;
    cusim_tlin = f->tlin;
#ifdef CUSIM_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack, f->stack_size);
#endif
#ifdef CUSIM_USE_UCONTEXT
    swapcontext(&s->uc, &f->uc);
#else
    cusim_switch(&s->sp, f->sp);
#endif
#ifdef CUSIM_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    CusimFiber *back = s->cur;
    s->cur = nullptr;
    return back;
}
// From the running fiber back to its scheduler (done: the fiber never resumes).
static void fiber_yield(Sched *s, CusimFiber *f, bool done) {
#ifdef CUSIM_ASAN
    __sanitizer_start_switch_fiber(done ? nullptr : &f->asan_fake, s->asan_bottom, s->asan_size);
#else
    (void)done;
#endif
#ifdef CUSIM_USE_UCONTEXT
    swapcontext(&f->uc, &s->uc);
#else
    cusim_switch(&f->sp, s->sp);
#endif
#ifdef CUSIM_ASAN
    __sanitizer_finish_switch_fiber(f->asan_fake, nullptr, nullptr);
#endif
}
// A waiting fiber goes straight on to the next runnable fiber of the scheduler's step (as the
// scheduler would), or back to the scheduler when the step has none: half the switches.
static void fiber_wait_switch(Sched *s, CusimFiber *f) {
    CusimFiber *nx = nullptr;
    while (!nx && s->it_k + 1 < s->it_n) {
        CusimFiber *c = &s->fib[s->it_base + s->it_ord[++s->it_k]];
        if (c->state == F_RUN) nx = c;
    }
    if (!nx) {
        fiber_yield(s, f, false);
        return;
    }
    if (nx->stack_id < 0) fiber_start(s, nx);
    s->cur = nx;
    cusim_tIdx = nx->tid;
    cusim_tlin = nx->tlin;
#ifdef CUSIM_ASAN
    __sanitizer_start_switch_fiber(&f->asan_fake, nx->stack, nx->stack_size);
#endif
#ifdef CUSIM_USE_UCONTEXT
    swapcontext(&f->uc, &nx->uc);
#else
    cusim_switch(&f->sp, nx->sp);
#endif
#ifdef CUSIM_ASAN
    __sanitizer_finish_switch_fiber(f->asan_fake, nullptr, nullptr);
#endif
}
#ifdef CUSIM_USE_UCONTEXT
static void fiber_entry_uc(int lo, int hi) {
    fiber_main((CusimFiber *)(((uintptr_t)(unsigned)hi << 32) | (uintptr_t)(unsigned)lo));
}
#endif

static int stack_take(Sched *s) {
    if (!s->free_stacks.empty()) {
        int id = s->free_stacks.back();
        s->free_stacks.pop_back();
        return id;
    }
    size_t total = g_stack_bytes + g_page;
    char *m = (char *)mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) { perror("cusim: mmap of a fiber stack"); abort(); }
    mprotect(m, g_page, PROT_NONE); // guard page: an overflow faults instead of corrupting
    s->stacks.push_back(m + g_page);
    return (int)s->stacks.size() - 1;
}
// Gives a stack back; full: its fiber did not end (a deadlock), so ASan's poison of its frames stays
static void stack_give(Sched *s, CusimFiber *f, bool full) {
    if (f->stack_id < 0) return;
    if (full) CUSIM_UNPOISON(f->stack, f->stack_size);
    s->free_stacks.push_back(f->stack_id);
    f->stack_id = -1;
}
// Starts fiber f on a free stack: its first switch enters fiber_main(f) through cusim_tramp.
static void fiber_start(Sched *s, CusimFiber *f) {
    f->stack_id = stack_take(s);
    f->stack = s->stacks[f->stack_id];
    f->stack_size = g_stack_bytes;
    f->asan_fake = nullptr;
    // the top frames of an ended fiber on this stack (fiber_main's never returns) keep their poison
    CUSIM_UNPOISON(f->stack + f->stack_size - 16384, 16384);
#ifdef CUSIM_USE_UCONTEXT
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = f->stack_size;
    f->uc.uc_link = nullptr;
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->uc, (void (*)())fiber_entry_uc, 2, (int)(unsigned)p, (int)(unsigned)(p >> 32));
#else
    uint64_t *sp = (uint64_t *)((uintptr_t)(f->stack + f->stack_size) & ~(uintptr_t)15);
    uint32_t csr[2] = {__builtin_ia32_stmxcsr(), 0};
    uint16_t cw;
    asm volatile("fnstcw %0" : "=m"(cw));
    csr[1] = cw;
    *--sp = (uint64_t)(uintptr_t)cusim_tramp; // return address, 8 mod 16
    *--sp = 0;                                // rbp
    *--sp = 0;                                // rbx
    *--sp = (uint64_t)(uintptr_t)f;           // r12: the fiber
    *--sp = (uint64_t)(uintptr_t)fiber_main;  // r13: its entry
    *--sp = 0;                                // r14
    *--sp = 0;                                // r15
    --sp;
    memcpy(sp, csr, 8);                       // MXCSR, x87 control word
    f->sp = sp;
#endif
}

static void fiber_main(CusimFiber *f) {
    Sched *s = t_sched;
#ifdef CUSIM_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    for (;;) {
        s->body(s->ctx);
        CusimBlock *blk = &s->blk;
        blk->warp_bar[f->tlin >> 5].drop();
        blk->block_bar.drop();
        f->state = F_DONE;
        s->ndone++;
        // the next thread of the scheduler's step, if it has not started, runs here (no switch)
        if (s->it_k + 1 >= s->it_n) break;
        CusimFiber *nx = &s->fib[s->it_base + s->it_ord[s->it_k + 1]];
        if (nx->state != F_RUN || nx->stack_id >= 0) break;
        s->it_k++;
        nx->stack_id = f->stack_id;
        nx->stack = f->stack;
        nx->stack_size = f->stack_size;
        nx->asan_fake = nullptr;
        f->stack_id = -1;
        f = nx;
        s->cur = f;
        cusim_tIdx = f->tid;
        cusim_tlin = f->tlin;
    }
    fiber_yield(s, f, true);
    abort(); // never resumed
}

// ---- barriers -------------------------------------------------------------------------------
void CusimBar::release() {
    arrived = 0;
    gen++;
    for (int i = 0; i < nfib; i++)
        if (fib[i].state == F_BLOCKED && fib[i].wait_on == this) {
            fib[i].state = F_RUN;
            fib[i].wait_on = nullptr;
        }
}
void CusimBar::wait() {
    Sched *s = t_sched;
    CusimFiber *f = s ? s->cur : nullptr;
    if (!f) { cusim_fault("%s barrier called outside a kernel", name); return; }
    f->state = F_BLOCKED;
    f->wait_on = this;
    if (++arrived >= expected) release(); // the last arrival: every waiter (this one too) may go on
    fiber_wait_switch(s, f);               // always yield: the scheduler's order decides who runs next
}
void CusimBar::drop() {
    expected--;
    if (arrived > 0 && arrived >= expected) release();
}

void cusim_xch_fault(const char *what, int src) {
    cusim_fault("%s reads lane %d, which did not take part (exited or diverged)", what, src);
}
unsigned cusim_vote(unsigned mask, int pred, const char *what) {
    if (mask != 0xffffffffu) cusim_fault("%s with partial mask %08x (the simulator supports full warps only)", what, mask);
    CusimBar &b = cusim_wbar();
    const int lane = cusim_lane(), w = cusim_warp();
    const unsigned g = b.gen, p = g & 1;
    cusim_blk->xch[p][w][lane] = pred != 0;
    cusim_blk->xtag[p][w][lane] = g;
    b.wait();
    unsigned r = 0;
    for (int i = 0; i < 32; i++)
        if (cusim_blk->xtag[p][w][i] == g && cusim_blk->xch[p][w][i]) r |= 1u << i;
    return r;
}
unsigned cusim_activemask() {
    Sched *s = t_sched;
    const int w = cusim_warp();
    unsigned r = 0;
    for (int i = 0; i < 32 && w * 32 + i < (int)s->fib.size(); i++)
        if (s->fib[w * 32 + i].state != F_DONE) r |= 1u << i;
    return r;
}

// ---- registry ----------------------------------------------------------------------------
static std::mutex g_reg_mu;
// never destroyed: device memory left allocated at exit is not a leak (the driver frees it)
static std::map<uintptr_t, size_t> &g_reg = *new std::map<uintptr_t, size_t>();
void cusim_register(const void *p, size_t bytes) {
    std::lock_guard<std::mutex> l(g_reg_mu);
    g_reg[(uintptr_t)p] = bytes;
}
void cusim_unregister(const void *p) {
    std::lock_guard<std::mutex> l(g_reg_mu);
    g_reg.erase((uintptr_t)p);
}
int cusim_lookup(const void *p, void **base, size_t *bytes) {
    uintptr_t a = (uintptr_t)p;
    std::lock_guard<std::mutex> l(g_reg_mu);
    auto it = g_reg.upper_bound(a);
    if (it == g_reg.begin()) return 0;
    --it;
    if (a < it->first || a >= it->first + (it->second ? it->second : 1)) return 0;
    if (base) *base = (void *)it->first;
    if (bytes) *bytes = it->second;
    return 1;
}
static const size_t GUARD = 1024, SGUARD = 64;
bool cusim_range_ok(const void *p, size_t bytes, const char *what, bool report) {
    uintptr_t a = (uintptr_t)p;
    if (CusimBlock *blk = cusim_blk) {
        if (blk->smem) {
            uintptr_t s = (uintptr_t)blk->smem;
            if (a >= s && a + bytes <= s + blk->smem_size) return true;
            if (a + bytes > s - GUARD && a < s + blk->smem_size + GUARD) {
                if (report)
                    cusim_fault("%s: shared tile [%lld, %lld) outside dynamic smem of %zu bytes", what, (long long)(a - s),
                                (long long)(a - s + bytes), blk->smem_size);
                return false;
            }
        }
        for (auto &st : blk->statics) {
            uintptr_t s = (uintptr_t)st.p;
            if (a >= s && a + bytes <= s + st.bytes) return true;
            if (a + bytes > s - SGUARD && a < s + st.bytes + SGUARD) {
                if (report)
                    cusim_fault("%s: [%lld, %lld) outside static __shared__ array %d of %zu bytes", what,
                                (long long)(a - s), (long long)(a - s + bytes), st.key, st.bytes);
                return false;
            }
        }
    }
    {
        std::lock_guard<std::mutex> l(g_reg_mu);
        auto it = g_reg.upper_bound(a);
        if (it != g_reg.begin()) {
            --it;
            if (a >= it->first && a + bytes <= it->first + it->second) return true;
        }
    }
    if (report) cusim_fault("%s: [%p, +%zu) not inside any device buffer or the block's smem", what, p, bytes);
    return false;
}
void cusim_check_range(const void *p, size_t bytes, const char *what) { cusim_range_ok(p, bytes, what, true); }

void *cusim_static_alloc(int key, size_t bytes) {
    CusimBlock *blk = cusim_blk;
    for (auto &st : blk->statics)
        if (st.key == key) return st.p;
    blk->static_size += bytes;
    if (blk->static_size > 48 * 1024) cusim_fault("static __shared__ %zu bytes > 48 KiB", blk->static_size);
    size_t n = (bytes + 127) / 128 * 128 + 2 * 128;
    unsigned char *raw = (unsigned char *)aligned_alloc(128, n);
    memset(raw, 0xA5, n);
    memset(raw + 128, 0xFF, bytes); // NaN: uninitialised reads show
    blk->statics.push_back({key, raw + 128, bytes});
    return raw + 128;
}
// Frees the block's static arrays, checking the guard bytes around each (1 = intact).
static int statics_free(CusimBlock *blk, const char *kname) {
    int ok = 1;
    for (auto &st : blk->statics) {
        unsigned char *raw = (unsigned char *)st.p - 128;
        size_t n = (st.bytes + 127) / 128 * 128 + 2 * 128;
        for (size_t i = 0; i < n; i++) {
            if (i >= 128 && i < 128 + st.bytes) continue;
            if (raw[i] != 0xA5) {
                ok = 0;
                std::lock_guard<std::mutex> l(g_fault_mu);
                cusim_errors++;
                fprintf(stderr, "SIMFAULT %s block (%u,%u,%u): static __shared__ array %d (%zu bytes) written at %lld\n",
                        kname, cusim_bIdx.x, cusim_bIdx.y, cusim_bIdx.z, st.key, st.bytes, (long long)i - 128);
                break;
            }
        }
        free(raw);
    }
    blk->statics.clear();
    blk->static_size = 0;
    return ok;
}

// ---- grid executor -----------------------------------------------------------------------
size_t cusim_max_smem = 232448; // H100 / H200: 227 KiB shared memory per block (opt-in)

namespace {
struct Grid {
    dim3 g, b;
    size_t smem;
    const char *kname;
    void (*body)(void *);
    void *ctx;
    uint64_t nblocks;
    uint64_t salt;     // this launch's block order (random mode)
    std::atomic<uint64_t> next{0};
    std::atomic<int> abort{0};
};
uint64_t g_seed = 0x9E3779B97F4A7C15ull;
int g_sched_mode; // 0 random permutation per round, 1 forward, 2 reverse
uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
} // namespace

static void report_deadlock(Sched *s, int nt, const char *kname) {
    // one line per barrier that has waiters: which, how many arrived of how many live, the first waiter
    std::string msg;
    int blocked = 0;
    std::vector<CusimBar *> seen;
    for (int i = 0; i < nt; i++) {
        CusimFiber &f = s->fib[i];
        if (f.state != F_BLOCKED) continue;
        blocked++;
        CusimBar *b = f.wait_on;
        bool dup = false;
        for (CusimBar *x : seen) dup |= x == b;
        if (dup) continue;
        seen.push_back(b);
        char buf[200];
        int w = b == &s->blk.block_bar ? -1 : (int)(b - s->blk.warp_bar);
        if (w < 0) snprintf(buf, sizeof buf, " __syncthreads: %d of %d live threads arrived (first: thread %d);", b->arrived, b->expected, i);
        else snprintf(buf, sizeof buf, " warp %d collective (shuffle/vote/wmma/__syncwarp): %d of %d live lanes arrived (first: thread %d);",
                      w, b->arrived, b->expected, i);
        msg += buf;
    }
    std::lock_guard<std::mutex> l(g_fault_mu);
    cusim_errors++;
    fprintf(stderr, "SIMFAULT deadlock in %s block (%u,%u,%u): %d live threads wait on barriers that cannot complete:%s"
            " (rest of the grid skipped)\n", kname, cusim_bIdx.x, cusim_bIdx.y, cusim_bIdx.z, blocked, msg.c_str());
}

// Runs block number lin of the grid on this OS thread's scheduler. Returns 0 on deadlock.
static int run_block(Sched *s, Grid *gr, uint64_t lin) {
    const dim3 g = gr->g, b = gr->b;
    const int nt = (int)(b.x * b.y * b.z);
    const uint3 bidx = make_uint3((unsigned)(lin % g.x), (unsigned)((lin / g.x) % g.y), (unsigned)(lin / ((uint64_t)g.x * g.y)));
    CusimBlock *blk = &s->blk;
    if ((int)s->fib.size() < nt) s->fib.resize(nt); // reserved: no reallocation up to 1024
    CusimFiber *fib = s->fib.data();
    blk->block_bar = CusimBar();
    blk->block_bar.expected = nt;
    blk->block_bar.name = "__syncthreads";
    blk->block_bar.fib = fib;
    blk->block_bar.nfib = nt;
    for (int w = 0; w < 32; w++) {
        int n = nt - 32 * w;
        n = n > 32 ? 32 : (n > 0 ? n : 0);
        blk->warp_bar[w] = CusimBar();
        blk->warp_bar[w].expected = n;
        blk->warp_bar[w].name = "warp";
        blk->warp_bar[w].fib = fib + 32 * w;
        blk->warp_bar[w].nfib = n;
    }
    memset(blk->xtag, 0xFF, sizeof blk->xtag);
    for (auto &m2 : blk->mma)
        for (auto &m : m2) m.tag = ~0u;
    const size_t smem = gr->smem;
    unsigned char *raw = nullptr;
    if (posix_memalign((void **)&raw, 128, smem + 2 * GUARD)) abort();
    memset(raw, 0xA5, GUARD);
    memset(raw + GUARD, 0xFF, smem); // NaN in fp32, bf16 and fp16: uninitialised reads show
    memset(raw + GUARD + smem, 0xA5, GUARD);
    CUSIM_POISON(raw, GUARD);
    CUSIM_POISON(raw + GUARD + smem, GUARD);
    blk->smem = raw + GUARD;
    blk->smem_size = smem;
    cusim_blk = blk;
    cusim_smem_ptr = smem ? blk->smem : nullptr;
    cusim_bIdx = bidx;
    cusim_bDim = b;
    cusim_gDim = g;
    s->body = gr->body;
    s->ctx = gr->ctx;
    for (int t = 0; t < nt; t++) {
        CusimFiber *f = &fib[t];
        f->state = F_RUN;
        f->wait_on = nullptr;
        f->stack_id = -1;
        f->tlin = t;
        f->tid = make_uint3((unsigned)t % b.x, ((unsigned)t / b.x) % b.y, (unsigned)t / (b.x * b.y));
    }
    int live = nt, ok = 1;
    s->ndone = 0;
    uint64_t rng = mix64(g_seed ^ (lin * 0x2545F4914F6CDD1Dull));
    const int nw = (nt + 31) / 32;
    int word[32], lord[32];
    auto shuffle = [&](int *v, int n) { // Fisher-Yates with a xorshift stream, or in/reverse order
        for (int i = 0; i < n; i++) v[i] = g_sched_mode == 2 ? n - 1 - i : i;
        if (g_sched_mode == 0)
            for (int i = n - 1; i > 0; i--) {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                int j = (int)(((rng >> 32) * (uint64_t)(i + 1)) >> 32); // in [0, i]
                int t = v[i]; v[i] = v[j]; v[j] = t;
            }
    };
    // Passes over the warps in a random order; each warp runs as far as it can (to a
    // __syncthreads, its end, or a stuck warp collective) before the next one starts: warps
    // drift as far apart as a correct program allows. Within a warp, each step between two warp
    // barriers runs the lanes in a random order.
    while (live > 0) {
        shuffle(word, nw);
        int ran = 0;
        for (int wi = 0; wi < nw; wi++) {
            const int w = word[wi], n = nt - 32 * w < 32 ? nt - 32 * w : 32;
            for (;;) {
                int any = 0;
                for (int k = 0; k < n && !any; k++) any = fib[32 * w + k].state == F_RUN;
                if (!any) break;
                shuffle(lord, n);
                int step = 0;
                s->it_ord = lord;
                s->it_base = 32 * w;
                s->it_n = n;
                for (s->it_k = 0; s->it_k < n; s->it_k++) {
                    CusimFiber *f = &fib[32 * w + lord[s->it_k]];
                    if (f->state != F_RUN) continue;
                    CusimFiber *back = sched_to(s, f);
                    step++;
                    if (back->state == F_DONE) stack_give(s, back, false);
                }
                s->it_n = 0;
                live = nt - s->ndone;
                if (!step) break;
                ran += step;
            }
        }
        if (!ran) {
            report_deadlock(s, nt, gr->kname);
            for (int t = 0; t < nt; t++) stack_give(s, &fib[t], true); // the blocked fibers are abandoned
            ok = 0;
            break;
        }
    }
    CUSIM_UNPOISON(raw, smem + 2 * GUARD);
    for (size_t i = 0; i < GUARD; i++)
        if (raw[i] != 0xA5 || raw[GUARD + smem + i] != 0xA5) {
            std::lock_guard<std::mutex> l(g_fault_mu);
            cusim_errors++;
            fprintf(stderr, "SIMFAULT %s block (%u,%u,%u): smem guard byte %s+%zu overwritten\n", gr->kname, bidx.x,
                    bidx.y, bidx.z, raw[i] != 0xA5 ? "before" : "after", i);
            break;
        }
    free(raw);
    size_t static_size = blk->static_size;
    statics_free(blk, gr->kname);
    if (static_size + smem > cusim_max_smem)
        cusim_fault("%zu bytes of static + %zu of dynamic shared memory > the device's %zu", static_size, smem,
                    cusim_max_smem);
    blk->smem = nullptr;
    cusim_blk = nullptr;
    cusim_smem_ptr = nullptr;
    return ok;
}

#ifndef CUSIM_ASAN
// A fault in the guard page below the running fiber's stack: say so (then die of the signal).
static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    Sched *s = t_sched;
    CusimFiber *f = s ? s->cur : nullptr;
    if (f && f->stack && (uintptr_t)si->si_addr + ((uintptr_t)64 << 20) >= (uintptr_t)f->stack && (char *)si->si_addr < f->stack) {
        static const char m[] = "SIMFAULT: a kernel thread overflowed its fiber stack (raise CUSIM_STACK_KB, default 256)\n";
        if (write(2, m, sizeof m - 1) < 0) {}
    }
    signal(sig, SIG_DFL);
    raise(sig);
}
#endif
static Sched *sched_here() {
    if (!t_sched) {
        t_sched = new Sched(); // one per OS thread, kept (its stacks are reused)
#ifdef CUSIM_ASAN
        { // this thread's own stack: where the fibers switch back to
            pthread_attr_t at;
            void *addr = nullptr;
            size_t sz = 0;
            if (pthread_getattr_np(pthread_self(), &at) == 0) {
                pthread_attr_getstack(&at, &addr, &sz);
                pthread_attr_destroy(&at);
            }
            t_sched->asan_bottom = addr;
            t_sched->asan_size = sz;
        }
#endif
#ifndef CUSIM_ASAN
        // the handler runs on an alternate stack (the faulting one is exhausted)
        stack_t ss;
        ss.ss_size = 65536;
        ss.ss_sp = malloc(ss.ss_size);
        ss.ss_flags = 0;
        sigaltstack(&ss, nullptr);
        static std::once_flag once;
        std::call_once(once, [] {
            struct sigaction sa, old;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_segv;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
            sigemptyset(&sa.sa_mask);
            if (sigaction(SIGSEGV, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) sigaction(SIGSEGV, &sa, nullptr);
        });
#endif
    }
    return t_sched;
}
// The i-th block to start: in random mode a permutation of [0, n) seeded per launch (a GPU
// gives no order among blocks, so float atomics from different blocks then sum in an order
// that changes from launch to launch, as on the hardware); fwd / rev: index order or reversed.
// The permutation: invertible steps on k-bit words (odd multiply, xor-shift, add), walked
// until the value falls below n (a bijection on [0, 2^k) restricted by cycle walking).
static uint64_t block_at(const Grid *gr, uint64_t i) {
    const uint64_t n = gr->nblocks;
    if (g_sched_mode == 1 || n < 2) return i;
    if (g_sched_mode == 2) return n - 1 - i;
    int k = 1;
    while (k < 64 && (1ull << k) < n) k++;
    const uint64_t mask = k == 64 ? ~0ull : (1ull << k) - 1;
    const int sh = k / 2 > 0 ? k / 2 : 1;
    uint64_t x = i;
    do {
        for (int r = 0; r < 3; r++) {
            const uint64_t key = mix64(gr->salt + (uint64_t)r);
            x = (x * (key | 1)) & mask;
            x ^= x >> sh;
            x = (x + (key >> 17)) & mask;
        }
    } while (x >= n);
    return x;
}

static void run_blocks(Grid *gr) {
    Sched *s = sched_here();
    uint64_t i;
    while (!gr->abort.load(std::memory_order_relaxed) && (i = gr->next.fetch_add(1)) < gr->nblocks)
        if (!run_block(s, gr, block_at(gr, i))) gr->abort = 1;
}

// Executor threads beyond the calling one: persistent, woken per grid.
namespace {
struct Pool {
    std::mutex m;
    std::condition_variable cv, done;
    Grid *grid = nullptr;
    unsigned gen = 0;
    int busy = 0, nthreads = 0;
};
Pool *g_pool;
int g_threads = 1;
std::once_flag g_init_once;
void worker(Pool *p) {
    unsigned seen = 0;
    for (;;) {
        Grid *gr;
        {
            std::unique_lock<std::mutex> l(p->m);
            p->cv.wait(l, [&] { return p->gen != seen; });
            seen = p->gen;
            gr = p->grid;
        }
        run_blocks(gr);
        std::lock_guard<std::mutex> l(p->m);
        if (--p->busy == 0) p->done.notify_all();
    }
}
void init_once() {
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    const char *e = getenv("CUSIM_STACK_KB");
    size_t kb = e ? (size_t)atol(e) : 256;
    if (kb < 16) kb = 16;
    g_stack_bytes = (kb * 1024 + g_page - 1) / g_page * g_page;
    if ((e = getenv("CUSIM_SEED"))) g_seed = mix64(strtoull(e, nullptr, 0) + 1);
    if ((e = getenv("CUSIM_SCHED"))) g_sched_mode = !strcmp(e, "fwd") ? 1 : !strcmp(e, "rev") ? 2 : 0;
    unsigned hw = std::thread::hardware_concurrency();
    g_threads = hw >= 2 ? 2 : 1;
    if ((e = getenv("CUSIM_THREADS"))) g_threads = atoi(e) < 1 ? 1 : (atoi(e) > 64 ? 64 : atoi(e));
    if (g_threads > 1) {
        g_pool = new Pool(); // never destroyed: the workers sleep until the process exits
        g_pool->nthreads = g_threads - 1;
        for (int i = 0; i < g_pool->nthreads; i++) std::thread(worker, g_pool).detach();
    }
}
} // namespace

bool cusim_launch_config_ok(dim3 g, dim3 b, size_t smem, const void *fn, const char *kname) {
    const uint64_t nt = (uint64_t)b.x * b.y * b.z;
    if (b.x < 1 || b.y < 1 || b.z < 1 || b.x > 1024 || b.y > 1024 || b.z > 64 || nt > 1024 || g.x < 1 || g.y < 1 ||
        g.z < 1 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        cusim_set_last_error(cudaErrorInvalidConfiguration);
        cusim_fault("launch of %s: invalid configuration grid (%u,%u,%u) block (%u,%u,%u)", kname, g.x, g.y, g.z, b.x,
                    b.y, b.z);
        return false;
    }
    size_t maxdyn = cusim_func_max_dyn_smem(fn);
    if (smem > maxdyn) {
        cusim_set_last_error(cudaErrorInvalidValue);
        cusim_fault("launch of %s: %zu bytes of dynamic shared memory > the kernel's limit %zu (%s)", kname, smem, maxdyn,
                    maxdyn == 49152 ? "default 48 KiB; raise it with cudaFuncSetAttribute(MaxDynamicSharedMemorySize)"
                                    : "cudaFuncAttributeMaxDynamicSharedMemorySize");
        return false;
    }
    return true;
}

void cusim_run_grid(dim3 g, dim3 b, size_t smem, cudaStream_t st, const void *fn, const char *kname,
                    void (*body)(void *), void *ctx) {
    std::call_once(g_init_once, init_once);
    if (cusim_blk) { cusim_fault("kernel %s launched from device code (dynamic parallelism is not simulated)", kname); return; }
    cusim_cur_kernel = kname;
    if (!cusim_launch_config_ok(g, b, smem, fn, kname)) return;
    if (!cusim_stream_ok(st)) {
        cusim_set_last_error(cudaErrorInvalidResourceHandle);
        cusim_fault("launch of %s into stream %p, which is not a live stream", kname, (void *)st);
        return;
    }
    Grid gr;
    gr.g = g; gr.b = b; gr.smem = smem; gr.kname = kname; gr.body = body; gr.ctx = ctx;
    gr.nblocks = (uint64_t)g.x * g.y * g.z;
    static std::atomic<uint64_t> launches{0};
    gr.salt = mix64(g_seed + 0x632BE59BD9B4E019ull * ++launches);
    if (g_pool && gr.nblocks > 1) {
        {
            std::lock_guard<std::mutex> l(g_pool->m);
            g_pool->grid = &gr;
            g_pool->busy = g_pool->nthreads;
            g_pool->gen++;
        }
        g_pool->cv.notify_all();
        run_blocks(&gr);
        std::unique_lock<std::mutex> l(g_pool->m);
        g_pool->done.wait(l, [&] { return g_pool->busy == 0; });
        g_pool->grid = nullptr;
    } else {
        run_blocks(&gr);
    }
}
