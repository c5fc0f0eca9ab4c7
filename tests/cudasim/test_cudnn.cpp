// Checks the mock cuDNN (tests/cudasim/cudnn.cpp) against hand-worked convolutions, the adjoint
// identity <conv(x,w), dy> == <x, conv^T(dy,w)> == <w, corr(x,dy)> on random data, alpha/beta
// blending (beta == 0 never reads the output), bf16/fp16 round-to-nearest-even, TF32 under the
// non-FMA math types, non-packed strides, the documented status codes, and range faults.
// Usage: test_cudnn [perf]   (perf: also times an SD-sized 2x320x16x16 -> 640 3x3 convolution)
// Prints "N runs, M failures"; exits 1 on a failure.
#include "cusim.h"
#include <cudnn.h>
#include <chrono>
#include <string>
#include <vector>

extern int cusim_cudnn_quiet;

static int g_runs, g_fails, g_case_fail;
static const char *g_case = "";
#define CHECK(c)                                                                                     \
    do {                                                                                             \
        if (!(c)) {                                                                                  \
            g_case_fail = 1;                                                                         \
            fprintf(stderr, "FAIL [%s] %s:%d: %s\n", g_case, __FILE__, __LINE__, #c);               \
        }                                                                                            \
    } while (0)
#define CHECK_ST(call, want)                                                                         \
    do {                                                                                             \
        cudnnStatus_t s_ = (call);                                                                   \
        if (s_ != (want)) {                                                                          \
            g_case_fail = 1;                                                                         \
            fprintf(stderr, "FAIL [%s] %s:%d: %s returned %s, want %s\n", g_case, __FILE__, __LINE__, \
                    #call, cudnnGetErrorString(s_), cudnnGetErrorString(want));                     \
        }                                                                                            \
    } while (0)
#define OK(call) CHECK_ST(call, CUDNN_STATUS_SUCCESS)
#define BAD CUDNN_STATUS_BAD_PARAM
#define UNSUP CUDNN_STATUS_NOT_SUPPORTED

static void begin(const char *name) { g_case = name; g_case_fail = 0; }
static void end() {
    g_runs++;
    if (g_case_fail) g_fails++;
    printf("%-44s %s\n", g_case, g_case_fail ? "FAIL" : "PASS");
}

// ---- "device" memory: host memory registered with the simulator, exact size, NaN-poisoned ----
static std::vector<void *> g_bufs;
static void *dmem(size_t bytes) {
    void *p = malloc(bytes);
    memset(p, 0xFF, bytes);
    cusim_register(p, bytes);
    g_bufs.push_back(p);
    return p;
}
static float *dfloat(std::vector<float> v) {
    float *p = (float *)dmem(v.size() * 4);
    memcpy(p, v.data(), v.size() * 4);
    return p;
}
static uint16_t *d16(std::vector<uint16_t> v) {
    uint16_t *p = (uint16_t *)dmem(v.size() * 2);
    memcpy(p, v.data(), v.size() * 2);
    return p;
}

static cudnnHandle_t g_h;
static cudnnTensorDescriptor_t tdesc(cudnnDataType_t dt, int n, int c, int h, int w) {
    cudnnTensorDescriptor_t d;
    OK(cudnnCreateTensorDescriptor(&d));
    OK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, dt, n, c, h, w));
    return d;
}
static cudnnFilterDescriptor_t fdesc(cudnnDataType_t dt, int k, int c, int r, int s) {
    cudnnFilterDescriptor_t d;
    OK(cudnnCreateFilterDescriptor(&d));
    OK(cudnnSetFilter4dDescriptor(d, dt, CUDNN_TENSOR_NCHW, k, c, r, s));
    return d;
}
static cudnnConvolutionDescriptor_t cdesc(int ph, int pw, int u, int v, int dh, int dw,
                                          cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION,
                                          cudnnMathType_t math = CUDNN_FMA_MATH, int groups = 1,
                                          cudnnDataType_t ct = CUDNN_DATA_FLOAT) {
    cudnnConvolutionDescriptor_t d;
    OK(cudnnCreateConvolutionDescriptor(&d));
    OK(cudnnSetConvolution2dDescriptor(d, ph, pw, u, v, dh, dw, mode, ct));
    OK(cudnnSetConvolutionMathType(d, math));
    if (groups != 1) OK(cudnnSetConvolutionGroupCount(d, groups));
    return d;
}
static void destroy(cudnnTensorDescriptor_t a, cudnnFilterDescriptor_t b, cudnnConvolutionDescriptor_t c,
                    cudnnTensorDescriptor_t d) {
    OK(cudnnDestroyTensorDescriptor(a));
    OK(cudnnDestroyFilterDescriptor(b));
    OK(cudnnDestroyConvolutionDescriptor(c));
    OK(cudnnDestroyTensorDescriptor(d));
}

