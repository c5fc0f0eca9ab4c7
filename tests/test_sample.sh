#!/bin/sh
# customdiff-sample end to end on a tiny model (customdiff-tiny-model's; the golden tiny-sd
# model when the tiny model has no UNet/VAE yet): 2 images at 64x64 with 3 steps, PNG with
# the parameters in a tEXt chunk, a grid, the same bytes with OMP_NUM_THREADS=1 and 2, every
# scheduler, JPEG output, --init-latents, command-line errors; with the golden deltas:
# customdiff-compress, customdiff-merge, and a delta made for another base model refused.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
BIN=$BUILD/bin
G=${CD_GOLDEN:-../shared/golden}
# One thread unless a test is about threads: spinning OpenMP/BLAS threads on a busy machine
# cost far more CPU than these tiny models need.
OMP_NUM_THREADS=1
OMP_WAIT_POLICY=passive
export OMP_NUM_THREADS OMP_WAIT_POLICY
mkdir -p "$BUILD/tmp"
T=$(mktemp -d "$BUILD/tmp/sample-XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
S="$BIN/customdiff-sample"
[ -x "$S" ] || { fail sample_built "$S missing"; exit 1; }

if "$BIN/customdiff-tiny-model" --out "$T/tiny" > "$T/tiny.log" 2>&1 &&
   [ -f "$T/tiny/unet/config.json" ] && [ -f "$T/tiny/vae/config.json" ]; then
  MODEL="$T/tiny"
elif [ -d "$G/tiny-sd/model" ]; then
  MODEL="$G/tiny-sd/model"
  echo "(customdiff-tiny-model wrote no UNet/VAE; sampling the golden tiny-sd model)"
else
  echo "SKIP sample_end_to_end: no tiny model with a UNet and VAE, and no golden data"
  exit 0
fi

run() {   # run NAME THREADS ARGS...: sample into $T/NAME
  name=$1; th=$2; shift 2
  OMP_NUM_THREADS=$th "$S" --model "$MODEL" --height 64 --width 64 --steps 3 --seed 7 \
    --out "$T/$name" "$@" > "$T/$name.out" 2> "$T/$name.err"
}

if run t1 1 --prompt "a photo of a cat" --n 2 && grep -q "wrote 2 images" "$T/t1.out" &&
   [ -f "$T/t1/00000-7.png" ] && [ -f "$T/t1/00001-7.png" ] && [ -f "$T/t1/grid.png" ]; then
  pass sample_two_images_and_grid
else
  fail sample_two_images_and_grid "$(tail -3 "$T/t1.err")"
fi

if grep -q "step" "$T/t1.err" && grep -q "s/step" "$T/t1.err"; then pass progress_per_step
else fail progress_per_step "no per-step progress lines on stderr"; fi

if grep -aq "parameters" "$T/t1/00000-7.png" && grep -aq "Seed: 7" "$T/t1/00000-7.png" &&
   grep -aq "a photo of a cat" "$T/t1/00000-7.png"; then pass png_has_generation_parameters
else fail png_has_generation_parameters "no tEXt 'parameters' chunk with the prompt and seed"; fi

if cmp -s "$T/t1/00000-7.png" "$T/t1/00001-7.png"; then fail images_differ_by_index "image 0 and 1 are identical"
else pass images_differ_by_index; fi

if run t2 2 --prompt "a photo of a cat" --n 2 &&
   cmp -s "$T/t1/00000-7.png" "$T/t2/00000-7.png" && cmp -s "$T/t1/00001-7.png" "$T/t2/00001-7.png"; then
  pass same_bytes_with_1_and_2_threads
else
  fail same_bytes_with_1_and_2_threads "images differ between OMP_NUM_THREADS=1 and 2"
fi

ok=1
for s in ddim ddpm pndm euler euler_a; do
  run "s_$s" 1 --prompt "a dog" --scheduler "$s" --steps 2 || { ok=0; fail "scheduler_$s" "$(tail -2 "$T/s_$s.err")"; }
done
[ $ok = 1 ] && pass all_schedulers_run

if run j 1 --prompt "a dog" --format jpg && [ "$(head -c 3 "$T/j/00000-7.jpg" | od -An -tx1 | tr -d ' ')" = "ffd8ff" ]; then
  pass jpeg_output
else
  fail jpeg_output "$(tail -2 "$T/j.err")"
fi

# --init-latents: an all-zero [1,4,8,8] .npy fixes the start, so two seeds give the same
# pixels (DDIM, eta 0).
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 8, 8), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 1024 /dev/zero; } > "$T/zero.npy"
if OMP_NUM_THREADS=1 "$S" --model "$MODEL" --prompt "a cat" --steps 2 --seed 1 --format jpg --init-latents "$T/zero.npy" --out "$T/i1" > /dev/null 2>"$T/i1.err" &&
   OMP_NUM_THREADS=1 "$S" --model "$MODEL" --prompt "a cat" --steps 2 --seed 2 --format jpg --init-latents "$T/zero.npy" --out "$T/i2" > /dev/null 2>&1 &&
   cmp -s "$T/i1/00000-1.jpg" "$T/i2/00000-2.jpg"; then
  pass init_latents_fix_the_start
