#!/bin/sh
# Demo, retrieval part: index the demo photographs with the tiny CLIP's vision tower, then
# retrieve candidates for a class prompt; their URLs point at the loopback server that
# serves the photographs (started by the caller, tools/demo.sh), so preprocess can download them.
#   tools/demo-retrieve.sh PHOTOS_DIR CLIP_DIR BASE_URL [OUT_DIR] [PROMPT] [NUM]
#     PHOTOS_DIR  folder of .jpg/.png/.webp (captions from <stem>.txt when present)
#     CLIP_DIR    CLIP model folder (e.g. the tiny model's clip/)
#     BASE_URL    where the server serves PHOTOS_DIR's files, e.g. http://127.0.0.1:8000/files
#     OUT_DIR     default $BUILD/demo/retrieve; writes OUT_DIR/index/ and OUT_DIR/candidates.jsonl
#     PROMPT      default "a photo of a cat";  NUM: default 8
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ $# -ge 3 ] || { sed -n '2,10p' "$0"; exit 2; }
PHOTOS=$1 CLIP=$2 BASE=$3
OUT=${4:-$BUILD/demo/retrieve}
PROMPT=${5:-a photo of a cat}
NUM=${6:-8}
mkdir -p "$OUT"
"$BUILD/bin/customdiff-index" --images "$PHOTOS" --clip "$CLIP" --url-prefix "${BASE%/}" --out "$OUT/index"
"$BUILD/bin/customdiff-retrieve" --index "$OUT/index" --clip "$CLIP" --prompt "$PROMPT" --num "$NUM" \
  --near-dup 1.01 --out "$OUT/candidates.jsonl"