// The three convolutions with an exactly-sized registered workspace for the algorithm.
static cudnnStatus_t fwd(cudnnTensorDescriptor_t xd, const void *x, cudnnFilterDescriptor_t wd, const void *w,
                         cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, void *y, float alpha = 1.f,
                         float beta = 0.f,
                         cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM) {
    size_t ws = 0;
    cudnnStatus_t s = cudnnGetConvolutionForwardWorkspaceSize(g_h, xd, wd, cd, yd, algo, &ws);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    return cudnnConvolutionForward(g_h, &alpha, xd, x, wd, w, cd, algo, ws ? dmem(ws) : nullptr, ws, &beta, yd, y);
}
static cudnnStatus_t bdata(cudnnFilterDescriptor_t wd, const void *w, cudnnTensorDescriptor_t dyd, const void *dy,
                           cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t dxd, void *dx, float alpha = 1.f,
                           float beta = 0.f,
                           cudnnConvolutionBwdDataAlgo_t algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1) {
    size_t ws = 0;
    cudnnStatus_t s = cudnnGetConvolutionBackwardDataWorkspaceSize(g_h, wd, dyd, cd, dxd, algo, &ws);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    return cudnnConvolutionBackwardData(g_h, &alpha, wd, w, dyd, dy, cd, algo, ws ? dmem(ws) : nullptr, ws, &beta,
                                        dxd, dx);
}
static cudnnStatus_t bfilter(cudnnTensorDescriptor_t xd, const void *x, cudnnTensorDescriptor_t dyd, const void *dy,
                             cudnnConvolutionDescriptor_t cd, cudnnFilterDescriptor_t dwd, void *dw, float alpha = 1.f,
                             float beta = 0.f,
                             cudnnConvolutionBwdFilterAlgo_t algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1) {
    size_t ws = 0;
    cudnnStatus_t s = cudnnGetConvolutionBackwardFilterWorkspaceSize(g_h, xd, dyd, cd, dwd, algo, &ws);
    if (s != CUDNN_STATUS_SUCCESS) return s;
    return cudnnConvolutionBackwardFilter(g_h, &alpha, xd, x, dyd, dy, cd, algo, ws ? dmem(ws) : nullptr, ws, &beta,
                                          dwd, dw);
}
static bool same(const float *got, std::vector<float> want) {
    for (size_t i = 0; i < want.size(); i++)
        if (!(got[i] == want[i])) {
            fprintf(stderr, "  element %zu: got %.9g want %.9g\n", i, got[i], want[i]);
            return false;
        }
    return true;
}

// The 1x1x3x3 input [[1,2,3],[4,5,6],[7,8,9]] and the 2x2 kernel [[1,2],[3,4]].
static const std::vector<float> X33 = {1, 2, 3, 4, 5, 6, 7, 8, 9}, W22 = {1, 2, 3, 4};

// y for (pad, stride, dilation, mode) against hand-worked values.
static void hand_fwd(const char *name, int pad, int stride, int dil, cudnnConvolutionMode_t mode, int P,
                     std::vector<float> want) {
    begin(name);
    auto xd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3), yd = tdesc(CUDNN_DATA_FLOAT, 1, 1, P, P);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    auto cd = cdesc(pad, pad, stride, stride, dil, dil, mode);
    int n, c, h, w;
    OK(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &c, &h, &w));
    CHECK(n == 1 && c == 1 && h == P && w == P);
    float *x = dfloat(X33), *wt = dfloat(W22), *y = (float *)dmem(4 * P * P);
    OK(fwd(xd, x, wd, wt, cd, yd, y));
    CHECK(same(y, want));
    destroy(xd, wd, cd, yd);
    end();
}

static void test_hand_forward() {
    // pad 0 stride 1: y[p][q] = sum x[p+r][q+s] w[r][s]
    hand_fwd("fwd 3x3*2x2 xcorr", 0, 1, 1, CUDNN_CROSS_CORRELATION, 2, {37, 47, 67, 77});
    // CONVOLUTION: the kernel flipped, [[4,3],[2,1]]
    hand_fwd("fwd 3x3*2x2 convolution (flipped)", 0, 1, 1, CUDNN_CONVOLUTION, 2, {23, 33, 53, 63});
    // pad 1: P = 4; x index p+r-1
    hand_fwd("fwd pad 1", 1, 1, 1, CUDNN_CROSS_CORRELATION, 4,
             {4, 11, 18, 9, 18, 37, 47, 21, 36, 67, 77, 33, 14, 23, 26, 9});
    // pad 1 stride 2: P = 2; rows 2p+r-1
    hand_fwd("fwd pad 1 stride 2", 1, 2, 1, CUDNN_CROSS_CORRELATION, 2, {4, 18, 36, 77});
    // dilation 2: taps x[0][0], x[0][2], x[2][0], x[2][2]
    hand_fwd("fwd dilation 2", 0, 1, 2, CUDNN_CROSS_CORRELATION, 1, {64});
    // pad 1 stride 2 dilation 2: every output sees x[1][1] = 5 only, through w[1][1], w[1][0], w[0][1], w[0][0]
    hand_fwd("fwd pad 1 stride 2 dilation 2 xcorr", 1, 2, 2, CUDNN_CROSS_CORRELATION, 2, {20, 15, 10, 5});
    hand_fwd("fwd pad 1 stride 2 dilation 2 conv", 1, 2, 2, CUDNN_CONVOLUTION, 2, {5, 10, 15, 20});
}

// Multi-channel 1x1: x [2,2,2,2] (image 1 = 2 * image 0), w [2,2,1,1] = [[1,10],[-1,0.5]].
static void test_multichannel() {
    begin("fwd multi-channel, batch 2, 1x1");
    auto xd = tdesc(CUDNN_DATA_FLOAT, 2, 2, 2, 2), yd = tdesc(CUDNN_DATA_FLOAT, 2, 2, 2, 2);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 2, 2, 1, 1);
    auto cd = cdesc(0, 0, 1, 1, 1, 1);
    float *x = dfloat({1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 6, 8, 10, 12, 14, 16}), *w = dfloat({1, 10, -1, 0.5f});
    float *y = (float *)dmem(64);
    OK(fwd(xd, x, wd, w, cd, yd, y));
    CHECK(same(y, {51, 62, 73, 84, 1.5f, 1, 0.5f, 0, 102, 124, 146, 168, 3, 2, 1, 0}));
    destroy(xd, wd, cd, yd);
    end();

    begin("fwd grouped (2 groups), 1x1");
    xd = tdesc(CUDNN_DATA_FLOAT, 1, 2, 2, 2), yd = tdesc(CUDNN_DATA_FLOAT, 1, 2, 2, 2);
    wd = fdesc(CUDNN_DATA_FLOAT, 2, 1, 1, 1);
    cd = cdesc(0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_FMA_MATH, 2);
    w = dfloat({3, 5});
    y = (float *)dmem(32);
    OK(fwd(xd, x, wd, w, cd, yd, y));
    CHECK(same(y, {3, 6, 9, 12, 25, 30, 35, 40}));
    destroy(xd, wd, cd, yd);
    end();
}

