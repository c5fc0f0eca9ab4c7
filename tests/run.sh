#!/bin/sh
# Runs every test binary (build/tests/test_*; in cpu mode also the GPU-side tests built on
# the host emulation of the CUDA ops, build/emu/tests/test_*) and script (tests/test_*.sh), counts the
# PASS and FAIL lines, and ends with "N passed, N failed". A binary that exits non-zero
# without printing a FAIL line (a crash) counts as one failure.
# Usage: tests/run.sh [cuda]   (cuda: only the *_cuda tests and tests/*_cuda.sh, on a GPU machine)
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
export BUILD
# Idle OpenMP/OpenBLAS threads must not spin: tests share two cores with each other.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# OpenBLAS 0.3.21 does not recognise some AVX-512 CPUs (Zen 4 VMs) and falls back to its
# generic kernels, 4-5x slower; name the core type when the CPU has AVX-512 (see README).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q ' avx512f' /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
mode=${1:-cpu}
pass=0; fail=0; skip=0
log=$BUILD/test-log.txt
: > "$log"
run_one() {
  name=$1; shift
  t0=$(date +%s)
  out=$("$@" 2>&1); rc=$?
  dt=$(( $(date +%s) - t0 ))
  printf '%s\n' "$out" >> "$log"
  p=$(printf '%s\n' "$out" | grep -c '^PASS ')
  f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
  s=$(printf '%s\n' "$out" | grep -c '^SKIP ')
  printf '%s\n' "$out" | grep -E '^(FAIL|SKIP) ' | sed "s|^|  $name: |"
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    f=1; echo "  $name: FAIL exited with status $rc without a FAIL line:"; printf '%s\n' "$out" | tail -5 | sed 's/^/    /'
  fi
  printf '%-32s %3d passed %3d failed %3d skipped %4ds\n' "$name" "$p" "$f" "$s" "$dt"
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
}
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  case "$n" in *.d|*.o) continue;; esac
  case "$mode:$n" in cpu:*_cuda) continue;; cuda:*_cuda) ;; cuda:*) continue;; esac
  run_one "$n" "$t"
done
# The GPU-side model code on the host emulation of the CUDA ops (kernels/emu/, built by the
# Makefile into $BUILD/emu): run with BUILD=$BUILD/emu, so a test that runs a stage binary
# finds the emulation's ($BUILD/emu/bin/customdiff-{verify,train,sample}).
if [ "$mode" = cpu ]; then
  for t in "$BUILD"/emu/tests/test_*; do
    [ -x "$t" ] || continue
    n=$(basename "$t")
    case "$n" in *.d|*.o) continue;; esac
    run_one "emu/$n" env BUILD="$BUILD/emu" "$t"
  done
fi
# The same GPU-side tests on the CPU simulation of the real CUDA source (tests/cudasim/, built
# by the Makefile into $BUILD/sim; see tests/test_cudasim.sh): the kernels, cuBLAS/cuDNN calls
# and launches that a GPU would run. Only what finishes in seconds there (NAME or
# NAME:test1,test2 for a CD_TEST_ONLY subset), and the sampler's CUDA graph (unet_cuda_graph,
# about a minute: the host emulation cannot capture graphs); make test-sim runs them all
# (slow), as does a GPU (make test-cuda).
SIM_FAST="test_runtime_cuda test_fp16_cuda test_causal16_cuda test_nn16_cuda test_clip_cuda
  test_kernels_cuda:cuda_attention_small,cuda_attention_bf16_small,cuda_attention_deterministic_small,cuda_deterministic_reductions,cuda_embeddings,cuda_optim,cuda_linear,cuda_layernorm
  test_unet_cuda:unet_cuda_golden_tiny_sd,vae_cuda_golden_tiny_sd,vae_cuda_golden_tiny_sd2,unet_cuda_graph
  test_unet_train_cuda:unet_train_cuda_v1_unfused_bf16,unet_train_cuda_v2_fused_40_64,unet_train_cuda_deterministic,unet_train_cuda_params,unet_train_cuda_errors,unet_train_cuda_plan,block_transformer_cuda,golden_blocks_sd15_cuda"
if [ "$mode" = cpu ]; then
  for e in $SIM_FAST; do
    n=${e%%:*}; only=; [ "$n" != "$e" ] && only=${e#*:}
    t=$BUILD/sim/tests/$n
    [ -x "$t" ] && run_one "sim/$n" env BUILD="$BUILD/sim" CD_TEST_ONLY="$only" "$t"
  done
fi
for s in tests/test_*.sh; do
  [ -f "$s" ] || continue
  case "$mode:$s" in cpu:*_cuda.sh) continue;; cuda:*_cuda.sh) ;; cuda:*) continue;; esac
  run_one "$(basename "$s")" sh "$s"
done
echo "(log: $log; $skip skipped)"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
