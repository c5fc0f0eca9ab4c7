// Mock cuBLAS for the CPU simulation (tests/cudasim/). The symbols kernels/*.cu link against
// (cublas_v2.h maps cublasCreate/Destroy/SetStream/... to the *_v2 names), written from
// NVIDIA's documented semantics (cuBLAS API reference), not from how the kernels call them,
// so that a wrong call fails here as it would on the GPU, or louder:
//  - storage is column-major: element (i, j) of a matrix with leading dimension ld is at
//    i + j*ld; C = alpha op(A) op(B) + beta C with op(A) m x k, op(B) k x n, C m x n;
//    op is N (as stored) or T / C (transpose; C is T for real types).
//  - statuses: a NULL, destroyed or garbage handle -> CUBLAS_STATUS_NOT_INITIALIZED;
//    m, n, k or batchCount < 0, an op other than N/T/C, lda < max(1, m if transa == N else k),
//    ldb < max(1, k if transb == N else n), ldc < max(1, m), alpha or beta NULL
//    -> CUBLAS_STATUS_INVALID_VALUE; a type / compute type / algo combination outside the
//    cublasGemmEx table -> CUBLAS_STATUS_NOT_SUPPORTED.
//  - supported (cublasGemmEx table, real types; scale type CUDA_R_32F: alpha, beta are float):
//    CUBLAS_COMPUTE_32F(_PEDANTIC): A/B 32F -> C 32F; 16BF -> 16BF or 32F; 16F -> 16F or 32F;
//    8I -> 32F. CUBLAS_COMPUTE_32F_FAST_TF32 / _FAST_16BF / _FAST_16F: A/B/C 32F only.
//    Table entries this mock does not compute (complex, 64F, COMPUTE_16F, COMPUTE_32I,
//    emulated) report a SIMFAULT "not implemented by the mock" and return NOT_SUPPORTED.
//    algo: CUBLAS_GEMM_DEFAULT, ALGO0..23, DEFAULT_TENSOR_OP, ALGO0..15_TENSOR_OP.
//  - arithmetic: 16-bit and int8 inputs convert exactly to float; under FAST_TF32 each fp32
//    input is rounded to TF32 (10 explicit mantissa bits, round to nearest, ties away from zero
//    as the GPU's cvt.rna.tf32.f32), under FAST_16BF / FAST_16F to bf16 / fp16 (nearest even);
//    products are summed in double; alpha * sum + beta * C is formed in double and rounded once
//    to float (the GPU's fp32 accumulator), then to a 16-bit C with round-to-nearest-even
//    (fp16 overflows to inf, keeps subnormals). When beta == 0, C is not read (NaN in C does
//    not leak through). Larger products go through OpenBLAS dgemm on the converted inputs.
//  - memory: before anything is touched, each matrix's whole addressed extent
//    ((cols-1)*ld + rows elements, plus |stride| * (batchCount-1) when batched) must lie inside
//    one registered device buffer (cusim_check_range reports a SIMFAULT otherwise) and be
//    aligned to its element size; an output C that shares an element with A or B, or (batched)
//    with another batch's C, is a race on the GPU and is reported as a SIMFAULT too. Any such
//    fault returns CUBLAS_STATUS_EXECUTION_FAILED with C untouched. With CUBLAS_POINTER_MODE_DEVICE alpha / beta must be 4 device bytes.
//  - handles are heap objects with a magic value, tracked in a live set (lookups never read a
//    freed handle); SetStream / SetMathMode / SetWorkspace store their values; all work is
//    synchronous on the calling host thread; every entry point is reentrant.
#include "cusim.h"
#include <cublas_v2.h>
#include <cblas.h>
#include <stdarg.h>
#include <mutex>
#include <set>
#include <vector>

static const uint64_t kMagicLive = 0x434f4d73616c6263ull; // "cblasMOC"
static const uint64_t kMagicDead = 0x444145447361626cull;

