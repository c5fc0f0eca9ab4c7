#!/bin/sh
# End-to-end training on the CPU with a tiny model (customdiff-tiny-model when it writes a
# UNet + VAE, else the golden tiny-sd model): preprocess -> train 30 steps -> sample with the
# delta; resume equivalence; a kill while a checkpoint is written; bad inputs; export.
# Tiny shapes run fastest on one thread (and do not fight other jobs for the cores).
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
BIN=$BUILD/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
T=$BUILD/tmp/test_train.$$
rm -rf "$T"; mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
need() { for b in "$@"; do [ -x "$BIN/customdiff-$b" ] || { echo "SKIP train_e2e: $BIN/customdiff-$b not built"; exit 0; }; done; }
need train preprocess sample export

# ---- the model ------------------------------------------------------------------------
MODEL=""
if [ -n "${TRAIN_TEST_MODEL:-}" ]; then
  MODEL=$TRAIN_TEST_MODEL
elif [ -x "$BIN/customdiff-tiny-model" ] && "$BIN/customdiff-tiny-model" --out "$T/tiny" >/dev/null 2>&1 \
   && [ -f "$T/tiny/unet/config.json" ] && [ -f "$T/tiny/vae/config.json" ]; then
  MODEL=$T/tiny
elif [ -f ../shared/golden/tiny-sd/model/unet/config.json ]; then
  MODEL=../shared/golden/tiny-sd/model
else
  echo "SKIP train_e2e: no tiny model with a UNet (customdiff-tiny-model) and no golden tiny-sd"; exit 0
fi
RES=64
COMMON="--model $MODEL --resolution $RES --modifier-token <new1> --initializer-token ktn"

# ---- data: images sampled from the base model, preprocessed into stores ----------------
"$BIN/customdiff-sample" --model "$MODEL" --prompt "a red cat" --n 3 --steps 2 --height $RES --width $RES \
  --seed 1 --out "$T/inst_raw" >"$T/log" 2>&1 || { fail data "sample: $(tail -1 "$T/log")"; exit 0; }
"$BIN/customdiff-sample" --model "$MODEL" --prompt "a cat on a sofa" --n 4 --steps 2 --height $RES --width $RES \
  --seed 2 --out "$T/cls_raw" >"$T/log" 2>&1 || { fail data "sample: $(tail -1 "$T/log")"; exit 0; }
