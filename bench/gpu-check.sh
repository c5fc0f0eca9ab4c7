#!/bin/bash
# The one prepared GPU check (H100/H200, 16 cores, no network), < 8 minutes in all. One run gives
# the whole table of issue 6 (summary at the end, also when a step fails or time runs out):
#   1. builds, with a minimal dependency set (nvcc + gcc + cuBLAS; cuDNN and OpenBLAS when
#      present, a naive cblas_sgemm stand-in otherwise; cJSON and utf8proc replaced by refusing
#      stand-ins, bench/gpu-unet/nojson/)
#      -- no Debian -dev package is needed: kernels/*.cu + *_cpu.c, model/*.c (random-weight
#      models), the twin test, test_unet_cuda, bench_gpu, bench_unet_cuda, bench_train_cuda;
#   2. the headline measurements, first, while time is plentiful:
#      2a. bench/bench_train_cuda.c: one Custom Diffusion training step at SD1.5 / 512, 2 + 2
#          images, bf16 (latents cached / not, gradient checkpointing off / on) and tf32: ms,
#          TFLOP/s, % of the bf16 GEMM rate measured in the same run, planned / peak memory;
#      2b. bench/bench_unet_cuda.c: UNet forward ms + TFLOP/s, CFG sampling it/s at 512 (fp32,
#          tf32, bf16, bf16 + CUDA graph);
#      2c. bench/gpu/torch_sd15.py (when python3 has torch): the same shapes in PyTorch eager,
#          for the customdiff / PyTorch ratios;
#   3. the twin test (tests/test_kernels_cuda.c: every op vs its CPU reference), failures rerun
#      one by one; 3b. tests/test_unet_cuda.c (GPU vs CPU UNet, random tiny models);
#   4. make test-cuda: from the carried bundle .gpu-bundle/ (bench/gpu-bundle.sh, built on a
#      developer machine: every test_*_cuda, customdiff-verify --device cuda fp32 + bf16 over the
#      golden sets in it), else a full `make CUDA=1` when the -dev packages are here, else skipped;
#   5. bench/bench_gpu.c (GEMM ceilings, fused vs naive attention, norms, convs);
#   6. compute-sanitizer memcheck + racecheck over the small twin tests (bounded);
#   7. the summary table (bench/gpu/summary.sh: targets, PASS / MISS), printed by the exit trap.
# Every step is time-bounded; a failing step is reported and the next one still runs. Never
# changes clocks or GPU settings. Output: stdout and bench/results/gpu-<name>.txt, copied to
# $OUT when set (the device tool returns files from there).
# Usage: bench/gpu-check.sh [--build-only]
# Env: GPU_CHECK_TOTAL (hard limit, default 440 s), GPU_CHECK_LIMIT (steps plan to end by it,
#      default TOTAL - 25), GPU_CHECK_SKIP_MAKE=1 (skip step 4), GPU_CHECK_NO_TORCH=1,
#      GPU_CHECK_NO_BLAS=1 (use the cblas stand-in even where OpenBLAS is installed),
#      GPU_CHECK_TINY=1 (benches at tiny shapes), GPU_CHECK_BUILD (build folder, default
#      build-gpu-min), GPU_CHECK_EMU=1 (a smoke run of this script on a machine without a GPU:
#      the host emulation kernels/emu/ replaces the .cu twins, tiny shapes, no twin test,
#      op bench or sanitizer).
set -u
cd "$(dirname "$0")/.." || exit 2
# The whole check runs under one hard wall-clock limit; each step also bounds itself so that
# the report is complete before that.
if [ -z "${GPU_CHECK_INNER:-}" ]; then
  GPU_CHECK_INNER=1 exec timeout -k 10 "${GPU_CHECK_TOTAL:-440}" "$0" "$@"
