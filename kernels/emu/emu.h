// Internal header of the host emulation of kernels/kernels_cuda.h (kernels/emu/*.c).
//
// What it is: every cd_cuda_* symbol implemented on the CPU. "Device" memory is host memory
// behind handles the host cannot dereference (a host read or write of a device pointer faults,
// as on a GPU; emu_runtime.c), filled with 0xFF bytes (NaN, so reading memory nobody wrote shows
// up as NaN as uninitialised GPU memory would); each op checks that its pointers lie inside
// emulated device memory, tracks which stream accessed what since the last synchronisation
// (an unsynchronised cross-stream access is a "stream race" error), mirrors the .cu op's
// preconditions (records the same refusal with cd_err and the sticky flag of cd_cuda_status()),
// and runs the CPU reference of
// kernels/kernels.h. 16-bit storage (bf16, or IEEE fp16 after cd_cuda_set_fp16(1)) is converted
// exactly, the math runs in fp32 and outputs are rounded to the 16-bit format (round to nearest
// even; fp16 overflows to +-inf and keeps subnormals) where the .cu op rounds them; TF32 mode
// rounds fp32 GEMM and convolution inputs to TF32 (10-bit mantissa) first.
//
// What it is not: a GPU test. It checks the GPU-side walk of model/*_cuda.c (arena planning,
// weight maps, dispatch, precision plumbing, error paths) in `make test` on a machine without a
// GPU. The kernels themselves are held against the CPU by tests/test_kernels_cuda.c on a GPU.
// Built only into $(BUILD)/emu (see the Makefile); never part of the real library.
#ifndef CD_KERNELS_EMU_H
#define CD_KERNELS_EMU_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
#include "core/err.h"
#include "core/half.h"