static void test_hand_backward() {
    begin("bwd data/filter hand values, stride 1");
    auto xd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3), yd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    auto cd = cdesc(0, 0, 1, 1, 1, 1);
    float *x = dfloat(X33), *w = dfloat(W22), *dx = (float *)dmem(36), *dw = (float *)dmem(16);
    float *e00 = dfloat({1, 0, 0, 0}), *ones = dfloat({1, 1, 1, 1});
    OK(bdata(wd, w, yd, e00, cd, xd, dx)); // dy = e00: the kernel lands at the top left
    CHECK(same(dx, {1, 2, 0, 3, 4, 0, 0, 0, 0}));
    OK(bdata(wd, w, yd, ones, cd, xd, dx)); // dy = 1: the centre sees all four taps
    CHECK(same(dx, {1, 3, 2, 4, 10, 6, 3, 7, 4}));
    OK(bfilter(xd, x, yd, e00, cd, wd, dw)); // dw = the top-left 2x2 window of x
    CHECK(same(dw, {1, 2, 4, 5}));
    OK(bfilter(xd, x, yd, ones, cd, wd, dw)); // dw[r][s] = sum of the window at (r, s)
    CHECK(same(dw, {12, 16, 24, 28}));
    // beta = 1 accumulates (the caller's weight-gradient use), alpha scales
    float *acc = dfloat({100, 200, 300, 400});
    OK(bfilter(xd, x, yd, e00, cd, wd, acc, 2.f, 1.f));
    CHECK(same(acc, {102, 204, 308, 410}));
    destroy(xd, wd, cd, yd);
    // CONVOLUTION mode: the gradient is stored flipped
    cd = cdesc(0, 0, 1, 1, 1, 1, CUDNN_CONVOLUTION);
    xd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3), yd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    wd = fdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    OK(bfilter(xd, x, yd, e00, cd, wd, dw));
    CHECK(same(dw, {5, 4, 2, 1}));
    OK(bdata(wd, w, yd, e00, cd, xd, dx)); // the flipped kernel at the top left
    CHECK(same(dx, {4, 3, 0, 2, 1, 0, 0, 0, 0}));
    destroy(xd, wd, cd, yd);
    end();

    begin("bwd data hand values, pad 1 stride 2");
    xd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3), yd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    wd = fdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    cd = cdesc(1, 1, 2, 2, 1, 1);
    float *dy = dfloat({1, 2, 3, 4});
    OK(bdata(wd, w, yd, dy, cd, xd, dx)); // dx[h][w]: h = 2p + r - 1, each input hit exactly once
    CHECK(same(dx, {4, 6, 8, 6, 4, 8, 12, 12, 16}));
    destroy(xd, wd, cd, yd);
    end();
}

// ---- adjoint identity on random data ------------------------------------------------------
static uint32_t g_seed = 12345;
static float frand() {
    g_seed = g_seed * 1664525u + 1013904223u;
    return (float)((g_seed >> 8) * (1.0 / 8388608.0)) - 1.f;
}
static std::vector<float> rnd(size_t n) {
    std::vector<float> v(n);
    for (auto &x : v) x = frand();
    return v;
}
static double dot(const float *a, const float *b, size_t n, double *mag) {
    double s = 0, m = 0;
    for (size_t i = 0; i < n; i++) { s += (double)a[i] * b[i]; m += fabs((double)a[i] * b[i]); }
    *mag = m;
    return s;
}
struct Cfg { int N, C, H, W, K, R, S, ph, pw, u, v, dh, dw, G; cudnnConvolutionMode_t mode; };
static void adjoint(const Cfg &c) {
    char name[96];
    snprintf(name, sizeof name, "adjoint %dx%dx%dx%d k%d %dx%d p%d/%d s%d/%d d%d/%d g%d %s", c.N, c.C, c.H, c.W, c.K,
             c.R, c.S, c.ph, c.pw, c.u, c.v, c.dh, c.dw, c.G, c.mode == CUDNN_CONVOLUTION ? "conv" : "xcorr");
    begin(name);
    auto xd = tdesc(CUDNN_DATA_FLOAT, c.N, c.C, c.H, c.W);
    auto wd = fdesc(CUDNN_DATA_FLOAT, c.K, c.C / c.G, c.R, c.S);
    auto cd = cdesc(c.ph, c.pw, c.u, c.v, c.dh, c.dw, c.mode, CUDNN_FMA_MATH, c.G);
    int n, k, P, Q;
    OK(cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &n, &k, &P, &Q));
    auto yd = tdesc(CUDNN_DATA_FLOAT, n, k, P, Q);
    const size_t nx = (size_t)c.N * c.C * c.H * c.W, nw = (size_t)c.K * (c.C / c.G) * c.R * c.S,
                 ny = (size_t)c.N * c.K * P * Q;
    float *x = dfloat(rnd(nx)), *w = dfloat(rnd(nw)), *dy = dfloat(rnd(ny));
    float *y = (float *)dmem(ny * 4), *dx = (float *)dmem(nx * 4), *dw = (float *)dmem(nw * 4);
    OK(fwd(xd, x, wd, w, cd, yd, y));
    OK(bdata(wd, w, yd, dy, cd, xd, dx));
    OK(bfilter(xd, x, yd, dy, cd, wd, dw));
    double ma, mb, mc;
    double a = dot(y, dy, ny, &ma), b = dot(x, dx, nx, &mb), cc = dot(w, dw, nw, &mc);
    double tol = 1e-6 * (ma + mb + mc) + 1e-12;
    if (!(fabs(a - b) <= tol && fabs(a - cc) <= tol))
        fprintf(stderr, "  <y,dy> %.9g <x,dx> %.9g <w,dw> %.9g (tol %.3g)\n", a, b, cc, tol);
    CHECK(fabs(a - b) <= tol);
    CHECK(fabs(a - cc) <= tol);
    CHECK(fabs(a) > 1e-3); // not trivially zero
    destroy(xd, wd, cd, yd);
    end();
}
static void test_adjoint() {
    const Cfg cfgs[] = {
        {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION},
        {1, 4, 9, 8, 6, 3, 2, 2, 0, 2, 3, 1, 2, 2, CUDNN_CONVOLUTION},
        {2, 2, 5, 5, 2, 1, 1, 0, 0, 2, 2, 1, 1, 1, CUDNN_CROSS_CORRELATION},
        {1, 6, 6, 7, 3, 3, 3, 1, 1, 2, 1, 2, 1, 3, CUDNN_CONVOLUTION},
        {2, 4, 8, 8, 5, 3, 3, 1, 1, 2, 2, 1, 1, 1, CUDNN_CROSS_CORRELATION},
        {1, 2, 11, 13, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, CUDNN_CONVOLUTION}, // 143 outputs: several blocks
    };
    for (const Cfg &c : cfgs) adjoint(c);
}

