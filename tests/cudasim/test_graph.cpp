// Self-test of the simulator's stream capture and graph replay (tests/cudasim/cudart.cpp):
// captured work is recorded, not run; a replay runs it in order and reads device memory at
// replay; calls that CUDA forbids during a capture fail as CUDA's do and invalidate it; a replayed
// node that uses freed memory is a fault. Prints "N runs, M failures"; exit status 1 on failure.
// Build: g++ with SIM_CXXFLAGS, linked with cusim.o and cudart.o (no kernels/ code).
#include "cusim.h"

#include "expect.h"
#define EXPECT_ERR(call, want)                                                            \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        EXPECT(e_ == (want), "%s returned %s, expected %s", #call, cudaGetErrorName(e_), \
               cudaGetErrorName(want));                                                   \
    } while (0)

// x[i] = x[i] * *s (s: a device scalar, read when the kernel runs)
static void k_scale(float *x, const float *s, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= *s;
}
static void k_addc(float *x, float c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += c;
}
#define LAUNCH(k, st, ...) cusim_launch(#k, dim3(2), dim3(32), 0, st, k, __VA_ARGS__)

static const int N = 50;
static float *dev(size_t n) {
    void *p = nullptr;
    if (cudaMalloc(&p, n * sizeof(float)) != cudaSuccess) { fprintf(stderr, "cudaMalloc failed\n"); exit(1); }
    return (float *)p;
}
static bool all_zero_bytes(const float *z, int n) {
    for (int i = 0; i < n; i++)
        if (z[i] != 0.f || signbit(z[i])) return false;
    return true;
}

