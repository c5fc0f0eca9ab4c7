// Host emulation of the training additions at the end of kernels/kernels_cuda.h (helper
// "unettrain"): the fp32 CPU reference on widened 16-bit inputs, the output rounded to the
// 16-bit format (bf16, or fp16 in fp16 mode) as the cuDNN op writes it.
#include <stdlib.h>
#include "kernels/emu/emu.h"

void cd_cuda_conv2d_bwd_data_bf16(uint16_t *dx, const uint16_t *dy, const uint16_t *W, int n,
                                  int cin, int h, int w, int cout, int k, int s, int p,
                                  void *stream) {
    static const char op[] = "cd_cuda_conv2d_bwd_data_bf16";
    (void)stream;
    if (EMU_REQUIRE(n > 0 && cin > 0 && cout > 0 && k > 0 && s > 0 && p >= 0 && h + 2 * p >= k &&
                    w + 2 * p >= k, "bad convolution shape"))
        return;
    int ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    int64_t nx = (int64_t)n * cin * h * w, ny = (int64_t)n * cout * ho * wo;
    int64_t nw = (int64_t)cout * cin * k * k;
    if (EMU_DEV(op, dx, nx * 2) || EMU_DEV(op, dy, ny * 2) || EMU_DEV(op, W, nw * 2)) return;
    float *fy = emu_widen(dy, ny), *fw = emu_widen(W, nw), *fx = emu_tmp(nx);
    cd_conv2d_bwd(fx, NULL, NULL, fy, NULL, fw, n, cin, h, w, cout, k, s, p);
    emu_narrow(dx, fx, nx);
    free(fy); free(fw); free(fx);
}
