// Mock cuDNN for the CPU simulator: the legacy convolution API (cuDNN 9 headers, C linkage, the
// exact signatures of /usr/local/cuda/include/cudnn_*.h) computed on the host. "Device" memory is
// host memory registered with cusim_register; every tensor's full addressed extent (from its dims
// and strides) and the workspace are checked with cusim_check_range before anything is touched.
// Written from NVIDIA's documented semantics, to catch wrong calls:
//   x [N,C,H,W] (any positive strides), w [K, C/groups, R, S] (filter format NCHW = KCRS packed,
//   NHWC = KRSC packed), y [N,K,P,Q], P = (H + 2*pad_h - dil_h*(R-1) - 1)/u + 1 (Q likewise).
//   CROSS_CORRELATION: y[n,k,p,q] = sum_{c,r,s} x[n,c, p*u + r*dil_h - pad_h, q*v + s*dil_w - pad_w]
//                                    * w[k,c,r,s];  CONVOLUTION: the same with w[k,c,R-1-r,S-1-s].
//   Forward y = alpha*conv(x,w) + beta*y; BackwardData dx = alpha*conv^T(dy,w) + beta*dx;
//   BackwardFilter dw = alpha*corr(x,dy) + beta*dw. beta == 0: the output is never read (NaN there
//   is fine). alpha/beta are host float* (FLOAT, HALF, BFLOAT16 data).
// Data configs (the docs' table): FLOAT data + FLOAT compute, HALF + FLOAT (PSEUDO_HALF),
// BFLOAT16 + FLOAT (PSEUDO_BFLOAT16); x, w, y one type. TRUE_HALF (HALF compute) and DOUBLE are
// documented but not simulated here: NOT_SUPPORTED with a message. Anything else: NOT_SUPPORTED.
// Arithmetic (im2col blocks, one code path for every algo): products and sums in double, the sum
// rounded once to float, then the float epilogue alpha*acc + beta*old, then float -> bf16 / fp16
// round-to-nearest-even. The non-deterministic algorithms (BWD_DATA_ALGO_0, BWD_FILTER_ALGO_0
// and _3, which use atomics on a GPU) add their inner sums in float, forward on one call and
// backward on the next, so that two calls differ in the last bits as they may on the hardware. FLOAT data under any math type but CUDNN_FMA_MATH (DEFAULT, TENSOR_OP,
// TENSOR_OP_ALLOW_CONVERSION) has both multiplicands rounded to TF32 (10-bit mantissa, nearest,
// ties away: cvt.rna.tf32) first, the worst case the docs allow on Ampere and later;
// NVIDIA_TF32_OVERRIDE=0 (the documented switch) turns that off.
// Status codes (docs of cudnnConvolutionForward / BackwardData / BackwardFilter):
//   BAD_PARAM: NULL handle/descriptor/data/alpha/beta, a descriptor never created, destroyed or
//   never set, x/w/y data types differ, input channels != filter C * groups, K not a multiple of
//   groups (fwd/filter), y's C != K, y's N != x's N, filter extent > padded input, unknown algo
//   enumerant, workspace smaller than the algo needs (or NULL when it needs bytes); BackwardData
//   and BackwardFilter also for dy's spatial size != the forward output size.
//   NOT_SUPPORTED: Forward with y's spatial size != the forward output size (as the Forward docs
//   list it), non-positive strides, an unsupported data config, an algo that does not support
//   the problem (FWD DIRECT, BWD_FILTER WINOGRAD always; FFT/Winograd need stride 1, dilation 1).
//   EXECUTION_FAILED (mock): a tensor, or a non-NULL workspace of nonzero size (even for an algo
//   that needs none), outside every registered buffer (SIMFAULT printed, nothing touched). A
//   workspace or output that overlaps another operand: SIMFAULT and BAD_PARAM (it would corrupt a
//   real GPU run).
// Workspace per algo (mock, bytes; e = element size): FWD IMPLICIT_PRECOMP_GEMM K*Cg*R*S*4, GEMM
// Cg*R*S*P*Q*e, FFT N*C*(H+2p)*(W+2p)*8, FFT_TILING C*32*32*8, WINOGRAD_NONFUSED K*Cg*64*4, others
// 0; BWD_DATA ALGO_1 K*Cg*R*S*4, FFT / FFT_TILING / WINOGRAD_NONFUSED as forward; BWD_FILTER ALGO_1
// Cg*R*S*P*Q*e, ALGO_3 K*Cg*R*S*4, FFT / FFT_TILING / WINOGRAD_NONFUSED as forward. The workspace
// is overwritten with 0xFF bytes (so an aliased operand shows as NaN).
#include "cusim.h"
#include <atomic>
#include <cudnn.h>
#include <mutex>
#include <set>
#include <vector>

int cusim_cudnn_quiet; // 1: no message on stderr for a non-SUCCESS status (tests of the errors)

struct cudnnContext { cudaStream_t stream; };
struct cudnnTensorStruct {
    int set;
    cudnnDataType_t dt;
    int d[4];      // n, c, h, w
    int64_t st[4]; // element strides
};
struct cudnnFilterStruct {
    int set;
    cudnnDataType_t dt;
    cudnnTensorFormat_t fmt;
    int k, c, r, s;
};
struct cudnnConvolutionStruct {
    int set;
    int ph, pw, u, v, dh, dw;
    cudnnConvolutionMode_t mode;
    cudnnDataType_t ct;
    cudnnMathType_t math;
    int groups;
};

// ---- object registry: a pointer is usable only between its create and destroy ---------------
static std::mutex g_mu;
static std::set<const void *> g_live;
template <typename T> static T *obj_new() {
    T *p = new T();
    std::lock_guard<std::mutex> l(g_mu);
    g_live.insert(p);
    return p;
}
static bool obj_live(const void *p) {
    if (!p) return false;
    std::lock_guard<std::mutex> l(g_mu);
    return g_live.count(p) != 0;
}
template <typename T> static bool obj_free(T *p) {
    {
        std::lock_guard<std::mutex> l(g_mu);
        if (!g_live.erase(p)) return false;
    }
    delete p;
    return true;
}

static cudnnStatus_t fail(cudnnStatus_t s, const char *fn, const char *why) {
    if (!cusim_cudnn_quiet) fprintf(stderr, "cudnn mock: %s: %s: %s\n", fn, cudnnGetErrorString(s), why);
    return s;
}
#define FAIL(s, why) return fail((s), __func__, (why))

