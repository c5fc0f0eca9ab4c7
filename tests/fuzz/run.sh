#!/bin/sh
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, -fsanitize=fuzzer,address,
# undefined, and runs each for a bounded time. Not part of `make test`.
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 30 s; all targets)
#   FUZZ_SECONDS=10 make fuzz
# Crashes are written to $BUILD/fuzz/<target>/crash-*; the script exits non-zero on any.
cd "$(dirname "$0")/../.." || exit 2
BUILD=${BUILD:-build}
SECS=${1:-${FUZZ_SECONDS:-30}}
[ $# -gt 0 ] && shift
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null 2>&1 || { echo "fuzz: $CC not found (apt-get install clang)"; exit 2; }
ROOT=$(pwd)
case $BUILD in /*) OUT=$BUILD/fuzz;; *) OUT=$ROOT/$BUILD/fuzz;; esac
mkdir -p "$OUT/obj"
FLAGS="-g -O1 -std=gnu11 -I. -D_GNU_SOURCE -DCD_VERSION=\"fuzz\" -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
LIBS="-lcurl -llmdb -lturbojpeg -lpng -lwebp -lwebpdemux -lgif -lcjson -lutf8proc -lpthread -lm"

# The code under test: core/*.c and the preprocess input parsers, instrumented for coverage.
objs=""
for src in core/*.c preprocess/inputs.c; do
  o="$OUT/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')"
  if [ ! -f "$o" ] || [ "$src" -nt "$o" ]; then
    $CC $FLAGS -fsanitize=fuzzer-no-link -c "$src" -o "$o" 2>"$o.log" || { echo "fuzz: skipping $src (does not build with $CC; see $o.log)"; rm -f "$o"; continue; }
  fi
  objs="$objs $o"
done
rm -f "$OUT/libfuzz.a"
ar rcs "$OUT/libfuzz.a" $objs

# Seeds: small valid inputs written here (the image target also uses tests/fuzz/corpus/image).
seed() { mkdir -p "$OUT/seeds/$1"; printf "$3" > "$OUT/seeds/$1/$2"; }
seed safetensors ok '\x40\x00\x00\x00\x00\x00\x00\x00{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}            \x00\x00\x80\x3f\x00\x00\x00\x40'
seed safetensors meta '\x32\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{"format":"pt"},"b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'
seed npy f32 '\x93NUMPY\x01\x00\x76\x00{"descr": "<f4", "fortran_order": False, "shape": (2,), }                                                            \n\x00\x00\x80\x3f\x00\x00\x00\x40'
seed candidates jsonl '\x00{"url": "http://a/b.jpg", "caption": "a cat", "similarity": 0.3}\n{"url":"http://c/d.png","caption":"x"}\n'
seed candidates csv '\x01url,caption\nhttp://a/b.jpg,"a ""quoted"", cat"\n"http://c",d\n'
seed candidates tsv '\x02URL\tTEXT\nhttp://a/b.jpg\ta cat\n'
seed candidates lists '\x03images/0.jpg\nimages/1.jpg\n\x00cat one\ncat two\n\x00http://a/0.jpg\nhttp://a/1.jpg\n'

status=0
targets=${*:-$(ls tests/fuzz/fuzz_*.c | sed 's|tests/fuzz/fuzz_||; s|\.c$||')}
for t in $targets; do
  src=tests/fuzz/fuzz_$t.c
  [ -f "$src" ] || { echo "fuzz: no $src"; status=1; continue; }
  bin="$OUT/fuzz_$t"
  $CC $FLAGS -fsanitize=fuzzer "$src" "$OUT/libfuzz.a" -o "$bin" $LIBS || { echo "FAIL fuzz_$t: does not build"; status=1; continue; }
  mkdir -p "$OUT/$t/corpus"
  seeds="$OUT/seeds/$t"
  [ -d "$seeds" ] || seeds=""
  [ -d "tests/fuzz/corpus/$t" ] && seeds="$seeds $ROOT/tests/fuzz/corpus/$t"
  echo "fuzz_$t: running for $SECS s"
  if (cd "$OUT/$t" && ASAN_OPTIONS=detect_leaks=1 "../fuzz_$t" -max_total_time="$SECS" -max_len=65536 \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 corpus $seeds \
        > "log.txt" 2>&1); then
    echo "PASS fuzz_$t: $(grep -E '^stat::number_of_executed_units' "$OUT/$t/log.txt" | awk '{print $2}') runs, no crash"
  else
    echo "FAIL fuzz_$t: see $OUT/$t/log.txt and $OUT/$t/crash-*"; tail -20 "$OUT/$t/log.txt"; status=1
  fi
done
exit $status
