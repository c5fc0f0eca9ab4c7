#!/bin/bash
# Step 3b of bench/gpu-check.sh (the GPU-model engineer's part): the real UNet forward on the
# GPU, model/unet_cuda.c, built in the minimal mode of gpu-check (no Debian -dev packages:
# cJSON and the safetensors reader replaced by bench/gpu-unet/nojson/), then
#   tests/test_unet_cuda.c   GPU vs CPU forward on random tiny models, fp32 and tf32 (the
#                            golden tiny-sd/tiny-sd2/pipeline cases need the full build: step 5)
#   bench/bench_unet_cuda.c  SD1.5 shape, random weights: ms, TFLOP/s, CFG it/s at 512
# Env from gpu-check.sh: B (its build folder with libmin.a), CFL (gcc flags), LIBS (link line),
# T_TEST, T_BENCH (time bounds in s). Standalone: B=... CFL=... LIBS=... bench/gpu-unet/run.sh
set -u
cd "$(dirname "$0")/../.." || exit 2
U="$B/unet"
mkdir -p "$U"
: > "$U/build.log"
UCFL="$CFL -Ibench/gpu-unet/nojson -DCD_CJSON_STUB=1"
srcs="model/unet.c model/unet_sd15.c model/nn.c model/transformer.c model/weights.c model/nn_cuda.c model/unet_cuda.c bench/gpu-unet/nojson/st_stub.c"
objs=""
ok=1
for s in $srcs; do
  o="$U/$(basename "$s" .c).o"
  gcc $UCFL -c "$s" -o "$o" >> "$U/build.log" 2>&1 || { echo "gcc failed: $s"; ok=0; }
  objs="$objs $o"
done
if [ "$ok" = 1 ]; then
  gcc $UCFL tests/test_unet_cuda.c $objs $LIBS -o "$U/test_unet_cuda" >> "$U/build.log" 2>&1 || { echo "link failed: test_unet_cuda"; ok=0; }
  gcc $UCFL bench/bench_unet_cuda.c $objs $LIBS -o "$U/bench_unet_cuda" >> "$U/build.log" 2>&1 || { echo "link failed: bench_unet_cuda"; ok=0; }
fi
if [ "$ok" != 1 ]; then echo "unet build: FAILED"; tail -30 "$U/build.log"; exit 1; fi
echo "unet build: ok"
timeout "${T_TEST:-90}" "$U/test_unet_cuda"; echo "test_unet_cuda: exit $?"
timeout "${T_BENCH:-90}" "$U/bench_unet_cuda" 10 20; echo "bench_unet_cuda: exit $? (124 = time limit reached)"
