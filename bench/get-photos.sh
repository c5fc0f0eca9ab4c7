#!/bin/sh
# Fetches the sample photographs shipped in Debian's python3-skimage package (skimage/data)
# into $BUILD/photos without installing the package: `apt-get download` + `dpkg-deb -x`.
# Idempotent: does nothing when the folder is already complete. Prints the folder.
#   BUILD=build-x bench/get-photos.sh   ->   build-x/photos
set -e
BUILD=${BUILD:-build}
DEST="$BUILD/photos"
# Real photographs (colour unless noted), 0.2 to 2 megapixels.
PHOTOS="astronaut.png chelsea.png coffee.png rocket.jpg retina.jpg hubble_deep_field.jpg
motorcycle_left.png motorcycle_right.png ihc.png brick.png grass.png gravel.png camera.png
moon.png coins.png"
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
mkdir -p "$DEST"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cd-photos.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
chmod 755 "$TMP"   # apt's _apt user must be able to write the download there
( cd "$TMP" && { apt-get download python3-skimage >/dev/null 2>&1 ||
  { apt-get update -qq >/dev/null 2>&1 && apt-get download python3-skimage >/dev/null 2>&1; }; } ) || {
  echo "get-photos: could not download python3-skimage with apt-get" >&2; exit 1; }
dpkg-deb -x "$TMP"/python3-skimage_*.deb "$TMP/x"
SRC=$(find "$TMP/x" -type d -path '*skimage/data' | head -n 1)
[ -n "$SRC" ] || { echo "get-photos: no skimage/data folder in the package" >&2; exit 1; }
for p in $PHOTOS; do
  [ -f "$SRC/$p" ] && cp "$SRC/$p" "$DEST/$p"
done
# Provenance: the photographs' own licence notes ship in the same folder.
[ -f "$SRC/README.txt" ] && cp "$SRC/README.txt" "$DEST/README-skimage-data.txt"
ls "$TMP"/python3-skimage_*.deb | sed 's|.*/||' > "$DEST/SOURCE"
touch "$DEST/.complete"
echo "$DEST"