struct cublasContext {
    uint64_t magic;
    cudaStream_t stream;
    cublasMath_t math;
    cublasPointerMode_t pmode;
    cublasAtomicsMode_t atomics;
    void *ws;
    size_t ws_bytes;
};

static std::mutex g_mu;
static std::set<const void *> &live() { // never destroyed: handles may outlive static destructors
    static std::set<const void *> *s = new std::set<const void *>();
    return *s;
}

// Runs f(ctx) under the lock when h is a live handle; NOT_INITIALIZED otherwise.
template <typename F> static cublasStatus_t with_handle(cublasHandle_t h, F f) {
    std::lock_guard<std::mutex> l(g_mu);
    if (!h || !live().count(h) || h->magic != kMagicLive) return CUBLAS_STATUS_NOT_INITIALIZED;
    return f(h);
}

// Reports a SIMFAULT (printf-style message; the caller names the cuBLAS function).
static void fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fault(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cusim_fault("%s", buf);
}

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    cublasContext *c = new cublasContext();
    c->magic = kMagicLive;
    c->stream = 0;
    c->math = CUBLAS_DEFAULT_MATH;
    c->pmode = CUBLAS_POINTER_MODE_HOST;
    c->atomics = CUBLAS_ATOMICS_NOT_ALLOWED;
    c->ws = nullptr;
    c->ws_bytes = 0;
    std::lock_guard<std::mutex> l(g_mu);
    live().insert(c);
    *handle = c;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    std::lock_guard<std::mutex> l(g_mu);
    if (!handle || !live().count(handle) || handle->magic != kMagicLive) return CUBLAS_STATUS_NOT_INITIALIZED;
    live().erase(handle);
    handle->magic = kMagicDead;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int *version) {
    return with_handle(handle, [&](cublasContext *) {
        if (!version) return CUBLAS_STATUS_INVALID_VALUE;
        *version = CUBLAS_VERSION;
        return CUBLAS_STATUS_SUCCESS;
    });
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
    return with_handle(handle, [&](cublasContext *c) {
        c->stream = streamId;
        return CUBLAS_STATUS_SUCCESS;
    });
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t *streamId) {
    return with_handle(handle, [&](cublasContext *c) {
        if (!streamId) return CUBLAS_STATUS_INVALID_VALUE;
        *streamId = c->stream;
        return CUBLAS_STATUS_SUCCESS;
    });
}

// The workspace must be device memory (checked like any device range); NULL / 0 resets it.
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace, size_t workspaceSizeInBytes) {
    return with_handle(handle, [&](cublasContext *c) {
        if (workspace && workspaceSizeInBytes) {
            int e0 = cusim_errors;
            cusim_check_range(workspace, workspaceSizeInBytes, "cublasSetWorkspace: workspace");
            if (cusim_errors != e0) return CUBLAS_STATUS_INVALID_VALUE;
        }
        c->ws = workspace;
        c->ws_bytes = workspace ? workspaceSizeInBytes : 0;
        return CUBLAS_STATUS_SUCCESS;
    });
}

cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t *mode) {
    return with_handle(handle, [&](cublasContext *c) {
        if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
        *mode = c->pmode;
        return CUBLAS_STATUS_SUCCESS;
    });
}

cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
    return with_handle(handle, [&](cublasContext *c) {
        if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
        c->pmode = mode;
        return CUBLAS_STATUS_SUCCESS;
    });
}

cublasStatus_t cublasGetAtomicsMode(cublasHandle_t handle, cublasAtomicsMode_t *mode) {
    return with_handle(handle, [&](cublasContext *c) {
        if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
        *mode = c->atomics;
        return CUBLAS_STATUS_SUCCESS;
    });
}