rm -f "$T/inst_raw/grid.png" "$T/cls_raw/grid.png"
for f in "$T"/cls_raw/*.png; do echo "a cat sitting on a sofa" > "${f%.png}.txt"; done
"$BIN/customdiff-preprocess" --instance "$T/inst_raw" --caption "photo of a <new1> cat" --resolution $RES \
  --out "$T/inst" >"$T/log" 2>&1 || { fail preprocess "$(tail -1 "$T/log")"; exit 0; }
"$BIN/customdiff-preprocess" --instance "$T/cls_raw" --caption "cat" --resolution $RES \
  --out "$T/cls" >"$T/log" 2>&1 || { fail preprocess "$(tail -1 "$T/log")"; exit 0; }

train() {  # train OUT [args...]
  out=$1; shift
  "$BIN/customdiff-train" $COMMON --instance-data "$T/inst" --class-data "$T/cls" \
    --instance-prompt "photo of a <new1> cat" --class-prompt "cat" --out "$out" "$@" >"$out.log" 2>&1
}

# ---- 30 steps: the loss falls ------------------------------------------------------------
if train "$T/run" --max-train-steps 30 --learning-rate 2e-2 --train-batch-size 2 --noaug \
     --checkpointing-steps 0; then
  # mean of the first 5 steps' loss against the last 5
  r=$(awk '{l[NR]=$4} END {a=0;b=0;for(i=1;i<=5;i++){a+=l[i];b+=l[NR-5+i]}; printf "%.4f %.4f %d", a/5, b/5, (b < 0.9*a)}' "$T/run/train.log")
  set -- $r
  if [ "$3" = 1 ]; then pass "train_loss_falls ($1 -> $2)"; else fail train_loss_falls "first 5 mean $1, last 5 mean $2"; fi
  for f in delta.safetensors train.log metrics.json loss.png; do
    [ -s "$T/run/$f" ] || fail train_outputs "$f missing"
  done
  [ -s "$T/run/loss.png" ] && pass train_outputs
else
  fail train_runs "$(tail -2 "$T/run.log")"
fi

# ---- the delta changes the sample ---------------------------------------------------------
P="photo of a <new1> cat"
"$BIN/customdiff-sample" --model "$MODEL" --prompt "$P" --steps 4 --height $RES --width $RES --seed 7 --format jpg \
  --out "$T/s_base" >"$T/log" 2>&1 &&
"$BIN/customdiff-sample" --model "$MODEL" --delta "$T/run/delta.safetensors" --prompt "$P" --steps 4 \
  --height $RES --width $RES --seed 7 --format jpg --out "$T/s_delta" >"$T/log2" 2>&1
if [ $? != 0 ]; then fail sample_with_delta "$(tail -1 "$T/log") $(tail -1 "$T/log2")"
elif cmp -s "$T/s_base/00000-7.jpg" "$T/s_delta/00000-7.jpg"; then fail sample_with_delta "identical images"
else pass sample_with_delta; fi

# ---- resume equivalence: 10 steps == 5 + resume + 5 -----------------------------------------
R="--max-train-steps 10 --checkpointing-steps 5 --with-prior-preservation --real-prior --hflip --train-batch-size 1 --learning-rate 5e-3"
train "$T/full" $R && train "$T/half" --max-train-steps 5 --checkpointing-steps 5 --with-prior-preservation \
  --real-prior --hflip --train-batch-size 1 --learning-rate 5e-3 && train "$T/half" $R --resume latest
if [ $? != 0 ]; then fail resume_equivalence "$(tail -1 "$T/half.log")"
elif cmp -s "$T/full/delta.safetensors" "$T/half/delta.safetensors" &&
     cmp -s "$T/full/checkpoints/checkpoint-000010/state.safetensors" "$T/half/checkpoints/checkpoint-000010/state.safetensors"
then pass resume_equivalence
else fail resume_equivalence "delta or checkpoint differs after 5 + resume + 5"; fi

# ---- a fresh run into a folder that holds an earlier run's checkpoints is refused ----------
cp "$T/full/delta.safetensors" "$T/full.delta"
if train "$T/full" --max-train-steps 2 --train-batch-size 1; then
  fail refuse_overwrite "a fresh run replaced the earlier run in $T/full"
elif grep -q "holds checkpoints of an earlier run" "$T/full.log" && cmp -s "$T/full.delta" "$T/full/delta.safetensors"; then
  pass refuse_overwrite
else fail refuse_overwrite "$(tail -1 "$T/full.log")"; fi

# ---- a kill while checkpoint 4 is written leaves checkpoint 2 valid; resume completes --------
K="--max-train-steps 6 --checkpointing-steps 2 --train-batch-size 1 --learning-rate 5e-3"
CD_TRAIN_TEST_KILL_IN_CHECKPOINT=4 train "$T/kill" $K
rc=$?
if [ $rc = 0 ]; then fail checkpoint_kill "the run was not killed"
elif [ -d "$T/kill/checkpoints/checkpoint-000004" ] || [ ! -f "$T/kill/checkpoints/checkpoint-000002/state.json" ]; then
  fail checkpoint_kill "after the kill: $(ls "$T/kill/checkpoints" | tr '\n' ' ')"
elif train "$T/kill" $K --resume latest && train "$T/straight" $K &&
     cmp -s "$T/kill/delta.safetensors" "$T/straight/delta.safetensors"; then
  pass checkpoint_kill
else fail checkpoint_kill "resume after the kill: $(tail -1 "$T/kill.log")"; fi

# ---- generated prior: class images sampled with the base model when the folder has too few ----
if "$BIN/customdiff-train" $COMMON --instance-data "$T/inst" --instance-prompt "photo of a <new1> cat" \
     --class-data "$T/gen" --class-prompt "a cat" --with-prior-preservation --num-class-images 2 \
     --train-batch-size 1 --max-train-steps 2 --checkpointing-steps 0 --out "$T/genrun" >"$T/gen.log" 2>&1 &&
   [ "$(ls "$T/gen" | grep -c '\.jpg$')" = 2 ] && [ -s "$T/genrun/delta.safetensors" ]; then
  pass generated_prior
else fail generated_prior "$(tail -1 "$T/gen.log")"; fi

# ---- bad inputs ------------------------------------------------------------------------------
bad() {  # name expected-substring args...
  name=$1; want=$2; shift 2
  if "$BIN/customdiff-train" --model "$MODEL" --resolution $RES --max-train-steps 1 --out "$T/bad" "$@" >"$T/bad.log" 2>&1; then
    fail "$name" "succeeded"
  elif grep -q "$want" "$T/bad.log"; then pass "$name"
  else fail "$name" "message: $(tail -1 "$T/bad.log")"; fi
}
mkdir -p "$T/empty"
bad bad_empty_folder "no images" --instance-data "$T/empty" --instance-prompt "a <new1>" --modifier-token "<new1>" --initializer-token ktn
echo '[{"instance_prompt": "a <new1> cat", "class_prompt": "cat", "instance_data_dir": "'"$T"'/nope", "class_data_dir": "'"$T"'/cls"}]' > "$T/concepts.json"
bad bad_missing_concept_folder "no such folder" --concepts "$T/concepts.json" --modifier-token "<new1>" --initializer-token ktn
bad bad_modifier_in_vocab "already in the tokenizer's vocabulary" --instance-data "$T/inst" --instance-prompt "a ktn" --modifier-token "ktn" --initializer-token pll
bad bad_initializer_piece "not a single piece of the vocabulary" --instance-data "$T/inst" --instance-prompt "a <new1>" --modifier-token "<new1>" --initializer-token "ktnzzqx"
bad bad_initializer_count "initializer" --instance-data "$T/inst" --instance-prompt "a <new1>" --modifier-token "<new1>+<new2>" --initializer-token ktn
bad bad_device "expected cpu or cuda" --instance-data "$T/inst" --instance-prompt "a <new1>" --modifier-token "<new1>" --initializer-token ktn --device tpu
bad bad_precision_cpu "the CPU trains in fp32" --instance-data "$T/inst" --instance-prompt "a <new1>" --modifier-token "<new1>" --initializer-token ktn --precision bf16
bad bad_precision_name "expected fp32, tf32, bf16 or fp16" --instance-data "$T/inst" --instance-prompt "a <new1>" --modifier-token "<new1>" --initializer-token ktn --device cuda --precision fp8
# an empty LMDB store: preprocess of an empty candidates list
: > "$T/none.jsonl"
"$BIN/customdiff-preprocess" --candidates "$T/none.jsonl" --resolution $RES --out "$T/empty_store" >/dev/null 2>&1
if [ -f "$T/empty_store/data.mdb" ]; then
  bad bad_empty_store "no images" --instance-data "$T/empty_store" --instance-prompt "a <new1>" --modifier-token "<new1>" --initializer-token ktn
fi

# ---- --device cuda through the host emulation of the CUDA twins (kernels/emu/): the device
# trainer's walk, checkpoints and delta, on the CPU; the loss falls as on the CPU ------------
EMU=$BUILD/emu/bin/customdiff-train
if [ -x "$EMU" ]; then
  if "$EMU" $COMMON --instance-data "$T/inst" --class-data "$T/cls" --instance-prompt "photo of a <new1> cat" \
       --class-prompt "cat" --max-train-steps 12 --learning-rate 2e-2 --train-batch-size 2 --noaug \
       --checkpointing-steps 6 --device cuda --precision fp32 --deterministic --out "$T/emu" >"$T/emu.log" 2>&1 &&
     [ -s "$T/emu/delta.safetensors" ] && grep -q "peak device memory" "$T/emu.log" &&
     grep -q "cuda: fp32 deterministic," "$T/emu.log" &&
     grep -q '"device":[[:space:]]*"cuda"' "$T"/emu/checkpoints/checkpoint-*6/state.json &&
     grep -q '"precision":[[:space:]]*"fp32"' "$T"/emu/checkpoints/checkpoint-*6/state.json &&
     grep -q '"deterministic":[[:space:]]*true' "$T"/emu/checkpoints/checkpoint-*6/state.json; then
    r=$(awk '{l[NR]=$4} END {a=0;b=0;for(i=1;i<=3;i++){a+=l[i];b+=l[NR-3+i]}; printf "%.4f %.4f %d", a/3, b/3, (b < a)}' "$T/emu/train.log")
    set -- $r
    if [ "$3" = 1 ]; then pass "emu_train_cuda ($1 -> $2)"; else fail emu_train_cuda "loss did not fall: $1 -> $2"; fi
  else fail emu_train_cuda "$(tail -2 "$T/emu.log" | tr '\n' ' ')"; fi
  [ -n "${KEEP_EMU_LOG:-}" ] && cp "$T/emu.log" "$KEEP_EMU_LOG"
  # resume on the device from the step-6 checkpoint (weights and AdamW state go host -> device):
  # the same delta, byte for byte, as the uninterrupted 12 steps
  ck=$(ls -d "$T"/emu/checkpoints/checkpoint-*6 2>/dev/null | head -1)
  if [ -z "$ck" ]; then fail emu_train_cuda_resume "no step-6 checkpoint in $T/emu/checkpoints"
  elif "$EMU" $COMMON --instance-data "$T/inst" --class-data "$T/cls" --instance-prompt "photo of a <new1> cat" \
       --class-prompt "cat" --max-train-steps 12 --learning-rate 2e-2 --train-batch-size 2 --noaug \
       --checkpointing-steps 0 --device cuda --precision fp32 --resume "$ck" --out "$T/emu_resume" >"$T/emu_r.log" 2>&1 &&
     cmp -s "$T/emu/delta.safetensors" "$T/emu_resume/delta.safetensors"; then
    pass emu_train_cuda_resume
  else fail emu_train_cuda_resume "$(tail -1 "$T/emu_r.log") (or the delta differs from the uninterrupted run)"; fi
  # class images generated and a validation sample drawn with the device UNet and VAE decoder
  if "$EMU" $COMMON --instance-data "$T/inst" --instance-prompt "photo of a <new1> cat" --class-data "$T/emu_gen" \
       --class-prompt "a cat" --with-prior-preservation --num-class-images 2 --train-batch-size 1 \
       --max-train-steps 2 --checkpointing-steps 0 --validation-prompt "a <new1> cat" --validation-steps 2 \
       --device cuda --precision bf16 --out "$T/emu_val" >"$T/emu_v.log" 2>&1 &&
     [ "$(ls "$T/emu_gen" | grep -c '\.jpg$')" = 2 ] && [ -s "$T/emu_val/validation/step-000002.png" ]; then
    pass emu_train_cuda_prior_validation
  else fail emu_train_cuda_prior_validation "$(tail -1 "$T/emu_v.log")"; fi
  # fp16 with dynamic loss scaling: the scaler's state is in the checkpoint, and a resume from
  # it gives the uninterrupted run's delta byte for byte and the same scaler state at step 6 (its
  # clean-step count shows whether the resume restored it)
  f16() { "$EMU" $COMMON --instance-data "$T/inst" --instance-prompt "photo of a <new1> cat" --max-train-steps 6 \
            --train-batch-size 1 --noaug --device cuda --precision fp16 "$@"; }
  if f16 --checkpointing-steps 3 --out "$T/emu16" >"$T/emu16.log" 2>&1 &&
     grep -q '"loss_scaler"' "$T"/emu16/checkpoints/checkpoint-*3/state.json &&
     grep -q '"scale":[[:space:]]*65536' "$T"/emu16/checkpoints/checkpoint-*3/state.json &&
     grep -q "fp16 loss scaling: 0 of 6 optimizer steps skipped" "$T/emu16.log" &&
     f16 --checkpointing-steps 3 --resume "$(ls -d "$T"/emu16/checkpoints/checkpoint-*3 | head -1)" \
       --out "$T/emu16r" >"$T/emu16r.log" 2>&1 &&
     cmp -s "$T/emu16/delta.safetensors" "$T/emu16r/delta.safetensors" &&
     grep -A3 '"loss_scaler"' "$T"/emu16/checkpoints/checkpoint-*6/state.json > "$T/ls_a" &&
     grep -A3 '"loss_scaler"' "$T"/emu16r/checkpoints/checkpoint-*6/state.json > "$T/ls_b" &&
     grep -q '"good_steps":[[:space:]]*6' "$T/ls_a" && cmp -s "$T/ls_a" "$T/ls_b"; then
    pass emu_train_cuda_fp16_scaler_resume
  else fail emu_train_cuda_fp16_scaler_resume "$(tail -1 "$T/emu16.log") / $(tail -1 "$T/emu16r.log" 2>/dev/null) (or no loss_scaler in state.json, or the resumed delta or scaler state differs)"; fi
  # the tensor bytes of a safetensors file (after its 8-byte header length and JSON header)
  st_data() { n=$(od -An -t u8 -N8 "$1" | tr -d ' ') && tail -c +$((n + 9)) "$1"; }
  # An overflowed fp16 step leaves the LR schedule where it was (accelerate's scheduler skips
  # its step when the optimizer's was skipped): resume a warmup run from a checkpoint whose
  # saved scale (1e36) overflows every step left; steps 4-6 are skipped, each logs the LR of
  # AdamW's step 3 (base * 3/10, where step 3 itself ran at base * 2/10), and the delta stays
  # the checkpoint's.
  if f16 --lr-warmup-steps 10 --max-train-steps 3 --checkpointing-steps 3 --out "$T/emu16w" >"$T/emu16w.log" 2>&1 &&
     ck=$(ls -d "$T"/emu16w/checkpoints/checkpoint-*3 | head -1) &&
     sed -i 's/"scale":[[:space:]]*65536/"scale": 1e36/' "$ck/state.json" && grep -q '"scale": 1e36' "$ck/state.json" &&
     f16 --lr-warmup-steps 10 --checkpointing-steps 0 --resume "$ck" --out "$T/emu16s" >"$T/emu16s.log" 2>&1 &&
     grep -q "fp16 loss scaling: 3 of 6 optimizer steps skipped" "$T/emu16s.log" &&
     lr3=$(awk '$1 == "step" && $2 == 3 { print $10 }' "$T/emu16w/train.log") &&
     awk -v lr3="$lr3" '$1 == "step" && $2 >= 4 { n++; d = $10 - 1.5 * lr3; if (d * d > 1e-12 * lr3 * lr3) bad = 1 }
                         END { exit !(n == 3 && !bad && lr3 > 0) }' \
       "$T/emu16s/train.log" &&
     st_data "$T/emu16w/delta.safetensors" > "$T/d_w" && st_data "$T/emu16s/delta.safetensors" > "$T/d_s" &&
     [ -s "$T/d_w" ] && cmp -s "$T/d_w" "$T/d_s"; then
    pass emu_train_cuda_fp16_skip_holds_lr
  else fail emu_train_cuda_fp16_skip_holds_lr "$(tail -1 "$T/emu16s.log" 2>/dev/null); step lines: $(grep '^step' "$T/emu16s/train.log" 2>/dev/null | awk '{print $2, $10}' | tr '\n' ' ')"; fi
else echo "SKIP emu_train_cuda: $EMU not built"; fi
# Out of device memory, through the CPU simulation of the real CUDA code (a device of
# CUSIM_MEM_MB): the weights do not fit (4 MB), then the first step's activations do not (40 MB);
# each a clear error and a non-zero exit, nothing but the log written
SIMT=$BUILD/sim/bin/customdiff-train
if [ -x "$SIMT" ]; then
  ok=1; why=""
  for c in "4|unet cuda: cannot allocate" "40|cuda: out of device memory (activations"; do
    CUSIM_MEM_MB=${c%%|*} "$SIMT" $COMMON --instance-data "$T/inst" --instance-prompt "photo of a <new1> cat" \
      --max-train-steps 2 --train-batch-size 1 --device cuda --checkpointing-steps 1 --out "$T/oom${c%%|*}" >"$T/oom.log" 2>&1
    rc=$?
    if [ $rc = 0 ] || ! grep -qF "${c#*|}" "$T/oom.log" || [ -e "$T/oom${c%%|*}/delta.safetensors" ] ||
       [ -d "$T/oom${c%%|*}/checkpoints" ]; then
      ok=0; why="$why [${c%%|*} MB: exit $rc, $(tail -1 "$T/oom.log")]"
    fi
  done
  if [ $ok = 1 ]; then pass sim_train_cuda_out_of_memory; else fail sim_train_cuda_out_of_memory "$why"; fi
else echo "SKIP sim_train_cuda_out_of_memory: $SIMT not built (the CPU simulation needs CUDA's headers)"; fi
# A CUDA build on a machine without a GPU: --device cuda fails with a message saying so (on a GPU
# machine it trains)
if "$BIN/customdiff-train" $COMMON --instance-data "$T/inst" --instance-prompt "a <new1>" --max-train-steps 1 \
     --checkpointing-steps 0 --device cuda --out "$T/nogpu" >"$T/nogpu.log" 2>&1; then pass device_cuda_ran_on_a_gpu
elif grep -qi "cuda\|gpu" "$T/nogpu.log" && ! grep -qi "segmentation\|abort" "$T/nogpu.log"; then pass device_cuda_without_gpu_says_so
else fail device_cuda_without_gpu "$(tail -1 "$T/nogpu.log")"; fi

# ---- export: the diffusers folder samples like base + delta; the Custom Diffusion layout too ---
if [ -f "$T/run/delta.safetensors" ]; then
  "$BIN/customdiff-export" --model "$MODEL" --delta "$T/run/delta.safetensors" --out "$T/exp" >"$T/log" 2>&1 &&
  "$BIN/customdiff-sample" --model "$T/exp" --prompt "$P" --steps 4 --height $RES --width $RES --seed 7 --format jpg \
    --out "$T/s_exp" >"$T/log" 2>&1
  if [ $? != 0 ]; then fail export_diffusers "$(tail -1 "$T/log")"
  elif cmp -s "$T/s_exp/00000-7.jpg" "$T/s_delta/00000-7.jpg" && grep -q '"<new1>"' "$T/exp/tokenizer/added_tokens.json"
  then pass export_diffusers
  else fail export_diffusers "the exported folder samples differently from base + delta"; fi
  "$BIN/customdiff-export" --model "$MODEL" --delta "$T/run/delta.safetensors" --format custom-diffusion \
    --out "$T/expcd" >"$T/log" 2>&1 &&
  "$BIN/customdiff-sample" --model "$MODEL" --delta "$T/expcd" --prompt "$P" --steps 4 --height $RES --width $RES \
    --seed 7 --format jpg --no-check-base --out "$T/s_expcd" >"$T/log" 2>&1
  if [ $? != 0 ]; then fail export_custom_diffusion "$(tail -1 "$T/log")"
  elif [ -f "$T/expcd/pytorch_custom_diffusion_weights.safetensors" ] && [ -f "$T/expcd/<new1>.safetensors" ] &&
       cmp -s "$T/s_expcd/00000-7.jpg" "$T/s_delta/00000-7.jpg"
  then pass export_custom_diffusion
  else fail export_custom_diffusion "files missing or the sample differs"; fi
fi
exit 0
