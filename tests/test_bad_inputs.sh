#!/bin/sh
# Hostile input for every stage program: truncated / bad-header safetensors, broken or absurd
# config.json, broken tokenizer files, tensors of the wrong shape, deltas that are corrupt,
# misshapen or for another base, stores that are not LMDB, broken concepts / index / .npy /
# prompts files, nonsense option values and unwritable output paths. Each must exit with a
# status in 1..127 (not a signal, not a sanitizer abort), print a message naming the
# offending file or option, and leave an existing store, run or index as it was.
# Run it against a sanitizer build too: BUILD=build-asan tests/test_bad_inputs.sh (BAD_VERBOSE=1
# prints each message under its PASS line).
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
BIN=$BUILD/bin
OMP_NUM_THREADS=1
OMP_WAIT_POLICY=passive
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export OMP_NUM_THREADS OMP_WAIT_POLICY ASAN_OPTIONS UBSAN_OPTIONS
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
for b in sample train index retrieve preprocess compress merge export verify tiny-model; do
  [ -x "$BIN/customdiff-$b" ] || { fail bad_inputs "$BIN/customdiff-$b not built"; exit 0; }
done
mkdir -p "$BUILD/tmp"
T=$(mktemp -d "$BUILD/tmp/bad-XXXXXX") && T=$(cd "$T" && pwd) || exit 2
srv=""
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$T"' EXIT