// ---- blending -----------------------------------------------------------------------------
static void test_blend() {
    begin("alpha/beta blending, beta 0 ignores NaN");
    auto xd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3), yd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    auto cd = cdesc(0, 0, 1, 1, 1, 1);
    float *x = dfloat(X33), *w = dfloat(W22);
    float *y = dfloat({10, 20, 30, 40});
    OK(fwd(xd, x, wd, w, cd, yd, y, 2.f, 0.5f)); // 2*[37,47,67,77] + 0.5*[10,20,30,40]
    CHECK(same(y, {79, 104, 149, 174}));
    float *yn = (float *)dmem(16); // NaN-filled
    OK(fwd(xd, x, wd, w, cd, yd, yn, 1.f, 0.f));
    CHECK(same(yn, {37, 47, 67, 77}));
    float *dxn = (float *)dmem(36);
    float *e00 = dfloat({1, 0, 0, 0});
    OK(bdata(wd, w, yd, e00, cd, xd, dxn, 1.f, 0.f));
    CHECK(same(dxn, {1, 2, 0, 3, 4, 0, 0, 0, 0}));
    float *dwn = (float *)dmem(16);
    OK(bfilter(xd, x, yd, e00, cd, wd, dwn, 1.f, 0.f));
    CHECK(same(dwn, {1, 2, 4, 5}));
    // beta != 0 reads the output: NaN there propagates
    float *yn2 = (float *)dmem(16);
    OK(fwd(xd, x, wd, w, cd, yd, yn2, 1.f, 1.f));
    CHECK(std::isnan(yn2[0]));
    destroy(xd, wd, cd, yd);
    end();
}

// ---- 16-bit rounding and TF32 ----------------------------------------------------------------
// 1x1 convolution over 3 channels with unit weights: y = x0 + x1 + x2 (exact in double), then RNE.
static uint16_t sum3_16(cudnnDataType_t dt, uint16_t a, uint16_t b, uint16_t c, uint16_t one) {
    auto xd = tdesc(dt, 1, 3, 1, 1), yd = tdesc(dt, 1, 1, 1, 1);
    auto wd = fdesc(dt, 1, 3, 1, 1);
    auto cd = cdesc(0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_TENSOR_OP_MATH);
    uint16_t *x = d16({a, b, c}), *w = d16({one, one, one}), *y = (uint16_t *)dmem(2);
    OK(fwd(xd, x, wd, w, cd, yd, y));
    destroy(xd, wd, cd, yd);
    return *y;
}
static void test_rounding() {
    begin("bf16 round to nearest even");
    // bf16: 1.0 = 3F80, 2^-8 = 3B80, 3*2^-8 = 3C40, 2^-12 = 3980, 0 = 0000; ulp(1) = 2^-7
    CHECK(sum3_16(CUDNN_DATA_BFLOAT16, 0x3F80, 0x3B80, 0, 0x3F80) == 0x3F80);      // 1 + 2^-8: tie -> even 1.0
    CHECK(sum3_16(CUDNN_DATA_BFLOAT16, 0x3F80, 0x3C40, 0, 0x3F80) == 0x3F82);      // 1 + 3*2^-8: tie -> 1 + 2^-6
    CHECK(sum3_16(CUDNN_DATA_BFLOAT16, 0x3F80, 0x3B80, 0x3980, 0x3F80) == 0x3F81); // above the tie: up
    end();
    begin("fp16 round to nearest even");
    // fp16: 1.0 = 3C00, 2^-11 = 1000, 3*2^-11 = 1600, 2^-15 = 0200 (subnormal); ulp(1) = 2^-10
    CHECK(sum3_16(CUDNN_DATA_HALF, 0x3C00, 0x1000, 0, 0x3C00) == 0x3C00);
    CHECK(sum3_16(CUDNN_DATA_HALF, 0x3C00, 0x1600, 0, 0x3C00) == 0x3C02);
    CHECK(sum3_16(CUDNN_DATA_HALF, 0x3C00, 0x1000, 0x0200, 0x3C00) == 0x3C01);
    end();

    begin("fp32: TF32 unless FMA_MATH");
    auto xd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 1, 1), yd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 1, 1);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 1, 1, 1, 1);
    const float xv = 1.f + 1.f / 4096; // 1 + 2^-12: not a TF32 value (10-bit mantissa)
    float *x = dfloat({xv}), *w = dfloat({1.f}), *y = (float *)dmem(4);
    const cudnnMathType_t maths[] = {CUDNN_FMA_MATH, CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH,
                                     CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION};
    for (cudnnMathType_t m : maths) {
        auto cd = cdesc(0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, m);
        OK(fwd(xd, x, wd, w, cd, yd, y));
        CHECK(*y == (m == CUDNN_FMA_MATH ? xv : 1.f));
        OK(cudnnDestroyConvolutionDescriptor(cd));
    }
    setenv("NVIDIA_TF32_OVERRIDE", "0", 1); // the documented switch: no TF32
    auto cd = cdesc(0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DEFAULT_MATH);
    OK(fwd(xd, x, wd, w, cd, yd, y));
    CHECK(*y == xv);
    unsetenv("NVIDIA_TF32_OVERRIDE");
    destroy(xd, wd, cd, yd);
    end();
}

