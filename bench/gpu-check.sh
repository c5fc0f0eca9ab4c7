#!/bin/bash
# The one prepared GPU check (H100/H200, 16 cores, no network), < 7 minutes in all:
#   1. builds the CUDA twins, their CPU references, the twin test and the GPU bench with a
#      minimal dependency set (nvcc + gcc + cuBLAS; cuDNN and OpenBLAS when present, a
#      naive cblas_sgemm stand-in otherwise) -- no Debian -dev package is needed;
#   2. runs the twin test (tests/test_kernels_cuda.c: every op vs its CPU reference);
#   3. runs bench/bench_gpu.c (GEMM ceiling, fused vs naive attention, GroupNorm, conv);
#   4. compute-sanitizer memcheck over the small twin tests (bounded);
#   5. when the project's -dev packages are present: make CUDA=1 + tests/run.sh cuda
#      (= make test-cuda without its apt step), else says why it is skipped.
# Every step is time-bounded; a failing step is reported and the next one still runs.
# Never changes clocks or GPU settings. Output: stdout and bench/results/gpu-<name>.txt,
# copied to $OUT when set (the device tool returns files from there).
# Usage: bench/gpu-check.sh [--build-only]
# Env: GPU_CHECK_TOTAL (hard limit, default 420 s), GPU_CHECK_LIMIT (steps plan to end by it,
#      default TOTAL - 20), GPU_CHECK_SKIP_MAKE=1 (skip step 5),
#      GPU_CHECK_NO_BLAS=1 (use the cblas stand-in even where OpenBLAS is installed).
set -u
cd "$(dirname "$0")/.." || exit 2
# The whole check runs under one hard wall-clock limit (GPU_CHECK_TOTAL, default 420 s);
# each step below also bounds itself so that the report is complete before that.
if [ -z "${GPU_CHECK_INNER:-}" ]; then
  GPU_CHECK_INNER=1 exec timeout -k 10 "${GPU_CHECK_TOTAL:-420}" "$0" "$@"
fi
trap 'exit 143' TERM
T0=$(date +%s)
LIMIT=${GPU_CHECK_LIMIT:-$(( ${GPU_CHECK_TOTAL:-420} - 20 ))}
JOBS=$(nproc 2>/dev/null || echo 4)
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=$(command -v nvcc 2>/dev/null || echo "$CUDA_HOME/bin/nvcc")
B=build-gpu-min
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
  echo; echo "== done in $(( $(date +%s) - T0 ))s; results in $RES"
  exec 1>&3 2>&3; sleep 1 # let tee flush the results file
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    [ -f "$B/test.log" ] && cp "$B/test.log" "$OUT/twin-test.log"
    [ -f "$B/build.log" ] && cp "$B/build.log" "$OUT/build.log"
  fi
}
trap finish EXIT

hdr "machine"
echo "date: $(date -u)  commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')  cores: $JOBS"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | head -3
"$NVCC" --version 2>&1 | tail -2
gcc --version 2>&1 | head -1

# ---- what is here --------------------------------------------------------------------
have_hdr() { echo "#include <$1>" | gcc -E -x c - -I"$CUDA_HOME/include" $2 >/dev/null 2>&1; }
have_lib() { echo 'int main(void){return 0;}' | gcc -x c - -o /dev/null $1 >/dev/null 2>&1; }
CUDNN_INC=""; CUDNN_LIB=""
for dir in "$CUDA_HOME/lib64" /usr/lib/x86_64-linux-gnu "$CUDA_HOME/targets/x86_64-linux/lib"; do
  have_hdr cudnn.h "" || break
  if [ -e "$dir/libcudnn.so" ]; then CUDNN_LIB="-L$dir -lcudnn"; break; fi
  if [ -e "$dir/libcudnn.so.9" ]; then CUDNN_LIB="-L$dir -l:libcudnn.so.9"; break; fi