# sanitizer NAME FILE: FAIL when FILE holds an ASan/UBSan report (returns 1)
sanitizer() {
  if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$2"; then
    fail "$1" "sanitizer: $(grep -E 'ERROR: |runtime error:' "$2" | head -1)"; return 1
  fi
  return 0
}
# bad NAME PATTERN CMD...: CMD must fail cleanly (1..127) with PATTERN (ERE, any case) on stderr
bad() {
  name=$1; pat=$2; shift 2
  timeout 60 "$@" > "$T/out" 2> "$T/err" < /dev/null; rc=$?
  if [ $rc = 0 ]; then fail "$name" "accepted (exit 0): $(tail -1 "$T/out")"
  elif [ $rc -ge 124 ]; then fail "$name" "status $rc (crash, signal or hang): $(tail -3 "$T/err" | tr '\n' ' ')"
  elif ! sanitizer "$name" "$T/err"; then :
  elif ! cat "$T/err" "$T/out" | grep -Eqi -- "$pat"; then fail "$name" "message does not name '$pat': $(tail -2 "$T/err" | tr '\n' ' ')"
  else pass "$name"; [ -n "${BAD_VERBOSE:-}" ] && echo "    $(grep -Ei -- "$pat" "$T/err" "$T/out" | head -1 | cut -c1-220)"; fi
}
# warns NAME PATTERN CMD...: CMD may succeed (it kept going past bad inputs) but must not crash
# and must name PATTERN in its output
warns() {
  name=$1; pat=$2; shift 2
  timeout 60 "$@" > "$T/out" 2> "$T/err" < /dev/null; rc=$?
  if [ $rc -ge 124 ]; then fail "$name" "status $rc (crash, signal or hang): $(tail -3 "$T/err" | tr '\n' ' ')"
  elif ! sanitizer "$name" "$T/err"; then :
  elif ! cat "$T/err" "$T/out" | grep -Eqi -- "$pat"; then fail "$name" "silent skip: no '$pat' in the output: $(tail -2 "$T/err" | tr '\n' ' ')"
  else pass "$name"; fi
}
# same NAME DIR SUM: DIR's content checksum still SUM (nothing already done is lost)
sumdir() { (cd "$1" && find . -type f ! -name lock.mdb | LC_ALL=C sort | xargs cat | cksum); }
same() { if [ "$(sumdir "$2")" = "$3" ]; then pass "$1"; else fail "$1" "$2 changed"; fi; }
# mkst FILE JSON: a safetensors file holding header JSON and no data
mkst() {
  n=${#2}
  { printf "\\$(printf %03o $((n % 256)))\\$(printf %03o $((n / 256 % 256)))\\000\\000\\000\\000\\000\\000"
    printf '%s' "$2"; } > "$1"
}
# variant NAME: a copy of the tiny model whose subfolders link to the original, except those
# the caller replaces (rm the link first)
variant() {
  mkdir -p "$T/$1"
  for e in "$M"/*; do ln -s "$e" "$T/$1/$(basename "$e")"; done
  echo "$T/$1"
}
# own VARIANT SUB: make VARIANT/SUB a real copy to edit
own() { rm "$1/$2"; cp -r "$M/$2" "$1/$2"; }
# junk N: N fixed pseudo-random bytes
junk() { perl -e "srand(7); print map { chr int rand 256 } 1..$1"; }
# edit FILE PERL: in-place perl substitution on a (binary) file
edit() { perl -0777 -pi -e "$2" "$1"; }

# ---- fixtures: tiny model, images, a store, a 1-step run, an index ----------------------
M=$T/tiny
"$BIN/customdiff-tiny-model" --out "$M" > "$T/log" 2>&1 || { fail fixtures "tiny-model: $(tail -1 "$T/log")"; exit 0; }
"$BIN/customdiff-tiny-model" --out "$T/tiny1" --seed 1 > "$T/log" 2>&1 || { fail fixtures "tiny-model"; exit 0; }
"$BIN/customdiff-sample" --model "$M" --prompt "a cat" --n 2 --steps 1 --height 64 --width 64 \
  --out "$T/raw" > "$T/log" 2>&1 || { fail fixtures "sample: $(tail -1 "$T/log")"; exit 0; }
rm -f "$T/raw/grid.png"
"$BIN/customdiff-preprocess" --instance "$T/raw" --caption "photo of a <new1> cat" --resolution 64 \
  --out "$T/store" > "$T/log" 2>&1 || { fail fixtures "preprocess: $(tail -1 "$T/log")"; exit 0; }
TRAIN="--model $M --resolution 64 --modifier-token <new1> --initializer-token ktn --train-batch-size 1"
"$BIN/customdiff-train" $TRAIN --instance-data "$T/store" --instance-prompt "photo of a <new1> cat" \
  --max-train-steps 2 --checkpointing-steps 1 --out "$T/run" > "$T/log" 2>&1 ||
  { fail fixtures "train: $(tail -1 "$T/log")"; exit 0; }
D=$T/run/delta.safetensors
"$BIN/customdiff-index" --store "$T/store" --clip "$M/clip" --out "$T/ix" > "$T/log" 2>&1 ||
  { fail fixtures "index: $(tail -1 "$T/log")"; exit 0; }
store_sum=$(sumdir "$T/store"); run_sum=$(sumdir "$T/run"); ix_sum=$(sumdir "$T/ix")

S="$BIN/customdiff-sample"
SMP="--prompt cat --steps 1 --height 64 --width 64"

# ---- model folders ---------------------------------------------------------------------
UST=diffusion_pytorch_model.safetensors
v=$(variant trunc); own "$v" unet; head -c 100000 "$M/unet/$UST" > "$v/unet/$UST"
bad sample_truncated_unet "unet.*$UST|$UST" "$S" --model "$v" $SMP --out "$T/o"
bad train_truncated_unet "$UST" "$BIN/customdiff-train" --model "$v" --resolution 64 --modifier-token "<new1>" \
  --instance-data "$T/store" --instance-prompt "photo of a <new1> cat" --max-train-steps 1 --out "$T/o"
bad export_truncated_unet "$UST" "$BIN/customdiff-export" --model "$v" --delta "$D" --out "$T/o"
v=$(variant hdrlen); own "$v" unet; { printf '\377\377\377\377\377\377\377\177{}'; } > "$v/unet/$UST"
bad sample_bad_header_length "$UST" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant hdrjson); own "$v" unet; mkst "$v/unet/$UST" '{"a.weight":{"dtype":"F32","shape":[2'
bad sample_bad_header_json "$UST" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant hdroff); own "$v" unet
mkst "$v/unet/$UST" '{"conv_in.weight":{"dtype":"F32","shape":[32,4,3,3],"data_offsets":[0,4608]}}'
bad sample_header_offsets_past_end "$UST" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant hdrdtype); own "$v" unet
mkst "$v/unet/$UST" '{"conv_in.weight":{"dtype":"Q9","shape":[-1,4],"data_offsets":[0,0]}}'
bad sample_header_bad_dtype_shape "$UST" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant emptyst); own "$v" vae; : > "$v/vae/$UST"
bad sample_empty_vae "vae|$UST" "$S" --model "$v" $SMP --out "$T/o"

# unet/config.json: broken JSON, wrong types, missing keys, absurd values
ucfg() {  # ucfg NAME PERL: sample with unet/config.json edited by PERL must fail naming it
  v=$(variant "u_$1"); own "$v" unet; edit "$v/unet/config.json" "$2"
  bad "sample_unet_config_$1" "config.json|unet" "$S" --model "$v" $SMP --out "$T/o"
}
ucfg broken_json 's/\}\s*$//'
ucfg wrong_type 's/"block_out_channels":\s*\[[^\]]*\]/"block_out_channels":"wide"/'
ucfg missing_key 's/"block_out_channels":\s*\[[^\]]*\],//'
ucfg negative_channels 's/"block_out_channels":\s*\[32,/"block_out_channels":[-32,/'
ucfg zero_heads 's/"attention_head_dim":\s*8/"attention_head_dim":0/'
ucfg huge_channels 's/"block_out_channels":\s*\[32,/"block_out_channels":[2000000000,/'
ucfg zero_groups 's/"norm_num_groups":\s*32/"norm_num_groups":0/'
ucfg odd_groups 's/"norm_num_groups":\s*32/"norm_num_groups":7/'
ucfg zero_layers 's/"layers_per_block":\s*2/"layers_per_block":0/'
ucfg huge_layers 's/"layers_per_block":\s*2/"layers_per_block":1000000000/'
ucfg bad_block_type 's/"CrossAttnDownBlock2D"/"Nonsense"/'
ucfg in_channels_zero 's/"in_channels":\s*4/"in_channels":0/'
ucfg sample_size_huge 's/"sample_size":\s*16/"sample_size":1e12/'
ucfg cross_dim_wrong 's/"cross_attention_dim":\s*32/"cross_attention_dim":48/'
ucfg not_object 's/.*/[1,2,3]/s'

vcfg() {
  v=$(variant "v_$1"); own "$v" vae; edit "$v/vae/config.json" "$2"
  bad "sample_vae_config_$1" "config.json|vae" "$S" --model "$v" $SMP --out "$T/o"
}
vcfg broken_json 's/\{/[/'
vcfg zero_latent 's/"latent_channels":\s*4/"latent_channels":0/'
vcfg neg_channels 's/"block_out_channels":\s*\[/"block_out_channels":[-8,/'

tcfg() {
  v=$(variant "t_$1"); own "$v" text_encoder; edit "$v/text_encoder/config.json" "$2"
  bad "sample_text_config_$1" "config.json|text_encoder" "$S" --model "$v" $SMP --out "$T/o"
}
tcfg broken_json 's/:/;/'
tcfg zero_heads 's/"num_attention_heads":\s*\d+/"num_attention_heads":0/'
tcfg neg_hidden 's/"hidden_size":\s*32/"hidden_size":-32/'
tcfg wrong_hidden 's/"hidden_size":\s*32/"hidden_size":64/'
tcfg huge_layers 's/"num_hidden_layers":\s*\d+/"num_hidden_layers":100000000/'
tcfg zero_positions 's/"max_position_embeddings":\s*\d+/"max_position_embeddings":0/'

v=$(variant te_shape); own "$v" text_encoder
edit "$v/text_encoder/model.safetensors" 's/"shape":\[77,32\]/"shape":[32,77]/'
bad sample_text_encoder_wrong_shape "text_model.embeddings.position_embedding|shape" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant te_size); own "$v" text_encoder
edit "$v/text_encoder/model.safetensors" 's/"shape":\[77,32\]/"shape":[78,32]/'
bad sample_text_encoder_shape_vs_bytes "model.safetensors|position_embedding" "$S" --model "$v" $SMP --out "$T/o"

v=$(variant tok_vocab); own "$v" tokenizer; printf '{"a": 1, "b":' > "$v/tokenizer/vocab.json"
bad sample_tokenizer_broken_vocab "vocab.json" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant tok_vocab_type); own "$v" tokenizer; printf '["a","b"]' > "$v/tokenizer/vocab.json"
bad sample_tokenizer_vocab_not_object "vocab.json" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant tok_vocab_ids); own "$v" tokenizer; printf '{"a":-5,"b":"x","c":99999999999}' > "$v/tokenizer/vocab.json"
bad sample_tokenizer_vocab_bad_ids "vocab.json" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant tok_merges); own "$v" tokenizer; printf '#version: 0.2\nk t\n\000\377\376 \001\n' > "$v/tokenizer/merges.txt"
bad sample_tokenizer_binary_merges "merges.txt" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant tok_merges_words); own "$v" tokenizer; printf '#version: 0.2\nzz\na b c\nq\n' > "$v/tokenizer/merges.txt"
bad sample_tokenizer_broken_merges "merges.txt" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant tok_missing); rm "$v/tokenizer"; mkdir "$v/tokenizer"
bad sample_tokenizer_missing "tokenizer|vocab.json" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant sched); own "$v" scheduler; printf '{"num_train_timesteps": -10, "beta_start": "x"}' > "$v/scheduler/scheduler_config.json"
bad sample_scheduler_config_absurd "scheduler" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant sched_broken); own "$v" scheduler; printf '{{' > "$v/scheduler/scheduler_config.json"
bad sample_scheduler_config_broken "scheduler_config.json" "$S" --model "$v" $SMP --out "$T/o"
v=$(variant mi); rm "$v/model_index.json"; printf 'nope' > "$v/model_index.json"
bad sample_model_index_broken "model_index.json" "$S" --model "$v" $SMP --out "$T/o"
junk 5000 > "$T/garbage.safetensors"
bad sample_single_file_garbage "garbage.safetensors" "$S" --model "$T/garbage.safetensors" --tokenizer "$M/tokenizer" $SMP --out "$T/o"
bad sample_model_missing "nowhere" "$S" --model "$T/nowhere" $SMP --out "$T/o"

