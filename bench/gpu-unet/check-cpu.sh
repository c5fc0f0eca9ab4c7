#!/bin/bash
# Checks the GPU UNet/VAE/sampler walk without a GPU: builds tests/test_unet_cuda.c and
# model/{nn,unet,vae,sampler}_cuda.c with -DCD_CUDA against bench/gpu-unet/fake_cuda.c (each
# twin replaced by its CPU reference) and the CPU-only library, then runs the test (random
# tiny models, the golden unet/vae/pipeline cases, customdiff-sample --device cuda built the
# same way). ~2 minutes on 2 cores.
# Usage: bench/gpu-unet/check-cpu.sh   (after: make BUILD=build-cpu CUDA=0 all; env BUILD)
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-cpu}
[ -f "$BUILD/libcustomdiff.a" ] || make BUILD="$BUILD" CUDA=0 -j2 "$BUILD/libcustomdiff.a" >/dev/null
LIBS=$(make -s -p BUILD="$BUILD" CUDA=0 -n 2>/dev/null | sed -n 's/^LDLIBS *:= *//p' | head -1)
F="$BUILD/gpu-unet"
mkdir -p "$F/bin"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
CUDART="-L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lcudart"   # graph API symbols (never called)
CFL="-O2 -g -fopenmp -std=gnu11 -I. -I$CUDA_HOME/include -D_GNU_SOURCE -DCD_CUDA=1 -DCD_VERSION=\"fake-cuda\" -Wall -Wno-unused-parameter"
GPU="bench/gpu-unet/fake_cuda.c model/nn_cuda.c model/unet_cuda.c model/vae_cuda.c model/sampler_cuda.c"
gcc $CFL $GPU tests/test_unet_cuda.c tests/testlib.c "$BUILD/libcustomdiff.a" $LIBS $CUDART -o "$F/test_unet_fake"
gcc $CFL $GPU sample/*.c "$BUILD/libcustomdiff.a" $LIBS $CUDART -o "$F/bin/customdiff-sample"
BUILD="$F" "$F/test_unet_fake"