static bool dt_valid(cudnnDataType_t t) { return (int)t >= 0 && (int)t <= (int)CUDNN_DATA_COMPLEX_FP64; }
static size_t dt_size(cudnnDataType_t t) {
    switch (t) {
    case CUDNN_DATA_FLOAT: return 4;
    case CUDNN_DATA_DOUBLE: return 8;
    case CUDNN_DATA_HALF: case CUDNN_DATA_BFLOAT16: return 2;
    default: return 0;
    }
}

extern "C" {

// ---- status strings, handle --------------------------------------------------------------
const char *cudnnGetErrorString(cudnnStatus_t s) {
    switch ((int)s) {
#define S_(x) case x: return #x;
    S_(CUDNN_STATUS_SUCCESS) S_(CUDNN_STATUS_NOT_INITIALIZED) S_(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
    S_(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH) S_(CUDNN_STATUS_DEPRECATED) S_(CUDNN_STATUS_LICENSE_ERROR)
    S_(CUDNN_STATUS_RUNTIME_IN_PROGRESS) S_(CUDNN_STATUS_RUNTIME_FP_OVERFLOW)
    S_(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED) S_(CUDNN_STATUS_BAD_PARAM) S_(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
    S_(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER) S_(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED)
    S_(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND) S_(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT)
    S_(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH) S_(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
    S_(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES) S_(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE)
    S_(CUDNN_STATUS_NOT_SUPPORTED) S_(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN) S_(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
    S_(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE) S_(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
    S_(CUDNN_STATUS_NOT_SUPPORTED_PADDING) S_(CUDNN_STATUS_INTERNAL_ERROR)
    S_(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED) S_(CUDNN_STATUS_EXECUTION_FAILED)
#undef S_
    default: return "CUDNN_STATUS_UNKNOWN";
    }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) {
    if (!handle) FAIL(CUDNN_STATUS_BAD_PARAM, "handle is NULL");
    *handle = obj_new<cudnnContext>();
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
    if (!obj_free(handle)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live handle");
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
    if (!obj_live(handle)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live handle");
    handle->stream = streamId;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t *streamId) {
    if (!obj_live(handle) || !streamId) FAIL(CUDNN_STATUS_BAD_PARAM, "bad handle or NULL streamId");
    *streamId = handle->stream;
    return CUDNN_STATUS_SUCCESS;
}

// ---- tensor descriptors ------------------------------------------------------------------
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *tensorDesc) {
    if (!tensorDesc) FAIL(CUDNN_STATUS_BAD_PARAM, "NULL");
    *tensorDesc = obj_new<cudnnTensorStruct>();
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc) {
    if (!tensorDesc) return CUDNN_STATUS_SUCCESS; // documented: NULL is a no-op
    if (!obj_free(tensorDesc)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live tensor descriptor");
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t d, cudnnDataType_t dataType, int n, int c,
                                           int h, int w, int nStride, int cStride, int hStride, int wStride) {
    if (!obj_live(d)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live tensor descriptor");
    if (!dt_valid(dataType)) FAIL(CUDNN_STATUS_BAD_PARAM, "invalid dataType");
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) FAIL(CUDNN_STATUS_BAD_PARAM, "a dimension <= 0");
    if ((int64_t)n * c * h * w > ((int64_t)1 << 31)) FAIL(CUDNN_STATUS_NOT_SUPPORTED, "more than 2 Gi elements");
    d->dt = dataType;
    d->d[0] = n; d->d[1] = c; d->d[2] = h; d->d[3] = w;
    d->st[0] = nStride; d->st[1] = cStride; d->st[2] = hStride; d->st[3] = wStride;
    d->set = 1;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                         cudnnDataType_t dataType, int n, int c, int h, int w) {
    if (!obj_live(d)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live tensor descriptor");
    if (format == CUDNN_TENSOR_NCHW_VECT_C) FAIL(CUDNN_STATUS_NOT_SUPPORTED, "NCHW_VECT_C is not simulated");
    if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC) FAIL(CUDNN_STATUS_BAD_PARAM, "invalid format");
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) FAIL(CUDNN_STATUS_BAD_PARAM, "a dimension <= 0");
    if (format == CUDNN_TENSOR_NCHW)
        return cudnnSetTensor4dDescriptorEx(d, dataType, n, c, h, w, c * h * w, h * w, w, 1);
    return cudnnSetTensor4dDescriptorEx(d, dataType, n, c, h, w, h * w * c, 1, w * c, c);
}
cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t d, cudnnDataType_t *dataType, int *n,
                                         int *c, int *h, int *w, int *nStride, int *cStride, int *hStride,
                                         int *wStride) {
    if (!obj_live(d) || !d->set) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live, set tensor descriptor");
    *dataType = d->dt;
    *n = d->d[0]; *c = d->d[1]; *h = d->d[2]; *w = d->d[3];
    *nStride = (int)d->st[0]; *cStride = (int)d->st[1]; *hStride = (int)d->st[2]; *wStride = (int)d->st[3];
    return CUDNN_STATUS_SUCCESS;
}

// ---- filter descriptors ------------------------------------------------------------------
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *filterDesc) {
    if (!filterDesc) FAIL(CUDNN_STATUS_BAD_PARAM, "NULL");
    *filterDesc = obj_new<cudnnFilterStruct>();
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc) {
    if (!filterDesc) return CUDNN_STATUS_SUCCESS;
    if (!obj_free(filterDesc)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live filter descriptor");
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t f, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
    if (!obj_live(f)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live filter descriptor");
    if (!dt_valid(dataType)) FAIL(CUDNN_STATUS_BAD_PARAM, "invalid dataType");
    if (format == CUDNN_TENSOR_NCHW_VECT_C) FAIL(CUDNN_STATUS_NOT_SUPPORTED, "NCHW_VECT_C is not simulated");
    if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC) FAIL(CUDNN_STATUS_BAD_PARAM, "invalid format");
    if (k <= 0 || c <= 0 || h <= 0 || w <= 0) FAIL(CUDNN_STATUS_BAD_PARAM, "a dimension <= 0");
    f->dt = dataType; f->fmt = format;
    f->k = k; f->c = c; f->r = h; f->s = w;
    f->set = 1;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetFilter4dDescriptor(const cudnnFilterDescriptor_t f, cudnnDataType_t *dataType,
                                         cudnnTensorFormat_t *format, int *k, int *c, int *h, int *w) {
    if (!obj_live(f) || !f->set) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live, set filter descriptor");
    *dataType = f->dt; *format = f->fmt;
    *k = f->k; *c = f->c; *h = f->r; *w = f->s;
    return CUDNN_STATUS_SUCCESS;
}

// ---- convolution descriptors -------------------------------------------------------------
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *convDesc) {
    if (!convDesc) FAIL(CUDNN_STATUS_BAD_PARAM, "NULL");
    cudnnConvolutionStruct *c = obj_new<cudnnConvolutionStruct>();
    c->math = CUDNN_DEFAULT_MATH; // documented defaults
    c->groups = 1;
    *convDesc = c;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc) {
    if (!convDesc) return CUDNN_STATUS_SUCCESS;
    if (!obj_free(convDesc)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live convolution descriptor");
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t cd, int pad_h, int pad_w, int u,
                                              int v, int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType) {
    if (!obj_live(cd)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live convolution descriptor");
    if (pad_h < 0 || pad_w < 0) FAIL(CUDNN_STATUS_BAD_PARAM, "negative padding");
    if (u <= 0 || v <= 0) FAIL(CUDNN_STATUS_BAD_PARAM, "stride <= 0");
    if (dilation_h <= 0 || dilation_w <= 0) FAIL(CUDNN_STATUS_BAD_PARAM, "dilation <= 0");
    if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) FAIL(CUDNN_STATUS_BAD_PARAM, "invalid mode");
    if (!dt_valid(computeType)) FAIL(CUDNN_STATUS_BAD_PARAM, "invalid computeType");
    cd->ph = pad_h; cd->pw = pad_w; cd->u = u; cd->v = v; cd->dh = dilation_h; cd->dw = dilation_w;
    cd->mode = mode; cd->ct = computeType;
    cd->set = 1;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dDescriptor(const cudnnConvolutionDescriptor_t cd, int *pad_h, int *pad_w,
                                              int *u, int *v, int *dilation_h, int *dilation_w,
                                              cudnnConvolutionMode_t *mode, cudnnDataType_t *computeType) {
    if (!obj_live(cd) || !cd->set) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live, set convolution descriptor");
    *pad_h = cd->ph; *pad_w = cd->pw; *u = cd->u; *v = cd->v; *dilation_h = cd->dh; *dilation_w = cd->dw;
    *mode = cd->mode; *computeType = cd->ct;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t cd, cudnnMathType_t mathType) {
    if (!obj_live(cd)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live convolution descriptor");
    if ((int)mathType < (int)CUDNN_DEFAULT_MATH || (int)mathType > (int)CUDNN_FMA_MATH)
        FAIL(CUDNN_STATUS_BAD_PARAM, "invalid math type");
    cd->math = mathType;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t cd, cudnnMathType_t *mathType) {
    if (!obj_live(cd) || !mathType) FAIL(CUDNN_STATUS_BAD_PARAM, "bad descriptor or NULL");
    *mathType = cd->math;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t cd, int groupCount) {
    if (!obj_live(cd)) FAIL(CUDNN_STATUS_BAD_PARAM, "not a live convolution descriptor");
    if (groupCount <= 0) FAIL(CUDNN_STATUS_BAD_PARAM, "groupCount <= 0");
    cd->groups = groupCount;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t cd, int *groupCount) {
    if (!obj_live(cd) || !groupCount) FAIL(CUDNN_STATUS_BAD_PARAM, "bad descriptor or NULL");
    *groupCount = cd->groups;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cd,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
                                                    int *n, int *c, int *h, int *wo) {
    if (!obj_live(cd) || !cd->set || !obj_live(x) || !x->set || !obj_live(w) || !w->set)
        FAIL(CUDNN_STATUS_BAD_PARAM, "a descriptor is not live or not set");
    if (x->d[1] != w->c * cd->groups) FAIL(CUDNN_STATUS_BAD_PARAM, "input channels != filter C * groups");
    int eh = cd->dh * (w->r - 1) + 1, ew = cd->dw * (w->s - 1) + 1;
    if (eh > x->d[2] + 2 * cd->ph || ew > x->d[3] + 2 * cd->pw)
        FAIL(CUDNN_STATUS_BAD_PARAM, "filter larger than the padded input");
    *n = x->d[0];
    *c = w->k;
    *h = (x->d[2] + 2 * cd->ph - eh) / cd->u + 1;
    *wo = (x->d[3] + 2 * cd->pw - ew) / cd->v + 1;
    return CUDNN_STATUS_SUCCESS;
}

} // extern "C" (descriptors)

// ---- the convolution problem: validated shapes --------------------------------------------
namespace { // types local to this file (the mocks are linked together)
enum Op { OP_FWD, OP_DATA, OP_FILTER };
struct Prob {
    int N, C, H, W, K, G, Cg, Kg, R, S, P, Q, ph, pw, u, v, dh, dw;
    bool flip;                  // CUDNN_CONVOLUTION: the filter is applied flipped
    bool tf32;                  // FLOAT data, math type other than FMA
    cudnnDataType_t dt;
    size_t esz;
    const cudnnTensorStruct *x, *y;
    const cudnnFilterStruct *w;
    cudnnMathType_t math;
};
} // namespace

// Checks the handle and the descriptors as the docs list it (x = the input-side tensor: x or dx;
// y = the output-side tensor: y or dy). Returns SUCCESS and fills *pb, or the documented status.
static cudnnStatus_t prob_make(const char *fn, Op op, cudnnHandle_t h, const cudnnTensorStruct *x,
                               const cudnnFilterStruct *w, const cudnnConvolutionStruct *cd,
                               const cudnnTensorStruct *y, Prob *pb) {
#define PF(s, why) return fail((s), fn, (why))
    if (!obj_live(h)) PF(CUDNN_STATUS_BAD_PARAM, "handle is NULL or not live");
    if (!obj_live(x) || !obj_live(y) || !obj_live(w) || !obj_live(cd))
        PF(CUDNN_STATUS_BAD_PARAM, "a descriptor is NULL, destroyed or never created");
    if (!x->set || !y->set || !w->set || !cd->set) PF(CUDNN_STATUS_BAD_PARAM, "a descriptor was never set");
    if (x->dt != y->dt || x->dt != w->dt) PF(CUDNN_STATUS_BAD_PARAM, "x, w and y data types differ");
    const cudnnDataType_t dt = x->dt;
    const bool cfg_ok = cd->ct == CUDNN_DATA_FLOAT &&
                        (dt == CUDNN_DATA_FLOAT || dt == CUDNN_DATA_HALF || dt == CUDNN_DATA_BFLOAT16);
    if (!cfg_ok) {
        if ((dt == CUDNN_DATA_HALF && cd->ct == CUDNN_DATA_HALF) || (dt == CUDNN_DATA_DOUBLE && cd->ct == dt))
            PF(CUDNN_STATUS_NOT_SUPPORTED, "TRUE_HALF / DOUBLE configs are documented but not simulated");
        PF(CUDNN_STATUS_NOT_SUPPORTED, "data type / computeType combination not in the supported-config table");
    }
    Prob p{};
    p.G = cd->groups;
    p.N = x->d[0]; p.C = x->d[1]; p.H = x->d[2]; p.W = x->d[3];
    p.K = w->k; p.Cg = w->c; p.R = w->r; p.S = w->s;
    if (p.C != p.Cg * p.G) PF(CUDNN_STATUS_BAD_PARAM, "input feature maps != filter C * groups");
    if (p.K % p.G) PF(op == OP_DATA ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_BAD_PARAM,
                      "output channels not a multiple of the group count");
    if (y->d[1] != p.K) PF(CUDNN_STATUS_BAD_PARAM, "output tensor channels != filter K");
    if (y->d[0] != p.N) PF(CUDNN_STATUS_BAD_PARAM, "input and output batch sizes differ");
    p.ph = cd->ph; p.pw = cd->pw; p.u = cd->u; p.v = cd->v; p.dh = cd->dh; p.dw = cd->dw;
    const int eh = p.dh * (p.R - 1) + 1, ew = p.dw * (p.S - 1) + 1;
    if (eh > p.H + 2 * p.ph || ew > p.W + 2 * p.pw) PF(CUDNN_STATUS_BAD_PARAM, "filter larger than the padded input");
    p.P = (p.H + 2 * p.ph - eh) / p.u + 1;
    p.Q = (p.W + 2 * p.pw - ew) / p.v + 1;
    if (y->d[2] != p.P || y->d[3] != p.Q)
        PF(op == OP_FWD ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_BAD_PARAM,
           "output spatial size != (H + 2*pad - dil*(R-1) - 1)/stride + 1");
    for (int i = 0; i < 4; i++)
        if (x->st[i] <= 0 || y->st[i] <= 0) PF(CUDNN_STATUS_NOT_SUPPORTED, "non-positive tensor stride");
    p.Kg = p.K / p.G;
    p.flip = cd->mode == CUDNN_CONVOLUTION;
    p.dt = dt;
    p.esz = dt_size(dt);
    p.math = cd->math;
    const char *ov = getenv("NVIDIA_TF32_OVERRIDE");
    p.tf32 = dt == CUDNN_DATA_FLOAT && cd->math != CUDNN_FMA_MATH && !(ov && !strcmp(ov, "0"));
    p.x = x; p.y = y; p.w = w;
    *pb = p;
    return CUDNN_STATUS_SUCCESS;
#undef PF
}

// ---- algorithms: support and workspace ----------------------------------------------------
static bool small_stride1(const Prob &p) { return p.u == 1 && p.v == 1 && p.dh == 1 && p.dw == 1; }
static bool wino_shape(const Prob &p, bool only3) {
    return small_stride1(p) && p.R == p.S && (p.R == 3 || (!only3 && p.R == 5));
}
static size_t ws_common(const Prob &p, int kind) { // 0 precomp, 1 gemm, 2 fft, 3 fft tiling, 4 winograd nonfused
    switch (kind) {
    case 0: return (size_t)p.K * p.Cg * p.R * p.S * 4;
    case 1: return (size_t)p.Cg * p.R * p.S * p.P * p.Q * p.esz;
    case 2: return (size_t)p.N * p.C * (p.H + 2 * p.ph) * (p.W + 2 * p.pw) * 8;
    case 3: return (size_t)p.C * 32 * 32 * 8;
    default: return (size_t)p.K * p.Cg * 64 * 4;
    }
}
// Returns SUCCESS with *bytes, BAD_PARAM for an enumerant out of range, NOT_SUPPORTED.
static cudnnStatus_t ws_fwd(const Prob &p, int a, size_t *bytes) {
    *bytes = 0;
    switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return CUDNN_STATUS_SUCCESS;
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: *bytes = ws_common(p, 0); return CUDNN_STATUS_SUCCESS;
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: *bytes = ws_common(p, 1); return CUDNN_STATUS_SUCCESS;
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT:
        *bytes = ws_common(p, 2);
        return small_stride1(p) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING:
        *bytes = ws_common(p, 3);
        return small_stride1(p) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD:
        return wino_shape(p, true) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED:
        *bytes = ws_common(p, 4);
        return wino_shape(p, false) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    default: return CUDNN_STATUS_BAD_PARAM;
    }
}
static cudnnStatus_t ws_data(const Prob &p, int a, size_t *bytes) {
    *bytes = 0;
    switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return CUDNN_STATUS_SUCCESS;
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: *bytes = ws_common(p, 0); return CUDNN_STATUS_SUCCESS;
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT:
        *bytes = ws_common(p, 2);
        return small_stride1(p) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING:
        *bytes = ws_common(p, 3);
        return small_stride1(p) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD:
        return wino_shape(p, true) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED:
        *bytes = ws_common(p, 4);
        return wino_shape(p, false) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    default: return CUDNN_STATUS_BAD_PARAM;
    }
}
static cudnnStatus_t ws_filter(const Prob &p, int a, size_t *bytes) {
    *bytes = 0;
    switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return CUDNN_STATUS_SUCCESS;
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: *bytes = ws_common(p, 1); return CUDNN_STATUS_SUCCESS;
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT:
        *bytes = ws_common(p, 2);
        return small_stride1(p) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: *bytes = ws_common(p, 0); return CUDNN_STATUS_SUCCESS;
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return CUDNN_STATUS_NOT_SUPPORTED; // "not implemented"
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED:
        *bytes = ws_common(p, 4);
        return wino_shape(p, false) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING:
        *bytes = ws_common(p, 3);
        return small_stride1(p) ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    default: return CUDNN_STATUS_BAD_PARAM;
    }
}
typedef cudnnStatus_t (*WsFn)(const Prob &, int, size_t *);
static WsFn ws_fn(Op op) { return op == OP_FWD ? ws_fwd : op == OP_DATA ? ws_data : ws_filter; }

// Heuristic order of the mock (a few approximate algorithms first where they apply, and the
// non-deterministic BWD_DATA_ALGO_0 / BWD_FILTER_ALGO_0 ahead of their deterministic ALGO_1, as
// cuDNN ranks them, so a caller that forgets to filter either is seen in its results;
// unsupported ones last with their status).
static const int k_order_fwd[] = {7, 1, 0, 2, 5, 4, 6, 3};
static const int k_order_data[] = {5, 0, 1, 3, 2, 4};
static const int k_order_filter[] = {0, 1, 3, 5, 2, 6, 4};
static bool nondet(Op op, int a) {
    return (op == OP_DATA && a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0) ||
           (op == OP_FILTER && (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3));
}

// Fills perf entries (any of the three perf structs: same member layout) for the v7 queries.
template <typename PerfT, typename AlgoT>
static cudnnStatus_t heuristics(const char *fn, Op op, cudnnHandle_t h, const cudnnTensorStruct *x,
                                const cudnnFilterStruct *w, const cudnnConvolutionStruct *cd,
                                const cudnnTensorStruct *y, int requested, int *returned, PerfT *perf) {
    if (!returned || !perf) return fail(CUDNN_STATUS_BAD_PARAM, fn, "returnedAlgoCount or perfResults is NULL");
    if (requested <= 0) return fail(CUDNN_STATUS_BAD_PARAM, fn, "requestedAlgoCount <= 0");
    Prob p;
    cudnnStatus_t s = prob_make(fn, op, h, x, w, cd, y, &p);
    if (s != CUDNN_STATUS_SUCCESS && s != CUDNN_STATUS_NOT_SUPPORTED) return s;
    const int *order = op == OP_FWD ? k_order_fwd : op == OP_DATA ? k_order_data : k_order_filter;
    const int count = op == OP_FWD ? 8 : op == OP_DATA ? 6 : 7;
    std::vector<PerfT> ok, bad;
    for (int i = 0; i < count; i++) {
        PerfT e;
        memset(&e, 0, sizeof e);
        size_t bytes = 0;
        e.algo = (AlgoT)order[i];
        e.status = s == CUDNN_STATUS_SUCCESS ? ws_fn(op)(p, order[i], &bytes) : s;
        e.memory = e.status == CUDNN_STATUS_SUCCESS ? bytes : 0;
        e.time = e.status == CUDNN_STATUS_SUCCESS ? 0.01f * (float)(ok.size() + 1) : -1.f;
        e.determinism = nondet(op, order[i]) ? CUDNN_NON_DETERMINISTIC : CUDNN_DETERMINISTIC;
        e.mathType = cd->math; // echoes the descriptor
        (e.status == CUDNN_STATUS_SUCCESS ? ok : bad).push_back(e);
    }
    ok.insert(ok.end(), bad.begin(), bad.end());
    int n = requested < count ? requested : count;
    for (int i = 0; i < n; i++) perf[i] = ok[i];
    *returned = n;
    return CUDNN_STATUS_SUCCESS;
}

// ---- element access ------------------------------------------------------------------------
static inline float ld(const void *b, cudnnDataType_t dt, int64_t i) {
    if (dt == CUDNN_DATA_FLOAT) return ((const float *)b)[i];
    if (dt == CUDNN_DATA_HALF) return __half2float(((const __half *)b)[i]);
    return __bfloat162float(((const __nv_bfloat16 *)b)[i]);
}
static inline void st(void *b, cudnnDataType_t dt, int64_t i, float v) {
    if (dt == CUDNN_DATA_FLOAT) ((float *)b)[i] = v;
    else if (dt == CUDNN_DATA_HALF) ((__half *)b)[i] = __float2half_rn(v);
    else ((__nv_bfloat16 *)b)[i] = __float2bfloat16_rn(v);
}
// TF32: 10 explicit mantissa bits, round to nearest, ties away from zero (cvt.rna.tf32.f32).
static inline float tf32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return f;
    u = (u + 0x1000u) & 0xffffe000u;
    memcpy(&f, &u, 4);
    return f;
}
static int64_t extent(const cudnnTensorStruct *t) {
    int64_t e = 1;
    for (int i = 0; i < 4; i++) e += (int64_t)(t->d[i] - 1) * t->st[i];
    return e;
}
// A tensor (dims, strides) -> packed NCHW float.
static std::vector<float> gather(const cudnnTensorStruct *t, const void *b, bool round32) {
    const int n = t->d[0], c = t->d[1], h = t->d[2], w = t->d[3];
    std::vector<float> out((size_t)n * c * h * w);
    size_t o = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++)
            for (int k = 0; k < h; k++) {
                const int64_t base = i * t->st[0] + j * t->st[1] + k * t->st[2];
                for (int l = 0; l < w; l++) {
                    float v = ld(b, t->dt, base + l * t->st[3]);
                    out[o++] = round32 ? tf32(v) : v;
                }
            }
    return out;
}
// Index of filter element (k, c, r, s) in its buffer (KCRS or KRSC packed).
static inline int64_t fidx(const Prob &p, int k, int c, int r, int s) {
    if (p.w->fmt == CUDNN_TENSOR_NHWC) return (((int64_t)k * p.R + r) * p.S + s) * p.Cg + c;
    return (((int64_t)k * p.Cg + c) * p.R + r) * p.S + s;
}
// The filter as packed KCRS float in cross-correlation orientation (flipped for CONVOLUTION).
static std::vector<float> gather_w(const Prob &p, const void *b) {
    std::vector<float> out((size_t)p.K * p.Cg * p.R * p.S);
    size_t o = 0;
    for (int k = 0; k < p.K; k++)
        for (int c = 0; c < p.Cg; c++)
            for (int r = 0; r < p.R; r++)
                for (int s = 0; s < p.S; s++) {
                    float v = ld(b, p.dt, fidx(p, k, c, p.flip ? p.R - 1 - r : r, p.flip ? p.S - 1 - s : s));
                    out[o++] = p.tf32 ? tf32(v) : v;
                }
    return out;
}
// The kernels below work in im2col form on blocks of JB output positions j = p*Q + q:
// cols[(cl*R + r)*S + s][j] = x[n, g*Cg + cl, p*u + r*dil_h - pad_h, q*v + s*dil_w - pad_w] (0 in
// the padding). Products and sums in double; the sum is rounded to float once at the end.
static const int JB = 64;
// Input position (h, w) of tap (r, s) at output j, or -1 in the padding.
static inline int64_t tap(const Prob &p, int j, int r, int s) {
    const int pp = j / p.Q, q = j % p.Q;
    const int h = pp * p.u + r * p.dh - p.ph, w = q * p.v + s * p.dw - p.pw;
    return (h < 0 || h >= p.H || w < 0 || w >= p.W) ? -1 : (int64_t)h * p.W + w;
}
// cols block for image n, group g, outputs [j0, j0 + jn): row-major [CgRS][jn], or [jn][CgRS] (tr).
static void im2col(const Prob &p, const float *X, int n, int g, int j0, int jn, float *cols, bool tr) {
    const int crs_n = p.Cg * p.R * p.S;
    for (int cl = 0; cl < p.Cg; cl++) {
        const float *xp = X + ((size_t)n * p.C + g * p.Cg + cl) * p.H * p.W;
        for (int r = 0; r < p.R; r++)
            for (int s = 0; s < p.S; s++) {
                const int crs = (cl * p.R + r) * p.S + s;
                for (int j = 0; j < jn; j++) {
                    const int64_t t = tap(p, j0 + j, r, s);
                    const float v = t < 0 ? 0.f : xp[t];
                    if (tr) cols[(size_t)j * crs_n + crs] = v;
                    else cols[(size_t)crs * jn + j] = v;
                }
            }
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("O3") // the inner axpy loops vectorize (GCC's -O2 cost model leaves them scalar)
#endif
static void axpy(double *a, double w, const float *x, int n) {
    for (int i = 0; i < n; i++) a[i] += w * x[i];
}
static void axpyf(float *a, float w, const float *x, int n) {
    for (int i = 0; i < n; i++) a[i] += w * x[i];
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// y (packed N,K,P,Q) = corr(x, wf).
static void run_fwd(const Prob &p, const float *X, const float *Wf, float *Y) {
    const int crs_n = p.Cg * p.R * p.S, PQ = p.P * p.Q;
    std::vector<float> cols((size_t)crs_n * JB);
    std::vector<double> acc(JB);
    for (int n = 0; n < p.N; n++)
        for (int g = 0; g < p.G; g++)
            for (int j0 = 0; j0 < PQ; j0 += JB) {
                const int jn = PQ - j0 < JB ? PQ - j0 : JB;
                im2col(p, X, n, g, j0, jn, cols.data(), false);
                for (int k = g * p.Kg; k < (g + 1) * p.Kg; k++) {
                    std::fill(acc.begin(), acc.end(), 0.0);
                    const float *wk = Wf + (size_t)k * crs_n;
                    for (int crs = 0; crs < crs_n; crs++) axpy(acc.data(), wk[crs], &cols[(size_t)crs * jn], jn);
                    float *yo = Y + ((size_t)n * p.K + k) * PQ + j0;
                    for (int j = 0; j < jn; j++) yo[j] = (float)acc[j];
                }
            }
}
// A non-deterministic algorithm (BWD_DATA_ALGO_0, BWD_FILTER_ALGO_0 / _3) adds with atomics on
// a GPU, in whatever order the blocks run: the mock accumulates those sums in float and takes
// the terms forward on one call and backward on the next (nd_flip), so two calls differ in the
// last bits as they may on the hardware. Deterministic algorithms sum in double, in order.
static std::atomic<unsigned> g_nd_calls[3]; // per operation: consecutive calls of one op alternate
static int nd_flip(Op op, int algo) { return nondet(op, algo) ? (int)(g_nd_calls[op]++ & 1) + 1 : 0; }

// dx (packed N,C,H,W) = the adjoint of run_fwd applied to dy: column gradients, then col2im.
// nd: 0 deterministic; 1 / 2 the float sums over k forward / backward (nd_flip).
static void run_data(const Prob &p, const float *DY, const float *Wf, float *DX, int nd) {
    const int crs_n = p.Cg * p.R * p.S, PQ = p.P * p.Q, HW = p.H * p.W;
    std::vector<double> gcol((size_t)crs_n * JB), dxacc((size_t)p.Cg * HW);
    std::vector<float> gcolf(nd ? (size_t)crs_n * JB : 0);
    for (int n = 0; n < p.N; n++)
        for (int g = 0; g < p.G; g++) {
            std::fill(dxacc.begin(), dxacc.end(), 0.0);
            for (int j0 = 0; j0 < PQ; j0 += JB) {
                const int jn = PQ - j0 < JB ? PQ - j0 : JB;
                std::fill(gcol.begin(), gcol.end(), 0.0);
                std::fill(gcolf.begin(), gcolf.end(), 0.f);
                for (int kk = 0; kk < p.Kg; kk++) {
                    const int k = g * p.Kg + (nd == 2 ? p.Kg - 1 - kk : kk);
                    const float *dyk = DY + ((size_t)n * p.K + k) * PQ + j0;
                    const float *wk = Wf + (size_t)k * crs_n;
                    for (int crs = 0; crs < crs_n; crs++)
                        if (nd) axpyf(&gcolf[(size_t)crs * jn], wk[crs], dyk, jn);
                        else axpy(&gcol[(size_t)crs * jn], wk[crs], dyk, jn);
                }
                if (nd) std::copy(gcolf.begin(), gcolf.end(), gcol.begin());
                for (int cl = 0; cl < p.Cg; cl++)
                    for (int r = 0; r < p.R; r++)
                        for (int s = 0; s < p.S; s++) {
                            const double *gc = &gcol[(size_t)((cl * p.R + r) * p.S + s) * jn];
                            double *dp = &dxacc[(size_t)cl * HW];
                            for (int j = 0; j < jn; j++) {
                                const int64_t t = tap(p, j0 + j, r, s);
                                if (t >= 0) dp[t] += gc[j];
                            }
                        }
            }
            float *o = DX + ((size_t)n * p.C + g * p.Cg) * HW;
            for (size_t i = 0; i < dxacc.size(); i++) o[i] = (float)dxacc[i];
        }
}
// dwf (packed K,Cg,R,S, cross-correlation orientation) = sum over n, p, q of x * dy.
// nd: 0 deterministic; 1 / 2 float sums over the positions of each tile forward / backward.
static void run_filter(const Prob &p, const float *X, const float *DY, float *DWf, int nd) {
    const int crs_n = p.Cg * p.R * p.S, PQ = p.P * p.Q;
    std::vector<float> colsT((size_t)JB * crs_n), part(nd ? crs_n : 0);
    std::vector<double> dwacc((size_t)p.K * crs_n, 0.0);
    for (int n = 0; n < p.N; n++)
        for (int g = 0; g < p.G; g++)
            for (int j0 = 0; j0 < PQ; j0 += JB) {
                const int jn = PQ - j0 < JB ? PQ - j0 : JB;
                im2col(p, X, n, g, j0, jn, colsT.data(), true);
                for (int k = g * p.Kg; k < (g + 1) * p.Kg; k++) {
                    const float *dyk = DY + ((size_t)n * p.K + k) * PQ + j0;
                    double *dwk = &dwacc[(size_t)k * crs_n];
                    if (!nd) {
                        for (int j = 0; j < jn; j++) axpy(dwk, dyk[j], &colsT[(size_t)j * crs_n], crs_n);
                        continue;
                    }
                    std::fill(part.begin(), part.end(), 0.f);
                    for (int jj = 0; jj < jn; jj++) {
                        const int j = nd == 2 ? jn - 1 - jj : jj;
                        axpyf(part.data(), dyk[j], &colsT[(size_t)j * crs_n], crs_n);
                    }
                    for (int i = 0; i < crs_n; i++) dwk[i] += part[i];
                }
            }
    for (size_t i = 0; i < dwacc.size(); i++) DWf[i] = (float)dwacc[i];
}

// out = alpha*res + beta*out (float epilogue); beta == 0: out is not read.
static void blend_tensor(const cudnnTensorStruct *t, void *b, const float *res, float alpha, float beta) {
    size_t o = 0;
    for (int i = 0; i < t->d[0]; i++)
        for (int j = 0; j < t->d[1]; j++)
            for (int k = 0; k < t->d[2]; k++) {
                const int64_t base = i * t->st[0] + j * t->st[1] + k * t->st[2];
                for (int l = 0; l < t->d[3]; l++, o++) {
                    const int64_t e = base + l * t->st[3];
                    float v = alpha * res[o];
                    if (beta != 0.f) v += beta * ld(b, t->dt, e);
                    st(b, t->dt, e, v);
                }
            }
}
static void blend_filter(const Prob &p, void *b, const float *resf, float alpha, float beta) {
    for (int k = 0; k < p.K; k++)
        for (int c = 0; c < p.Cg; c++)
            for (int r = 0; r < p.R; r++)
                for (int s = 0; s < p.S; s++) {
                    const int64_t e = fidx(p, k, c, p.flip ? p.R - 1 - r : r, p.flip ? p.S - 1 - s : s);
                    float v = alpha * resf[(((size_t)k * p.Cg + c) * p.R + r) * p.S + s];
                    if (beta != 0.f) v += beta * ld(b, p.dt, e);
                    st(b, p.dt, e, v);
                }
}

namespace {
struct Span { const void *p; size_t n; const char *what; };
} // namespace
static bool spans_overlap(const Span &a, const Span &b) {
    const uintptr_t a0 = (uintptr_t)a.p, b0 = (uintptr_t)b.p;
    return a.n && b.n && a0 < b0 + b.n && b0 < a0 + a.n;
}

// The shared part of the three convolutions: validation, algo / workspace, range checks.
// spans[0..1] inputs, spans[2] output (sizes filled here); returns SUCCESS to go on.
static cudnnStatus_t conv_prologue(const char *fn, Op op, const Prob &p, int algo, void *ws, size_t ws_bytes,
                                   const void *alpha, const void *beta, Span *sp) {
#define PF(s, why) return fail((s), fn, (why))
    if (!alpha || !beta) PF(CUDNN_STATUS_BAD_PARAM, "alpha or beta is NULL");
    for (int i = 0; i < 3; i++)
        if (!sp[i].p) PF(CUDNN_STATUS_BAD_PARAM, "a data pointer is NULL");
    size_t need = 0;
    cudnnStatus_t s = ws_fn(op)(p, algo, &need);
    if (s == CUDNN_STATUS_BAD_PARAM) PF(s, "unknown algorithm enumerant");
    if (s != CUDNN_STATUS_SUCCESS) PF(s, "the algorithm does not support this problem");
    if (need > 0 && (!ws || ws_bytes < need)) PF(CUDNN_STATUS_BAD_PARAM, "workspace NULL or smaller than the algorithm needs");
    const size_t tx = (size_t)extent(p.x) * p.esz, ty = (size_t)extent(p.y) * p.esz;
    const size_t tw = (size_t)p.K * p.Cg * p.R * p.S * p.esz;
    sp[0].n = op == OP_DATA ? tw : tx;
    sp[1].n = op == OP_FWD ? tw : ty;
    sp[2].n = op == OP_FWD ? ty : op == OP_DATA ? tx : tw;
    const int err0 = cusim_errors;
    for (int i = 0; i < 3; i++) cusim_check_range(sp[i].p, sp[i].n, sp[i].what);
    Span wsp{ws, ws ? ws_bytes : 0, "cudnn workspace"}; // whatever the caller hands over must be device memory
    if (wsp.n) cusim_check_range(ws, ws_bytes, "cudnn workspace");
    if (cusim_errors != err0) PF(CUDNN_STATUS_EXECUTION_FAILED, "an operand lies outside the registered device buffers");
    for (int i = 0; i < 2; i++)
        if (spans_overlap(sp[i], sp[2])) {
            cusim_fault("%s: output %s overlaps input %s", fn, sp[2].what, sp[i].what);
            PF(CUDNN_STATUS_BAD_PARAM, "output overlaps an input");
        }
    for (int i = 0; i < 3; i++)
        if (spans_overlap(wsp, sp[i])) {
            cusim_fault("%s: workspace overlaps %s", fn, sp[i].what);
            PF(CUDNN_STATUS_BAD_PARAM, "workspace overlaps an operand");
        }
    if (need) memset(ws, 0xFF, need); // what a real algorithm leaves there: garbage
    return CUDNN_STATUS_SUCCESS;
#undef PF
}

// The arithmetic of a convolution call: recorded when the handle's stream is capturing (replayed
// by cudaGraphLaunch; alpha / beta and the descriptors are copied now, as cuDNN bakes them into
// its kernels' parameters), else run now.
template <typename F>
static cudnnStatus_t defer_or_run(cudnnHandle_t h, const char *fn, F f, std::initializer_list<const void *> ptrs) {
    cudaError_t ce = cudaSuccess;
    if (cusim_defer(h->stream, fn, f, ptrs, &ce))
        return ce == cudaSuccess ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
    f();
    return CUDNN_STATUS_SUCCESS;
}

extern "C" {

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
                                                     const cudnnFilterDescriptor_t filterDesc,
                                                     const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t destDesc, const int requestedAlgoCount,
                                                     int *returnedAlgoCount, cudnnConvolutionFwdAlgoPerf_t *perfResults) {
    return heuristics<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
        __func__, OP_FWD, handle, srcDesc, filterDesc, convDesc, destDesc, requestedAlgoCount, returnedAlgoCount,
        perfResults);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t handle, const cudnnFilterDescriptor_t filterDesc,
                                                          const cudnnTensorDescriptor_t diffDesc,
                                                          const cudnnConvolutionDescriptor_t convDesc,
                                                          const cudnnTensorDescriptor_t gradDesc,
                                                          const int requestedAlgoCount, int *returnedAlgoCount,
                                                          cudnnConvolutionBwdDataAlgoPerf_t *perfResults) {
    return heuristics<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
        __func__, OP_DATA, handle, gradDesc, filterDesc, convDesc, diffDesc, requestedAlgoCount, returnedAlgoCount,
        perfResults);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
                                                            const cudnnTensorDescriptor_t diffDesc,
                                                            const cudnnConvolutionDescriptor_t convDesc,
                                                            const cudnnFilterDescriptor_t gradDesc,
                                                            const int requestedAlgoCount, int *returnedAlgoCount,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t *perfResults) {
    return heuristics<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
        __func__, OP_FILTER, handle, srcDesc, gradDesc, convDesc, diffDesc, requestedAlgoCount, returnedAlgoCount,
        perfResults);
}

static cudnnStatus_t ws_query(const char *fn, Op op, cudnnHandle_t h, const cudnnTensorStruct *x,
                              const cudnnFilterStruct *w, const cudnnConvolutionStruct *cd, const cudnnTensorStruct *y,
                              int algo, size_t *sizeInBytes) {
    if (!sizeInBytes) return fail(CUDNN_STATUS_BAD_PARAM, fn, "sizeInBytes is NULL");
    Prob p;
    cudnnStatus_t s = prob_make(fn, op, h, x, w, cd, y, &p);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    s = ws_fn(op)(p, algo, sizeInBytes);
    if (s == CUDNN_STATUS_BAD_PARAM) return fail(s, fn, "unknown algorithm enumerant");
    if (s != CUDNN_STATUS_SUCCESS) return fail(s, fn, "the algorithm does not support this problem");
    return s;
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                      const cudnnFilterDescriptor_t wDesc,
                                                      const cudnnConvolutionDescriptor_t convDesc,
                                                      const cudnnTensorDescriptor_t yDesc, cudnnConvolutionFwdAlgo_t algo,
                                                      size_t *sizeInBytes) {
    return ws_query(__func__, OP_FWD, handle, xDesc, wDesc, convDesc, yDesc, (int)algo, sizeInBytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
                                                           const cudnnTensorDescriptor_t dyDesc,
                                                           const cudnnConvolutionDescriptor_t convDesc,
                                                           const cudnnTensorDescriptor_t dxDesc,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t *sizeInBytes) {
    return ws_query(__func__, OP_DATA, handle, dxDesc, wDesc, convDesc, dyDesc, (int)algo, sizeInBytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                             const cudnnTensorDescriptor_t dyDesc,
                                                             const cudnnConvolutionDescriptor_t convDesc,
                                                             const cudnnFilterDescriptor_t gradDesc,
                                                             cudnnConvolutionBwdFilterAlgo_t algo, size_t *sizeInBytes) {
    return ws_query(__func__, OP_FILTER, handle, xDesc, gradDesc, convDesc, dyDesc, (int)algo, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t xDesc,
                                      const void *x, const cudnnFilterDescriptor_t wDesc, const void *w,
                                      const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionFwdAlgo_t algo,
                                      void *workSpace, size_t workSpaceSizeInBytes, const void *beta,
                                      const cudnnTensorDescriptor_t yDesc, void *y) {
    Prob p;
    cudnnStatus_t s = prob_make(__func__, OP_FWD, handle, xDesc, wDesc, convDesc, yDesc, &p);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    Span sp[3] = {{x, 0, "cudnnConvolutionForward x"}, {w, 0, "cudnnConvolutionForward w"},
                  {y, 0, "cudnnConvolutionForward y"}};
    s = conv_prologue(__func__, OP_FWD, p, (int)algo, workSpace, workSpaceSizeInBytes, alpha, beta, sp);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const cudnnTensorStruct xs = *xDesc, ys = *yDesc;
    auto f = [=]() {
        std::vector<float> X = gather(&xs, x, p.tf32), Wf = gather_w(p, w), Y((size_t)p.N * p.K * p.P * p.Q);
        run_fwd(p, X.data(), Wf.data(), Y.data());
        blend_tensor(&ys, y, Y.data(), al, be);
    };
    return defer_or_run(handle, __func__, f, {x, w, y});
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void *alpha, const cudnnFilterDescriptor_t wDesc,
                                           const void *w, const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                           const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionBwdDataAlgo_t algo,
                                           void *workSpace, size_t workSpaceSizeInBytes, const void *beta,
                                           const cudnnTensorDescriptor_t dxDesc, void *dx) {
    Prob p;
    cudnnStatus_t s = prob_make(__func__, OP_DATA, handle, dxDesc, wDesc, convDesc, dyDesc, &p);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    Span sp[3] = {{w, 0, "cudnnConvolutionBackwardData w"}, {dy, 0, "cudnnConvolutionBackwardData dy"},
                  {dx, 0, "cudnnConvolutionBackwardData dx"}};
    s = conv_prologue(__func__, OP_DATA, p, (int)algo, workSpace, workSpaceSizeInBytes, alpha, beta, sp);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const cudnnTensorStruct dys = *dyDesc, dxs = *dxDesc;
    auto f = [=]() {
        std::vector<float> DY = gather(&dys, dy, p.tf32), Wf = gather_w(p, w), DX((size_t)p.N * p.C * p.H * p.W);
        run_data(p, DY.data(), Wf.data(), DX.data(), nd_flip(OP_DATA, (int)algo));
        blend_tensor(&dxs, dx, DX.data(), al, be);
    };
    return defer_or_run(handle, __func__, f, {w, dy, dx});
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t xDesc,
                                             const void *x, const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *workSpace,
                                             size_t workSpaceSizeInBytes, const void *beta,
                                             const cudnnFilterDescriptor_t dwDesc, void *dw) {
    Prob p;
    cudnnStatus_t s = prob_make(__func__, OP_FILTER, handle, xDesc, dwDesc, convDesc, dyDesc, &p);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    Span sp[3] = {{x, 0, "cudnnConvolutionBackwardFilter x"}, {dy, 0, "cudnnConvolutionBackwardFilter dy"},
                  {dw, 0, "cudnnConvolutionBackwardFilter dw"}};
    s = conv_prologue(__func__, OP_FILTER, p, (int)algo, workSpace, workSpaceSizeInBytes, alpha, beta, sp);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const cudnnTensorStruct xs = *xDesc, dys = *dyDesc;
    auto f = [=]() {
        std::vector<float> X = gather(&xs, x, p.tf32), DY = gather(&dys, dy, p.tf32);
        std::vector<float> DW((size_t)p.K * p.Cg * p.R * p.S);
        run_filter(p, X.data(), DY.data(), DW.data(), nd_flip(OP_FILTER, (int)algo));
        blend_filter(p, dw, DW.data(), al, be);
    };
    return defer_or_run(handle, __func__, f, {x, dy, dw});
}

} // extern "C"
