#!/bin/sh
# The real CUDA source of the 16-bit flash attention (kernels/cuda_attention_bf16.cu: WMMA
# forward and backward, bf16 and fp16, plain and causal) run on the CPU by a simulator
# (tests/cudasim/), against the fp32 CPU reference (kernels/attention_cpu.c) on 16-bit-rounded
# inputs: out, lse, dq, dk, dv within 1e-2 (bf16) / 2e-3 (fp16), NaN never passes, token 0's
# dk/dv exactly 0 under detach_k0. Needs no GPU: it checks the kernels' indexing, masking, tile
# skipping, shared-memory bounds and barriers, which the host emulation (kernels/emu/) does not
# run. It cannot show timing, the hardware's WMMA fragment layouts or GPU memory ordering.
#
# How (tests/cudasim/): rewrite.py turns the kernel file's launches (k<<<g,b,s,st>>>(...)) into
# cusim_launch(...) calls and its two extern __shared__ declarations into the simulator's
# buffer, nothing else; cusim.h (force-included) runs each block's threads as std::threads with
# __syncthreads a block barrier and every warp collective (__shfl_xor_sync, each wmma call) a
# warp barrier; mma.h gives each lane the whole 16x16 fragment and checks pointers, ldm and
# alignment; cusim.cpp NaN-fills shared memory with guard bytes and holds the 227 KiB limit.
# make test runs a few shapes (~1 min); all 72: $BUILD/cudasim/test (filter: type/D/causal/Nq/Nk).
# Also the norms (kernels/cuda_norm.cu, below): rewrite.py also turns static __shared__ arrays into
# per-block buffers; 2-D blocks (k_ln_dgdb's 32x8) run with warps over the linear thread index.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
O=$BUILD/cudasim
CUDA_INC=${CUDA_HOME:-/usr/local/cuda}/include
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

if [ ! -f "$CUDA_INC/cuda_bf16.h" ] || [ ! -f "$CUDA_INC/cuda_fp16.h" ]; then
  echo "SKIP cudasim: no CUDA headers in $CUDA_INC (the simulator uses CUDA's host-capable bf16/fp16 types)"; exit 0
fi
command -v g++ > /dev/null 2>&1 || { echo "SKIP cudasim: no g++"; exit 0; }
command -v python3 > /dev/null 2>&1 || { echo "SKIP cudasim: no python3 (tests/cudasim/rewrite.py)"; exit 0; }

mkdir -p "$O"
SRC=kernels/cuda_attention_bf16.cu
# rebuild when the kernel or the simulator changed
if [ ! -x "$O/test" ] || [ -n "$(find "$SRC" kernels/cuda_common.h kernels/attention_cpu.c tests/cudasim -newer "$O/test" 2>/dev/null)" ]; then
  CXXF="-std=c++17 -pthread -I tests/cudasim -I . -I $CUDA_INC -include cusim.h -O2 -Wall -Wno-unknown-pragmas -Wno-unused-function"
  if python3 tests/cudasim/rewrite.py "$SRC" "$O/cuda_attention_bf16_sim.cpp" > "$O/build.log" 2>&1 &&
     gcc -std=gnu11 -O2 -I . -c kernels/attention_cpu.c -o "$O/attention_cpu.o" -Wno-unknown-pragmas >> "$O/build.log" 2>&1 &&
     g++ $CXXF -c tests/cudasim/cusim.cpp -o "$O/cusim.o" >> "$O/build.log" 2>&1 &&
     g++ $CXXF -c "$O/cuda_attention_bf16_sim.cpp" -o "$O/attn.o" >> "$O/build.log" 2>&1 &&
     g++ $CXXF -c tests/cudasim/test.cpp -o "$O/test.o" >> "$O/build.log" 2>&1 &&
     g++ -pthread "$O/attention_cpu.o" "$O/cusim.o" "$O/attn.o" "$O/test.o" -o "$O/test" -lm >> "$O/build.log" 2>&1; then
    pass "cudasim_build (the unmodified kernel source, launches rewritten)"
  else
    fail cudasim_build "$(grep -E 'error|Error|assert' "$O/build.log" | head -3 | tr '\n' ' ')"; exit 0
  fi
fi

