#!/bin/sh
# Installs the Debian packages customdiff needs, only when some are missing (idempotent).
PKGS="build-essential pkg-config libcurl4-openssl-dev libfaiss-dev libopenblas-dev liblapacke-dev
liblmdb-dev lmdb-utils libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libwebp-dev libcjson-dev
libutf8proc-dev libmicrohttpd-dev libgif-dev clang python3"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "customdiff deps: installing$missing"
SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
