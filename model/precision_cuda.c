// --precision: parsing and the process's CUDA math modes (see model/precision.h). A *_cuda.c file:
// built with CD_CUDA into the library and into the host emulation (Makefile, EMU).
#include "model/precision.h"
#include <string.h>
#include "core/err.h"
#ifdef CD_CUDA
#include "kernels/kernels_cuda.h"
#endif

int cd_precision_parse(const char *s, int *prec) {
    static const char *names[] = {"fp32", "tf32", "bf16", "fp16"};
    if (!s) { *prec = CD_PREC_FP32; return 0; }
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) { *prec = i; return 0; }
    return cd_err("--precision '%s': expected fp32, tf32, bf16 or fp16", s);
}

const char *cd_precision_name(int prec) {
    return prec == CD_PREC_FP16 ? "fp16" : prec == CD_PREC_BF16 ? "bf16" : prec == CD_PREC_TF32 ? "tf32" : "fp32";
}

int cd_precision_half(int prec) { return prec == CD_PREC_BF16 || prec == CD_PREC_FP16; }

void cd_precision_apply(int prec) {
#ifdef CD_CUDA
    cd_cuda_set_tf32(prec == CD_PREC_TF32);
    cd_cuda_set_fp16(prec == CD_PREC_FP16);
#else
    (void)prec;
#endif
}

void cd_precision_deterministic(int on) {
#ifdef CD_CUDA
    cd_cuda_set_deterministic(on);
#else
    (void)on;
#endif
}
