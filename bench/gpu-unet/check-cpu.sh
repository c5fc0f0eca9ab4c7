#!/bin/bash
# Checks the GPU UNet/VAE/sampler walk without a GPU: builds tests/test_unet_cuda.c and
# model/{nn,unet,vae,sampler}_cuda.c with -DCD_CUDA against bench/gpu-unet/fake_cuda.c (each
# twin replaced by its CPU reference) and the CPU-only library, then runs the test (random
# tiny models, the golden unet/vae/pipeline cases). ~2 minutes on 2 cores.
# Usage: bench/gpu-unet/check-cpu.sh   (after: make BUILD=build-cpu CUDA=0 all; env BUILD)
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-cpu}
[ -f "$BUILD/libcustomdiff.a" ] || make BUILD="$BUILD" CUDA=0 -j2 "$BUILD/libcustomdiff.a" >/dev/null
LIBS=$(make -s -p BUILD="$BUILD" CUDA=0 -n 2>/dev/null | sed -n 's/^LDLIBS *:= *//p' | head -1)
mkdir -p "$BUILD/gpu-unet"
gcc -O2 -g -fopenmp -std=gnu11 -I. -D_GNU_SOURCE -DCD_CUDA=1 -Wall -Wno-unused-parameter \
  bench/gpu-unet/fake_cuda.c model/nn_cuda.c model/unet_cuda.c model/vae_cuda.c model/sampler_cuda.c \
  tests/test_unet_cuda.c tests/testlib.c "$BUILD/libcustomdiff.a" $LIBS -o "$BUILD/gpu-unet/test_unet_fake"
"$BUILD/gpu-unet/test_unet_fake"