cublasStatus_t cublasSetAtomicsMode(cublasHandle_t handle, cublasAtomicsMode_t mode) {
    return with_handle(handle, [&](cublasContext *c) {
        if (mode != CUBLAS_ATOMICS_NOT_ALLOWED && mode != CUBLAS_ATOMICS_ALLOWED) return CUBLAS_STATUS_INVALID_VALUE;
        c->atomics = mode;
        return CUBLAS_STATUS_SUCCESS;
    });
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode) {
    return with_handle(handle, [&](cublasContext *c) {
        if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
        *mode = c->math;
        return CUBLAS_STATUS_SUCCESS;
    });
}

// Stored only: cublasGemmEx / cublasGemmStridedBatchedEx take their precision from the
// explicit cublasComputeType_t (the math mode steers the legacy cublas<t> routines).
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    return with_handle(handle, [&](cublasContext *c) {
        unsigned base = (unsigned)mode & ~(unsigned)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
        if (base != CUBLAS_DEFAULT_MATH && base != CUBLAS_TENSOR_OP_MATH && base != CUBLAS_PEDANTIC_MATH &&
            base != CUBLAS_TF32_TENSOR_OP_MATH && base != CUBLAS_FP32_EMULATED_BF16X9_MATH &&
            base != CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH)
            return CUBLAS_STATUS_INVALID_VALUE;
        c->math = mode;
        return CUBLAS_STATUS_SUCCESS;
    });
}

const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "<unrecognized>";
}

const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
    }
    return "<unrecognized>";
}

} // extern "C"

// ---- number formats ----------------------------------------------------------------------
static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline float bf16_to_f(uint16_t h) { return u2f((uint32_t)h << 16); }
static inline uint16_t f_to_bf16(float f) { // round to nearest even; NaN stays (quiet) NaN
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
static inline float fp16_to_f(uint16_t h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline uint16_t f_to_fp16(float f) { // libgcc: IEEE round to nearest even
    _Float16 x = (_Float16)f;
    uint16_t h;
    memcpy(&h, &x, 2);
    return h;
}
static inline float round_tf32(float f) { // nearest, ties away from zero (cvt.rna.tf32.f32)
    uint32_t u = f2u(f);
    if ((u & 0x7f800000u) == 0x7f800000u) return f; // inf / NaN unchanged
    return u2f((u + 0x1000u) & 0xffffe000u);
}

enum InRound { IN_EXACT, IN_TF32, IN_BF16, IN_FP16 };

static size_t esize(cudaDataType_t t) {
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16F: case CUDA_R_16BF: return 2;
    case CUDA_R_8I: return 1;
    default: return 0;
    }
}

static inline float load(const void *p, cudaDataType_t t, int64_t i) {
    switch (t) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_16BF: return bf16_to_f(((const uint16_t *)p)[i]);
    case CUDA_R_16F: return fp16_to_f(((const uint16_t *)p)[i]);
    default: return (float)((const int8_t *)p)[i];
    }
}
static inline void store(void *p, cudaDataType_t t, int64_t i, float v) {
    if (t == CUDA_R_32F) ((float *)p)[i] = v;
    else if (t == CUDA_R_16BF) ((uint16_t *)p)[i] = f_to_bf16(v);
    else ((uint16_t *)p)[i] = f_to_fp16(v);
}
static inline double in_round(float v, InRound r) {
    switch (r) {
    case IN_TF32: return round_tf32(v);
    case IN_BF16: return bf16_to_f(f_to_bf16(v));
    case IN_FP16: return fp16_to_f(f_to_fp16(v));
    default: return v;
    }
}

// ---- the type table ----------------------------------------------------------------------
static const char *type_name(cudaDataType_t t) {
    switch (t) {
    case CUDA_R_32F: return "CUDA_R_32F";
    case CUDA_R_16F: return "CUDA_R_16F";
    case CUDA_R_16BF: return "CUDA_R_16BF";
    case CUDA_R_8I: return "CUDA_R_8I";
    case CUDA_R_64F: return "CUDA_R_64F";
    case CUDA_R_32I: return "CUDA_R_32I";
    case CUDA_C_32F: return "CUDA_C_32F";
    case CUDA_C_64F: return "CUDA_C_64F";
    case CUDA_C_8I: return "CUDA_C_8I";
    default: return "another cudaDataType";
    }
}

