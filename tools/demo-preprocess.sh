#!/bin/sh
# The preprocess part of `make demo`: real photographs (Debian python3-skimage's sample
# photos, fetched by bench/get-photos.sh) are
#   1. preprocessed as an instance folder (with a sidecar caption) into an instance store;
#   2. served by the project's loopback HTTP server and preprocessed from a URL candidates
#      list (JSONL, as customdiff-retrieve writes it, with a few bad URLs mixed in) into a
#      class store, so the download path runs end to end.
# Prints the stats and where the contact sheets are.
#   BUILD=build tools/demo-preprocess.sh
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PP=$BUILD/bin/customdiff-preprocess
DEMO=$BUILD/demo/preprocess
[ -x "$PP" ] || make --no-print-directory BUILD="$BUILD" "$PP"
[ -x "$BUILD/tests/httpd" ] || make --no-print-directory BUILD="$BUILD" "$BUILD/tests/httpd"
PHOTOS=$(BUILD=$BUILD bench/get-photos.sh)
mkdir -p "$DEMO"
rm -rf "$DEMO/instance" "$DEMO/instance_store" "$DEMO/class_store"

# 1. Instance photos: a folder of the user's own pictures; NAME.txt overrides the caption.
mkdir -p "$DEMO/instance"
for p in chelsea.png coffee.png rocket.jpg astronaut.png; do
  [ -f "$PHOTOS/$p" ] && cp "$PHOTOS/$p" "$DEMO/instance/"
done
echo "photo of a <new1> cat lying on a rug" > "$DEMO/instance/chelsea.txt"
echo "== instance folder -> $DEMO/instance_store"
"$PP" --instance "$DEMO/instance" --caption "photo of a <new1> object" --out "$DEMO/instance_store"

# 2. Candidates served over HTTP by the loopback server.
"$BUILD/tests/httpd" "$PHOTOS" 0 > "$DEMO/httpd.port" &
HTTPD=$!
trap 'kill $HTTPD 2>/dev/null || true' EXIT INT TERM
for i in 1 2 3 4 5 6 7 8 9 10; do [ -s "$DEMO/httpd.port" ] && break; sleep 0.2; done
PORT=$(awk '/^port/ {print $2}' "$DEMO/httpd.port")
[ -n "$PORT" ] || { echo "demo-preprocess: the loopback server did not start" >&2; exit 1; }
BASE="http://127.0.0.1:$PORT"
: > "$DEMO/candidates.jsonl"
sim=0.40
for f in "$PHOTOS"/*.png "$PHOTOS"/*.jpg; do
  [ -f "$f" ] || continue
  n=$(basename "$f"); cap=$(echo "${n%.*}" | tr '_' ' ')
  printf '{"url": "%s/files/%s", "caption": "a photograph of %s", "similarity": %s}\n' "$BASE" "$n" "$cap" "$sim" >> "$DEMO/candidates.jsonl"
  sim=$(awk "BEGIN {print $sim - 0.01}")
done
# What the open web also serves: a dead link, a web page, an opted-out image, a redirect
# to a private address, a duplicate URL, and a 429 that succeeds on retry.
cat >> "$DEMO/candidates.jsonl" <<JSONL
{"url": "$BASE/404", "caption": "a dead link", "similarity": 0.2}
{"url": "$BASE/html", "caption": "a web page, not an image", "similarity": 0.2}
{"url": "$BASE/robots/noai/coffee.png", "caption": "opted out with X-Robots-Tag: noai", "similarity": 0.2}
{"url": "$BASE/redirect-metadata", "caption": "a redirect to 169.254.169.254", "similarity": 0.2}
{"url": "$BASE/files/coffee.png", "caption": "the same URL again", "similarity": 0.2}
{"url": "$BASE/429/moon.png", "caption": "busy server, retry after 1 s", "similarity": 0.2}
JSONL
echo "== $(wc -l < "$DEMO/candidates.jsonl") candidate URLs on $BASE -> $DEMO/class_store"
"$PP" --candidates "$DEMO/candidates.jsonl" --out "$DEMO/class_store" --allow-loopback --retries 1
kill $HTTPD 2>/dev/null || true
wait $HTTPD 2>/dev/null || true
trap - EXIT INT TERM

for s in instance_store class_store; do
  echo "== $DEMO/$s/stats.json"
  sed -n '/"count"/p; /"status"/,/}/p; /"images_per_s"/p' "$DEMO/$s/stats.json" | tr -d '\t'
done
echo "contact sheets: $DEMO/instance_store/contact.jpg $DEMO/class_store/contact.jpg"
echo "manifests:      $DEMO/instance_store/manifest.jsonl $DEMO/class_store/manifest.jsonl"