done
if [ -z "$CUDNN_LIB" ]; then # the PyTorch wheel's cuDNN (nvidia-cudnn-cu13), if any
  d=$(python3 -c 'import nvidia.cudnn,os;print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || \
      python3 -c 'import nvidia.cudnn,os;print(list(nvidia.cudnn.__path__)[0])' 2>/dev/null)
  if [ -n "$d" ] && [ -f "$d/include/cudnn.h" ] && ls "$d"/lib/libcudnn.so.9 >/dev/null 2>&1; then
    CUDNN_INC="-I$d/include"; CUDNN_LIB="-L$d/lib -l:libcudnn.so.9 -Wl,-rpath,$d/lib"
    export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" # cuDNN dlopens its sub-libraries
  fi
fi
NVFLAGS="-O3 -std=c++17 -I. -lineinfo --expt-relaxed-constexpr -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90 $CUDNN_INC"
[ -z "$CUDNN_LIB" ] && NVFLAGS="$NVFLAGS -DCD_NO_CUDNN" && echo "cuDNN: not found (conv twins will report 'built without cuDNN')"
[ -n "$CUDNN_LIB" ] && echo "cuDNN: $CUDNN_LIB"
ARCH="-march=x86-64-v2"; have_lib "$ARCH" || ARCH="" # gcc < 11 lacks the level names
CFL="-O2 -g $ARCH -fopenmp -std=gnu11 -I. -D_GNU_SOURCE -DCD_CUDA=1 -I$CUDA_HOME/include"
BLAS_LIB=""; BLAS_OBJ=""
if [ -z "${GPU_CHECK_NO_BLAS:-}" ] && have_hdr cblas.h "" && have_lib -lopenblas; then BLAS_LIB="-lopenblas"; echo "BLAS: OpenBLAS"
else CFL="$CFL -Ibench/gpu/fallback"; BLAS_OBJ="$B/cblas_naive.o"; echo "BLAS: no OpenBLAS -dev; CPU references use bench/gpu/fallback/cblas_naive.c"; fi

# ---- 1. minimal build -------------------------------------------------------------------
hdr "1. build (minimal: kernels/*.cu + kernels/*_cpu.c + core/err.c core/fileio.c + tests/testlib.c)"
build() {
  set -e
  : > "$B/build.log"
  ls kernels/*.cu | xargs -P "$JOBS" -I{} sh -c 'o='"$B"'/$(basename {} .cu).cu.o; '"$NVCC $NVFLAGS"' -c {} -o $o >> '"$B"'/build.log 2>&1 || { echo "nvcc failed: {}"; exit 255; }'
  srcs="$(ls kernels/*.c) core/err.c core/fileio.c tests/testlib.c"
  [ -n "$BLAS_OBJ" ] && srcs="$srcs bench/gpu/fallback/cblas_naive.c"
  echo $srcs | tr ' ' '\n' | xargs -P "$JOBS" -I{} sh -c 'gcc '"$CFL"' -c {} -o '"$B"'/$(basename {} .c).o >> '"$B"'/build.log 2>&1 || { echo "gcc failed: {}"; exit 255; }'
  # the rest of core/ where it compiles here (some need -dev headers); the archive only
  # contributes what the test and bench actually reference
  ls core/*.c | grep -v -e core/err.c -e core/fileio.c | xargs -P "$JOBS" -I{} sh -c 'gcc '"$CFL"' -c {} -o '"$B"'/core_$(basename {} .c).o 2>/dev/null || true'
  rm -f "$B/libmin.a"; ar rcs "$B/libmin.a" "$B"/*.o
  LIBS="$B/libmin.a $CUDNN_LIB -L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lcublasLt -lcublas -lcudart $BLAS_LIB -lstdc++ -lgomp -lpthread -lm"
  gcc $CFL tests/test_kernels_cuda.c $LIBS -o "$B/test_kernels_cuda" >> "$B/build.log" 2>&1 || { echo "link failed: test"; exit 1; }
  gcc $CFL bench/bench_gpu.c $LIBS -o "$B/bench_gpu" >> "$B/build.log" 2>&1 || { echo "link failed: bench"; exit 1; }
}
rm -f "$B"/*.o
if ( build ); then echo "build: ok ($(ls "$B"/*.o | wc -l) objects)"; BUILD_OK=1
else echo "build: FAILED"; tail -40 "$B/build.log"; BUILD_OK=0; fi
[ "${1:-}" = "--build-only" ] && exit $((1 - BUILD_OK))

# ---- 2. twin test -------------------------------------------------------------------------
if [ "$BUILD_OK" = 1 ]; then
  hdr "2. twin test: every CUDA op vs its CPU reference"
  timeout "$(bound 170)" "$B/test_kernels_cuda" > "$B/test.log" 2>&1; rc=$?
  cat "$B/test.log"
  echo "twin test: exit $rc; $(grep -c '^PASS ' "$B/test.log") passed, $(grep -c '^FAIL ' "$B/test.log") failed, $(grep -c '^SKIP ' "$B/test.log") skipped"
  [ "$rc" = 124 ] && echo "twin test: TIMED OUT"
  # A crash or a sticky CUDA error ends or poisons the rest of the run: rerun every test
  # that failed or never reported, each in a fresh process, so every op still gets a verdict.
  if [ "$rc" != 0 ]; then
    for t in $("$B/test_kernels_cuda" --list); do
      grep -q "^PASS $t\$\|^SKIP $t:" "$B/test.log" && continue
      [ "$(left)" -lt 200 ] && { echo "rerun: no time left for $t"; continue; }
      echo "-- rerun alone: $t"
      CD_TEST_ONLY=$t timeout "$(bound 40)" "$B/test_kernels_cuda" 2>&1 | tail -40; echo "   exit ${PIPESTATUS[0]}"
    done
  fi

# ---- 3. benchmarks ------------------------------------------------------------------------
  hdr "3. benchmarks (bench/bench_gpu.c)"
  q=""; [ "$(left)" -lt 200 ] && q=quick
  timeout "$(bound 120)" "$B/bench_gpu" $q; echo "bench: exit $?"
  echo; echo "SD1.5 UNet forward as an op sequence through the fp32, tf32 and bf16 twins (random weights):"
  timeout "$(bound 60)" "$B/bench_gpu" unet; echo "bench unet: exit $?"

# ---- 3b. [added by the GPU-model engineer] the real UNet forward (model/unet_cuda.c) ----------
# bench/gpu-unet/run.sh: builds model/unet*.c + unet_cuda.c in this minimal mode (cJSON stubbed),
# runs tests/test_unet_cuda.c (GPU vs CPU forward) and bench/bench_unet_cuda.c (SD1.5 shape,
# B2 64x64: ms, TFLOP/s, CFG it/s at 512). Bounded to ~100 s; skipped when under 150 s are left.
  if [ "$(left)" -gt 150 ]; then
    hdr "3b. real UNet forward on the GPU (model/unet_cuda.c: test + SD1.5 bench)"
    B="$B" CFL="$CFL" T_TEST="$(bound 45)" T_BENCH="$(bound 60)" \
      LIBS="$B/libmin.a $CUDNN_LIB -L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lcublasLt -lcublas -lcudart $BLAS_LIB -lstdc++ -lgomp -lpthread -lm" \
      timeout "$(bound 120)" bench/gpu-unet/run.sh; echo "3b: exit $?"
  else
    echo "3b. real UNet forward: skipped ($(left)s left)"
  fi

# ---- 4. compute-sanitizer -------------------------------------------------------------------
  hdr "4. compute-sanitizer memcheck (small twin tests)"
  CS=$(command -v compute-sanitizer || ls "$CUDA_HOME"/bin/compute-sanitizer 2>/dev/null || ls /usr/local/cuda*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
  if [ -n "$CS" ] && [ "$(left)" -gt 60 ]; then
    CD_TEST_ONLY=cuda_attention_small,cuda_attention_bf16_small,cuda_attention_bad_dim,cuda_layernorm,cuda_gemm_bf16,cuda_arith,cuda_layout,cuda_embeddings,cuda_geglu,cuda_linear,cuda_optim \
      timeout "$(bound 90)" "$CS" --tool memcheck --print-limit 20 "$B/test_kernels_cuda" 2>&1 | grep -E '^(PASS|FAIL|SKIP)|ERROR SUMMARY|Invalid|=========  ' | head -60
    echo "memcheck: exit ${PIPESTATUS[0]} (124 = time limit reached)"
    if [ "$(left)" -gt 60 ]; then
      hdr "4b. compute-sanitizer racecheck (shared memory of the attention kernels, small shapes)"
      CD_TEST_ONLY=cuda_attention_small,cuda_attention_bf16_small \
        timeout "$(bound 60)" "$CS" --tool racecheck --print-limit 10 "$B/test_kernels_cuda" 2>&1 | grep -E '^(PASS|FAIL|SKIP)|RACECHECK SUMMARY|ERROR SUMMARY|hazard|Race' | head -30
      echo "racecheck: exit ${PIPESTATUS[0]} (124 = time limit reached)"
    fi
  else
    echo "memcheck: skipped (${CS:-compute-sanitizer not found}; $(left)s left)"
  fi
fi

# ---- 5. the project's own make test-cuda ----------------------------------------------------------
hdr "5. make test-cuda (full project build)"
missing=""
for h in curl/curl.h lmdb.h turbojpeg.h png.h webp/decode.h cjson/cJSON.h utf8proc.h microhttpd.h cblas.h lapacke.h; do
  have_hdr "$h" "" || missing="$missing $h"
done
[ -f /usr/include/faiss/Index.h ] || missing="$missing faiss/Index.h"
if [ -n "${GPU_CHECK_SKIP_MAKE:-}" ]; then
  echo "make test-cuda: skipped (GPU_CHECK_SKIP_MAKE set)"
elif [ -n "$missing" ]; then
  echo "make test-cuda: skipped: headers missing here:$missing (no network for make deps);"
  echo "the twin test above is the same tests/test_kernels_cuda.c, built without them"
elif [ "$(left)" -lt 90 ]; then
  echo "make test-cuda: skipped: only $(left)s left"
else
  mkdir -p build-gpu; timeout "$(bound 200)" make BUILD=build-gpu CUDA=1 -j"$JOBS" build > build-gpu/make.log 2>&1 && \
    BUILD=build-gpu CD_DEVICE=cuda timeout "$(bound 200)" ./tests/run.sh cuda
  echo "make test-cuda: exit $? (full log: build-gpu/make.log)"; tail -5 build-gpu/make.log
fi