// 1 = computed by the mock (sets *r), 0 = in NVIDIA's table but not computed here, -1 = not in
// the table (CUBLAS_STATUS_NOT_SUPPORTED).
static int type_combo(cudaDataType_t at, cudaDataType_t bt, cudaDataType_t ct, cublasComputeType_t cm,
                      InRound *r) {
    *r = IN_EXACT;
    if (at != bt) return -1;
    switch (cm) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
        if (at == CUDA_R_32F) return ct == CUDA_R_32F ? 1 : -1;
        if (at == CUDA_R_16BF) return ct == CUDA_R_16BF || ct == CUDA_R_32F ? 1 : -1;
        if (at == CUDA_R_16F) return ct == CUDA_R_16F || ct == CUDA_R_32F ? 1 : -1;
        if (at == CUDA_R_8I) return ct == CUDA_R_32F ? 1 : -1;
        if (at == CUDA_C_8I || at == CUDA_C_32F) return ct == CUDA_C_32F ? 0 : -1;
        return -1;
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_TF32:
        *r = cm == CUBLAS_COMPUTE_32F_FAST_TF32 ? IN_TF32 : cm == CUBLAS_COMPUTE_32F_FAST_16BF ? IN_BF16 : IN_FP16;
        if (at == CUDA_R_32F) return ct == CUDA_R_32F ? 1 : -1;
        if (at == CUDA_C_32F) return ct == CUDA_C_32F ? 0 : -1;
        return -1;
    case CUBLAS_COMPUTE_32F_EMULATED_16BFX9:
        return (at == CUDA_R_32F && ct == CUDA_R_32F) || (at == CUDA_C_32F && ct == CUDA_C_32F) ? 0 : -1;
    case CUBLAS_COMPUTE_16F:
    case CUBLAS_COMPUTE_16F_PEDANTIC:
        return at == CUDA_R_16F && ct == CUDA_R_16F ? 0 : -1;
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
    case CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT:
        return (at == CUDA_R_64F && ct == CUDA_R_64F) || (at == CUDA_C_64F && ct == CUDA_C_64F) ? 0 : -1;
    case CUBLAS_COMPUTE_32I:
    case CUBLAS_COMPUTE_32I_PEDANTIC:
        return at == CUDA_R_8I && ct == CUDA_R_32I ? 0 : -1;
    }
    return -1;
}

static bool algo_ok(cublasGemmAlgo_t a) {
    int v = (int)a;
    return v == CUBLAS_GEMM_DEFAULT || (v >= CUBLAS_GEMM_ALGO0 && v <= CUBLAS_GEMM_ALGO23) ||
           v == CUBLAS_GEMM_DEFAULT_TENSOR_OP || (v >= CUBLAS_GEMM_ALGO0_TENSOR_OP && v <= CUBLAS_GEMM_ALGO15_TENSOR_OP);
}

// ---- address ranges ----------------------------------------------------------------------
// A stored matrix of `rows` x `cols` elements (column-major, leading dimension ld), batch b
// at p + b * stride elements.
struct Mat {
    const char *name;
    const void *p;
    cudaDataType_t t;
    int64_t rows, cols, ld, stride;
};

