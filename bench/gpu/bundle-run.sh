#!/bin/bash
# .gpu-bundle/run.sh (copied there by bench/gpu-bundle.sh): `make test-cuda` from the bundle on
# the GPU machine, run from the repository root (bench/gpu-check.sh step 4 calls it):
#   unpacks payload.tar.xz into a temporary build folder (python3's tarfile: no xz binary
#   needed); links only the bundled libraries whose soname this machine lacks (its own newer ones
#   serve otherwise); finds cuDNN and cuBLAS (CUDA's, or PyTorch's nvidia-* wheels; CUDNN_DIR from
#   gpu-check wins); checks glibc against the manifest; then runs
#     tests/run.sh cuda            the bundle's tests/test_*_cuda (CD_GOLDEN = the bundle's golden)
#     customdiff-verify --device cuda --precision fp32, bf16 and fp16, over every golden set carried
#     customdiff-train --device cuda --precision bf16: 30 steps end to end on tiny-sd (the real
#       trainer path, model/trainer_cuda.c), the loss must fall
#   and ends with one line "N passed, N failed" over all of them.
# Env: BUNDLE_TMP (default /tmp/cd-gpu-bundle), BUNDLE_PRECISIONS (default "fp32 bf16 fp16"),
#      BUNDLE_SKIP (test binaries not to run, e.g. test_kernels_cuda when the caller ran it),
#      BUNDLE_ALL_LIBS=1 (use every bundled library, also where the system has the soname),
#      BUNDLE_E2E_DEVICE=cpu (the end-to-end training on the CPU: a check of this script).
set -u
R=$(cd "$(dirname "$0")" && pwd)          # the bundle
cd "$R/.." || exit 2                      # the repository root
U=${BUNDLE_TMP:-/tmp/cd-gpu-bundle}
rm -rf "$U"; mkdir -p "$U"
echo "bundle: $(head -1 "$R/manifest.txt")"
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$R/payload.tar.xz" "$U" ||
  { echo "FAIL bundle_unpack: cannot unpack $R/payload.tar.xz"; echo "0 passed, 1 failed"; exit 1; }

# glibc
need=$(sed -n 's/^glibc_needed: //p' "$R/manifest.txt")
have=$(ldd --version 2>&1 | head -1 | grep -o '[0-9]\+\.[0-9]\+$')
echo "glibc: this machine $have, the bundle needs $need"
if [ -n "$need" ] && [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -t. -k1,1n -k2,2n | tail -1)" != "$have" ]; then
  echo "FAIL bundle_glibc: this machine's glibc $have is older than the $need the bundle was built against"
  echo "0 passed, 1 failed"; exit 1
fi

# libraries: bundled ones only where the system lacks the soname
mkdir -p "$U/ld"
for l in "$U"/lib/*; do
  n=$(basename "$l")
  if [ -z "${BUNDLE_ALL_LIBS:-}" ] && ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$n "; then continue; fi
  ln -sf "$l" "$U/ld/$n"
done
echo "bundled libraries used: $(ls "$U/ld" | tr '\n' ' ')"
LDP="$U/ld"
py_lib() { python3 -c "import nvidia.$1 as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null; }
if [ -n "${CUDNN_DIR:-}" ]; then LDP="$LDP:$CUDNN_DIR"
elif ! ldconfig -p | grep -q 'libcudnn.so.9 ' && [ ! -e /usr/local/cuda/lib64/libcudnn.so.9 ]; then
  d=$(py_lib cudnn); [ -n "$d" ] && LDP="$LDP:$d"
fi
for pair in cublas:libcublas.so.13 cuda_runtime:libcudart.so.13; do
  lib=${pair#*:}
  if ! ldconfig -p | grep -q "$lib " && [ ! -e "/usr/local/cuda/lib64/$lib" ]; then
    d=$(py_lib "${pair%%:*}"); [ -n "$d" ] && LDP="$LDP:$d"
  fi
done
export LD_LIBRARY_PATH="$LDP${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing=$(for f in "$U"/tests/* "$U"/bin/*; do ldd "$f" 2>/dev/null | grep 'not found'; done | sort -u)
if [ -n "$missing" ]; then echo "libraries not found:"; echo "$missing"; fi
echo "customdiff-verify loads: $(ldd "$U/bin/customdiff-verify" 2>/dev/null | awk '$3 ~ /^\// {print $3}' | grep -v -e "^$U" -e '^/lib' -e '^/usr/lib' | tr '\n' ' ')$(ldd "$U/bin/customdiff-verify" 2>/dev/null | grep -c "$U") from the bundle"

for t in ${BUNDLE_SKIP:-}; do   # tests the caller already ran from its own build
  [ -e "$U/tests/$t" ] && rm -f "$U/tests/$t" && echo "($t: skipped here, BUNDLE_SKIP)"
done
export CD_GOLDEN="$R/golden" CD_DEVICE=cuda
pass=0; fail=0
out=$(BUILD="$U" ./tests/run.sh cuda 2>&1); echo "$out"
p=$(printf '%s\n' "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' | tail -1)
f=$(printf '%s\n' "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' | tail -1)
pass=$((pass + ${p:-0})); fail=$((fail + ${f:-1}))

# customdiff-verify --device cuda over every carried golden set (as tests/test_verify.sh on the CPU)
V="$U/bin/customdiff-verify"
for set in "$R"/golden/*/; do
  [ -d "$set" ] || continue
  set=${set%/}; name=$(basename "$set")
  if [ -d "$set/cases" ]; then cases=$set/cases; else cases=$set; fi
  args=""
  [ -d "$set/model" ] && args="$args --model $set/model"
  [ -d "$set/clip" ] && args="$args --clip $set/clip"
  for prec in ${BUNDLE_PRECISIONS:-fp32 bf16 fp16}; do
    log="$U/verify-$name-$prec.log"
    t0=$(date +%s)
    if "$V" $args --device cuda --precision "$prec" "$cases" > "$log" 2>&1; then
      echo "PASS verify_cuda_${name}_$prec ($(( $(date +%s) - t0 ))s; $(tail -1 "$log"))"; pass=$((pass + 1))
    else
      echo "FAIL verify_cuda_${name}_$prec: $(grep -E 'FAIL|error' "$log" | head -5 | tr '\n' ' ')"; fail=$((fail + 1))
    fi
    grep -E '^[a-z_0-9-]+ +(PASS|FAIL|SKIP)' "$log" | sed 's/^/    /' | head -30
  done
