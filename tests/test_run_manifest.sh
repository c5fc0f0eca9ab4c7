#!/bin/sh
# make run MANIFEST=...: a whole run (retrieve -> preprocess -> train -> sample) from a run
# definition, on the project's tiny model with a local index of file:// images; a second
# make finds everything up to date, and touching the manifest makes it stale again.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
BIN=$BUILD/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
T=$(pwd)/$BUILD/tmp/test_run.$$
rm -rf "$T"; mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
for b in tiny-model sample index retrieve preprocess train; do
  [ -x "$BIN/customdiff-$b" ] || { echo "FAIL run_manifest: $BIN/customdiff-$b not built"; exit 0; }
done
"$BIN/customdiff-tiny-model" --out "$T/model" >"$T/log" 2>&1 &&
"$BIN/customdiff-sample" --model "$T/model" --prompt "a cat" --n 6 --steps 2 --height 64 --width 64 \
  --seed 5 --out "$T/photos" >>"$T/log" 2>&1 &&
rm -f "$T/photos/grid.png" && mkdir -p "$T/inst" && cp "$T/photos"/00000-*.png "$T/photos"/00001-*.png "$T/inst/" 2>>"$T/log" &&
"$BIN/customdiff-index" --images "$T/photos" --clip "$T/model/clip" --out "$T/index" >>"$T/log" 2>&1 ||
  { echo "FAIL run_manifest_setup: $(tail -2 "$T/log" | tr '\n' ' ')"; exit 0; }
cat > "$T/m.mk" <<MK
MODEL           = $T/model
CLIP            = $T/model/clip
INDEX           = $T/index
CLASS_PROMPT    = cat
NUM_CLASS       = 3
INSTANCE_DIR    = $T/inst
INSTANCE_PROMPT = photo of a <new1> cat
RESOLUTION      = 64
STEPS           = 3
LR              = 1e-3
BATCH           = 1
SEED            = 1
SAMPLE_PROMPT   = <new1> cat on a sofa
SAMPLE_STEPS    = 2
SAMPLE_N        = 2
PREPROCESS_FLAGS = --allow-file-urls
TRAIN_FLAGS     = --checkpointing-steps 0
MK
# -o: the stage programs are the ones under test, never rebuilt here (a sanitizer build's
# objects relinked with this make's default flags would not link)
KEEP=""; for s in retrieve preprocess train sample; do KEEP="$KEEP -o $BUILD/bin/customdiff-$s"; done
M="make --no-print-directory BUILD=$BUILD MANIFEST=$T/m.mk RUN=$T/run$KEEP"
if $M run >"$T/run.log" 2>&1 && [ -s "$T/run/samples/grid.png" ] && [ -s "$T/run/train/delta.safetensors" ]; then
  echo "PASS run_manifest_whole_run"
else
  echo "FAIL run_manifest_whole_run: $(tail -3 "$T/run.log" | tr '\n' ' ')"; exit 0
fi
grep -q '"url"' "$T/run/candidates.jsonl" && echo "PASS run_manifest_retrieved" || echo "FAIL run_manifest_retrieved: no candidates"
if $M -q "$T/run/samples/grid.png" >/dev/null 2>&1; then echo "PASS run_manifest_up_to_date"
else echo "FAIL run_manifest_up_to_date: a second make would redo work"; fi
sleep 1; touch "$T/m.mk"
if $M -q "$T/run/samples/grid.png" >/dev/null 2>&1; then echo "FAIL run_manifest_stale: editing the manifest did not make the run stale"
else echo "PASS run_manifest_stale_after_edit"; fi