# ---- deltas ----------------------------------------------------------------------------
head -c 3000 "$D" > "$T/trunc_delta.safetensors"
bad sample_delta_truncated "trunc_delta" "$S" --model "$M" --delta "$T/trunc_delta.safetensors" $SMP --out "$T/o"
junk 3000 > "$T/rand_delta.safetensors"
bad sample_delta_corrupt "rand_delta" "$S" --model "$M" --delta "$T/rand_delta.safetensors" $SMP --out "$T/o"
bad sample_delta_other_base "base" "$S" --model "$T/tiny1" --delta "$D" $SMP --out "$T/o"
cp "$D" "$T/shape_delta.safetensors"
edit "$T/shape_delta.safetensors" 's/"shape":\[32,32\],"data_offsets":\[0,4096\]/"shape":[16,64],"data_offsets":[0,4096]/'
bad sample_delta_wrong_shape "to_k|shape" "$S" --model "$M" --delta "$T/shape_delta.safetensors" $SMP --out "$T/o"
bad sample_delta_wrong_shape_no_check "to_k|shape" "$S" --model "$M" --no-check-base --delta "$T/shape_delta.safetensors" $SMP --out "$T/o"
cp "$D" "$T/tok_delta.safetensors"
edit "$T/tok_delta.safetensors" 's/"modifier_tokens":"\[\\"<new1>\\"\]"/"modifier_tokens":"[[[[[[[[[["/'
bad sample_delta_bad_modifier_tokens "modifier_tokens|tok_delta" "$S" --model "$M" --delta "$T/tok_delta.safetensors" $SMP --out "$T/o"
mkdir -p "$T/empty_delta_dir"
bad sample_delta_empty_folder "empty_delta_dir" "$S" --model "$M" --delta "$T/empty_delta_dir" $SMP --out "$T/o"
bad compress_delta_corrupt "rand_delta" "$BIN/customdiff-compress" --delta "$T/rand_delta.safetensors" --model "$M" --out "$T/c.safetensors"
bad compress_delta_wrong_shape "to_k|shape" "$BIN/customdiff-compress" --delta "$T/shape_delta.safetensors" --model "$M" --no-check-base --out "$T/c.safetensors"
bad compress_rank_negative "rank" "$BIN/customdiff-compress" --delta "$D" --model "$M" --rank -3 --out "$T/c.safetensors"
bad compress_ratio_nan "ratio" "$BIN/customdiff-compress" --delta "$D" --model "$M" --ratio nan --out "$T/c.safetensors"
bad merge_delta_corrupt "rand_delta" "$BIN/customdiff-merge" --delta "$D" --delta "$T/rand_delta.safetensors" --categories "cat+dog" --model "$M" --out "$T/m.safetensors"
bad merge_categories_mismatch "categor" "$BIN/customdiff-merge" --delta "$D" --delta "$D" --categories "cat" --model "$M" --out "$T/m.safetensors"
bad merge_delta_wrong_shape "to_k|shape" "$BIN/customdiff-merge" --delta "$D" --delta "$T/shape_delta.safetensors" --no-check-base --categories "cat+dog" --model "$M" --out "$T/m.safetensors"
printf '\000\001\002\377\376' > "$T/binary.txt"; : > "$T/empty.txt"
bad merge_reg_captions_empty "empty.txt" "$BIN/customdiff-merge" --delta "$D" --delta "$D" --categories "cat+dog" --model "$M" --reg-captions "$T/empty.txt" --out "$T/m.safetensors"
bad merge_max_reg_zero "max-reg|regularisation" "$BIN/customdiff-merge" --delta "$D" --delta "$D" --categories "cat+dog" --model "$M" --max-reg 0 --out "$T/m.safetensors"
bad export_delta_corrupt "rand_delta" "$BIN/customdiff-export" --model "$M" --delta "$T/rand_delta.safetensors" --out "$T/o"
bad export_delta_other_base "base" "$BIN/customdiff-export" --model "$T/tiny1" --delta "$D" --out "$T/o"
bad export_bad_format "format" "$BIN/customdiff-export" --model "$M" --delta "$D" --format zip --out "$T/o"

# ---- .npy and init latents ---------------------------------------------------------------
printf '{"url": "http://x/a.jpg", "caption": "a"}\n' > "$T/meta.jsonl"
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 5, 8), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 640 /dev/zero; } > "$T/shape.npy"
bad sample_init_latents_wrong_shape "shape.npy|init-latents|shape" "$S" --model "$M" $SMP --init-latents "$T/shape.npy" --out "$T/o"
printf '\223NUMPY\001\000\020\000{garbage: (((  \n' > "$T/badhdr.npy"
bad sample_init_latents_bad_header "badhdr.npy" "$S" --model "$M" $SMP --init-latents "$T/badhdr.npy" --out "$T/o"
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 8, 8), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 100 /dev/zero; } > "$T/short.npy"
bad sample_init_latents_truncated "short.npy" "$S" --model "$M" $SMP --init-latents "$T/short.npy" --out "$T/o"
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000, 4000000000), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 100 /dev/zero; } > "$T/huge.npy"
bad index_embeddings_huge_shape "huge.npy" "$BIN/customdiff-index" --embeddings "$T/huge.npy" --metadata "$T/meta.jsonl" --out "$T/ixo"
bad index_embeddings_bad_header "badhdr.npy" "$BIN/customdiff-index" --embeddings "$T/badhdr.npy" --metadata "$T/meta.jsonl" --out "$T/ixo"
hdr="{'descr': '<c16', 'fortran_order': True, 'shape': (2, 3), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 96 /dev/zero; } > "$T/cplx.npy"
bad index_embeddings_bad_dtype "cplx.npy" "$BIN/customdiff-index" --embeddings "$T/cplx.npy" --metadata "$T/meta.jsonl" --out "$T/ixo"
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (0, 16), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; } > "$T/zero.npy"
bad index_embeddings_zero_rows "zero.npy" "$BIN/customdiff-index" --embeddings "$T/zero.npy" --metadata "$T/meta.jsonl" --out "$T/ixo"

# ---- stores, concepts, index folders -------------------------------------------------------
mkdir -p "$T/notlmdb"; junk 8192 > "$T/notlmdb/data.mdb"
mkdir -p "$T/emptydir"
bad train_store_not_lmdb "notlmdb" "$BIN/customdiff-train" $TRAIN --instance-data "$T/notlmdb" \
  --instance-prompt "photo of a <new1> cat" --max-train-steps 1 --out "$T/o"
