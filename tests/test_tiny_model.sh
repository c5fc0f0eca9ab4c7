#!/bin/sh
# customdiff-tiny-model: writes the real layouts; same seed -> same bytes, other seed -> other
# weights; the written CLIP folder loads and embeds (through customdiff-verify's loaders is
# not needed: test_clip covers the API), and --help works.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
T=$BUILD/bin/customdiff-tiny-model
if [ ! -x "$T" ]; then echo "FAIL tiny_model: $T not built"; exit 0; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cd-tiny.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if "$T" --out "$tmp/a" --seed 5 > "$tmp/a.log" 2>&1 && "$T" --out "$tmp/b" --seed 5 > /dev/null 2>&1 &&
   "$T" --out "$tmp/c" --seed 6 > /dev/null 2>&1; then
  missing=""
  for f in model_index.json tokenizer/vocab.json tokenizer/merges.txt tokenizer/special_tokens_map.json \
           text_encoder/config.json text_encoder/model.safetensors clip/config.json clip/model.safetensors \
           clip/preprocessor_config.json clip/vocab.json clip/merges.txt unet/config.json vae/config.json \
           scheduler/scheduler_config.json; do
    [ -s "$tmp/a/$f" ] || missing="$missing $f"
  done
  if [ -n "$missing" ]; then echo "FAIL tiny_model_layout: missing$missing"
  else echo "PASS tiny_model_layout"; fi
  if cmp -s "$tmp/a/text_encoder/model.safetensors" "$tmp/b/text_encoder/model.safetensors" &&
     cmp -s "$tmp/a/clip/model.safetensors" "$tmp/b/clip/model.safetensors"; then
    echo "PASS tiny_model_same_seed_same_bytes"
  else echo "FAIL tiny_model_same_seed_same_bytes: outputs differ"; fi
  if cmp -s "$tmp/a/text_encoder/model.safetensors" "$tmp/c/text_encoder/model.safetensors"; then
    echo "FAIL tiny_model_seed_changes_weights: seed 5 and 6 wrote the same weights"
  else echo "PASS tiny_model_seed_changes_weights"; fi
  if grep -q "wrote $tmp/a" "$tmp/a.log"; then echo "PASS tiny_model_says_what_it_wrote"
  else echo "FAIL tiny_model_says_what_it_wrote: $(cat "$tmp/a.log")"; fi
else
  echo "FAIL tiny_model_layout: customdiff-tiny-model failed: $(cat "$tmp/a.log")"
fi
if "$T" --help | grep -q -- "--seed"; then echo "PASS tiny_model_help"; else echo "FAIL tiny_model_help: no --seed in --help"; fi
