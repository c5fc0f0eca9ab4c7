#!/bin/sh
# customdiff-sample --device cuda on the host emulation of the CUDA ops ($BUILD/emu/bin, built
# by the Makefile from model/*_cuda.c + kernels/emu/): on the random tiny model
# (customdiff-tiny-model), the image matches --device cpu (PNG values off by 1 in at most 0.1%,
# none by more: tests/test_unet_cuda.c's tolerance); tf32 and bf16 run and stay close; with
# CD_CUDA_GRAPH=1 the sampler falls back (graphs are not emulated) to the same image and says
# why; a bad --precision is a clear error. Needs no GPU and no golden data. Pixel comparisons
# decode the PNGs with python3's standard library (SKIP without python3).
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
OMP_NUM_THREADS=1
OMP_WAIT_POLICY=passive
export OMP_NUM_THREADS OMP_WAIT_POLICY
mkdir -p "$BUILD/tmp"
T=$(mktemp -d "$BUILD/tmp/emu-XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
S="$BUILD/emu/bin/customdiff-sample"
[ -x "$S" ] || { fail emu_sample_built "$S missing (make emu)"; exit 1; }
if ! "$BUILD/bin/customdiff-tiny-model" --out "$T/tiny" > "$T/tiny.log" 2>&1 || [ ! -f "$T/tiny/unet/config.json" ]; then
  fail emu_tiny_model "customdiff-tiny-model failed: $(tail -2 "$T/tiny.log")"
  exit 1
fi

run() {   # run NAME ARGS...: sample one 64x64 image (3 DDIM steps, CFG) into $T/NAME
  name=$1; shift
  "$S" --model "$T/tiny" --prompt "a photo of a cat" --height 64 --width 64 --steps 3 --seed 7 \
    --out "$T/$name" "$@" > "$T/$name.out" 2> "$T/$name.err"
}

# pngdiff A B: prints "n off1 worse meanabs" over the RGB values of two 8-bit PNGs.
pngdiff() {
  python3 - "$1" "$2" <<'EOF'
import struct, sys, zlib
def load(path):
    d = open(path, 'rb').read()
    assert d[:8] == b'\x89PNG\r\n\x1a\n', path
    i, idat = 8, b''
    while i < len(d):
        n, t = struct.unpack('>I4s', d[i:i + 8])
        c = d[i + 8:i + 8 + n]
        if t == b'IHDR': w, h, bd, ct, _, _, il = struct.unpack('>IIBBBBB', c)
        if t == b'IDAT': idat += c
        i += 12 + n
    assert bd == 8 and ct in (2, 6) and il == 0, 'only 8-bit RGB(A), not interlaced'
    bpp = 3 if ct == 2 else 4
    raw, stride, out, prev = zlib.decompress(idat), w * bpp, bytearray(), bytearray(w * bpp)
    for y in range(h):
        f, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = row[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1: row[x] = (row[x] + a) & 255
            elif f == 2: row[x] = (row[x] + b) & 255
            elif f == 3: row[x] = (row[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += bytes(v for k, v in enumerate(row) if k % bpp < 3)
        prev = row
    return w, h, out
wa, ha, a = load(sys.argv[1]); wb, hb, b = load(sys.argv[2])
if (wa, ha) != (wb, hb): print('size', wa, ha, wb, hb); sys.exit(0)
d = [abs(x - y) for x, y in zip(a, b)]
print(len(d), sum(1 for v in d if v == 1), sum(1 for v in d if v > 1), '%.3f' % (sum(d) / len(d)))
EOF
}
HAVE_PY=0
command -v python3 > /dev/null 2>&1 && HAVE_PY=1

# Every function kernels/kernels_cuda.h declares has its emulation in kernels/emu/ (a new
# twin without one would leave the emulated build unlinkable or the GPU code untestable).
A="$BUILD/emu/libcustomdiff-emu.a"
if command -v nm > /dev/null 2>&1 && [ -f "$A" ]; then
  nm -g --defined-only "$A" 2>/dev/null | awk '$2 == "T" { print $3 }' | sort -u > "$T/defined"
  grep -v '^ *//' kernels/kernels_cuda.h | grep -o 'cd_cuda_[a-z0-9_]*(' | tr -d '(' | sort -u > "$T/declared"
  missing=$(comm -23 "$T/declared" "$T/defined" | tr '\n' ' ')
  if [ ! -s "$T/declared" ]; then fail emu_every_symbol "no cd_cuda_* declarations found in kernels/kernels_cuda.h"
  elif [ -n "$missing" ]; then fail emu_every_symbol "not emulated in kernels/emu/: $missing"
  else pass emu_every_symbol; fi
else
  echo "SKIP emu_every_symbol: no nm or no $A"
fi

PNG=00000-7.png
if run cpu --device cpu && run cuda --device cuda && [ -f "$T/cpu/$PNG" ] && [ -f "$T/cuda/$PNG" ]; then
  pass emu_sample_device_cuda_runs
  if [ "$HAVE_PY" = 1 ]; then
    set -- $(pngdiff "$T/cpu/$PNG" "$T/cuda/$PNG")
    if [ "$#" = 4 ] && [ "$3" = 0 ] && [ "$2" -le $(($1 / 1000)) ]; then pass emu_sample_cuda_matches_cpu
    else fail emu_sample_cuda_matches_cpu "--device cuda vs cpu: $2 values off by 1, $3 by more, of $1 ($*)"; fi
  else
    echo "SKIP emu_sample_cuda_matches_cpu: no python3 to decode the PNGs"
  fi
else
  fail emu_sample_device_cuda_runs "$(tail -3 "$T/cpu.err" "$T/cuda.err")"
fi

# Reduced precision: runs, and the image stays close to fp32's (bf16 rounds every GEMM,
# convolution and attention input to 8 mantissa bits, fp16 to 11; TF32 rounds GEMM/convolution
# inputs to 10 mantissa bits).
for pl in tf32:1.0 bf16:4.0 fp16:1.0; do
  p=${pl%%:*}; lim=${pl#*:}
  if run "$p" --device cuda --precision "$p" && [ -f "$T/$p/$PNG" ]; then
    if [ "$HAVE_PY" = 1 ] && [ -f "$T/cpu/$PNG" ]; then
      set -- $(pngdiff "$T/cpu/$PNG" "$T/$p/$PNG")
      if [ "$#" = 4 ] && awk -v m="$4" -v l="$lim" 'BEGIN { exit !(m <= l) }'; then pass "emu_sample_$p"
      else fail "emu_sample_$p" "mean |$p - fp32 cpu| = $4 levels (> $lim) over $1 values ($*)"; fi
    else
      pass "emu_sample_$p"
    fi
  else
    fail "emu_sample_$p" "$(tail -3 "$T/$p.err")"
  fi
done

# CUDA graphs are not emulated: CD_CUDA_GRAPH=1 must fall back to the plain forward, say so
# once, and give the very same image.
if CD_CUDA_GRAPH=1 run graph --device cuda && [ -f "$T/graph/$PNG" ]; then
  if ! grep -q "graph capture is not emulated" "$T/graph.err"; then
    fail emu_graph_fallback "no warning naming the missing graph capture: $(tail -2 "$T/graph.err")"
  elif [ "$(grep -c 'running without a graph' "$T/graph.err")" != 1 ]; then
    fail emu_graph_fallback "expected one 'running without a graph' warning, got $(grep -c 'running without a graph' "$T/graph.err")"
  elif [ -f "$T/cuda/$PNG" ] && ! cmp -s "$T/cuda/$PNG" "$T/graph/$PNG"; then
    fail emu_graph_fallback "the fallback's image differs from the plain --device cuda run"
  else
    pass emu_graph_fallback
  fi
else
  fail emu_graph_fallback "CD_CUDA_GRAPH=1 run failed: $(tail -3 "$T/graph.err")"
fi

if run cpuprec --device cpu --precision bf16; then
  fail emu_cpu_precision_refused "--device cpu --precision bf16 was accepted (the CPU samples in fp32)"
elif grep -q "the CPU samples in fp32" "$T/cpuprec.err"; then
  pass emu_cpu_precision_refused
else
  fail emu_cpu_precision_refused "unclear error: $(tail -2 "$T/cpuprec.err")"
fi

if run badprec --device cuda --precision fp8; then
  fail emu_bad_precision_refused "--precision fp8 was accepted"
elif grep -q "precision 'fp8': expected fp32, tf32, bf16 or fp16" "$T/badprec.err"; then
  pass emu_bad_precision_refused
else
  fail emu_bad_precision_refused "unclear error: $(tail -2 "$T/badprec.err")"
fi