bad train_store_empty_folder "emptydir" "$BIN/customdiff-train" $TRAIN --instance-data "$T/emptydir" \
  --instance-prompt "photo of a <new1> cat" --max-train-steps 1 --out "$T/o"
bad index_store_not_lmdb "notlmdb" "$BIN/customdiff-index" --store "$T/notlmdb" --clip "$M/clip" --out "$T/ixo"
bad preprocess_export_not_lmdb "notlmdb" "$BIN/customdiff-preprocess" --export "$T/notlmdb" "$T/exp"
printf '[{"instance_prompt": "photo of a <new1> cat", "instance_data_dir": ' > "$T/concepts.json"
bad train_concepts_broken "concepts.json" "$BIN/customdiff-train" $TRAIN --concepts "$T/concepts.json" --max-train-steps 1 --out "$T/o"
printf '{"instance_prompt": 5}' > "$T/concepts2.json"
bad train_concepts_wrong_type "concepts2.json|instance_prompt|instance_data_dir" "$BIN/customdiff-train" $TRAIN --concepts "$T/concepts2.json" --max-train-steps 1 --out "$T/o"
printf '[{"instance_prompt": ["x"], "instance_data_dir": 7}]' > "$T/concepts3.json"
bad train_concepts_wrong_field_types "concepts3.json|instance_prompt|instance_data_dir" "$BIN/customdiff-train" $TRAIN --concepts "$T/concepts3.json" --max-train-steps 1 --out "$T/o"
printf '[]' > "$T/concepts4.json"
bad train_concepts_empty "concepts4.json" "$BIN/customdiff-train" $TRAIN --concepts "$T/concepts4.json" --max-train-steps 1 --out "$T/o"

cp -r "$T/ix" "$T/ix_faiss"; junk 200 > "$T/ix_faiss/index.faiss"
bad retrieve_index_faiss_corrupt "index.faiss" "$BIN/customdiff-retrieve" --index "$T/ix_faiss" --clip "$M/clip" --prompt cat --num 2 --out "$T/c.jsonl"
cp -r "$T/ix" "$T/ix_trunc"; head -c 100 "$T/ix/index.faiss" > "$T/ix_trunc/index.faiss"
bad retrieve_index_faiss_truncated "index.faiss" "$BIN/customdiff-retrieve" --index "$T/ix_trunc" --clip "$M/clip" --prompt cat --num 2 --out "$T/c.jsonl"
cp -r "$T/ix" "$T/ix_json"; printf '{"factory": "Flat", "count": ' > "$T/ix_json/index.json"
bad retrieve_index_json_broken "index.json" "$BIN/customdiff-retrieve" --index "$T/ix_json" --clip "$M/clip" --prompt cat --num 2 --out "$T/c.jsonl"
cp -r "$T/ix" "$T/ix_json2"; printf '{"factory": 3, "count": -7, "dimension": "x"}' > "$T/ix_json2/index.json"
bad retrieve_index_json_wrong_types "index.json" "$BIN/customdiff-retrieve" --index "$T/ix_json2" --clip "$M/clip" --prompt cat --num 2 --out "$T/c.jsonl"
bad retrieve_num_negative "num" "$BIN/customdiff-retrieve" --index "$T/ix" --clip "$M/clip" --prompt cat --num -5 --out "$T/c.jsonl"
bad retrieve_prompts_file_empty "empty.txt|prompt" "$BIN/customdiff-retrieve" --index "$T/ix" --clip "$M/clip" --prompts-file "$T/empty.txt" --num 2 --out "$T/c.jsonl"
bad retrieve_prompts_file_binary "binary.txt|UTF-8|prompt" "$BIN/customdiff-retrieve" --index "$T/ix" --clip "$M/clip" --prompts-file "$T/binary.txt" --num 2 --out "$T/c.jsonl"
bad retrieve_endpoint_bad_url "endpoint|url" "$BIN/customdiff-retrieve" --endpoint "ht!tp://[::" --prompt cat --num 2 --retries 0 --out "$T/c.jsonl"
# --append onto a corrupt index must fail and leave the good index alone
bad index_append_bad_npy "badhdr.npy" "$BIN/customdiff-index" --embeddings "$T/badhdr.npy" --metadata "$T/meta.jsonl" --append --out "$T/ix"
same index_intact_after_bad_append "$T/ix" "$ix_sum"

# ---- prompts files and sample options ------------------------------------------------------
bad sample_prompts_file_empty "empty.txt|prompt" "$S" --model "$M" --prompts-file "$T/empty.txt" --steps 1 --height 64 --width 64 --out "$T/o"
bad sample_prompts_file_binary "binary.txt|UTF-8|prompt" "$S" --model "$M" --prompts-file "$T/binary.txt" --steps 1 --height 64 --width 64 --out "$T/o"
bad sample_prompts_file_missing "nofile.txt" "$S" --model "$M" --prompts-file "$T/nofile.txt" --steps 1 --height 64 --width 64 --out "$T/o"
bad sample_steps_zero "steps" "$S" --model "$M" --prompt cat --steps 0 --height 64 --width 64 --out "$T/o"
bad sample_steps_negative "steps" "$S" --model "$M" --prompt cat --steps -1 --height 64 --width 64 --out "$T/o"
bad sample_steps_huge "steps" "$S" --model "$M" --prompt cat --steps 100000 --height 64 --width 64 --out "$T/o"
bad sample_steps_not_number "steps" "$S" --model "$M" --prompt cat --steps many --out "$T/o"
bad sample_height_13 "height" "$S" --model "$M" --prompt cat --steps 1 --height 13 --width 64 --out "$T/o"
bad sample_height_negative "height" "$S" --model "$M" --prompt cat --steps 1 --height -64 --width 64 --out "$T/o"
bad sample_width_huge "width|size|memory" "$S" --model "$M" --prompt cat --steps 1 --height 64 --width 1000000000 --out "$T/o"
bad sample_n_negative "n\b|--n" "$S" --model "$M" --prompt cat --steps 1 --height 64 --width 64 --n -5 --out "$T/o"
bad sample_guidance_nan "guidance" "$S" --model "$M" --prompt cat --steps 1 --height 64 --width 64 --guidance nan --out "$T/o"
bad sample_eta_inf "eta" "$S" --model "$M" --prompt cat --steps 1 --height 64 --width 64 --eta inf --out "$T/o"
bad sample_scheduler_unknown "scheduler" "$S" --model "$M" --prompt cat --steps 1 --height 64 --width 64 --scheduler nope --out "$T/o"
bad sample_format_unknown "format" "$S" --model "$M" --prompt cat --steps 1 --height 64 --width 64 --format gif --out "$T/o"
bad sample_grid_cols_negative "grid-cols" "$S" --model "$M" --prompt cat --steps 1 --height 64 --width 64 --grid-cols -2 --out "$T/o"
bad sample_unknown_option "bogus" "$S" --model "$M" --bogus 1
bad sample_no_prompt "prompt" "$S" --model "$M" --steps 1 --height 64 --width 64 --out "$T/o"
: > "$T/afile"
bad sample_out_under_file "afile" "$S" --model "$M" $SMP --out "$T/afile/sub"
bad sample_out_in_proc "/proc" "$S" --model "$M" $SMP --out "/proc/customdiff-nope"