// ---- non-packed layouts ----------------------------------------------------------------------
static void test_strides() {
    begin("non-packed strides (padded rows, NHWC)");
    // x [1,2,2,2] c0 = [[1,2],[3,4]], c1 = [[5,6],[7,8]] stored with hStride 3, cStride 8, nStride 20
    std::vector<float> xs(20, -1000.f);
    const float c0[4] = {1, 2, 3, 4}, c1[4] = {5, 6, 7, 8};
    for (int h = 0; h < 2; h++)
        for (int w = 0; w < 2; w++) { xs[h * 3 + w] = c0[h * 2 + w]; xs[8 + h * 3 + w] = c1[h * 2 + w]; }
    cudnnTensorDescriptor_t xd, yd;
    OK(cudnnCreateTensorDescriptor(&xd));
    OK(cudnnSetTensor4dDescriptorEx(xd, CUDNN_DATA_FLOAT, 1, 2, 2, 2, 20, 8, 3, 1));
    // y [1,2,2,2] in NHWC (cStride 1, wStride 2, hStride 4, nStride 8)
    OK(cudnnCreateTensorDescriptor(&yd));
    OK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 2, 2, 2));
    auto wd = fdesc(CUDNN_DATA_FLOAT, 2, 2, 1, 1);
    auto cd = cdesc(0, 0, 1, 1, 1, 1);
    float *x = dfloat(xs), *w = dfloat({1, 10, -1, 0.5f}), *y = (float *)dmem(32);
    OK(fwd(xd, x, wd, w, cd, yd, y));
    // y[k][h][w] at h*4 + w*2 + k: k0 = [[51,62],[73,84]], k1 = [[1.5,1],[0.5,0]]
    CHECK(same(y, {51, 1.5f, 62, 1, 73, 0.5f, 84, 0}));
    // backward data into the padded layout: the gaps keep their values (NaN poison stays NaN)
    float *dx = (float *)dmem(80), *dy = dfloat({1, 0, 0, 0, 0, 0, 0, 1}); // NHWC: y(0,0,0)=1 (k0), y(1,1,1)=1 (k1)
    OK(bdata(wd, w, yd, dy, cd, xd, dx));
    CHECK(dx[0] == 1 && dx[8] == 10 && dx[4] == -1 && dx[12] == 0.5f && dx[1] == 0 && dx[9] == 0);
    CHECK(std::isnan(dx[2]) && std::isnan(dx[6]) && std::isnan(dx[7]) && std::isnan(dx[19]));
    destroy(xd, wd, cd, yd);
    // NHWC (KRSC) filter: w[k][r][s][c]
    cudnnFilterDescriptor_t wn;
    OK(cudnnCreateFilterDescriptor(&wn));
    OK(cudnnSetFilter4dDescriptor(wn, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 1, 2, 1, 2));
    auto xd2 = tdesc(CUDNN_DATA_FLOAT, 1, 2, 1, 2), yd2 = tdesc(CUDNN_DATA_FLOAT, 1, 1, 1, 1);
    cd = cdesc(0, 0, 1, 1, 1, 1);
    // KRSC [k0][s0][c0,c1][s1][c0,c1] = [1, 2, 3, 4]: w(c0,s0)=1 w(c1,s0)=2 w(c0,s1)=3 w(c1,s1)=4
    float *x2 = dfloat({10, 20, 30, 40}), *w2 = dfloat({1, 2, 3, 4}), *y2 = (float *)dmem(4);
    OK(fwd(xd2, x2, wn, w2, cd, yd2, y2)); // 10*1 + 20*3 + 30*2 + 40*4
    CHECK(*y2 == 290);
    destroy(xd2, wn, cd, yd2);
    end();
}