// Checks that every batch's extent lies in one registered buffer; false after a SIMFAULT.
static bool check_extent(const char *fn, const Mat &M, int64_t batch) {
    if (M.rows == 0 || M.cols == 0 || batch == 0) return true;
    const __int128 es = (__int128)esize(M.t);
    const __int128 one = (__int128)(M.cols - 1) * M.ld + M.rows; // elements of one matrix
    const __int128 last = (__int128)(batch - 1) * M.stride;
    const __int128 lo = last < 0 ? last : 0, hi = (last > 0 ? last : 0) + one;
    const __int128 bytes = (hi - lo) * es;
    char what[256];
    snprintf(what, sizeof what, "%s: %s (%s, %lld x %lld stored, ld %lld, stride %lld, %lld batches)", fn, M.name,
             type_name(M.t), (long long)M.rows, (long long)M.cols, (long long)M.ld, (long long)M.stride,
             (long long)batch);
    if ((uintptr_t)M.p % (uintptr_t)es) { // the GPU faults on a misaligned element access
        fault("%s: %p is not aligned to its %d-byte elements", what, M.p, (int)es);
        return false;
    }
    if (bytes > ((__int128)1 << 60)) {
        fault("%s: the extent overflows", what);
        return false;
    }
    int e0 = cusim_errors;
    cusim_check_range((const void *)((intptr_t)M.p + (intptr_t)(lo * es)), (size_t)bytes, what);
    return cusim_errors == e0;
}

static inline int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Columns of a matrix in bytes: column j is [base + j*pitch, base + j*pitch + len).
struct Cols { int64_t base, len, pitch, n; };
static Cols cols_of(const Mat &M, int64_t b) {
    int64_t es = (int64_t)esize(M.t);
    return Cols{(int64_t)(intptr_t)M.p + b * M.stride * es, M.rows * es, M.ld * es, M.cols};
}
static int64_t cols_end(const Cols &c) { return c.base + (c.n - 1) * c.pitch + c.len; }

// Whether two column sets share a byte (exact, O(columns of the narrower one)).
static bool cols_overlap(Cols x, Cols y) {
    if (!x.n || !y.n || !x.len || !y.len) return false;
    if (cols_end(x) <= y.base || cols_end(y) <= x.base) return false;
    if (x.n > y.n) std::swap(x, y);
    for (int64_t j = 0; j < x.n; j++) {
        int64_t s = x.base + j * x.pitch - y.base; // x's column j relative to y
        // y's column c meets [s, s + x.len) iff c*pitch < s + x.len and c*pitch + y.len > s
        int64_t chi = floordiv(s + x.len - 1, y.pitch), clo = floordiv(s - y.len, y.pitch) + 1;
        if (clo < 0) clo = 0;
        if (chi > y.n - 1) chi = y.n - 1;
        if (clo <= chi) return true;
    }
    return false;
}

// The whole span (all batches) of M in bytes, for a quick disjointness test.
static void span(const Mat &M, int64_t batch, int64_t *lo, int64_t *hi) {
    Cols c0 = cols_of(M, 0), cl = cols_of(M, batch - 1);
    *lo = c0.base < cl.base ? c0.base : cl.base;
    *hi = cols_end(c0) > cols_end(cl) ? cols_end(c0) : cols_end(cl);
}

// The GPU runs all batches' tiles at once: C must share no element with A, B or another C.
static bool check_races(const char *fn, const Mat &A, const Mat &B, const Mat &C, int64_t batch, bool use_ab) {
    for (int64_t b = 1; b < batch; b++)
        if (cols_overlap(cols_of(C, 0), cols_of(C, b))) {
            fault("%s: output C of batch 0 and batch %lld share elements (ldc %lld, strideC %lld): the batches race",
                  fn, (long long)b, (long long)C.ld, (long long)C.stride);
            return false;
        }
    if (!use_ab) return true;
    int64_t clo, chi;
    span(C, batch, &clo, &chi);
    for (const Mat *X : {&A, &B}) {
        int64_t xlo, xhi;
        span(*X, batch, &xlo, &xhi);
        if (xhi <= clo || chi <= xlo) continue;
        for (int64_t bc = 0; bc < batch; bc++)
            for (int64_t bx = 0; bx < batch; bx++)
                if (cols_overlap(cols_of(C, bc), cols_of(*X, bx))) {
                    fault("%s: output C (batch %lld) and input %s (batch %lld) share elements: C is written while %s "
                          "is read",
                          fn, (long long)bc, X->name, (long long)bx, X->name);
                    return false;
                }
    }
    return true;
}

