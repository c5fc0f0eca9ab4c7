#!/bin/sh
# The real CUDA source (every kernels/*.cu) run on the CPU by a simulator (tests/cudasim/),
# built by the Makefile into $BUILD/sim (see SIM there). Needs no GPU and no CUDA library, only
# CUDA's headers. It checks what the host emulation (kernels/emu/) cannot: the kernels'
# indexing, masking, tile skipping, reductions, shared-memory bounds and barriers, the launch
# configurations, and every cuBLAS / cuDNN / runtime call's arguments. It cannot show timing,
# the hardware's WMMA fragment layouts or GPU memory ordering.
#
# How (tests/cudasim/):
# - rewrite.py turns a .cu file's launches (k<<<g,b,s,st>>>(...)) into cusim_launch(...) and its
#   __shared__ declarations into per-block buffers, nothing else (#line keeps .cu line numbers);
# - cusim.h (force-included) + cusim.cpp run each block's CUDA threads as fibers on one OS
#   thread (blocks start in a seeded order that changes at every launch, so float atomics from
#   different blocks add in a new order each time), warps in a seeded random order, each as far
#   as it can go: __syncthreads is a block
#   barrier, every warp collective (shuffles, votes, each wmma call, __syncwarp) a warp barrier;
#   a block that can make no progress is a deadlock fault; shared memory is NaN-filled with
#   guard bytes and held to the 227 KiB limit; mma.h gives each lane only its share of a tile;
# - cudart.cpp, cublas.cpp and cudnn.cpp mock the CUDA runtime, cuBLAS and cuDNN from NVIDIA's
#   documented semantics: NaN-filled registered device memory, every addressed range checked,
#   argument validation with the documented statuses, beta = 0 never reading the output.
# CUSIM_SEED / CUSIM_SCHED=fwd|rev pick another schedule; with CUSIM_THREADS=1 the same program
# and seed always run the same one; CUSIM_MEM_MB sets the device memory (80 GiB; out-of-memory
# paths: tests/test_train.sh). A program's simulator faults are SIMFAULT lines on stderr.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
S=$BUILD/sim
CUDA_INC=${CUDA_HOME:-/usr/local/cuda}/include
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

if [ ! -f "$CUDA_INC/cuda_bf16.h" ] || [ ! -f "$CUDA_INC/cudnn.h" ]; then
  echo "SKIP cudasim: no CUDA headers in $CUDA_INC (the simulator uses CUDA's host-capable types and declarations)"; exit 0
fi
if [ ! -x "$S/cudasim/test" ]; then fail cudasim_built "$S/cudasim/test missing: run make (the sim target)"; exit 0; fi

# prog NAME BIN ARGS...: the program must exit 0, end with "N runs, 0 failures" and (unless
# it provokes faults on purpose: FAULTS_OK=1) report no simulator fault
prog() {
  name=$1; shift
  out=$(timeout 300 "$@" 2>&1); rc=$?
  last=$(echo "$out" | grep -E '^[0-9]+ runs, ' | tail -1)
  if [ "$rc" = 0 ] && echo "$last" | grep -q ' 0 failures' &&
     { [ -n "${FAULTS_OK:-}" ] || ! echo "$out" | grep -q '^SIMFAULT'; }; then
    pass "cudasim_$name ($last)"
  else
    fail "cudasim_$name" "exit $rc; $(echo "$out" | grep -E 'FAIL|SIMFAULT|failures' | head -3 | tr '\n' ' ')"
  fi
}

# The mocks against hand-worked cases in the documented conventions (they provoke range faults
# on purpose and count them)
FAULTS_OK=1 prog cublas_mock "$S/cudasim/test_cublas"
FAULTS_OK=1 prog cudnn_mock "$S/cudasim/test_cudnn"
[ -x "$S/cudasim/test_graph" ] && FAULTS_OK=1 prog graph_capture "$S/cudasim/test_graph"

# One kernel file against its CPU reference, every case:
# - kernels/cuda_attention_bf16.cu (WMMA flash attention, bf16 and fp16, plain and causal, head
#   dims 40/64/80/160, forward and backward with the token-0 detach and split queries) against
#   kernels/attention_cpu.c on 16-bit-rounded inputs: out, lse, dq, dk, dv within 1e-2 (bf16) /
#   2e-3 (fp16), token 0's dk/dv exactly 0 under the detach, in the default (atomic) and the
#   deterministic mode, whose two runs must agree bit for bit (72 cases; filter:
#   type/D/causal/Nq/Nk); head dim 160 (24 cases), whose backward widens to the fp32 kernels
#   of kernels/cuda_attention.cu;
# - kernels/cuda_norm.cu (LayerNorm, GroupNorm(+SiLU): fp32 forward and backward within 1e-5,
#   the 16-bit forwards within 1e-2 / 2e-3 of kernels/norm_cpu.c / groupnorm_cpu.c).
prog attention16 "$S/cudasim/test"
prog attention16_d160 "$S/cudasim/test" "" --d160
prog norm "$S/cudasim/test_norm"
# the same under a second schedule (lanes and warps in reverse order)
CUSIM_SCHED=rev prog attention16_reverse_schedule "$S/cudasim/test" bf16/64/1/77/77
CUSIM_SCHED=rev prog norm_reverse_schedule "$S/cudasim/test_norm"