fi
trap 'exit 143' TERM
T0=$(date +%s)
LIMIT=${GPU_CHECK_LIMIT:-$(( ${GPU_CHECK_TOTAL:-440} - 25 ))}
JOBS=$(nproc 2>/dev/null || echo 4)
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=$(command -v nvcc 2>/dev/null || echo "$CUDA_HOME/bin/nvcc")
B=${GPU_CHECK_BUILD:-build-gpu-min}
EMU=${GPU_CHECK_EMU:-}             # 1: kernels/emu/ instead of the .cu files (no GPU; tiny shapes)
TINY=${GPU_CHECK_TINY:-$EMU}
left() { echo $((LIMIT - ($(date +%s) - T0))); }
bound() { local want=$1 l; l=$(left); [ "$want" -gt "$l" ] && want=$l; [ "$want" -lt 1 ] && want=1; echo "$want"; }
hdr() { echo; echo "== $* (t=$(( $(date +%s) - T0 ))s, $(left)s left)"; }

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
tag=$(printf '%s' "${gpu:-no-gpu}" | tr -c 'A-Za-z0-9._-' '-' | sed 's/-*$//')
mkdir -p bench/results "$B"
RES=bench/results/gpu-$tag.txt
# Everything printed goes to stdout, the results file and (when set) $OUT as it happens,
# so a hard kill still leaves the report behind.
OUTCOPY=""; [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && OUTCOPY="$OUT/gpu-$tag.txt"
exec 3>&1 > >(tee "$RES" $OUTCOPY) 2>&1
finish() {
  trap - TERM
  bench/gpu/summary.sh "$B" 2>&1
  echo; echo "== done in $(( $(date +%s) - T0 ))s; results in $RES"
  exec 1>&3 2>&3; sleep 1 # let tee flush the results file
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    [ -f "$B/test.log" ] && cp "$B/test.log" "$OUT/twin-test.log"
    [ -f "$B/build.log" ] && cp "$B/build.log" "$OUT/build.log"
    [ -f "$B/make-test-cuda.log" ] && cp "$B/make-test-cuda.log" "$OUT/make-test-cuda.log"
  fi
}
trap finish EXIT
rm -f "$B"/*.out   # the summary reads this run's step outputs only

hdr "machine"
echo "date: $(date -u)  commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')  cores: $JOBS"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | head -3
"$NVCC" --version 2>&1 | tail -2
gcc --version 2>&1 | head -1
echo "glibc: $(ldd --version 2>&1 | head -1)"

# ---- what is here --------------------------------------------------------------------
have_hdr() { echo "#include <$1>" | gcc -E -x c - -I"$CUDA_HOME/include" $2 >/dev/null 2>&1; }
have_lib() { echo 'int main(void){return 0;}' | gcc -x c - -o /dev/null $1 >/dev/null 2>&1; }
CUDNN_INC=""; CUDNN_LIB=""; CUDNN_DIR=""
for dir in "$CUDA_HOME/lib64" /usr/lib/x86_64-linux-gnu "$CUDA_HOME/targets/x86_64-linux/lib"; do
  have_hdr cudnn.h "" || break
  if [ -e "$dir/libcudnn.so" ]; then CUDNN_LIB="-L$dir -lcudnn"; CUDNN_DIR=$dir; break; fi
  if [ -e "$dir/libcudnn.so.9" ]; then CUDNN_LIB="-L$dir -l:libcudnn.so.9"; CUDNN_DIR=$dir; break; fi
done
if [ -z "$CUDNN_LIB" ]; then # the PyTorch wheel's cuDNN (nvidia-cudnn-cu13), if any
  d=$(python3 -c 'import nvidia.cudnn,os;print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || \
      python3 -c 'import nvidia.cudnn,os;print(list(nvidia.cudnn.__path__)[0])' 2>/dev/null)
  if [ -n "$d" ] && [ -f "$d/include/cudnn.h" ] && ls "$d"/lib/libcudnn.so.9 >/dev/null 2>&1; then
    CUDNN_INC="-I$d/include"; CUDNN_LIB="-L$d/lib -l:libcudnn.so.9 -Wl,-rpath,$d/lib"; CUDNN_DIR=$d/lib
    export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" # cuDNN dlopens its sub-libraries
  fi
fi
NVFLAGS="-O3 -std=c++17 -I. -lineinfo --expt-relaxed-constexpr -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=compute_80 $CUDNN_INC"
[ -z "$CUDNN_LIB" ] && NVFLAGS="$NVFLAGS -DCD_NO_CUDNN" && echo "cuDNN: not found (conv twins will report 'built without cuDNN')"
[ -n "$CUDNN_LIB" ] && echo "cuDNN: $CUDNN_LIB"
ARCH="-march=x86-64-v2"; have_lib "$ARCH" || ARCH="" # gcc < 11 lacks the level names
CFL="-O2 -g $ARCH -fopenmp -std=gnu11 -I. -D_GNU_SOURCE -DCD_CUDA=1 -DCD_VERSION=\"gpu-check\" -I$CUDA_HOME/include"
BLAS_LIB=""; BLAS_OBJ=""
if [ -z "${GPU_CHECK_NO_BLAS:-}" ] && have_hdr cblas.h "" && have_lib -lopenblas; then BLAS_LIB="-lopenblas"; echo "BLAS: OpenBLAS"
else CFL="$CFL -Ibench/gpu/fallback"; BLAS_OBJ="$B/cblas_naive.o"; echo "BLAS: no OpenBLAS -dev; CPU references use bench/gpu/fallback/cblas_naive.c"; fi
# model/ and the rest of core/ against the cJSON and utf8proc stand-ins (random-weight models
# read no JSON and tokenize nothing)
MCFL="$CFL -Ibench/gpu-unet/nojson -DCD_CJSON_STUB=1"
LIBS="$B/libmin.a $CUDNN_LIB -L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lcublasLt -lcublas -lcudart $BLAS_LIB -lstdc++ -lgomp -lpthread -lm"
if [ -n "$EMU" ]; then
  CFL="$CFL -DCD_CUDA_EMU=1"; MCFL="$MCFL -DCD_CUDA_EMU=1"
  LIBS="$B/libmin.a $BLAS_LIB -lstdc++ -lgomp -lpthread -lm"
  echo "EMULATION (GPU_CHECK_EMU): kernels/emu/*.c instead of kernels/*.cu; tiny shapes; no GPU numbers"
fi
MLIBS="$B/libmodel.a $LIBS"

# ---- 1. minimal build -------------------------------------------------------------------
hdr "1. build (minimal: kernels/*.cu + *_cpu.c, core/, model/ with the cJSON stand-in, tests, benches)"
build() {
  set -e
  : > "$B/build.log"
  mkdir -p "$B/m"
  if [ -z "$EMU" ]; then
    ls kernels/*.cu | xargs -P "$JOBS" -I{} sh -c 'o='"$B"'/$(basename {} .cu).cu.o; '"$NVCC $NVFLAGS"' -c {} -o $o >> '"$B"'/build.log 2>&1 || { echo "nvcc failed: {}"; exit 255; }' &
  else true & fi
  nv=$!
  srcs="$(ls kernels/*.c) core/err.c core/fileio.c tests/testlib.c"
  [ -n "$EMU" ] && srcs="$srcs $(ls kernels/emu/*.c)"
  [ -n "$BLAS_OBJ" ] && srcs="$srcs bench/gpu/fallback/cblas_naive.c"
  echo $srcs | tr ' ' '\n' | xargs -P "$JOBS" -I{} sh -c 'gcc '"$CFL"' -c {} -o '"$B"'/$(basename {} .c).o >> '"$B"'/build.log 2>&1 || { echo "gcc failed: {}"; exit 255; }'
  # the rest of core/ (into libmin.a) and model/ (libmodel.a) where they compile here, against
  # the cJSON stand-in (some need other -dev headers: left out; an archive only contributes
  # what a binary references, so a missing one fails only the links that need it)
  ls core/*.c bench/gpu-unet/nojson/cjson_stub.c bench/gpu-unet/nojson/utf8proc_stub.c | grep -v -e core/err.c -e core/fileio.c | xargs -P "$JOBS" -I{} sh -c 'gcc '"$MCFL"' -c {} -o '"$B"'/core_$(basename {} .c).o 2>>'"$B"'/build-optional.log || echo "  (left out: {})" >> '"$B"'/build-optional.log'
  ls model/*.c | xargs -P "$JOBS" -I{} sh -c 'gcc '"$MCFL"' -c {} -o '"$B"'/m/$(basename {} .c).o 2>>'"$B"'/build-optional.log || echo "  (left out: {})" >> '"$B"'/build-optional.log'
  wait $nv
  rm -f "$B/libmin.a" "$B/libmodel.a"; ar rcs "$B/libmin.a" "$B"/*.o; ar rcs "$B/libmodel.a" "$B"/m/*.o
  [ -n "$EMU" ] && return 0   # the twin test and the op bench measure the .cu kernels only
  for t in "tests/test_kernels_cuda.c:$B/test_kernels_cuda:$LIBS" "bench/bench_gpu.c:$B/bench_gpu:$LIBS"; do
    IFS=: read -r src out libs <<< "$t"
    gcc $MCFL "$src" $libs -o "$out" >> "$B/build.log" 2>&1 || { echo "link failed: $src"; exit 1; }
  done
}
# the model-level binaries: each links on its own (a missing dependency fails that one only)
build_model_bins() {
  local ok=0 src out
  for src in tests/test_unet_cuda.c tests/test_nn16_cuda.c tests/test_unet_train_cuda.c bench/bench_unet_cuda.c bench/bench_train_cuda.c; do
    out="$B/$(basename "$src" .c)"; rm -f "$out"
    if [ ! -f "$src" ]; then echo "  $src: not in this checkout"; continue; fi
    if gcc $MCFL "$src" $MLIBS -o "$out" >> "$B/build-model.log" 2>&1; then ok=$((ok + 1))
    else echo "  link failed: $src (see $B/build-model.log):"; grep -E 'error|undefined' "$B/build-model.log" | tail -8 | sed 's/^/    /'; fi
  done
  echo "model binaries: $ok of 5 built"
}
rm -rf "$B"/*.o "$B"/m "$B"/build-*.log
if ( build ); then echo "build: ok ($(ls "$B"/*.o | wc -l) kernel/core objects, $(ls "$B"/m/*.o 2>/dev/null | wc -l) model/core objects)"; BUILD_OK=1
else echo "build: FAILED"; tail -40 "$B/build.log"; BUILD_OK=0; fi
grep -h "left out" "$B/build-optional.log" 2>/dev/null | tr '\n' ' ' | sed 's/^/(compiled without: /; s/$/)\n/'
[ "$BUILD_OK" = 1 ] && build_model_bins
echo "build: $(( $(date +%s) - T0 )) s"
[ "${1:-}" = "--build-only" ] && exit $((1 - BUILD_OK))

if [ "$BUILD_OK" = 1 ]; then
# ---- 2. the headline measurements -------------------------------------------------------------
  tiny=""; [ -n "$TINY" ] && tiny="--tiny"
  ta="--iters 10 --warmup 3 --prec bf16,fp16,tf32"; ua="10 20"; pa="--iters 10 --warmup 3 --steps 20"
  [ -n "$TINY" ] && ua="3 5 tiny"
  [ -n "$EMU" ] && { ta="--iters 1 --warmup 0 --prec bf16"; ua="1 2 tiny"; pa="--iters 2 --warmup 1 --steps 3"; }
  hdr "2a. Custom Diffusion training step (bench/bench_train_cuda.c, SD1.5 shape, random weights)"
  if [ -x "$B/bench_train_cuda" ]; then
    # the bench stops starting new configurations after --time-limit; the timeout is the backstop
    tl=$(bound 130); timeout "$(( tl + 20 ))" "$B/bench_train_cuda" $tiny $ta \
      --time-limit "$tl" 2>&1 | tee "$B/train.out"; echo "bench_train_cuda: exit ${PIPESTATUS[0]} (124 = time limit reached)"
  else echo "bench_train_cuda: not built (see the build step)"; fi

  hdr "2b. UNet forward and CFG sampling (bench/bench_unet_cuda.c, model/unet_cuda.c)"
  if [ -x "$B/bench_unet_cuda" ]; then
    timeout "$(bound 70)" "$B/bench_unet_cuda" $ua 2>&1 | tee "$B/unet.out"; echo "bench_unet_cuda: exit ${PIPESTATUS[0]} (124 = time limit reached)"
  else echo "bench_unet_cuda: not built (see the build step)"; fi

  hdr "2c. PyTorch eager, the same shapes (bench/gpu/torch_sd15.py)"
  if [ -n "${GPU_CHECK_NO_TORCH:-}" ]; then echo "torch: skipped (GPU_CHECK_NO_TORCH)"
  elif ! python3 -c 'import torch' 2>/dev/null; then echo "torch: skipped: python3 has no torch"
  elif [ -z "$TINY" ] && ! python3 -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    echo "torch: skipped: torch sees no GPU (the SD1.5 shapes on the CPU would take too long)"
  elif [ "$(left)" -lt 150 ]; then echo "torch: skipped: only $(left)s left"
  else
    PYTHONUNBUFFERED=1 timeout "$(bound 100)" python3 bench/gpu/torch_sd15.py $tiny $pa \
      2>&1 | tee "$B/torch.out"; echo "torch_sd15.py: exit ${PIPESTATUS[0]} (124 = time limit reached)"
  fi

# ---- 3. twin test ---------------------------------------------------------------------------
  hdr "3. twin test: every CUDA op vs its CPU reference"
  if [ -n "$EMU" ]; then echo "twin test: skipped (emulation)"; else
  timeout "$(bound 100)" "$B/test_kernels_cuda" > "$B/test.log" 2>&1; rc=$?
  cat "$B/test.log"
  echo "twin test: exit $rc; $(grep -c '^PASS ' "$B/test.log") passed, $(grep -c '^FAIL ' "$B/test.log") failed, $(grep -c '^SKIP ' "$B/test.log") skipped" | tee "$B/twin.out"
  [ "$rc" = 124 ] && echo "twin test: TIMED OUT"
  # A crash or a sticky CUDA error ends or poisons the rest of the run: rerun every test
  # that failed or never reported, each in a fresh process, so every op still gets a verdict.
  if [ "$rc" != 0 ]; then
    for t in $("$B/test_kernels_cuda" --list); do
      grep -q "^PASS $t\$\|^SKIP $t:" "$B/test.log" && continue
      [ "$(left)" -lt 150 ] && { echo "rerun: no time left for $t"; continue; }
      echo "-- rerun alone: $t"
      CD_TEST_ONLY=$t timeout "$(bound 30)" "$B/test_kernels_cuda" 2>&1 | tail -40; echo "   exit ${PIPESTATUS[0]}"
    done
  fi
  fi
  if [ -f .gpu-bundle/manifest.txt ] && [ -z "${GPU_CHECK_SKIP_MAKE:-}" ]; then
    echo "(3b. test_unet_cuda: runs in step 4 from the bundle, with its golden cases)"
  elif [ -x "$B/test_unet_cuda" ] && [ "$(left)" -gt 100 ]; then
    hdr "3b. tests/test_unet_cuda.c: GPU vs CPU UNet forward (random tiny models; golden cases: step 4)"
    timeout "$(bound 45)" "$B/test_unet_cuda" 2>&1 | tail -30; echo "test_unet_cuda: exit ${PIPESTATUS[0]}"
    for t in test_nn16_cuda test_unet_train_cuda; do   # bf16 activation layers; the training walk
      [ -x "$B/$t" ] && [ "$(left)" -gt 90 ] || continue
      timeout "$(bound 40)" "$B/$t" 2>&1 | tail -20; echo "$t: exit ${PIPESTATUS[0]}"
    done
  fi

fi

# ---- 4. the project's own make test-cuda ----------------------------------------------------------
hdr "4. make test-cuda (full project: every test_*_cuda, customdiff-verify --device cuda on golden sets)"
missing=""
for h in curl/curl.h lmdb.h turbojpeg.h png.h webp/decode.h cjson/cJSON.h utf8proc.h microhttpd.h cblas.h lapacke.h; do
  have_hdr "$h" "" || missing="$missing $h"
done
[ -f /usr/include/faiss/Index.h ] || missing="$missing faiss/Index.h"
if [ -n "${GPU_CHECK_SKIP_MAKE:-}" ]; then
  echo "make test-cuda: skipped (GPU_CHECK_SKIP_MAKE set)"
elif [ "$(left)" -lt 45 ]; then
  echo "make test-cuda: skipped: only $(left)s left"
elif [ -f .gpu-bundle/manifest.txt ]; then
  # prebuilt on a developer machine by bench/gpu-bundle.sh, carried with carry: [".gpu-bundle"]
  skip=""; grep -q 'passed' "$B/twin.out" 2>/dev/null && skip=test_kernels_cuda   # ran in step 3
  BUNDLE_SKIP="$skip" CUDNN_DIR="$CUDNN_DIR" timeout "$(bound 200)" .gpu-bundle/run.sh 2>&1 | tee "$B/make-test-cuda.log" | tail -60
  echo "make test-cuda (bundle): exit ${PIPESTATUS[0]} (124 = time limit reached; full log $B/make-test-cuda.log)"
  grep -E '^[0-9]+ passed, [0-9]+ failed' "$B/make-test-cuda.log" | tail -1 > "$B/maketest.out"
elif [ -n "$missing" ]; then
  echo "make test-cuda: skipped: no .gpu-bundle/ carried (bench/gpu-bundle.sh) and headers missing here:$missing"
  echo "(no network for make deps); the twin test above is the same tests/test_kernels_cuda.c"
else
  mkdir -p build-gpu; timeout "$(bound 200)" make BUILD=build-gpu CUDA=1 -j"$JOBS" build > build-gpu/make.log 2>&1 && \
    BUILD=build-gpu CD_DEVICE=cuda timeout "$(bound 200)" ./tests/run.sh cuda 2>&1 | tee "$B/make-test-cuda.log" | tail -40
  echo "make test-cuda: exit $? (full log: build-gpu/make.log)"; tail -5 build-gpu/make.log
  grep -E '^[0-9]+ passed, [0-9]+ failed' "$B/make-test-cuda.log" | tail -1 > "$B/maketest.out"
fi

if [ "$BUILD_OK" = 1 ] && [ -z "$EMU" ]; then
# ---- 5. op benchmarks -------------------------------------------------------------------------
  hdr "5. op benchmarks (bench/bench_gpu.c)"
  q=""; [ "$(left)" -lt 200 ] && q=quick
  if [ "$(left)" -gt 60 ]; then
    timeout "$(bound 60)" "$B/bench_gpu" $q 2>&1 | tee "$B/ops.out"; echo "bench: exit ${PIPESTATUS[0]}"
  else echo "bench_gpu: skipped ($(left)s left)"; fi

# ---- 6. compute-sanitizer -------------------------------------------------------------------
  hdr "6. compute-sanitizer memcheck (small twin tests)"
  CS=$(command -v compute-sanitizer || ls "$CUDA_HOME"/bin/compute-sanitizer 2>/dev/null || ls /usr/local/cuda*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
  if [ -n "$CS" ] && [ "$(left)" -gt 60 ]; then
    CD_TEST_ONLY=cuda_attention_small,cuda_attention_bf16_small,cuda_attention_fp16_small,cuda_attention_causal_bf16,cuda_attention_bad_dim,cuda_layernorm,cuda_gemm_bf16,cuda_gemm_fp16,cuda_arith,cuda_layout,cuda_embeddings,cuda_geglu,cuda_linear,cuda_optim,cuda_attention_deterministic_small,cuda_deterministic_reductions \
      timeout "$(bound 50)" "$CS" --tool memcheck --print-limit 20 "$B/test_kernels_cuda" 2>&1 | grep -E '^(PASS|FAIL|SKIP)|ERROR SUMMARY|Invalid|=========  ' | head -60 | tee "$B/memcheck.out"
    echo "memcheck: exit ${PIPESTATUS[0]} (124 = time limit reached)"
    if [ "$(left)" -gt 50 ]; then
      hdr "6b. compute-sanitizer racecheck (shared memory of the attention kernels, small shapes)"
      CD_TEST_ONLY=cuda_attention_small,cuda_attention_bf16_small,cuda_attention_deterministic_small \
        timeout "$(bound 40)" "$CS" --tool racecheck --print-limit 10 "$B/test_kernels_cuda" 2>&1 | grep -E '^(PASS|FAIL|SKIP)|RACECHECK SUMMARY|ERROR SUMMARY|hazard|Race' | head -30
      echo "racecheck: exit ${PIPESTATUS[0]} (124 = time limit reached)"
    fi
  else
    echo "memcheck: skipped (${CS:-compute-sanitizer not found}; $(left)s left)"
  fi
fi
