#!/bin/bash
# SD v1.5 memory benchmark on the CPU (issue 4's targets: loading peaks under 1.2x the
# weights' size; 512x512 sampling peaks at most 5 GB; VAE decode at 512), with random weights
# in the real diffusers layout: runs bench/bench_sd15_memory.c and saves its output with the
# machine details to bench/results/sd15-memory-cpu.txt.
#   bench/sd15-memory.sh [bench_sd15_memory options: --keep --steps N --no-sample --no-fp16]
# After the bench, customdiff-sample itself makes one 512x512 image (1 DDIM step, guidance 7.5)
# from the fp32 folder under /usr/bin/time: its max RSS cross-checks the bench's sampling peak.
# Env: BUILD (build folder, default build), RESULT (output file).
# Writes $BUILD/sd15-random (6.4 GB: fp32 + fp16 copies; fp16 only when the disk is short),
# reused when present, deleted at the end unless --keep. About 5-8 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RESULT=${RESULT:-bench/results/sd15-memory-cpu.txt}
make BUILD="$BUILD" -j2 "$BUILD/bench/bench_sd15_memory" "$BUILD/bin/customdiff-sample" >/dev/null
KEEP=0
for a in "$@"; do [ "$a" = --keep ] && KEEP=1; done
DIR=$BUILD/sd15-random
# OpenBLAS 0.3.21 takes this VM's Zen 4 (avx512f) for a Prescott and uses slow kernels.
if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}; fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$(dirname "$RESULT")"
{
  echo "# bench/sd15-memory.sh $*  ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores;" \
       "RAM $(free -g | awk '/^Mem:/{print $2}') GB; kernel $(uname -r)"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" \
       "OMP_WAIT_POLICY=$OMP_WAIT_POLICY; disk free: $(df -h --output=avail "$BUILD" | tail -1 | tr -d ' ')"
  echo "# Random weights, real SD1.5 configs (unet 320/640/1280/1280 ctx 768, vae 128/256/512/512," \
       "CLIP ViT-L/14 text, real CLIP BPE vocab); peak = VmHWM per phase (reset between phases)."
  "$BUILD/bench/bench_sd15_memory" --dir "$DIR" --keep "$@"
  if [ -d "$DIR/fp32" ] && [ -x /usr/bin/time ]; then
    echo "(5) customdiff-sample --model $DIR/fp32 --steps 1 --height 512 --width 512 --guidance 7.5"
    /usr/bin/time -f "customdiff-sample: max RSS %M KB, %e s wall" "$BUILD/bin/customdiff-sample" \
      --model "$DIR/fp32" --prompt "a photo of an astronaut riding a horse on mars" --steps 1 \
      --height 512 --width 512 --guidance 7.5 --out "$BUILD/tmp/sd15-memory-sample" 2>&1 | tr '\r' '\n' | sed 's/^/  /'
    rm -rf "$BUILD/tmp/sd15-memory-sample"
  fi
  if [ "$KEEP" = 0 ] && [ -f "$DIR/sd15-random.complete" ]; then rm -rf "$DIR"; echo "removed $DIR (--keep keeps it)"; fi
  echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$RESULT"
exit "${PIPESTATUS[0]}"
