#!/bin/bash
# The real UNet on the GPU (model/unet_cuda.c) from bench/gpu-check.sh's minimal build: since the
# check builds model/ itself (step 1, cJSON replaced by bench/gpu-unet/nojson/) and runs these in
# its steps 2b and 3b, this only reruns them by hand:
#   tests/test_unet_cuda.c   GPU vs CPU forward on random tiny models, fp32 and tf32 (the golden
#                            tiny-sd/tiny-sd2/pipeline cases need the full build: gpu-check step 4)
#   bench/bench_unet_cuda.c  SD1.5 shape, random weights: ms, TFLOP/s, CFG it/s at 512
# Usage: bench/gpu-check.sh --build-only && bench/gpu-unet/run.sh   (env B: the build folder,
#        default build-gpu-min; T_TEST, T_BENCH: time bounds in s)
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${B:-build-gpu-min}
for f in test_unet_cuda bench_unet_cuda; do
  [ -x "$B/$f" ] || { echo "$B/$f: not built (run bench/gpu-check.sh --build-only first)"; exit 1; }
done
timeout "${T_TEST:-90}" "$B/test_unet_cuda"; echo "test_unet_cuda: exit $?"
timeout "${T_BENCH:-90}" "$B/bench_unet_cuda" 10 20; echo "bench_unet_cuda: exit $? (124 = time limit reached)"
