// --precision of the GPU stages (customdiff-train, -sample, -verify): one parser, one place
// that switches the process's CUDA math modes.
//   fp32  exact fp32 math
//   tf32  fp32 storage, TF32 tensor-core GEMMs and convolutions (10-bit mantissa inputs)
//   bf16  16-bit storage of frozen weights and activations in bfloat16 (fp32's range, 8-bit
//         mantissa); fp32 accumulation, softmax statistics, losses, norms and trained masters
//   fp16  the same with IEEE fp16 storage (11-bit mantissa, range +-65504); training scales the
//         loss dynamically (model/trainer_cuda.h) so small gradients do not flush to zero
// Plain C, no CUDA header; cd_precision_apply is a no-op in a build without CUDA.
#ifndef CD_PRECISION_H
#define CD_PRECISION_H

enum { CD_PREC_FP32 = 0, CD_PREC_TF32 = 1, CD_PREC_BF16 = 2, CD_PREC_FP16 = 3 };
// "fp32" | "tf32" | "bf16" | "fp16" (NULL: fp32) -> CD_PREC_*; anything else is an error naming it.
int cd_precision_parse(const char *s, int *prec);
const char *cd_precision_name(int prec);
// 1 when prec stores weights and activations in 16 bits (bf16, fp16): the networks' "bf16 mode"
// (cd_unet_cuda_set_bf16 and friends), whose 16-bit format cd_precision_apply selects.
int cd_precision_half(int prec);
// Sets the process-wide CUDA modes for prec: TF32 math (tf32) and the 16-bit storage format
// (fp16 or bf16). Call it before any 16-bit copy is made (weights converted, plans built).
void cd_precision_apply(int prec);
// --deterministic: the process-wide CUDA deterministic mode (cd_cuda_set_deterministic: the
// attention backward without float atomics, so a GPU run repeats bit for bit). A no-op without CUDA.
void cd_precision_deterministic(int on);
#endif
