#!/bin/bash
# Packs the real CUDA build of the project for the GPU machine, which has nvcc, cuBLAS and a
# driver but neither the Debian -dev packages this project links (cJSON, utf8proc, LMDB, curl,
# TurboJPEG, PNG, WebP, GIF, microhttpd, FAISS, OpenBLAS) nor a network, nor ../shared/golden.
# Run HERE (a developer machine, no GPU needed). It
#   1. builds with `make CUDA=1` (sm_90 + compute_80 PTX) into $BUILD (default build-bundle):
#      every tests/test_*_cuda, customdiff-{verify,train,sample,preprocess},
#      bench_{train,unet}_cuda;
#   2. copies them, debug info stripped, with the shared libraries they load that are not part
#      of the base system or of CUDA (from ldd: libc/libm/libpthread/libdl/librt/ld-linux,
#      libgcc_s, libstdc++ and every CUDA/cuDNN/driver library stay out: the GPU machine's
#      newer ones serve; all the project's -dev libraries and their dependencies go in) into
#      .gpu-bundle/payload.tar.xz, and the golden sets named by --golden (default tiny-sd:
#      cases, model, clip; the single-file checkpoints stay out) into .gpu-bundle/golden/;
#   3. writes .gpu-bundle/run.sh (what bench/gpu-check.sh's step 6 runs there: unpacks into
#      /tmp, links only the bundled libraries whose soname the machine lacks, finds cuDNN and
#      cuBLAS (CUDA's or PyTorch's wheels), checks glibc, runs `tests/run.sh cuda` on the
#      bundle's tests, customdiff-verify --device cuda (fp32 and bf16) over every golden set and
#      a short end-to-end run of the real trainer on the GPU (customdiff-train --device cuda,
#      tiny-sd), and ends with "N passed, N failed") and manifest.txt (contents, glibc, size).
# .gpu-bundle/ is ignored through .git/info/exclude (added here when missing), so it travels
# only when named: the device tool's call takes carry: [".gpu-bundle"]. The working tree that
# travels is limited to 64 MiB in all: the bundle must stay under --max-mib (default 56).
# Usage: bench/gpu-bundle.sh [--golden "tiny-sd blocks-sd15"|none] [--no-build] [--max-mib N]
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-bundle}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
G=${CD_GOLDEN:-../shared/golden}
SETS="tiny-sd"; BUILDIT=1; MAXMIB=56
while [ $# -gt 0 ]; do
  case "$1" in
    --golden) SETS=$2; shift 2;;
    --no-build) BUILDIT=0; shift;;
    --max-mib) MAXMIB=$2; shift 2;;
    *) echo "gpu-bundle: unknown argument $1 (see the comment at the top)" >&2; exit 2;;
  esac
done
[ "$SETS" = none ] && SETS=""
D=.gpu-bundle
T=$BUILD/bundle-stage

# ---- 1. the CUDA build ---------------------------------------------------------------------
TESTS=$(ls tests/test_*_cuda.c | sed "s|^tests/\(.*\)\.c|$BUILD/tests/\1|")
BINS="$BUILD/bin/customdiff-verify $BUILD/bin/customdiff-train $BUILD/bin/customdiff-sample $BUILD/bin/customdiff-preprocess"
BENCH="$BUILD/bench/bench_train_cuda $BUILD/bench/bench_unet_cuda"
if [ "$BUILDIT" = 1 ]; then
  echo "gpu-bundle: make BUILD=$BUILD CUDA=1 -j$JOBS (tests, verify/train/sample, benches)"
  mkdir -p "$BUILD"
  make --no-print-directory BUILD="$BUILD" CUDA=1 -j"$JOBS" $TESTS $BINS $BENCH > "$BUILD/bundle-make.log" 2>&1 || {
    echo "gpu-bundle: make failed; the end of $BUILD/bundle-make.log:"; tail -20 "$BUILD/bundle-make.log"; exit 1; }
fi
for f in $TESTS $BINS; do [ -x "$f" ] || { echo "gpu-bundle: $f is not built (drop --no-build)"; exit 1; }; done
nm "$BUILD/bin/customdiff-verify" 2>/dev/null | grep -q cd_cuda_malloc || { echo "gpu-bundle: $BUILD is not a CUDA build"; exit 1; }