# ---- train options ---------------------------------------------------------------------
tr_bad() {  # tr_bad NAME PATTERN ARGS...: a train run with ARGS fails naming PATTERN
  name=$1; pat=$2; shift 2
  bad "$name" "$pat" "$BIN/customdiff-train" $TRAIN --instance-data "$T/store" \
    --instance-prompt "photo of a <new1> cat" --out "$T/o" "$@"
}
tr_bad train_max_steps_zero "max-train-steps" --max-train-steps 0
tr_bad train_resolution_zero "resolution" --resolution 0 --max-train-steps 1
tr_bad train_resolution_13 "resolution" --resolution 13 --max-train-steps 1
tr_bad train_batch_zero "train-batch-size" --train-batch-size 0 --max-train-steps 1
tr_bad train_accum_negative "gradient-accumulation-steps" --gradient-accumulation-steps -1 --max-train-steps 1
tr_bad train_lr_nan "learning-rate" --learning-rate nan --max-train-steps 1
tr_bad train_mode_unknown "train-mode" --train-mode everything --max-train-steps 1
tr_bad train_modifier_empty "modifier" --modifier-token "" --max-train-steps 1
tr_bad train_out_under_file "afile" --out "$T/afile/run" --max-train-steps 1
# resume: a corrupt checkpoint fails naming it and leaves the run alone
ck=$(ls -d "$T"/run/checkpoints/checkpoint-* 2>/dev/null | tail -1)
if [ -n "$ck" ]; then
  resume_bad() {  # resume_bad NAME PATTERN: resume from run_NAME's last checkpoint, damaged by the caller
    bad "train_resume_$1" "$2" "$BIN/customdiff-train" $TRAIN --instance-data "$T/store" \
      --instance-prompt "photo of a <new1> cat" --max-train-steps 3 --checkpointing-steps 1 --resume "$ckb" --out "$T/run_$1"
    if [ -d "$ckb" ]; then pass "train_resume_$1_keeps_checkpoint"; else fail "train_resume_$1_keeps_checkpoint" "$ckb removed"; fi
  }
  cp -r "$T/run" "$T/run_trunc"; ckb="$T/run_trunc/checkpoints/$(basename "$ck")"
  head -c 500 "$ckb/state.safetensors" > "$T/st.t" && mv "$T/st.t" "$ckb/state.safetensors"
  resume_bad trunc "state.safetensors"
  cp -r "$T/run" "$T/run_json"; ckb="$T/run_json/checkpoints/$(basename "$ck")"; printf '{"step": ' > "$ckb/state.json"
  resume_bad json "state.json"
  cp -r "$T/run" "$T/run_types"; ckb="$T/run_types/checkpoints/$(basename "$ck")"
  printf '{"modifier_tokens": ["<new1>"], "step": -5, "adam_step": 1, "data": {"epoch": 0, "pos": 9, "len": 2}}' > "$ckb/state.json"
  resume_bad types "state.json: step -5"
  cp -r "$T/run" "$T/run_other"; ckb="$T/run_other/checkpoints/$(basename "$ck")"
  bad train_resume_other_model "another base model" "$BIN/customdiff-train" --model "$T/tiny1" --resolution 64 \
    --modifier-token "<new1>" --initializer-token ktn --train-batch-size 1 --instance-data "$T/store" \
    --instance-prompt "photo of a <new1> cat" --max-train-steps 3 --resume "$ckb" --out "$T/run_other"
else
  fail train_resume_fixture "no checkpoint in $T/run/checkpoints"
fi
bad train_resume_missing "nocheckpoint" "$BIN/customdiff-train" $TRAIN --instance-data "$T/store" \
  --instance-prompt "photo of a <new1> cat" --max-train-steps 3 --resume "$T/nocheckpoint" --out "$T/o2"
same run_intact "$T/run" "$run_sum"

# ---- preprocess ------------------------------------------------------------------------
mkdir -p "$T/corrupt_imgs"; junk 2000 > "$T/corrupt_imgs/a.jpg"
head -c 300 "$(ls "$T"/raw/*.png | head -1)" > "$T/corrupt_imgs/b.png"
bad preprocess_all_images_corrupt "a.jpg|b.png" "$BIN/customdiff-preprocess" --instance "$T/corrupt_imgs" --caption cat --resolution 64 --out "$T/pstore"
printf '{"url": "file:///x.jpg", "caption": \n\001\002\n' > "$T/cand.jsonl"
bad preprocess_candidates_broken "cand.jsonl" "$BIN/customdiff-preprocess" --candidates "$T/cand.jsonl" --resolution 64 --out "$T/pstore2"
bad preprocess_resolution_zero "resolution" "$BIN/customdiff-preprocess" --instance "$T/raw" --caption cat --resolution 0 --out "$T/pstore3"
bad preprocess_jpeg_quality_bad "jpeg-quality" "$BIN/customdiff-preprocess" --instance "$T/raw" --caption cat --jpeg-quality 500 --out "$T/pstore4"
bad preprocess_resize_mode_bad "resize.mode" "$BIN/customdiff-preprocess" --instance "$T/raw" --caption cat --resize-mode stretch --out "$T/pstore5"
bad preprocess_max_bytes_bad "max-bytes" "$BIN/customdiff-preprocess" --instance "$T/raw" --caption cat --max-bytes lots --out "$T/pstore6"
bad preprocess_out_under_file "afile" "$BIN/customdiff-preprocess" --instance "$T/raw" --caption cat --resolution 64 --out "$T/afile/store"
# adding corrupt images to an existing store: the error names them, the old records stay
cp -r "$T/store" "$T/store2"
warns preprocess_into_store_corrupt "a\.jpg" "$BIN/customdiff-preprocess" --instance "$T/corrupt_imgs" --caption cat --resolution 64 --out "$T/store2"
n=$("$BIN/customdiff-preprocess" --export "$T/store2" "$T/exported" 2>/dev/null >/dev/null; ls "$T/exported/images" 2>/dev/null | wc -l)
if [ "$n" = 2 ]; then pass store_intact_after_bad_add; else fail store_intact_after_bad_add "store has $n images, want 2"; fi

