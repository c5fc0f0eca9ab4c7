#!/bin/bash
# The summary table of bench/gpu-check.sh (its exit trap calls this): reads the step outputs it
# left in its build folder (train.out, unet.out, torch.out, ops.out, twin.out, memcheck.out,
# maketest.out) and prints every figure issue 6 asks for, with its target and PASS / MISS
# ("-" where the step did not run or printed nothing; "info" where the issue sets no target).
# Usage: bench/gpu/summary.sh BUILD_DIR
set -u
D=${1:-build-gpu-min}
f() { [ -f "$D/$1" ] && cat "$D/$1"; }
# value of key=... on the train_step line with the given selectors
train() { f train.out | grep "^train_step prec=$1 latents=$2 ckpt=$3 " | tail -1 | tr ' ' '\n' | sed -n "s/^$4=//p"; }
tkey() { f torch.out | sed -n "s/^$1 //p" | tail -1; }
# bench_unet_cuda's table: | mode | ms | TFLOP/s (x TFLOP per forward) | it/s |
unet() { f unet.out | awk -F'|' -v m="$1" -v c="$2" '{g=$2; gsub(/^ +| +$/, "", g); if (index(g, m) == 1 && $3 ~ /[0-9]/) {v=$c; sub(/^ +/, "", v); split(v, a, " "); print a[1]}}' | tail -1; }
num() { [ -n "$1" ] && awk -v x="$1" 'BEGIN{exit !(x+0 == x+0 && x != "")}'; }
calc() { awk "BEGIN{printf \"%.${2:-2}f\", $1}"; }
verdict() { # value op target
  num "$1" || { echo "-"; return; }
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN{ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "PASS" : "MISS"}'
}
row() { printf '| %-52s | %-40s | %-24s | %-5s |\n' "$1" "${2:--}" "$3" "$4"; }

gemm=$(f train.out | sed -n 's/^gemm_bf16_tflops //p' | tail -1)
[ -z "$gemm" ] && gemm=$(f ops.out | grep 'cuBLAS GEMM bf16 (ceiling)' | sed -n 's/.*| *\([0-9.]*\) TFLOP\/s.*/\1/p' | head -1)
echo
echo "== summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
row "measure" "value" "target" "ok"
echo "|---|---|---|---|"
row "bf16 GEMM ceiling (cuBLAS 8192^3)" "${gemm:+$gemm TFLOP/s}" "(the reference rate)" "info"
for m in "bf16 (fp32" "bf16 + CUDA graph"; do
  ms=$(unet "$m" 3); tf=$(unet "$m" 4)
  label="UNet forward SD1.5 B2 64x64, ${m/ (fp32/}"
  row "$label" "${ms:+$ms ms, $tf TFLOP/s}" "" "info"
done
for cfg in "bf16 cached 0" "bf16 cached 1" "bf16 uncached 0" "bf16 uncached 1" "tf32 cached 0" "tf32 cached 1" "tf32 uncached 0"; do
  set -- $cfg
  ms=$(train "$1" "$2" "$3" ms)
  [ -z "$ms" ] && [ "$1" = tf32 ] && continue
  tf=$(train "$1" "$2" "$3" tflops); pct=$(train "$1" "$2" "$3" pct_gemm); s250=$(train "$1" "$2" "$3" s250)
  label="train step $1, latents $2, ckpt $([ "$3" = 1 ] && echo on || echo off)"
  if [ "$1 $2 $3" = "bf16 cached 0" ]; then
    row "$label" "${ms:+$ms ms, $tf TFLOP/s, $pct% GEMM}" ">= 40% of the GEMM rate" "$(verdict "$pct" '>=' 40)"
    row "  250 steps at 512 (that step x 250)" "${s250:+$s250 s}" "< 10 s (H100)" "$(verdict "$s250" '<=' 10)"
  else
    row "$label" "${ms:+$ms ms, $tf TFLOP/s, $pct% GEMM}" "" "info"
    [ "$1" = bf16 ] && [ -n "$s250" ] && row "  250 steps" "$s250 s" "" "info"
  fi
done
its=$(unet "bf16 + CUDA graph" 5); how="bf16 + CUDA graph"
[ -z "$its" ] && { its=$(unet "bf16 (fp32" 5); how="bf16, no graph: its row failed"; }
row "sampling at 512, CFG ($how)" "${its:+$its it/s}" ">= 150 it/s (H100)" "$(verdict "$its" '>=' 150)"
p0=$(train bf16 cached 0 peak_gib); p1=$(train bf16 cached 1 peak_gib)
pl0=$(train bf16 cached 0 planned_gib); pl1=$(train bf16 cached 1 planned_gib)
row "peak device memory, bf16 train (ckpt off)" "${p0:+$p0 GiB (planned $pl0)}" "" "info"
best=$(printf '%s\n%s\n' "$p0" "$p1" | grep -E '^[0-9.]+$' | sort -g | head -1)
row "peak device memory, bf16 train (ckpt on)" "${p1:+$p1 GiB (planned $pl1)}" "fits 16 GB (either)" "$(verdict "$best" '<=' 14.9)"
tms=$(tkey torch_train_step_ms); tunc=$(tkey torch_train_step_uncached_ms); tits=$(tkey torch_sample_it_s); tfwd=$(tkey torch_unet_fwd_ms)
cms=$(train bf16 cached 0 ms); cunc=$(train bf16 uncached 0 ms); cfwd=$(unet "bf16 (fp32" 3)
r=""; num "$tms" && num "$cms" && r=$(calc "$tms / $cms")
row "train step vs PyTorch eager (cached)" "${r:+${r}x ($tms ms torch)}" ">= 3x" "$(verdict "$r" '>=' 3)"
r=""; num "$tunc" && num "$cunc" && r=$(calc "$tunc / $cunc")
row "train step vs PyTorch eager (not cached)" "${r:+${r}x ($tunc ms torch)}" "" "info"
r=""; num "$tits" && num "$its" && r=$(calc "$its / $tits")
row "sampling vs PyTorch eager" "${r:+${r}x ($tits it/s torch)}" ">= 3x" "$(verdict "$r" '>=' 3)"
r=""; num "$tfwd" && num "$cfwd" && r=$(calc "$tfwd / $cfwd")
row "UNet forward vs PyTorch eager (bf16, no graph)" "${r:+${r}x ($tfwd ms torch)}" "" "info"
tp=$(tkey torch_peak_mem_gib); [ -n "$tp" ] && row "PyTorch eager peak memory (train, cached)" "$tp GiB" "" "info"
tw=$(f twin.out | sed -n 's/.*; \([0-9]* passed, [0-9]* failed\).*/\1/p' | tail -1)
fl=$(printf '%s' "$tw" | sed -n 's/.* \([0-9]*\) failed/\1/p')
row "twin test (every op vs CPU)" "$tw" "0 failed" "$( [ -n "$fl" ] && { [ "$fl" = 0 ] && echo PASS || echo MISS; } || echo -)"
mc=$(f memcheck.out | grep -o 'ERROR SUMMARY: [0-9]* error' | awk '{s+=$3} END{if (NR) print s}')
row "compute-sanitizer memcheck errors" "$mc" "0" "$(verdict "$mc" '<=' 0)"
mt=$(f maketest.out | tail -1)
mf=$(printf '%s' "$mt" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
row "make test-cuda (test_*_cuda, verify --device cuda)" "$mt" "0 failed" "$( [ -n "$mf" ] && { [ "$mf" = 0 ] && echo PASS || echo MISS; } || echo -)"
