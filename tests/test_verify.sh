#!/bin/sh
# customdiff-verify on every golden set in ../shared/golden (SET/cases + SET/model + SET/clip),
# and negative checks: a corrupted copy of a case must make it exit non-zero.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
V=$BUILD/bin/customdiff-verify
G=${CD_GOLDEN:-../shared/golden}
if [ ! -d "$G" ]; then
  if [ "$CI" = true ]; then echo "FAIL verify_golden: $G absent (CI=true)"; else echo "SKIP verify_golden: $G absent"; fi
  exit 0
fi
if [ ! -x "$V" ]; then echo "FAIL verify_golden: $V not built"; exit 0; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cd-verify.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
nsets=0
for set in "$G"/*/; do
  set=${set%/}; name=$(basename "$set")
  # a set holds its case files in SET/cases (tiny-sd...) or directly (blocks-sd15)
  if [ -d "$set/cases" ]; then cases=$set/cases; else cases=$set; fi
  ls "$cases"/*.safetensors "$cases"/*.json > /dev/null 2>&1 || continue
  nsets=$((nsets + 1))
  set --
  [ -d "$set/model" ] && set -- "$@" --model "$set/model"
  [ -d "$set/clip" ] && set -- "$@" --clip "$set/clip"
  [ -f "$set/single_file.safetensors" ] && set -- "$@" --single-file "$set/single_file.safetensors"
  if "$V" "$@" "$cases" > "$tmp/$name.log" 2>&1; then
    echo "PASS verify_golden_$name ($(tail -1 "$tmp/$name.log"))"
  else
    echo "FAIL verify_golden_$name: $(grep -E 'FAIL|error' "$tmp/$name.log" | head -3 | tr '\n' ' ')"
  fi
done
[ "$nsets" -gt 0 ] || echo "FAIL verify_golden: no case files in $G/*"

# --device cuda through the host emulation of the CUDA twins (kernels/emu/): every golden set
# through the GPU-side code (device layers, arenas, trainer), fp32 with the golden tolerances;
# tiny-sd also in bf16 and tiny-sd2 (v_prediction) in fp16 (emulated rounding, fp16 training
# with its loss scaling) with verify's tolerances for them. On a GPU the same runs
# come from make test-cuda's build (bench/gpu-check.sh).
VE=$BUILD/emu/bin/customdiff-verify
if [ -x "$VE" ]; then
  for set in "$G"/*/; do
    set=${set%/}; name=$(basename "$set")
    if [ -d "$set/cases" ]; then cases=$set/cases; else cases=$set; fi
    ls "$cases"/*.safetensors > /dev/null 2>&1 || continue
    precs=fp32; [ "$name" = tiny-sd ] && precs="fp32 bf16"; [ "$name" = tiny-sd2 ] && precs="fp32 fp16"
    for prec in $precs; do
      set --
      [ -d "$set/model" ] && set -- "$@" --model "$set/model"
      [ -d "$set/clip" ] && set -- "$@" --clip "$set/clip"
      if "$VE" --device cuda --precision $prec "$@" "$cases" > "$tmp/emu-$name-$prec.log" 2>&1 &&
         grep -q "host emulation" "$tmp/emu-$name-$prec.log"; then
        echo "PASS verify_emu_cuda_${name}_$prec ($(tail -1 "$tmp/emu-$name-$prec.log"))"
      else
        echo "FAIL verify_emu_cuda_${name}_$prec: $(grep -E 'FAIL|error' "$tmp/emu-$name-$prec.log" | head -3 | tr '\n' ' ')"
      fi
    done
  done
else
  echo "SKIP verify_emu_cuda: $VE not built"
fi

# Negative checks on tiny-sd: one changed token id; a perturbed reference tensor.
set=$G/tiny-sd
if [ -d "$set/cases" ]; then
  mkdir -p "$tmp/bad1" "$tmp/bad2"
  sed '0,/ 2368,/s// 2369,/' "$set/cases/tokenizer.json" > "$tmp/bad1/tokenizer.json"
  if cmp -s "$set/cases/tokenizer.json" "$tmp/bad1/tokenizer.json"; then
    echo "FAIL verify_rejects_bad_tokenizer_case: could not corrupt the copy"
  elif "$V" --model "$set/model" --clip "$set/clip" "$tmp/bad1" > "$tmp/bad1.log" 2>&1; then
    echo "FAIL verify_rejects_bad_tokenizer_case: exit 0 on a corrupted tokenizer.json"
  elif grep -q 'SKIP: .*text_encoder.safetensors absent' "$tmp/bad1.log" && grep -q 'FAIL' "$tmp/bad1.log"; then
    echo "PASS verify_rejects_bad_tokenizer_case"
  else
    echo "FAIL verify_rejects_bad_tokenizer_case: output lacks the FAIL or SKIP line"
  fi
  # flip bytes in the middle of text_encoder.safetensors' data (the reference outputs)
  f=$set/cases/text_encoder.safetensors
  size=$(wc -c < "$f")
  off=$((size - 4000))
  { head -c "$off" "$f"; printf '\177\177\177\177'; tail -c +$((off + 5)) "$f"; } > "$tmp/bad2/text_encoder.safetensors"
  if "$V" --model "$set/model" --clip "$set/clip" "$tmp/bad2" > "$tmp/bad2.log" 2>&1; then
    echo "FAIL verify_rejects_bad_tensor_case: exit 0 on a corrupted text_encoder.safetensors"
  elif ! grep -q 'FAIL' "$tmp/bad2.log"; then
    echo "FAIL verify_rejects_bad_tensor_case: non-zero exit without a FAIL line"
  else
    echo "PASS verify_rejects_bad_tensor_case"
  fi
fi