# ---- index, verify, tiny-model ---------------------------------------------------------
bad index_images_no_clip "clip" "$BIN/customdiff-index" --images "$T/raw" --out "$T/ixo"
v=$(variant clipbad); own "$v" clip; printf '{"text_config": 5}' > "$v/clip/config.json"
bad index_clip_config_bad "clipbad" "$BIN/customdiff-index" --images "$T/raw" --clip "$v/clip" --out "$T/ixo"
bad index_out_under_file "afile" "$BIN/customdiff-index" --store "$T/store" --clip "$M/clip" --out "$T/afile/ix"
bad verify_cases_missing "nocases" "$BIN/customdiff-verify" --model "$M" "$T/nocases"
mkdir -p "$T/cases"; printf '{"cases": [{"kind": ' > "$T/cases/unet.json"; junk 100 > "$T/cases/unet.safetensors"
bad verify_cases_corrupt "unet" "$BIN/customdiff-verify" --model "$M" --clip "$M/clip" "$T/cases"
bad tiny_model_out_under_file "afile" "$BIN/customdiff-tiny-model" --out "$T/afile/tiny"
bad tiny_model_seed_bad "seed" "$BIN/customdiff-tiny-model" --out "$T/tm" --seed abc
same store_intact "$T/store" "$store_sum"

# ---- more safetensors / npy / config corner cases ------------------------------------------
stv() {  # stv NAME HEADER: sample with unet weights = a header-only safetensors must fail naming it
  v=$(variant "st_$1"); own "$v" unet; mkst "$v/unet/$UST" "$2"
  bad "sample_safetensors_$1" "$UST" "$S" --model "$v" $SMP --out "$T/o"
}
stv shape_overflow '{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}'
stv offsets_reversed '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}'
stv offsets_negative '{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}'
stv shape_not_list '{"a":{"dtype":"F32","shape":"big","data_offsets":[0,4]}}'
stv header_not_object '[1,2,3]'
stv empty_header ''
stv f16_odd '{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,5]}}'
stv many_dims '{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}}'
v=$(variant st_short); own "$v" unet; printf 'abc' > "$v/unet/$UST"
bad sample_safetensors_3_bytes "$UST" "$S" --model "$v" $SMP --out "$T/o"
ucfg too_many_blocks 's/"block_out_channels":\s*\[32,/"block_out_channels":[32,32,32,32,32,32,32,32,32,32,/'
ucfg heads_list_wrong 's/"attention_head_dim":\s*8/"attention_head_dim":[8,"x",8,8]/'
ucfg eps_negative 's/"norm_eps":\s*[0-9.e-]+/"norm_eps":-1/'
tcfg zero_intermediate 's/"intermediate_size":\s*\d+/"intermediate_size":0/'
tcfg bad_act 's/"hidden_act":\s*"[^"]*"/"hidden_act":"sparkle"/'
tcfg huge_vocab 's/"vocab_size":\s*\d+/"vocab_size":2000000000/'
sch() {
  v=$(variant "s_$1"); own "$v" scheduler; edit "$v/scheduler/scheduler_config.json" "$2"
  bad "sample_scheduler_$1" "scheduler|timesteps|beta" "$S" --model "$v" $SMP --out "$T/o"
}
sch zero_timesteps 's/"num_train_timesteps":\s*\d+/"num_train_timesteps":0/'
sch bad_schedule 's/"beta_schedule":\s*"[^"]*"/"beta_schedule":"wobbly"/'
sch beta_nan 's/"beta_end":\s*[0-9.e-]+/"beta_end":1e999/'
bad sample_steps_over_train_timesteps "steps|timesteps" "$S" --model "$M" --prompt cat --steps 5000 --height 64 --width 64 --out "$T/o"
v=$(variant tok_special); own "$v" tokenizer; printf '{"bos_token": 5, ' > "$v/tokenizer/special_tokens_map.json"
bad sample_tokenizer_special_broken "special_tokens_map.json" "$S" --model "$v" $SMP --out "$T/o"
hdr="{'descr': '>f4', 'fortran_order': False, 'shape': (1, 4, 8, 8), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 1024 /dev/zero; } > "$T/be.npy"
bad sample_init_latents_big_endian "be.npy" "$S" --model "$M" $SMP --init-latents "$T/be.npy" --out "$T/o"
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 2, 2, 2), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 64 /dev/zero; } > "$T/ovf.npy"
bad sample_init_latents_shape_overflow "ovf.npy" "$S" --model "$M" $SMP --init-latents "$T/ovf.npy" --out "$T/o"
printf '\223NUMPY\001\000\377\377{' > "$T/hlen.npy"
bad sample_init_latents_header_past_end "hlen.npy" "$S" --model "$M" $SMP --init-latents "$T/hlen.npy" --out "$T/o"
bad sample_init_latents_garbage_safetensors "garbage.safetensors" "$S" --model "$M" $SMP --init-latents "$T/garbage.safetensors" --out "$T/o"
printf 'a photo of a \377\376 cat\n' > "$T/badutf.txt"
bad sample_prompts_file_bad_utf8 "badutf.txt|UTF-8" "$S" --model "$M" --prompts-file "$T/badutf.txt" --steps 1 --height 64 --width 64 --out "$T/o"
long=$(printf '%04000d' 0 | sed 's/0/cat /g')
warns sample_prompt_very_long "truncat|77|token|wrote" "$S" --model "$M" --prompt "$long" --steps 1 --height 64 --width 64 --out "$T/olong"