// 2 kernels + a memset captured, the graph destroyed after instantiation, replayed twice with a
// value changed between the replays.
static void test_capture_replay(cudaStream_t st) {
    float *a = dev(N), *sc = dev(1), *z = dev(N);
    float h[N], two = 2.f, three = 3.f;
    for (int i = 0; i < N; i++) h[i] = (float)(i + 1);
    EXPECT_ERR(cudaMemcpy(a, h, sizeof h, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_ERR(cudaMemcpy(sc, &two, 4, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_ERR(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), cudaSuccess);
    cudaStreamCaptureStatus cs;
    EXPECT_ERR(cudaStreamIsCapturing(st, &cs), cudaSuccess);
    EXPECT(cs == cudaStreamCaptureStatusActive, "status %d", (int)cs);
    LAUNCH(k_scale, st, a, sc, N);
    LAUNCH(k_addc, st, a, 1.f, N);
    EXPECT_ERR(cudaMemsetAsync(z, 0, N * sizeof(float), st), cudaSuccess);
    cudaGraph_t g = nullptr;
    EXPECT_ERR(cudaStreamEndCapture(st, &g), cudaSuccess);
    EXPECT(g != nullptr, "no graph");
    EXPECT(a[0] == 1.f && a[N - 1] == (float)N && isnan(z[0]), "captured work ran at capture: a[0] %g z[0] %g", a[0], z[0]);
    cudaGraphExec_t ex = nullptr;
    EXPECT_ERR(cudaGraphInstantiateWithFlags(&ex, g, 0), cudaSuccess);
    EXPECT_ERR(cudaGraphDestroy(g), cudaSuccess); // the exec keeps its own nodes
    EXPECT_ERR(cudaGraphLaunch(ex, st), cudaSuccess);
    EXPECT_ERR(cudaStreamSynchronize(st), cudaSuccess);
    bool ok = true;
    for (int i = 0; i < N; i++) ok &= a[i] == 2.f * (i + 1) + 1.f;
    EXPECT(ok && all_zero_bytes(z, N), "replay 1: a[1] %g (want 5), z[0] %g", a[1], z[0]);
    // change what the nodes read, scribble on what the memset writes: the replay sees both
    EXPECT_ERR(cudaMemcpy(sc, &three, 4, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_ERR(cudaMemset(z, 0x7F, N * sizeof(float)), cudaSuccess);
    EXPECT_ERR(cudaGraphLaunch(ex, st), cudaSuccess);
    ok = true;
    for (int i = 0; i < N; i++) ok &= a[i] == (2.f * (i + 1) + 1.f) * 3.f + 1.f;
    EXPECT(ok && all_zero_bytes(z, N), "replay 2: a[1] %g (want 16), z[0] %g", a[1], z[0]);
    EXPECT_ERR(cudaGraphExecDestroy(ex), cudaSuccess);
    EXPECT_ERR(cudaGetLastError(), cudaSuccess);
    cudaFree(a); cudaFree(sc); cudaFree(z);
}

// Begin a capture, issue work, do `bad` (expected to fail with want), then the capture is
// invalidated: the status says so, later work into the stream is refused, end returns
// cudaErrorStreamCaptureInvalidated and no graph; the stream works normally afterwards.
template <typename F>
static void test_invalidated(cudaStream_t st, cudaStreamCaptureMode mode, const char *what, cudaError_t want, F bad) {
    float *a = dev(N), *sc = dev(1), one = 1.f;
    EXPECT_ERR(cudaMemcpy(sc, &one, 4, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_ERR(cudaMemset(a, 0, N * sizeof(float)), cudaSuccess);
    EXPECT_ERR(cudaStreamBeginCapture(st, mode), cudaSuccess);
    LAUNCH(k_addc, st, a, 1.f, N);
    cudaError_t e = bad();
    EXPECT(e == want, "%s during capture returned %s, expected %s", what, cudaGetErrorName(e), cudaGetErrorName(want));
    cudaStreamCaptureStatus cs;
    EXPECT_ERR(cudaStreamIsCapturing(st, &cs), cudaSuccess);
    EXPECT(cs == cudaStreamCaptureStatusInvalidated, "%s: status %d, expected invalidated", what, (int)cs);
    EXPECT_ERR(cudaMemsetAsync(a, 0, 4, st), cudaErrorStreamCaptureInvalidated);
    cudaGraph_t g = (cudaGraph_t)&g;
    EXPECT_ERR(cudaStreamEndCapture(st, &g), cudaErrorStreamCaptureInvalidated);
    EXPECT(g == nullptr, "%s: a graph came back from an invalidated capture", what);
    EXPECT(a[0] == 0.f, "%s: captured work ran (a[0] = %g)", what, a[0]);
    cudaGetLastError();
    LAUNCH(k_addc, st, a, 1.f, N); // runs at once: no capture any more
    EXPECT(a[0] == 1.f, "%s: the stream does not run work after the capture (a[0] = %g)", what, a[0]);
    EXPECT_ERR(cudaStreamSynchronize(st), cudaSuccess);
    cudaFree(a); cudaFree(sc);
}

static void test_illegal_calls(cudaStream_t st) {
    test_invalidated(st, cudaStreamCaptureModeGlobal, "cudaStreamSynchronize", cudaErrorStreamCaptureUnsupported,
                     [&] { return cudaStreamSynchronize(st); });
    test_invalidated(st, cudaStreamCaptureModeThreadLocal, "cudaDeviceSynchronize", cudaErrorStreamCaptureUnsupported,
                     [] { return cudaDeviceSynchronize(); });
    test_invalidated(st, cudaStreamCaptureModeThreadLocal, "cudaMalloc", cudaErrorStreamCaptureUnsupported, [] {
        void *p = nullptr;
        return cudaMalloc(&p, 64);
    });
    float *f = dev(4);
    test_invalidated(st, cudaStreamCaptureModeGlobal, "cudaFree", cudaErrorStreamCaptureUnsupported,
                     [&] { return cudaFree(f); });
    EXPECT_ERR(cudaFree(f), cudaSuccess); // the refused free did not happen
    float h[4] = {1, 2, 3, 4};
    float *d = dev(4);
    test_invalidated(st, cudaStreamCaptureModeGlobal, "cudaMemcpy", cudaErrorStreamCaptureImplicit,
                     [&] { return cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice); });
    test_invalidated(st, cudaStreamCaptureModeThreadLocal, "cudaMemset", cudaErrorStreamCaptureImplicit,
                     [&] { return cudaMemset(d, 0, 16); });
    cudaFree(d);
}

// Relaxed mode permits cudaMalloc; work on another stream runs at once; a blocking stream's
// capture is invalidated by legacy-stream work.
static void test_permitted(cudaStream_t st) {
    cudaStream_t other;
    EXPECT_ERR(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), cudaSuccess);
    float *a = dev(N), *b = dev(N);
    EXPECT_ERR(cudaMemset(a, 0, N * sizeof(float)), cudaSuccess);
    EXPECT_ERR(cudaMemset(b, 0, N * sizeof(float)), cudaSuccess);
    EXPECT_ERR(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed), cudaSuccess);
    void *p = nullptr;
    EXPECT_ERR(cudaMalloc(&p, 64), cudaSuccess);
    LAUNCH(k_addc, st, a, 1.f, N);
    LAUNCH(k_addc, other, b, 5.f, N); // not the capturing stream: runs now
    EXPECT(b[0] == 5.f && a[0] == 0.f, "b[0] %g (want 5), a[0] %g (want 0)", b[0], a[0]);
    cudaGraph_t g = nullptr;
    EXPECT_ERR(cudaStreamEndCapture(st, &g), cudaSuccess);
    EXPECT_ERR(cudaGraphDestroy(g), cudaSuccess);
    EXPECT_ERR(cudaFree(p), cudaSuccess);
    // a blocking stream (cudaStreamDefault) and legacy-stream work during its capture
    cudaStream_t blk;
    EXPECT_ERR(cudaStreamCreate(&blk), cudaSuccess);
    test_invalidated(blk, cudaStreamCaptureModeRelaxed, "a launch into the legacy stream", cudaErrorStreamCaptureImplicit, [&] {
        cudaGetLastError();
        LAUNCH(k_addc, (cudaStream_t)0, b, 1.f, N);
        return cudaGetLastError();
    });
    EXPECT(b[0] == 5.f, "the refused legacy launch ran (b[0] = %g)", b[0]);
    EXPECT_ERR(cudaStreamBeginCapture((cudaStream_t)0, cudaStreamCaptureModeGlobal), cudaErrorStreamCaptureUnsupported);
    EXPECT_ERR(cudaStreamEndCapture(st, &g), cudaErrorIllegalState); // not capturing
    cudaGetLastError();
    EXPECT_ERR(cudaStreamDestroy(blk), cudaSuccess);
    EXPECT_ERR(cudaStreamDestroy(other), cudaSuccess);
    cudaFree(a); cudaFree(b);
}

// A replayed node that uses a buffer freed after the capture is a SIMFAULT and an error.
static void test_freed(cudaStream_t st) {
    float *a = dev(N), *sc = dev(1);
    for (int which = 0; which < 2; which++) {
        float *b = dev(N);
        EXPECT_ERR(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
        LAUNCH(k_addc, st, a, 1.f, N);
        if (which == 0) EXPECT_ERR(cudaMemsetAsync(b, 0, N * sizeof(float), st), cudaSuccess);
        else LAUNCH(k_scale, st, b, sc, N);
        cudaGraph_t g = nullptr;
        cudaGraphExec_t ex = nullptr;
        EXPECT_ERR(cudaStreamEndCapture(st, &g), cudaSuccess);
        EXPECT_ERR(cudaGraphInstantiate(&ex, g, 0), cudaSuccess);
        EXPECT_ERR(cudaFree(b), cudaSuccess);
        const int e0 = cusim_errors;
        fprintf(stderr, "test_graph: a SIMFAULT about freed memory is expected next\n");
        EXPECT_ERR(cudaGraphLaunch(ex, st), cudaErrorIllegalAddress);
        EXPECT(cusim_errors == e0 + 1, "%s on freed memory: %d faults reported, expected 1",
               which ? "kernel" : "memset", cusim_errors - e0);
        EXPECT_ERR(cudaGetLastError(), cudaErrorIllegalAddress);
        cusim_errors = e0; // expected
        EXPECT_ERR(cudaGraphExecDestroy(ex), cudaSuccess);
        EXPECT_ERR(cudaGraphDestroy(g), cudaSuccess);
    }
    cudaFree(a); cudaFree(sc);
}

int main() {
    cudaStream_t st;
    if (cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) != cudaSuccess) return 1;
    test_capture_replay(st);
    test_illegal_calls(st);
    test_permitted(st);
    test_freed(st);
    EXPECT_ERR(cudaStreamDestroy(st), cudaSuccess);
    EXPECT(cusim_errors == 0, "%d unexpected simulator faults", cusim_errors);
    printf("%d runs, %d failures\n", g_runs, g_fail);
    return g_fail ? 1 : 0;
}