// Records a failure as kernels/cuda_runtime.cu's cd_cuda_fail does (stderr, cd_err, sticky
// flag). Always returns -1.
int emu_fail(const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// A precondition of an op, as cd_cuda_require in kernels/cuda_common.h: 0, or -1 recorded.
#define EMU_REQUIRE(c, msg) ((c) ? 0 : emu_fail(__FILE__, __LINE__, #c, "%s", (msg)))

// ---- device memory: handles, the pointer check, the stream-race tracker --------------------------
// (the scheme: top of emu_runtime.c) A device pointer the caller holds is a HANDLE: an address in
// a reserved range that is never accessible (a host dereference faults, as on a GPU); the bytes
// live at emu_real(handle) = handle + a fixed offset. Ops translate their pointers after checking
// them: EMU_DEV / EMU_OPT do it in place (the pointer argument must be an lvalue: the op's own
// parameter), EMU_XLATE after a check done by a helper function.
extern char *emu_va;      // start of the handle range
extern size_t emu_half;   // its size; the bytes of handle h live at h + emu_half
// The host address of device pointer p (a handle, or already a host address: idempotent).
static inline void *emu_real(const void *p) {
    const char *c = p;
    return (void *)(c >= emu_va && c < emu_va + emu_half ? c + emu_half : c);
}
#define EMU_XLATE(p) ((p) = (__typeof__(p))emu_real(p))

// How an op uses a pointer: reads it, or writes it (a write may also read: accumulate, in place).
#define EMU_R 1
#define EMU_W 2
// 0 when [p, p + bytes) lies inside one emulated device allocation (p may be NULL only when
// bytes == 0; a handle or its host address); else records "<op>: <arg> ... is not device memory"
// and returns -1. With a role (EMU_R / EMU_W; 0: no tracking) it also runs the stream-race
// tracker for an access by `stream` (records "stream race: ..." and returns -1 on a race).
int emu_dev_access(const void *p, size_t bytes, const char *op, const char *arg, void *stream, int role);
static inline int emu_dev_check(const void *p, size_t bytes, const char *op, const char *arg) {
    return emu_dev_access(p, bytes, op, arg, NULL, 0);
}
// 1 when p points into emulated device memory (a handle or its host address).
int emu_is_dev(const void *p);
// The role from the pointer's type: a const pointer is an input, any other an output.
#define EMU_ROLE(p)                                                                                  \
    _Generic((p), const float *: EMU_R, const uint16_t *: EMU_R, const void *: EMU_R,               \
             const int32_t *: EMU_R, const uint8_t *: EMU_R, default: EMU_W)
// Check, track (on the variable `stream` in scope: the op's stream argument) and translate p.
#define EMU_ACCESS(op, p, bytes, role)                                                               \
    (emu_dev_access((p), (size_t)(bytes), (op), #p, stream, (role)) ? -1 : (EMU_XLATE(p), 0))
#define EMU_DEV(op, p, bytes) EMU_ACCESS(op, p, bytes, EMU_ROLE(p))
// The same for an optional pointer (NULL passes).
#define EMU_OPT(op, p, bytes) ((p) ? EMU_DEV(op, p, bytes) : 0)
// The stream-race tracker's side of a synchronisation: the accesses of `stream` (all streams:
// all = 1) are complete. Ops that synchronise their stream (mse, sumsq, the copies to and from
// the host) call it as the .cu does.
void emu_retire(void *stream, int all);

// The stream's scratch as the .cu op asks for it (same size), poisoned with NaN bytes:
// whatever a caller kept there is gone, as on the GPU. NULL on failure (recorded).
void *emu_scratch_use(void *stream, size_t bytes);
// cuDNN's shape checks (CUDNN_STATUS_BAD_PARAM): 0 or -1 recorded.
int emu_conv_args_ok(const char *op, int n, int cin, int h, int w, int cout, int k, int s, int p);
// GroupNorm forward's precondition, scratch and optional-pointer checks (fp32 and 16-bit); the
// caller translates mean, rstd, g, b afterwards.
int emu_gn_fwd_prep(const char *op, float *mean, float *rstd, const float *g, const float *b, int n, int c, int hw,
                    int groups, void *stream);
// Pointer checks of an attention forward: out, q [B,Nq,H*D]; k, v [B,Nk,H*D] (element sizes
// oes, ies bytes); lse [B,H,Nq] fp32, optional. out may be q (each query tile is read before
// its rows are written) but must not overlap k or v (read by every query tile). out and lse are
// written (out_role EMU_W) or, by a backward, read (EMU_R). The caller translates (EMU_XLATE)
// the pointers afterwards.
int emu_attn_fwd_ptrs(const char *op, const void *out, size_t oes, const float *lse, const void *q, const void *k,
                      const void *v, size_t ies, int B, int H, int Nq, int Nk, int D, void *stream, int out_role);
#define F4(n) ((size_t)(n) * sizeof(float))
#define B2(n) ((size_t)(n) * sizeof(uint16_t))

// -1 (recorded: "output and input overlap") when [a, a+an) and [b, b+bn) overlap: for ops
// whose GPU kernel reads other elements than the one it writes (GEMMs, convolutions,
// transposes, attention), where an overlap races or reads clobbered data on the GPU.
int emu_no_overlap(const char *op, const void *a, size_t an, const void *b, size_t bn);

// Host scratch for widened copies inside one op (plain malloc, aborts on OOM; free with free()).
float *emu_tmp(int64_t n);

// ---- 16-bit and tf32 rounding, bit-exact with the device conversions ------------------------
// The process's 16-bit storage format (cd_cuda_set_fp16, emu_runtime.c): 0 bf16, 1 IEEE fp16.
// Every 16-bit conversion below follows it, so the ops need no per-format code.
extern int emu_fp16;
// __float2half_rn: round to nearest even, overflow to +-inf, subnormals kept, NaN -> the
// canonical 0x7fff (core/half.h's cd_f32_to_f16 rounds the same way; it keeps NaN payloads).
static inline uint16_t emu_f2h(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    return cd_f32_to_f16(x);
}
// fp32 -> the 16-bit format: __float2bfloat16 (round to nearest even; NaN -> the canonical
// 0x7fff), or emu_f2h in fp16 mode.
static inline uint16_t emu_f2bf(float x) {
    if (emu_fp16) return emu_f2h(x);
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
// The 16-bit format -> fp32 (exact). 0xFFFF (the poison of unwritten memory) is NaN in both.
static inline float emu_bf2f(uint16_t b) {
    if (emu_fp16) return cd_f16_to_f32(b);
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
// x rounded to the 16-bit format (the value a 16-bit store and reload gives).
static inline float emu_bfround(float x) { return emu_bf2f(emu_f2bf(x)); }
// fp32 -> TF32 (1 + 8 + 10 bits), round to nearest even; NaN and Inf pass.
static inline float emu_tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) {
        u += 0xfffu + ((u >> 13) & 1u);
        u &= 0xffffe000u;
    }
    memcpy(&x, &u, 4);
    return x;
}
// Widened copy of n 16-bit values (malloc'd).
float *emu_widen(const uint16_t *x, int64_t n);
// y[i] = x[i] rounded to the 16-bit format
void emu_narrow(uint16_t *y, const float *x, int64_t n);
// A copy of n floats rounded to TF32 when TF32 mode is on; else x itself (do not free then).
const float *emu_tf32_copy(const float *x, int64_t n, float **owned);
// Elements a row-major matrix of `rows` rows of `cols` values with row stride ld spans.
static inline int64_t emu_span(int rows, int cols, int ld) {
    return rows <= 0 || cols <= 0 ? 0 : (int64_t)(rows - 1) * ld + cols;
}
#endif