# ---- more index / retrieve / preprocess / train option values -------------------------------
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (2, 16), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 128 /dev/zero; } > "$T/two.npy"
bad index_metadata_rows_mismatch "meta.jsonl|rows|lines" "$BIN/customdiff-index" --embeddings "$T/two.npy" --metadata "$T/meta.jsonl" --out "$T/ixo"
printf '{"url": "http://x/a.jpg", "caption": "a"}\n{"url": \n' > "$T/meta2.jsonl"
bad index_metadata_broken "meta2.jsonl" "$BIN/customdiff-index" --embeddings "$T/two.npy" --metadata "$T/meta2.jsonl" --out "$T/ixo"
printf 'caption,other\na,b\nc,d\n' > "$T/meta.csv"
bad index_metadata_csv_no_url "meta.csv|url" "$BIN/customdiff-index" --embeddings "$T/two.npy" --metadata "$T/meta.csv" --out "$T/ixo"
printf '{"url": "http://x/a.jpg", "caption": "a"}\n{"url": "http://x/b.jpg", "caption": "b"}\n' > "$T/meta3.jsonl"
bad index_factory_garbage "factory" "$BIN/customdiff-index" --embeddings "$T/two.npy" --metadata "$T/meta3.jsonl" --factory "Nonsense,,99" --out "$T/ixo"
bad index_factory_ivf_too_big "clusters|training points" "$BIN/customdiff-index" --embeddings "$T/two.npy" --metadata "$T/meta3.jsonl" --factory "IVF4096,Flat" --out "$T/ixo"
bad index_recall_bad "recall" "$BIN/customdiff-index" --embeddings "$T/two.npy" --metadata "$T/meta3.jsonl" --recall 2 --out "$T/ixo"
bad index_k_zero "k" "$BIN/customdiff-index" --embeddings "$T/two.npy" --metadata "$T/meta3.jsonl" --k 0 --out "$T/ixo"
bad index_batch_zero "batch" "$BIN/customdiff-index" --store "$T/store" --clip "$M/clip" --batch 0 --out "$T/ixo"
bad index_memory_nan "max-index-memory" "$BIN/customdiff-index" --embeddings "$T/two.npy" --metadata "$T/meta3.jsonl" --max-index-memory nan --out "$T/ixo"
RT="$BIN/customdiff-retrieve --index $T/ix --clip $M/clip --prompt cat --out $T/c.jsonl"
bad retrieve_deny_bad_regex "deny" $RT --deny "(unclosed"
bad retrieve_top_negative "top" $RT --top -1
bad retrieve_max_k_zero "max-k" $RT --max-k 0
bad retrieve_oversample_nan "oversample" $RT --oversample nan
bad retrieve_params_garbage "params|nprobe|parameter" $RT --params "zork=banana"
bad retrieve_port_bad "port" "$BIN/customdiff-retrieve" --index "$T/ix" --clip "$M/clip" --serve --port 70000 --serve-seconds 1
bad retrieve_out_under_file "afile" $RT --out "$T/afile/c.jsonl"
bad retrieve_clip_missing "noclip" "$BIN/customdiff-retrieve" --index "$T/ix" --clip "$T/noclip" --prompt cat --out "$T/c.jsonl"
PP="$BIN/customdiff-preprocess --instance $T/raw --caption cat --resolution 64"
bad preprocess_workers_negative "workers" $PP --workers -1 --out "$T/pw1"
bad preprocess_concurrency_zero "concurrency" $PP --concurrency 0 --out "$T/pw2"
bad preprocess_map_size_zero "map-size" $PP --map-size 0 --out "$T/pw3"
bad preprocess_num_negative "num" $PP --num -1 --out "$T/pw4"
bad preprocess_timeout_nan "timeout" $PP --timeout nan --out "$T/pw5"
printf 'caption,other\na,b\n' > "$T/cand.csv"
bad preprocess_candidates_csv_no_url "cand.csv|url" "$BIN/customdiff-preprocess" --candidates "$T/cand.csv" --out "$T/pw2"
bad preprocess_caption_missing "caption" "$BIN/customdiff-preprocess" --instance "$T/raw" --out "$T/pw3"
tr_bad train_resolution_huge "resolution" --resolution 1000000 --max-train-steps 1
tr_bad train_batch_huge "train-batch-size|batch" --train-batch-size 100000000 --max-train-steps 1
tr_bad train_validation_steps_zero "validation-steps" --validation-steps 0 --validation-prompt cat --max-train-steps 1
tr_bad train_class_data_not_lmdb "notlmdb" --with-prior-preservation --class-data "$T/notlmdb" --class-prompt cat --max-train-steps 1
warns compress_rank_huge "rank" "$BIN/customdiff-compress" --delta "$D" --model "$M" --rank 100000 --out "$T/c.safetensors"
bad compress_out_under_file "afile" "$BIN/customdiff-compress" --delta "$D" --model "$M" --out "$T/afile/c.safetensors"
bad merge_ridge_nan "ridge" "$BIN/customdiff-merge" --delta "$D" --delta "$D" --categories "cat+dog" --model "$M" --ridge nan --out "$T/m.safetensors"
bad merge_out_under_file "afile" "$BIN/customdiff-merge" --delta "$D" --delta "$D" --categories "cat+dog" --model "$M" --out "$T/afile/m.safetensors"
bad export_out_under_file "afile" "$BIN/customdiff-export" --model "$M" --delta "$D" --out "$T/afile/exp"
same store_intact_at_end "$T/store" "$store_sum"
same run_intact_at_end "$T/run" "$run_sum"

# ---- hostile servers: retrieve's remote client and preprocess's downloads ------------------
if [ -x "$BUILD/tests/httpd" ]; then
  mkdir -p "$T/www"
  printf '[{"url": "http://x/a.jpg", "caption": ' > "$T/www/broken.json"
  printf '{"error": 5}' > "$T/www/object.json"
  printf '[{"url": 5, "caption": [1], "similarity": "high", "id": "x"}, 7, null]' > "$T/www/types.json"
  printf '[{"url": "http://x/a.jpg", "caption": "a", "similarity": 1e999, "id": -1}, {"url": "http://x/b.jpg", "caption": "b", "similarity": 0.5, "id": 3}]' > "$T/www/inf.json"
  "$BUILD/tests/httpd" "$T/www" 0 > "$T/httpd.out" 2>&1 &
  srv=$!
  for i in 1 2 3 4 5 6 7 8 9 10; do grep -q '^port' "$T/httpd.out" 2>/dev/null && break; sleep 0.2; done
  port=$(sed -n 's/^port //p' "$T/httpd.out")
  H="http://127.0.0.1:$port"
  RR="$BIN/customdiff-retrieve --prompt cat --num 2 --retries 0 --timeout 2 --out $T/rc.jsonl"
  bad remote_broken_json "$H/files/broken.json|JSON" $RR --endpoint "$H/files/broken.json"
  bad remote_not_a_list "$H/files/object.json|array|list|error" $RR --endpoint "$H/files/object.json"
  bad remote_garbage_bytes "$H/garbage|JSON" $RR --endpoint "$H/garbage"
  bad remote_html "$H/html|JSON" $RR --endpoint "$H/html"
  bad remote_404 "404" $RR --endpoint "$H/404"
  bad remote_503_forever "503" $RR --endpoint "$H/always503"
  bad remote_reset "$H/reset|reset|connection|recv" $RR --endpoint "$H/reset"
  bad remote_truncated "$H/truncated|partial|truncat|transfer" $RR --endpoint "$H/truncated/broken.json"
  bad remote_slow "$H/slow|timeout|timed out" $RR --endpoint "$H/slow/5000/broken.json"
  bad remote_redirect_loop "$H/loop|redirect" $RR --endpoint "$H/loop/0"
  bad remote_huge_body "$H/big|large|bytes|JSON" $RR --endpoint "$H/big/300000000"
  bad remote_wrong_types "types.json.*url" $RR --endpoint "$H/files/types.json"
  warns remote_inf_similarity "inf.json: dropped 1 malformed" $RR --endpoint "$H/files/inf.json"
  printf '{"url": "%s/garbage", "caption": "a"}\n{"url": "%s/reset", "caption": "b"}\n{"url": "%s/truncated/broken.json", "caption": "c"}\n{"url": "%s/html", "caption": "d"}\n{"url": "%s/loop/0", "caption": "e"}\n{"url": "%s/big/30000000", "caption": "f"}\n' \
    "$H" "$H" "$H" "$H" "$H" "$H" > "$T/hostile.jsonl"
  bad preprocess_hostile_server_all_fail "manifest.jsonl|none of the" "$BIN/customdiff-preprocess" --candidates "$T/hostile.jsonl" \
    --allow-loopback --retries 0 --timeout 3 --max-bytes 1MB --resolution 64 --out "$T/hstore"
  kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; srv=""