// ---- arithmetic --------------------------------------------------------------------------
// dst[o*k + p] = element (o, p) of an outer x k operand: stored at o*ld + p when p_contig,
// else at p*ld + o.
static void pack(double *dst, const void *src, cudaDataType_t t, int64_t outer, int64_t k, int64_t ld, bool p_contig,
                 InRound r) {
    if (p_contig) {
        for (int64_t o = 0; o < outer; o++)
            for (int64_t p = 0; p < k; p++) dst[o * k + p] = in_round(load(src, t, o * ld + p), r);
    } else {
        for (int64_t p = 0; p < k; p++)
            for (int64_t o = 0; o < outer; o++) dst[o * k + p] = in_round(load(src, t, p * ld + o), r);
    }
}

static inline double dot(const double *a, const double *b, int64_t k) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t p = 0;
    for (; p + 4 <= k; p += 4) {
        s0 += a[p] * b[p];
        s1 += a[p + 1] * b[p + 1];
        s2 += a[p + 2] * b[p + 2];
        s3 += a[p + 3] * b[p + 3];
    }
    for (; p < k; p++) s0 += a[p] * b[p];
    return (s0 + s1) + (s2 + s3);
}

struct Gemm {
    const char *fn;
    bool ta, tb; // op(A), op(B) transpose
    int64_t m, n, k;
    float alpha, beta;
    InRound r;
};

// One batch: C(i, j) = alpha * sum_p op(A)(i, p) op(B)(p, j) + beta * C(i, j).
static void gemm_one(const Gemm &g, const void *A, cudaDataType_t at, int64_t lda, const void *B, int64_t ldb, void *C,
                     cudaDataType_t ct, int64_t ldc) {
    thread_local std::vector<double> pa, pb, d;
    const int64_t m = g.m, n = g.n, k = g.k;
    d.assign((size_t)(m * n), 0.0); // D(i, j) at j*m + i
    if (k > 0) {
        pa.resize((size_t)(m * k));
        pb.resize((size_t)(n * k));
        pack(pa.data(), A, at, m, k, lda, g.ta, g.r); // op(A)(i, p): A[p*lda + i] (N) or A[i*lda + p] (T)
        pack(pb.data(), B, at, n, k, ldb, !g.tb, g.r); // op(B)(p, j): B[j*ldb + p] (N) or B[p*ldb + j] (T)
        if ((double)m * n * k >= 262144.0 && m * k < INT32_MAX && n * k < INT32_MAX && m * n < INT32_MAX)
            cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0, pa.data(), (int)k,
                        pb.data(), (int)k, 0.0, d.data(), (int)m);
        else
            for (int64_t j = 0; j < n; j++)
                for (int64_t i = 0; i < m; i++) d[j * m + i] = dot(&pa[i * k], &pb[j * k], k);
    }
    const bool read_c = g.beta != 0.f; // beta == 0: C need not be a valid input
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            double v = (double)g.alpha * d[j * m + i];
            if (read_c) v += (double)g.beta * load(C, ct, j * ldc + i);
            store(C, ct, j * ldc + i, (float)v);
        }
    if (d.capacity() > ((size_t)1 << 23)) { // keep at most ~64 MiB per thread between calls
        std::vector<double>().swap(d);
        std::vector<double>().swap(pa);
        std::vector<double>().swap(pb);
    }
}

static bool op_ok(cublasOperation_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T || o == CUBLAS_OP_C; }
static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