# type/D/causal/Nq/Nk: the CLIP text shape causal (bf16), cross attention 64 queries x 77 keys
# with the token-0 detach (fp16), causal at an odd length over 2 batches with fp32 out (fp16, head
# dim 40), plain with Nq != Nk (bf16, head dim 80)
for f in bf16/64/1/77/77 fp16/64/0/64/77 fp16/40/1/37/37 bf16/80/0/130/20; do
  if out=$(timeout 300 "$O/test" "$f" 2>&1) && echo "$out" | grep -q "^1 runs, 0 failures, 0 simulator faults"; then
    pass "cudasim_attention_$f ($(echo "$out" | grep -o 'out=[0-9.e+-]* lse.*dv=[0-9.e+-]*' | head -1))"
  else
    fail "cudasim_attention_$f" "$(echo "$out" | grep -v '^$' | tail -3 | tr '\n' ' ')"
  fi
done

# The norms (kernels/cuda_norm.cu: LayerNorm, GroupNorm(+SiLU) fp32 forward and backward within
# 1e-5 of kernels/norm_cpu.c / groupnorm_cpu.c, the 16-bit-storage forwards in bf16 and fp16 within
# 1e-2 / 2e-3): a second program, tests/cudasim/test_norm.cpp (all shapes: $BUILD/cudasim/test_norm).
NSRC=kernels/cuda_norm.cu
if [ ! -x "$O/test_norm" ] || [ -n "$(find "$NSRC" kernels/cuda_common.h kernels/norm_cpu.c kernels/groupnorm_cpu.c tests/cudasim -newer "$O/test_norm" 2>/dev/null)" ]; then
  CXXF="-std=c++17 -pthread -I tests/cudasim -I . -I $CUDA_INC -include cusim.h -O2 -Wall -Wno-unknown-pragmas -Wno-unused-function"
  if python3 tests/cudasim/rewrite.py "$NSRC" "$O/cuda_norm_sim.cpp" > "$O/build_norm.log" 2>&1 &&
     gcc -std=gnu11 -O2 -I . -c kernels/norm_cpu.c -o "$O/norm_cpu.o" -Wno-unknown-pragmas >> "$O/build_norm.log" 2>&1 &&
     gcc -std=gnu11 -O2 -I . -c kernels/groupnorm_cpu.c -o "$O/groupnorm_cpu.o" -Wno-unknown-pragmas >> "$O/build_norm.log" 2>&1 &&
     g++ $CXXF -c tests/cudasim/cusim.cpp -o "$O/cusim_n.o" >> "$O/build_norm.log" 2>&1 &&
     g++ $CXXF -c "$O/cuda_norm_sim.cpp" -o "$O/norm.o" >> "$O/build_norm.log" 2>&1 &&
     g++ $CXXF -c tests/cudasim/test_norm.cpp -o "$O/test_norm.o" >> "$O/build_norm.log" 2>&1 &&
     g++ -pthread "$O/norm_cpu.o" "$O/groupnorm_cpu.o" "$O/cusim_n.o" "$O/norm.o" "$O/test_norm.o" -o "$O/test_norm" -lm >> "$O/build_norm.log" 2>&1; then
    pass "cudasim_norm_build (the unmodified kernel source, launches and __shared__ rewritten)"
  else
    fail cudasim_norm_build "$(grep -E 'error|Error|assert' "$O/build_norm.log" | head -3 | tr '\n' ' ')"; exit 0
  fi
fi
# filters: LayerNorm 77 x 768 (CLIP text) in fp32 fwd+bwd, bf16, fp16; GroupNorm 1x32 at an odd
# 7x9 with 8 groups +SiLU, all three modes; GroupNorm 2x64x16x16, 32 groups, bf16
for f in ln/77/768/ gn/1/32/7x9/8/silu/ gn/2/64/16x16/32/plain/bf16; do
  if out=$(timeout 300 "$O/test_norm" "$f" 2>&1) && echo "$out" | grep -q "runs, 0 failures, 0 simulator faults"; then
    pass "cudasim_norm_$f ($(echo "$out" | grep ' PASS$' | awk '{ m = $1; sub(".*/", "", m); for (i = 2; i < NF; i++) { split($i, kv, "=");
      k = m " " kv[1]; if (!(k in w) || kv[2] + 0 > w[k] + 0) { if (!(k in w)) o[++n] = k; w[k] = kv[2] } } }
      END { for (i = 1; i <= n; i++) printf "%s%s=%s", (i > 1 ? " " : ""), o[i], w[o[i]] }'))"
  else
    fail "cudasim_norm_$f" "$(echo "$out" | grep -v '^$' | grep -v PASS | tail -3 | tr '\n' ' ')"
  fi
done