else
  fail hostile_server "$BUILD/tests/httpd not built"
fi

# ---- deltas in other layouts, token rows, more misshapen tensors ---------------------------
"$BIN/customdiff-export" --model "$M" --delta "$D" --format custom-diffusion --out "$T/cdx" > "$T/log" 2>&1 ||
  fail fixtures "export custom-diffusion: $(tail -1 "$T/log")"
cp -r "$T/cdx" "$T/cdx_tok"; mkst "$T/cdx_tok/<new1>.safetensors" '{"<new1>":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}'
head -c 64 /dev/zero >> "$T/cdx_tok/<new1>.safetensors"
bad sample_cd_token_wrong_dim "new1|token" "$S" --model "$M" --delta "$T/cdx_tok" $SMP --out "$T/o"
cp -r "$T/cdx" "$T/cdx_shape"
edit "$T/cdx_shape/pytorch_custom_diffusion_weights.safetensors" 's/"shape":\[32,32\],"data_offsets":\[0,4096\]/"shape":[1024] ,"data_offsets":[0,4096]/'
bad sample_cd_weights_1d "to_k|shape|1024" "$S" --model "$M" --delta "$T/cdx_shape" $SMP --out "$T/o"
bad sample_cd_weights_1d_no_check "to_k|shape|1024" "$S" --model "$M" --no-check-base --delta "$T/cdx_shape" $SMP --out "$T/o"
bad merge_delta_1d "to_k|shape|1024" "$BIN/customdiff-merge" --delta "$D" --delta "$T/cdx_shape" --no-check-base --categories "cat+dog" --model "$M" --out "$T/m.safetensors"
bad compress_delta_1d "to_k|shape|1024" "$BIN/customdiff-compress" --delta "$T/cdx_shape" --no-check-base --model "$M" --out "$T/c.safetensors"
cp "$D" "$T/tokdim.safetensors"
edit "$T/tokdim.safetensors" 's/"token_embedding.<new1>":\{"dtype":"F32","shape":\[32\]/"token_embedding.<new1>":{"dtype":"F32","shape":[32,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]/'
bad sample_delta_token_bad_shape "tokdim|token" "$S" --model "$M" --delta "$T/tokdim.safetensors" $SMP --out "$T/o"
cp "$D" "$T/tok3d.safetensors"
edit "$T/tok3d.safetensors" 's/"shape":\[32,32\],"data_offsets":\[0,4096\]/"shape":[8,16,32],"data_offsets":[0,16384]/'
bad sample_delta_3d_tensor "tok3d|to_k|shape|data_offsets" "$S" --model "$M" --delta "$T/tok3d.safetensors" --no-check-base $SMP --out "$T/o"
bad export_delta_wrong_shape "to_k|shape" "$BIN/customdiff-export" --model "$M" --delta "$T/shape_delta.safetensors" --out "$T/exp2"
bad export_cd_token_wrong_dim "new1|token" "$BIN/customdiff-export" --model "$M" --delta "$T/cdx_tok" --out "$T/exp3"
printf '[{"instance_prompt": "photo of a <new1> cat", "instance_data_dir": "%s/nowhere_dir"}]' "$T" > "$T/concepts5.json"
bad train_concepts_missing_dir "nowhere_dir" "$BIN/customdiff-train" $TRAIN --concepts "$T/concepts5.json" --max-train-steps 1 --out "$T/o"
hdr="{'descr': '<f4', 'fortran_order': False, 'shape': (2, 8), }"
{ printf '\223NUMPY\001\000\166\000%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''; head -c 64 /dev/zero; } > "$T/dim8.npy"
bad index_append_wrong_dim "dimension|dim8|16" "$BIN/customdiff-index" --embeddings "$T/dim8.npy" --metadata "$T/meta3.jsonl" --append --out "$T/ix"
same index_intact_after_wrong_dim_append "$T/ix" "$ix_sum"
bad preprocess_export_under_file "afile" "$BIN/customdiff-preprocess" --export "$T/store" "$T/afile/exp"
bad preprocess_export_empty_folder "emptydir" "$BIN/customdiff-preprocess" --export "$T/emptydir" "$T/exp4"

# ---- corrupt images among good ones --------------------------------------------------------
mkdir -p "$T/mix"; cp "$(ls "$T"/raw/*.png | head -1)" "$T/mix/good.png"
cp "$T/corrupt_imgs/a.jpg" "$T/mix/bad.jpg"; cp "$T/corrupt_imgs/b.png" "$T/mix/trunc.png"
warns index_images_some_corrupt "bad\.jpg" "$BIN/customdiff-index" --images "$T/mix" --clip "$M/clip" --out "$T/ixmix"
bad index_images_all_corrupt "no images|a\.jpg" "$BIN/customdiff-index" --images "$T/corrupt_imgs" --clip "$M/clip" --out "$T/ixc"
bad train_image_folder_corrupt "bad\.jpg|trunc\.png" "$BIN/customdiff-train" $TRAIN --instance-data "$T/mix" \
  --instance-prompt "photo of a <new1> cat" --max-train-steps 3 --checkpointing-steps 0 --out "$T/runmix"
warns preprocess_instance_some_corrupt "bad\.jpg" "$BIN/customdiff-preprocess" --instance "$T/mix" --caption cat --resolution 64 --out "$T/mixstore"

# ---- candidate lists that are not text ------------------------------------------------------
mkdir -p "$T/cfold"; printf '\000\001\002' > "$T/cfold/images.txt"; printf 'a\n' > "$T/cfold/caption.txt"
bad preprocess_candidates_folder_binary "images.txt" "$BIN/customdiff-preprocess" --candidates "$T/cfold" --out "$T/cfs"
printf '{"url": "http://x/a.jpg", "caption": "a"}\n\000\000' > "$T/nul.jsonl"
bad preprocess_candidates_nul "nul.jsonl" "$BIN/customdiff-preprocess" --candidates "$T/nul.jsonl" --out "$T/cfs2"
bad verify_no_cases "emptydir: no case files" "$BIN/customdiff-verify" --model "$M" --clip "$M/clip" "$T/emptydir"
# export into the base model's own folder must refuse and leave the model as it was
cp -r "$M" "$T/tinycopy"; tiny_sum=$(sumdir "$T/tinycopy")
bad export_into_model_folder "base model's folder" "$BIN/customdiff-export" --model "$T/tinycopy" --delta "$D" --out "$T/tinycopy"
bad export_cd_into_model_folder "base model's folder" "$BIN/customdiff-export" --model "$T/tinycopy" --delta "$D" --format custom-diffusion --out "$T/tinycopy/"
same model_intact_after_export "$T/tinycopy" "$tiny_sum"