# ---- 2. binaries and the libraries they need -------------------------------------------------
rm -rf "$T"; mkdir -p "$T/tests" "$T/bin" "$T/bench" "$T/lib"
for f in $TESTS; do strip --strip-debug -o "$T/tests/$(basename "$f")" "$f"; done
for f in $BINS; do strip --strip-debug -o "$T/bin/$(basename "$f")" "$f"; done
for f in $BENCH; do [ -x "$f" ] && strip --strip-debug -o "$T/bench/$(basename "$f")" "$f"; done
# base system (glibc, the GCC runtime) and CUDA: never bundled
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libutil\.so|libgcc_s|libstdc\+\+|libcuda\.so|libcudart|libcublas|libcudnn|libnvrtc|libnvJitLink|libcufft|libcurand|libcusparse|libcusolver|libnccl|libnvidia)'
for f in "$T"/tests/* "$T"/bin/* "$T"/bench/*; do
  ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  printf '%s\n' "$name" | grep -Eq "$skip" && continue
  case "$path" in /usr/local/cuda*) continue;; esac
  cp -L "$path" "$T/lib/$name"
done
strip --strip-debug "$T"/lib/* 2>/dev/null || true
# glibc: the newest symbol version anything here needs
need=$(for f in "$T"/tests/* "$T"/bin/* "$T"/bench/* "$T"/lib/*; do objdump -T "$f" 2>/dev/null; done |
       grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n | tail -1)
mkdir -p "$D"
rm -rf "$D/golden" "$D/payload.tar.xz"
# One xz stream with a dictionary larger than the whole tar (~220 MiB): every test program
# carries the same CUDA fat binary, which a small window (xz -6: 8 MiB, or -T's blocks)
# compresses once per program (39 MiB) and this one once in all (14 MiB). ~2 min, 1 thread.
XZ_OPT="-9 --lzma2=preset=9,dict=256MiB -T1" tar -cJf "$D/payload.tar.xz" -C "$T" .

# ---- golden sets ------------------------------------------------------------------------------
for s in $SETS; do
  [ -d "$G/$s" ] || { echo "gpu-bundle: golden set $G/$s absent"; exit 1; }
  mkdir -p "$D/golden/$s"
  for part in cases model clip blocks.json cases.safetensors weights.safetensors; do
    [ -e "$G/$s/$part" ] && cp -r "$G/$s/$part" "$D/golden/$s/"
  done
  [ -f "$G/README.md" ] && cp "$G/README.md" "$D/golden/"
done

# ---- 3. run.sh and the manifest ----------------------------------------------------------------
cp bench/gpu/bundle-run.sh "$D/run.sh"
chmod +x "$D/run.sh"
size=$(du -sb "$D" | cut -f1)
{
  echo "built: $(date -u) from $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+local changes') on $(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "glibc_needed: ${need:-?}"
  echo "cuda: $(/usr/local/cuda/bin/nvcc --version 2>/dev/null | tail -1)"
  echo "golden: ${SETS:-none}"
  echo "size_bytes: $size"
  echo "tests: $(ls "$T/tests" | tr '\n' ' ')"
  echo "bin: $(ls "$T/bin" | tr '\n' ' ')"
  echo "bench: $(ls "$T/bench" | tr '\n' ' ')"
  echo "lib: $(ls "$T/lib" | tr '\n' ' ')"
} > "$D/manifest.txt"
grep -qx '/.gpu-bundle/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.gpu-bundle/' >> .git/info/exclude; }
cat "$D/manifest.txt"
echo "gpu-bundle: wrote $D ($(awk -v s="$size" 'BEGIN{printf "%.1f", s/1048576}') MiB: payload $(du -h "$D/payload.tar.xz" | cut -f1), golden $(du -sh "$D/golden" 2>/dev/null | cut -f1 || echo 0))"
if [ "$size" -gt $((MAXMIB * 1048576)) ]; then
  echo "gpu-bundle: over --max-mib $MAXMIB (the travelling tree is limited to 64 MiB): pick fewer --golden sets"
  exit 1
fi