// ---- the algorithm queries --------------------------------------------------------------------
static void test_queries() {
    begin("v7 algorithm queries and workspace sizes");
    auto xd = tdesc(CUDNN_DATA_FLOAT, 2, 3, 8, 8), yd = tdesc(CUDNN_DATA_FLOAT, 2, 4, 8, 8);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 4, 3, 3, 3);
    auto cd = cdesc(1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_FMA_MATH);
    cudnnConvolutionFwdAlgoPerf_t fr[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int cnt = -1;
    OK(cudnnGetConvolutionForwardAlgorithm_v7(g_h, xd, wd, cd, yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &cnt, fr));
    CHECK(cnt == CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
    bool seen_bad = false, any_ws = false;
    float *x = dfloat(rnd(2 * 3 * 64)), *w = dfloat(rnd(4 * 27));
    float *yref = (float *)dmem(4 * 2 * 4 * 64);
    OK(fwd(xd, x, wd, w, cd, yd, yref, 1.f, 0.f, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM));
    for (int i = 0; i < cnt; i++) {
        CHECK(fr[i].mathType == CUDNN_FMA_MATH);
        if (fr[i].status != CUDNN_STATUS_SUCCESS) { seen_bad = true; continue; }
        CHECK(!seen_bad); // successes first
        size_t ws = 0;
        OK(cudnnGetConvolutionForwardWorkspaceSize(g_h, xd, wd, cd, yd, fr[i].algo, &ws));
        CHECK(ws == fr[i].memory);
        any_ws |= ws > 0;
        float *y = (float *)dmem(4 * 2 * 4 * 64);
        OK(fwd(xd, x, wd, w, cd, yd, y, 1.f, 0.f, fr[i].algo)); // every listed algorithm runs
        CHECK(memcmp(y, yref, 4 * 2 * 4 * 64) == 0);
    }
    CHECK(any_ws && seen_bad);
    OK(cudnnGetConvolutionForwardAlgorithm_v7(g_h, xd, wd, cd, yd, 2, &cnt, fr));
    CHECK(cnt == 2);
    size_t ws = 0;
    OK(cudnnGetConvolutionForwardWorkspaceSize(g_h, xd, wd, cd, yd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, &ws));
    CHECK(ws == 4 * 3 * 3 * 3 * 4);
    // the math type is echoed
    OK(cudnnSetConvolutionMathType(cd, CUDNN_TENSOR_OP_MATH));
    cudnnConvolutionBwdDataAlgoPerf_t dr[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    OK(cudnnGetConvolutionBackwardDataAlgorithm_v7(g_h, wd, yd, cd, xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &cnt, dr));
    CHECK(cnt == CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
    for (int i = 0; i < cnt; i++) CHECK(dr[i].mathType == CUDNN_TENSOR_OP_MATH);
    cudnnConvolutionBwdFilterAlgoPerf_t wr[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    OK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(g_h, xd, yd, cd, wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &cnt,
                                                     wr));
    CHECK(cnt == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
    for (int i = 0; i < cnt; i++) {
        if (wr[i].algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0) CHECK(wr[i].determinism == CUDNN_NON_DETERMINISTIC);
        if (wr[i].algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1) CHECK(wr[i].determinism == CUDNN_DETERMINISTIC);
        if (wr[i].algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD) CHECK(wr[i].status == UNSUP);
    }
    destroy(xd, wd, cd, yd);
    end();
}

// ---- documented status codes -------------------------------------------------------------------
static void test_errors() {
    begin("status codes");
    cusim_cudnn_quiet = 1;
    const int err0 = cusim_errors;
    // setters
    cudnnTensorDescriptor_t t;
    cudnnFilterDescriptor_t f;
    cudnnConvolutionDescriptor_t c;
    OK(cudnnCreateTensorDescriptor(&t));
    OK(cudnnCreateFilterDescriptor(&f));
    OK(cudnnCreateConvolutionDescriptor(&c));
    CHECK_ST(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 0, 3, 3), BAD);
    CHECK_ST(cudnnSetTensor4dDescriptor(t, (cudnnTensorFormat_t)7, CUDNN_DATA_FLOAT, 1, 1, 3, 3), BAD);
    CHECK_ST(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, -1, 1, 3, 3), BAD);
    CHECK_ST(cudnnSetConvolution2dDescriptor(c, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT), BAD);
    CHECK_ST(cudnnSetConvolution2dDescriptor(c, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT), BAD);
    CHECK_ST(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 1, 0, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT), BAD);
    CHECK_ST(cudnnSetConvolution2dDescriptor(c, 0, 0, 1, 1, 1, 1, (cudnnConvolutionMode_t)2, CUDNN_DATA_FLOAT), BAD);
    CHECK_ST(cudnnSetConvolutionMathType(c, (cudnnMathType_t)9), BAD);
    CHECK_ST(cudnnSetConvolutionMathType(nullptr, CUDNN_FMA_MATH), BAD);
    cudnnMathType_t m;
    OK(cudnnGetConvolutionMathType(c, &m));
    CHECK(m == CUDNN_DEFAULT_MATH); // documented default
    OK(cudnnDestroyTensorDescriptor(t));
    OK(cudnnDestroyFilterDescriptor(f));
    OK(cudnnDestroyConvolutionDescriptor(c));

    // a valid problem: 1x1x3x3 * 2x2 -> 2x2, then one thing wrong at a time
    auto xd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3), yd = tdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    auto cd = cdesc(0, 0, 1, 1, 1, 1);
    float *x = dfloat(X33), *w = dfloat(W22), *y = (float *)dmem(16), *dx = (float *)dmem(36), *dw = (float *)dmem(16);
    float one = 1.f, zero = 0.f;
    // wrong output size: Forward NOT_SUPPORTED (its docs), BackwardData / BackwardFilter BAD_PARAM
    auto y33 = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3);
    CHECK_ST(fwd(xd, x, wd, w, cd, y33, dx), UNSUP);
    CHECK_ST(bdata(wd, w, y33, x, cd, xd, dx), BAD);
    CHECK_ST(bfilter(xd, x, y33, x, cd, wd, dw), BAD);
    // input channels != filter C
    auto x2 = tdesc(CUDNN_DATA_FLOAT, 1, 2, 3, 3);
    CHECK_ST(fwd(x2, dx, wd, w, cd, yd, y), BAD);
    CHECK_ST(bdata(wd, w, yd, y, cd, x2, dx), BAD);
    CHECK_ST(bfilter(x2, dx, yd, y, cd, wd, dw), BAD);
    cudnnConvolutionFwdAlgoPerf_t fr[8];
    int cnt;
    CHECK_ST(cudnnGetConvolutionForwardAlgorithm_v7(g_h, x2, wd, cd, yd, 8, &cnt, fr), BAD);
    // output channels != filter K
    auto y2 = tdesc(CUDNN_DATA_FLOAT, 1, 2, 2, 2);
    CHECK_ST(fwd(xd, x, wd, w, cd, y2, dx), BAD);
    CHECK_ST(bdata(wd, w, y2, dx, cd, xd, dx), BAD);
    CHECK_ST(bfilter(xd, x, y2, dx, cd, wd, dw), BAD);
    // data types differ
    auto xh = tdesc(CUDNN_DATA_HALF, 1, 1, 3, 3);
    CHECK_ST(fwd(xh, x, wd, w, cd, yd, y), BAD);
    CHECK_ST(bdata(wd, w, yd, y, cd, xh, dx), BAD);
    CHECK_ST(bfilter(xh, x, yd, y, cd, wd, dw), BAD);
    // unsupported data/compute configs: bf16 data + bf16 compute, fp32 data + half compute
    auto xb = tdesc(CUDNN_DATA_BFLOAT16, 1, 1, 3, 3), yb = tdesc(CUDNN_DATA_BFLOAT16, 1, 1, 2, 2);
    auto wb = fdesc(CUDNN_DATA_BFLOAT16, 1, 1, 2, 2);
    auto cdb = cdesc(0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_FMA_MATH, 1, CUDNN_DATA_BFLOAT16);
    CHECK_ST(fwd(xb, x, wb, w, cdb, yb, y), UNSUP);
    auto cdh = cdesc(0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_FMA_MATH, 1, CUDNN_DATA_HALF);
    CHECK_ST(fwd(xd, x, wd, w, cdh, yd, y), UNSUP);
    // filter larger than the padded input
    auto wbig = fdesc(CUDNN_DATA_FLOAT, 1, 1, 4, 4);
    CHECK_ST(fwd(xd, x, wbig, dx, cd, yd, y), BAD);
    // workspace: smaller than the query, NULL
    const cudnnConvolutionFwdAlgo_t pre = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    size_t need = 0;
    OK(cudnnGetConvolutionForwardWorkspaceSize(g_h, xd, wd, cd, yd, pre, &need));
    CHECK(need == 16);
    void *ws = dmem(need);
    CHECK_ST(cudnnConvolutionForward(g_h, &one, xd, x, wd, w, cd, pre, ws, need - 1, &zero, yd, y), BAD);
    CHECK_ST(cudnnConvolutionForward(g_h, &one, xd, x, wd, w, cd, pre, nullptr, 0, &zero, yd, y), BAD);
    memset(ws, 0, need);
    OK(cudnnConvolutionForward(g_h, &one, xd, x, wd, w, cd, pre, ws, need, &zero, yd, y));
    CHECK(((unsigned char *)ws)[0] == 0xFF && ((unsigned char *)ws)[need - 1] == 0xFF); // the mock scribbles on it
    size_t dneed = 0;
    OK(cudnnGetConvolutionBackwardDataWorkspaceSize(g_h, wd, yd, cd, xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &dneed));
    CHECK(dneed > 0);
    CHECK_ST(cudnnConvolutionBackwardData(g_h, &one, wd, w, yd, y, cd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ws,
                                          dneed - 1, &zero, xd, dx), BAD);
    // null handle, destroyed handle, NULL alpha
    CHECK_ST(cudnnConvolutionForward(nullptr, &one, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr,
                                     0, &zero, yd, y), BAD);
    cudnnHandle_t h2;
    OK(cudnnCreate(&h2));
    OK(cudnnDestroy(h2));
    CHECK_ST(cudnnConvolutionForward(h2, &one, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr, 0,
                                     &zero, yd, y), BAD);
    CHECK_ST(cudnnConvolutionForward(g_h, nullptr, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, nullptr,
                                     0, &zero, yd, y), BAD);
    // unknown algorithm enumerants; algorithms that do not support the problem
    CHECK_ST(fwd(xd, x, wd, w, cd, yd, y, 1.f, 0.f, (cudnnConvolutionFwdAlgo_t)42), BAD);
    CHECK_ST(cudnnConvolutionForward(g_h, &one, xd, x, wd, w, cd, (cudnnConvolutionFwdAlgo_t)42, ws, need, &zero, yd, y),
             BAD);
    CHECK_ST(bdata(wd, w, yd, y, cd, xd, dx, 1.f, 0.f, (cudnnConvolutionBwdDataAlgo_t)-1), BAD);
    CHECK_ST(bfilter(xd, x, yd, y, cd, wd, dw, 1.f, 0.f, (cudnnConvolutionBwdFilterAlgo_t)7), BAD);
    CHECK_ST(fwd(xd, x, wd, w, cd, yd, y, 1.f, 0.f, CUDNN_CONVOLUTION_FWD_ALGO_DIRECT), UNSUP);
    auto cd2 = cdesc(0, 0, 2, 2, 1, 1); // stride 2: 3x3 * 2x2 -> 1x1; FFT and Winograd need stride 1
    auto y11 = tdesc(CUDNN_DATA_FLOAT, 1, 1, 1, 1);
    CHECK_ST(fwd(xd, x, wd, w, cd2, y11, y, 1.f, 0.f, CUDNN_CONVOLUTION_FWD_ALGO_FFT), UNSUP);
    CHECK_ST(fwd(xd, x, wd, w, cd2, y11, y, 1.f, 0.f, CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED), UNSUP);
    CHECK_ST(bdata(wd, w, y11, y, cd2, xd, dx, 1.f, 0.f, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING), UNSUP);
    OK(fwd(xd, x, wd, w, cd2, y11, y, 1.f, 0.f, CUDNN_CONVOLUTION_FWD_ALGO_GEMM));
    CHECK(*y == 37);
    OK(cudnnDestroyConvolutionDescriptor(cd2));
    OK(cudnnDestroyTensorDescriptor(y11));
    CHECK_ST(bfilter(xd, x, yd, y, cd, wd, dw, 1.f, 0.f, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD), UNSUP);
    // a destroyed descriptor; one created but never set
    auto gone = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3);
    OK(cudnnDestroyTensorDescriptor(gone));
    CHECK_ST(fwd(gone, x, wd, w, cd, yd, y), BAD);
    cudnnTensorDescriptor_t unset;
    OK(cudnnCreateTensorDescriptor(&unset));
    CHECK_ST(fwd(unset, x, wd, w, cd, yd, y), BAD);
    CHECK(cusim_errors == err0); // none of the above touched memory
    destroy(xd, wd, cd, yd);
    for (auto d : {y33, x2, y2, xh, xb, yb, unset}) OK(cudnnDestroyTensorDescriptor(d));
    OK(cudnnDestroyFilterDescriptor(wb));
    OK(cudnnDestroyFilterDescriptor(wbig));
    OK(cudnnDestroyConvolutionDescriptor(cdb));
    OK(cudnnDestroyConvolutionDescriptor(cdh));
    cusim_cudnn_quiet = 0;
    end();
}

