#!/bin/sh
# make test-cuda (a GPU machine): customdiff-verify --device cuda on every golden set, fp32 with
# the golden tolerances and bf16 with verify's bf16 tolerances, plus tf32 on tiny-sd. The same
# runs go through the host emulation in make test (tests/test_verify.sh); this is the real GPU.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
V=$BUILD/bin/customdiff-verify
G=${CD_GOLDEN:-../shared/golden}
if [ ! -d "$G" ]; then
  if [ "$CI" = true ]; then echo "FAIL verify_cuda: $G absent (CI=true)"; else echo "SKIP verify_cuda: $G absent"; fi
  exit 0
fi
[ -x "$V" ] || { echo "FAIL verify_cuda: $V not built"; exit 0; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cd-verify-cuda.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for set in "$G"/*/; do
  set=${set%/}; name=$(basename "$set")
  if [ -d "$set/cases" ]; then cases=$set/cases; else cases=$set; fi
  ls "$cases"/*.safetensors > /dev/null 2>&1 || continue
  precs="fp32 bf16"; [ "$name" = tiny-sd ] && precs="fp32 tf32 bf16"
  for prec in $precs; do
    set --
    [ -d "$set/model" ] && set -- "$@" --model "$set/model"
    [ -d "$set/clip" ] && set -- "$@" --clip "$set/clip"
    [ -f "$set/single_file.safetensors" ] && set -- "$@" --single-file "$set/single_file.safetensors"
    "$V" --device cuda --precision $prec "$@" "$cases" > "$tmp/$name-$prec.log" 2>&1; rc=$?
    if grep -q "no CUDA device\|no GPU\|has no CUDA" "$tmp/$name-$prec.log"; then
      echo "SKIP verify_cuda_${name}_$prec: $(grep -m1 error "$tmp/$name-$prec.log")"
    elif [ $rc = 0 ]; then
      echo "PASS verify_cuda_${name}_$prec ($(tail -1 "$tmp/$name-$prec.log"))"
    else
      echo "FAIL verify_cuda_${name}_$prec: $(grep -E 'FAIL|error' "$tmp/$name-$prec.log" | head -3 | tr '\n' ' ')"
    fi
  done
done
exit 0