else
  fail init_latents_fix_the_start "$(tail -2 "$T/i1.err")"
fi

"$S" --prompt x > /dev/null 2> "$T/e1"; rc=$?
if [ $rc = 2 ] && grep -q -- "--model is required" "$T/e1"; then pass error_missing_model; else fail error_missing_model "rc $rc: $(cat "$T/e1")"; fi
run e2 1 --prompt x --scheduler lms; rc=$?
if [ $rc = 1 ] && grep -q "unknown scheduler 'lms'" "$T/e2.err"; then pass error_bad_scheduler; else fail error_bad_scheduler "rc $rc"; fi
run e3 1 --prompt x --width 60; rc=$?
if [ $rc = 1 ] && grep -q "multiple" "$T/e3.err"; then pass error_bad_size; else fail error_bad_size "rc $rc: $(tail -1 "$T/e3.err")"; fi

# Deltas (golden Custom Diffusion weights for tiny-sd).
D="$G/tiny-sd/cases"
[ -f "$D/pytorch_custom_diffusion_weights.safetensors" ] || { echo "SKIP deltas: no golden data"; exit 0; }
C="$BIN/customdiff-compress"
if "$C" --delta "$D/pytorch_custom_diffusion_weights.safetensors" --model "$G/tiny-sd/model" --rank 4 \
     --out "$T/c4.safetensors" > "$T/c.out" 2> "$T/c.err" && grep -q "rank <= 4" "$T/c.out"; then
  pass compress_golden_delta
else
  fail compress_golden_delta "$(tail -2 "$T/c.err")"
fi
mkdir -p "$T/cd1"
cp "$D/pytorch_custom_diffusion_weights.safetensors" "$T/cd1/"
cp "$D/new1.safetensors" "$T/cd1/<new1>.safetensors"
if "$BIN/customdiff-merge" --model "$G/tiny-sd/model" --delta "$T/cd1" --delta "$T/c4.safetensors" \
     --categories "cat+wooden pot" --out "$T/m.safetensors" > "$T/m.out" 2> "$T/m.err" &&
   grep -q "2 concepts, 32 tensors" "$T/m.out"; then
  pass merge_two_deltas
else
  fail merge_two_deltas "$(tail -2 "$T/m.err")"
fi
if OMP_NUM_THREADS=1 "$S" --model "$G/tiny-sd/model" --delta "$T/m.safetensors" --prompt "<new1> cat next to a wooden pot" \
     --height 64 --width 64 --steps 2 --out "$T/md" > /dev/null 2> "$T/md.err" && grep -q "<new1> -> id 49408" "$T/md.err"; then
  pass sample_with_merged_delta
else
  fail sample_with_merged_delta "$(tail -2 "$T/md.err")"
fi
if [ "$MODEL" != "$G/tiny-sd/model" ]; then   # c4 was made for golden tiny-sd, not the random tiny model
  run wrong 1 --prompt x --delta "$T/c4.safetensors"; rc=$?
  if [ $rc = 1 ] && grep -q "another base model" "$T/wrong.err"; then pass delta_for_another_base_refused
  else fail delta_for_another_base_refused "rc $rc: $(tail -1 "$T/wrong.err")"; fi
fi
exit 0
