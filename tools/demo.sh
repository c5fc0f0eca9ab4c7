#!/bin/sh
# make demo: the whole Custom Diffusion pipeline end to end on the CPU with the project's
# own tiny random model (no real weights can be downloaded here), no GPU, no network beyond
# fetching Debian's sample photographs once (generated stand-ins when that fails):
#   tiny model -> index the photographs with the tiny CLIP -> retrieve for "cat" -> serve the
#   photographs on a loopback HTTP server -> preprocess instance photos and the retrieved
#   URLs into LMDB stores -> train a few steps -> sample with the delta -> a grid.
# Prints where every artefact is. BUILD=build tools/demo.sh
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
B=$BUILD/bin
D=$BUILD/demo
RES=64
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q ' avx512f' /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX   # see README: OpenBLAS 0.3.21 misdetects some AVX-512 CPUs
fi
rm -rf "$D"; mkdir -p "$D"
step() { echo; echo "== $*"; }

step "1/7 tiny model (random weights, real on-disk layouts) -> $D/model"
"$B/customdiff-tiny-model" --out "$D/model" --seed 0

step "2/7 photographs"
if PHOTOS=$(BUILD=$BUILD bench/get-photos.sh 2>"$D/photos.log"); then
  echo "Debian python3-skimage sample photographs in $PHOTOS"
else
  PHOTOS=$D/photos
  echo "could not fetch Debian's photographs ($(tail -1 "$D/photos.log")); using images sampled from the tiny model"
  "$B/customdiff-sample" --model "$D/model" --prompt "a photo of a cat" --n 8 --steps 2 \
    --height 128 --width 128 --seed 3 --out "$PHOTOS" >/dev/null
  rm -f "$PHOTOS/grid.png"
fi

# Captions for the index (what a crawl's alt texts would be): "<stem>.txt" beside each photo.
for f in "$PHOTOS"/*.png "$PHOTOS"/*.jpg; do
  [ -f "$f" ] || continue
  t="${f%.*}.txt"
  [ -f "$t" ] || echo "a photograph of $(basename "${f%.*}" | tr '_' ' ')" > "$t"
done

step "3/7 loopback server for the photographs"
"$BUILD/tests/httpd" "$PHOTOS" 0 > "$D/httpd.port" &
HTTPD=$!
trap 'kill $HTTPD 2>/dev/null || true' EXIT INT TERM
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do [ -s "$D/httpd.port" ] && break; sleep 0.2; done
PORT=$(awk '/^port/ {print $2}' "$D/httpd.port")
[ -n "$PORT" ] || { echo "demo: the loopback server did not start" >&2; exit 1; }
BASE="http://127.0.0.1:$PORT/files"
echo "serving $PHOTOS at $BASE"

step "4/7 index the photographs with the tiny CLIP and retrieve class images for \"cat\""
tools/demo-retrieve.sh "$PHOTOS" "$D/model/clip" "$BASE" "$D/retrieve" "a photo of a cat" 8

step "5/7 preprocess: instance photos and the retrieved URLs -> LMDB stores"
mkdir -p "$D/instance"
n=0
for f in "$PHOTOS"/chelsea.png "$PHOTOS"/coffee.png "$PHOTOS"/astronaut.png "$PHOTOS"/*.png; do
  [ -f "$f" ] && [ $n -lt 3 ] && [ ! -f "$D/instance/$(basename "$f")" ] && { cp "$f" "$D/instance/"; n=$((n + 1)); }
done
"$B/customdiff-preprocess" --instance "$D/instance" --caption "photo of a <new1> cat" \
  --resolution $RES --out "$D/instance_store"
"$B/customdiff-preprocess" --candidates "$D/retrieve/candidates.jsonl" --num 6 --resolution $RES \
  --allow-loopback --out "$D/class_store"
kill $HTTPD 2>/dev/null || true
wait $HTTPD 2>/dev/null || true
trap - EXIT INT TERM

step "6/7 train: K/V of every cross-attention + the <new1> embedding, with prior preservation"
"$B/customdiff-train" --model "$D/model" --instance-data "$D/instance_store" --class-data "$D/class_store" \
  --instance-prompt "photo of a <new1> cat" --class-prompt "cat" --modifier-token "<new1>" \
  --initializer-token ktn --with-prior-preservation --real-prior --num-class-images 6 \
  --resolution $RES --train-batch-size 2 --learning-rate 2e-2 --max-train-steps 24 \
  --checkpointing-steps 12 --seed 42 --hflip --out "$D/run"

step "7/7 sample with the delta"
"$B/customdiff-sample" --model "$D/model" --delta "$D/run/delta.safetensors" \
  --prompt "photo of a <new1> cat" --n 4 --steps 10 --height $RES --width $RES --seed 7 --out "$D/samples"

echo
echo "demo artefacts:"
echo "  model          $D/model (pipeline) and $D/model/clip"
echo "  index          $D/retrieve/index/index.json"
echo "  candidates     $D/retrieve/candidates.jsonl"
echo "  stores         $D/instance_store $D/class_store (manifest.jsonl, stats.json, contact.jpg inside)"
echo "  training run   $D/run (delta.safetensors, train.log, metrics.json, loss.png, checkpoints/)"
echo "  samples        $D/samples (grid.png)"