// ---- range faults -----------------------------------------------------------------------------
static void test_faults() {
    begin("range faults (SIMFAULT expected below)");
    cusim_cudnn_quiet = 1;
    float one = 1.f, zero = 0.f;
    const cudnnConvolutionFwdAlgo_t ig = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    // x's descriptor says 4x4 (64 bytes), its buffer holds 3x3 (36 bytes)
    auto x44 = tdesc(CUDNN_DATA_FLOAT, 1, 1, 4, 4), y33 = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    auto cd = cdesc(0, 0, 1, 1, 1, 1);
    float *x = dfloat(X33), *w = dfloat(W22), *y = dfloat({7, 7, 7, 7, 7, 7, 7, 7, 7});
    int e0 = cusim_errors;
    CHECK_ST(cudnnConvolutionForward(g_h, &one, x44, x, wd, w, cd, ig, nullptr, 0, &zero, y33, y),
             CUDNN_STATUS_EXECUTION_FAILED);
    CHECK(cusim_errors > e0);
    CHECK(y[0] == 7 && y[8] == 7); // nothing written
    // a strided descriptor whose last element lies past the buffer (nStride too large is fine for N=1,
    // but hStride 4 on a 3x3 buffer is not)
    cudnnTensorDescriptor_t xs;
    OK(cudnnCreateTensorDescriptor(&xs));
    OK(cudnnSetTensor4dDescriptorEx(xs, CUDNN_DATA_FLOAT, 1, 1, 3, 3, 1000, 1000, 4, 1));
    auto y22 = tdesc(CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    e0 = cusim_errors;
    CHECK_ST(cudnnConvolutionForward(g_h, &one, xs, x, wd, w, cd, ig, nullptr, 0, &zero, y22, y),
             CUDNN_STATUS_EXECUTION_FAILED);
    CHECK(cusim_errors > e0);
    // workspace not in a registered buffer
    auto x33 = tdesc(CUDNN_DATA_FLOAT, 1, 1, 3, 3);
    float stack_ws[8];
    e0 = cusim_errors;
    CHECK_ST(cudnnConvolutionForward(g_h, &one, x33, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                     stack_ws, sizeof stack_ws, &zero, y22, y),
             CUDNN_STATUS_EXECUTION_FAILED);
    CHECK(cusim_errors > e0);
    // ... also for an algorithm that needs no workspace: the caller still hands over a bogus pointer
    e0 = cusim_errors;
    CHECK_ST(cudnnConvolutionForward(g_h, &one, x33, x, wd, w, cd, ig, stack_ws, sizeof stack_ws, &zero, y22, y),
             CUDNN_STATUS_EXECUTION_FAILED);
    CHECK(cusim_errors > e0);
    // the output aliasing the input
    e0 = cusim_errors;
    CHECK_ST(cudnnConvolutionForward(g_h, &one, x33, x, wd, w, cd, ig, nullptr, 0, &zero, y22, x), BAD);
    CHECK(cusim_errors > e0);
    CHECK(x[0] == 1 && x[3] == 4);
    for (auto d : {x44, y33, xs, y22, x33}) OK(cudnnDestroyTensorDescriptor(d));
    OK(cudnnDestroyFilterDescriptor(wd));
    OK(cudnnDestroyConvolutionDescriptor(cd));
    cusim_cudnn_quiet = 0;
    end();
}

static void perf() {
    begin("perf 2x320x16x16 -> 640 3x3 (fwd, data, filter)");
    auto xd = tdesc(CUDNN_DATA_FLOAT, 2, 320, 16, 16), yd = tdesc(CUDNN_DATA_FLOAT, 2, 640, 16, 16);
    auto wd = fdesc(CUDNN_DATA_FLOAT, 640, 320, 3, 3);
    auto cd = cdesc(1, 1, 1, 1, 1, 1);
    float *x = dfloat(rnd(2 * 320 * 256)), *w = dfloat(rnd(640 * 320 * 9)), *y = (float *)dmem(4 * 2 * 640 * 256);
    float *dx = (float *)dmem(4 * 2 * 320 * 256), *dw = (float *)dmem(4 * 640 * 320 * 9);
    auto t0 = std::chrono::steady_clock::now();
    OK(fwd(xd, x, wd, w, cd, yd, y));
    auto t1 = std::chrono::steady_clock::now();
    OK(bdata(wd, w, yd, y, cd, xd, dx));
    auto t2 = std::chrono::steady_clock::now();
    OK(bfilter(xd, x, yd, y, cd, wd, dw));
    auto t3 = std::chrono::steady_clock::now();
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    printf("  fwd %.0f ms, data %.0f ms, filter %.0f ms\n", ms(t0, t1), ms(t1, t2), ms(t2, t3));
    destroy(xd, wd, cd, yd);
    end();
}

int main(int argc, char **argv) {
    unsetenv("NVIDIA_TF32_OVERRIDE");
    begin("handle");
    OK(cudnnCreate(&g_h));
    OK(cudnnSetStream(g_h, (cudaStream_t)0));
    end();
    test_hand_forward();
    test_multichannel();
    test_hand_backward();
    test_adjoint();
    test_blend();
    test_rounding();
    test_strides();
    test_queries();
    test_errors();
    test_faults();
    if (argc > 1 && !strcmp(argv[1], "perf")) perf();
    OK(cudnnDestroy(g_h));
    for (void *p : g_bufs) { cusim_unregister(p); free(p); }
    printf("%d runs, %d failures\n", g_runs, g_fails);
    return g_fails ? 1 : 0;
}