static cublasStatus_t gemm_impl(const char *fn, cublasHandle_t handle, cublasOperation_t transa,
                                cublasOperation_t transb, int m, int n, int k, const void *alpha, const void *A,
                                cudaDataType_t at, int lda, long long sA, const void *B, cudaDataType_t bt, int ldb,
                                long long sB, const void *beta, void *C, cudaDataType_t ct, int ldc, long long sC,
                                int batch, cublasComputeType_t cm, cublasGemmAlgo_t algo) {
    cublasPointerMode_t pmode = CUBLAS_POINTER_MODE_HOST;
    cublasStatus_t s = with_handle(handle, [&](cublasContext *c) {
        pmode = c->pmode;
        return CUBLAS_STATUS_SUCCESS;
    });
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    if (lda < max1(ta ? k : m) || ldb < max1(tb ? n : k) || ldc < max1(m)) return CUBLAS_STATUS_INVALID_VALUE;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    InRound r;
    int combo = type_combo(at, bt, ct, cm, &r);
    if (combo == 0)
        fault("%s: A/B %s, C %s, compute type %d is in cuBLAS's table but not implemented by the mock (tests/cudasim/"
              "cublas.cpp)",
              fn, type_name(at), type_name(ct), (int)cm);
    if (combo != 1 || !algo_ok(algo)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    if (cusim_capture_count) { // a capturing stream records the call (cusim_defer); host-mode scalars are read now
        cudaStream_t st = 0;
        with_handle(handle, [&](cublasContext *c) { st = c->stream; return CUBLAS_STATUS_SUCCESS; });
        const bool host = pmode == CUBLAS_POINTER_MODE_HOST;
        float ha = 0.f, hb = 0.f;
        if (host) { memcpy(&ha, alpha, 4); memcpy(&hb, beta, 4); }
        auto f = [=]() {
            float a2 = ha, b2 = hb;
            gemm_impl(fn, handle, transa, transb, m, n, k, host ? &a2 : alpha, A, at, lda, sA, B, bt, ldb, sB,
                      host ? &b2 : beta, C, ct, ldc, sC, batch, cm, algo);
        };
        cudaError_t ce = cudaSuccess;
        if (cusim_defer(st, fn, f, {A, B, C, host ? nullptr : alpha, host ? nullptr : beta}, &ce))
            return ce == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
    }

    float al, be;
    if (pmode == CUBLAS_POINTER_MODE_DEVICE) {
        int e0 = cusim_errors;
        cusim_check_range(alpha, 4, "cublas: alpha (CUBLAS_POINTER_MODE_DEVICE)");
        cusim_check_range(beta, 4, "cublas: beta (CUBLAS_POINTER_MODE_DEVICE)");
        if (cusim_errors != e0) return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    memcpy(&al, alpha, 4);
    memcpy(&be, beta, 4);

    // stored shapes: A is m x k (N) or k x m (T); B is k x n (N) or n x k (T); C is m x n
    Mat MA{"A", A, at, ta ? k : m, ta ? m : k, lda, sA}, MB{"B", B, bt, tb ? n : k, tb ? k : n, ldb, sB},
        MC{"C", C, ct, m, n, ldc, sC};
    const bool use_ab = k > 0; // k == 0: C = beta C, A and B are not addressed
    if ((use_ab && (!check_extent(fn, MA, batch) || !check_extent(fn, MB, batch))) || !check_extent(fn, MC, batch))
        return CUBLAS_STATUS_EXECUTION_FAILED;
    if (!check_races(fn, MA, MB, MC, batch, use_ab)) return CUBLAS_STATUS_EXECUTION_FAILED;

    Gemm g{fn, ta, tb, m, n, k, al, be, r};
    const int64_t ea = (int64_t)esize(at), ec = (int64_t)esize(ct);
    for (int64_t b = 0; b < batch; b++)
        gemm_one(g, (const char *)A + b * sA * ea, at, lda, (const char *)B + b * sB * ea, ldb,
                 (char *)C + b * sC * ec, ct, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" {

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    return gemm_impl("cublasGemmEx", handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta,
                     C, Ctype, ldc, 0, 1, computeType, algo);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long int strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long int strideB, const void *beta, void *C, cudaDataType Ctype,
                                          int ldc, long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    return gemm_impl("cublasGemmStridedBatchedEx", handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B,
                     Btype, ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType, algo);
}

} // extern "C"