done
# The real training path end to end on the GPU (model/trainer_cuda.c through customdiff-train
# --device cuda), tiny-sd at 64 px: images sampled on the GPU, preprocessed into stores, 30
# steps of bf16 training with prior preservation; the loss must fall (as tests/test_train.sh on
# the CPU). Prints the seconds per step as the trainer logged them.
e2e() {
  local M=$R/golden/tiny-sd/model E=$U/e2e B=$U/bin log
  local dev=${BUNDLE_E2E_DEVICE:-cuda} prec=bf16
  [ "$dev" = cpu ] && prec=fp32   # a check of this script on a machine without a GPU
  [ -f "$M/unet/config.json" ] || { echo "SKIP train_cuda_e2e: no tiny-sd model in the bundle"; return 2; }
  for b in sample preprocess train; do [ -x "$B/customdiff-$b" ] || { echo "SKIP train_cuda_e2e: customdiff-$b not bundled"; return 2; }; done
  mkdir -p "$E"; log=$E/log
  "$B/customdiff-sample" --model "$M" --device "$dev" --prompt "a red cat" --n 3 --steps 2 --height 64 --width 64 \
      --seed 1 --out "$E/inst_raw" > "$log" 2>&1 &&
    "$B/customdiff-sample" --model "$M" --device "$dev" --prompt "a cat on a sofa" --n 4 --steps 2 --height 64 \
      --width 64 --seed 2 --out "$E/cls_raw" >> "$log" 2>&1 || { echo "FAIL train_cuda_e2e: sampling: $(tail -2 "$log" | tr '\n' ' ')"; return 1; }
  rm -f "$E"/inst_raw/grid.* "$E"/cls_raw/grid.*
  "$B/customdiff-preprocess" --instance "$E/inst_raw" --caption "photo of a <new1> cat" --resolution 64 --out "$E/inst" >> "$log" 2>&1 &&
    "$B/customdiff-preprocess" --instance "$E/cls_raw" --caption "cat" --resolution 64 --out "$E/cls" >> "$log" 2>&1 ||
    { echo "FAIL train_cuda_e2e: preprocess: $(tail -2 "$log" | tr '\n' ' ')"; return 1; }
  local t0=$(date +%s)
  "$B/customdiff-train" --model "$M" --device "$dev" --precision "$prec" --resolution 64 --modifier-token "<new1>" \
    --initializer-token ktn --instance-data "$E/inst" --class-data "$E/cls" --instance-prompt "photo of a <new1> cat" \
    --class-prompt "cat" --with-prior-preservation --max-train-steps 30 --learning-rate 2e-2 --train-batch-size 2 \
    --noaug --checkpointing-steps 0 --out "$E/run" > "$E/train.out" 2>&1 ||
    { echo "FAIL train_cuda_e2e: customdiff-train --device cuda: $(tail -3 "$E/train.out" | tr '\n' ' ')"; return 1; }
  local r
  r=$(awk '{l[NR]=$4} END {a=0;b=0;for(i=1;i<=5;i++){a+=l[i];b+=l[NR-5+i]}; printf "%.4f %.4f %d", a/5, b/5, (b < 0.9*a)}' "$E/run/train.log" 2>/dev/null)
  set -- $r
  grep -iE 'memory|GiB|device' "$E/train.out" | head -4 | sed 's/^/    /'
  if [ "${3:-0}" = 1 ]; then echo "PASS train_cuda_e2e_loss_falls ($1 -> $2; 30 steps in $(( $(date +%s) - t0 )) s incl. loading)"
  else echo "FAIL train_cuda_e2e_loss_falls: first 5 mean ${1:-?}, last 5 mean ${2:-?} (log $E/run/train.log)"; return 1; fi
}
e2e; case $? in 0) pass=$((pass + 1));; 2) ;; *) fail=$((fail + 1));; esac
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
