#!/bin/sh
# customdiff-index + customdiff-retrieve end to end on a synthetic caption corpus embedded
# with the golden tiny CLIP: local retrieval, filters (deny, min-similarity, URL dedup),
# prompts files, --append, and --serve answering the remote client (and curl, when present);
# queries by image (--image; base64 image, image_url, embedding_input) and their 400 errors;
# the violence filter (--violence-detector) locally and served.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
G=${CD_GOLDEN:-../shared/golden}
CLIP=$G/tiny-sd/clip
IX=$BUILD/bin/customdiff-index
RT=$BUILD/bin/customdiff-retrieve
if [ ! -d "$CLIP" ]; then
  if [ "$CI" = true ]; then echo "FAIL retrieve_cli: $CLIP absent (CI=true)"; else echo "SKIP retrieve_cli: golden $CLIP absent"; fi
  exit 0
fi
for b in "$IX" "$RT" "$BUILD/tests/test_index"; do
  [ -x "$b" ] || { echo "FAIL retrieve_cli: $b not built"; exit 0; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cd-retrieve.XXXXXX")
srv=""
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
# field NAME LINE: the value of a string or number field in one JSON line
field() { printf '%s\n' "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }

if ! CD_GOLDEN=$G "$BUILD/tests/test_index" --make-corpus "$tmp" 300 >"$tmp/mk.log" 2>&1; then
  fail corpus "$(cat "$tmp/mk.log")"; exit 0
fi
if "$IX" --embeddings "$tmp/corpus.npy" --metadata "$tmp/corpus.jsonl" --out "$tmp/ix" --model tiny-clip \
     >"$tmp/ix.log" 2>&1 && grep -q '"factory":	"Flat"' "$tmp/ix/index.json" && grep -q '"count":	300' "$tmp/ix/index.json"; then
  pass index_build_flat
else
  fail index_build_flat "$(tail -3 "$tmp/ix.log")"
fi

Q="a photo of a red cat on a beach"
if "$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --num 8 --near-dup 1.01 --out "$tmp/c.jsonl" >"$tmp/r.log" 2>&1; then
  head1=$(sed -n 1p "$tmp/c.jsonl"); first=$(sed -n 2p "$tmp/c.jsonl")
  n=$(($(wc -l <"$tmp/c.jsonl") - 1))
  sims=$(sed 1d "$tmp/c.jsonl" | sed -n 's/.*"similarity":\([^,]*\),.*/\1/p')
  sorted=$(printf '%s\n' "$sims" | sort -g -r)
  if [ "$n" = 8 ] && printf '%s' "$first" | grep -q "\"caption\":\"$Q\"" && printf '%s' "$first" | grep -q '"rank":1,' \
     && [ "$sims" = "$sorted" ] && printf '%s' "$head1" | grep -q '"query":"a photo' \
     && printf '%s' "$head1" | grep -q '"parameters":' && printf '%s' "$head1" | grep -q '"model":' \
     && grep -q "customdiff-retrieve: wrote" "$tmp/r.log"; then
    pass retrieve_local_self_first
  else
    fail retrieve_local_self_first "n=$n first=$first"
  fi
else
  fail retrieve_local_self_first "$(tail -3 "$tmp/r.log")"
fi

# deny pattern and min-similarity
"$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --num 20 --near-dup 1.01 --deny 'red|beach' --out "$tmp/d.jsonl" >/dev/null 2>&1
if [ "$(sed 1d "$tmp/d.jsonl" | wc -l)" = 20 ] && ! sed 1d "$tmp/d.jsonl" | sed 's/"query":.*//' | grep -qiE 'red|beach'; then
  pass retrieve_deny
else
  fail retrieve_deny "$(head -3 "$tmp/d.jsonl")"
fi
"$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --num 50 --near-dup 1.01 --min-similarity 0.999 --out "$tmp/m.jsonl" >/dev/null 2>&1
low=$(sed 1d "$tmp/m.jsonl" | sed -n 's/.*"similarity":\([^,]*\),.*/\1/p' | awk '$1 < 0.999' | wc -l)
cnt=$(sed 1d "$tmp/m.jsonl" | wc -l)
if [ "$low" = 0 ] && [ "$cnt" -ge 1 ] && [ "$cnt" -lt 50 ]; then pass retrieve_min_similarity; else fail retrieve_min_similarity "low=$low cnt=$cnt"; fi

# near-duplicate filter at its default (0.94): fewer kept than asked only if vectors agree
"$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --num 300 --out "$tmp/n.jsonl" >/dev/null 2>&1
nd=$(sed 1d "$tmp/n.jsonl" | wc -l)
if [ "$nd" -ge 1 ] && [ "$nd" -lt 300 ]; then pass retrieve_near_dup_filter; else fail retrieve_near_dup_filter "kept $nd of 300"; fi

# prompts file: two prompts, candidates of both, URLs unique
printf 'a photo of a blue dog at night\n\na photo of a green tree in a garden\n' >"$tmp/p.txt"
"$RT" --index "$tmp/ix" --clip "$CLIP" --prompts-file "$tmp/p.txt" --num 5 --near-dup 1.01 --out "$tmp/pf.jsonl" >/dev/null 2>&1
u=$(sed 1d "$tmp/pf.jsonl" | sed -n 's/.*"url":"\([^"]*\)".*/\1/p' | sort | uniq | wc -l)
if [ "$u" = 10 ] && grep -q '"caption":"a photo of a blue dog at night"' "$tmp/pf.jsonl" \
   && grep -q '"caption":"a photo of a green tree in a garden"' "$tmp/pf.jsonl"; then
  pass retrieve_prompts_file
else
  fail retrieve_prompts_file "unique urls $u"
fi

# violence filter (--violence-detector): clip-retrieval's rule, a result is dropped when its
# best-scoring detector row is row 1. The detector (row 0: the corpus mean, row 1: the query's
# own item) and the ids it must drop come from tests/tools/violence_detector.py, computed there
# from corpus.npy; every other id must be kept.
if command -v python3 >/dev/null 2>&1 &&
   drop=$(python3 tests/tools/violence_detector.py "$tmp/corpus.npy" 0 "$tmp/viol.npy") && [ -n "$drop" ]; then
  want=$(seq 0 299 | grep -vxF -f "$(printf '%s\n' $drop > "$tmp/drop.txt"; echo "$tmp/drop.txt")" | tr '\n' ' ')
  if "$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --num 300 --near-dup 1.01 --dedup-urls=0 \
       --violence-detector "$tmp/viol.npy" --out "$tmp/v.jsonl" >"$tmp/v.log" 2>&1; then
    got=$(sed 1d "$tmp/v.jsonl" | sed -n 's/.*"id":\([0-9]*\),.*/\1/p' | sort -n | tr '\n' ' ')
    nd=$(printf '%s\n' $drop | wc -l)
    if [ "$got" = "$want" ] && [ "$nd" -gt 0 ] && [ "$nd" -lt 300 ] && grep -q "violence detector" "$tmp/v.log"; then
      pass "retrieve_violence_filter ($nd of 300 dropped)"
    else fail retrieve_violence_filter "kept $(printf '%s\n' $got | wc -l), expected $(printf '%s\n' $want | wc -l)"; fi
  else fail retrieve_violence_filter "$(tail -2 "$tmp/v.log")"; fi
  # --use-violence-detector 0 keeps them all; without a detector the log says there is no filter
  "$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --num 300 --near-dup 1.01 --dedup-urls=0 --use-violence-detector=0 \
    --violence-detector "$tmp/viol.npy" --out "$tmp/v0.jsonl" >/dev/null 2>&1
  "$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --num 3 --out "$tmp/v1.jsonl" >"$tmp/v1.log" 2>&1
  if [ "$(sed 1d "$tmp/v0.jsonl" | wc -l)" = 300 ] && grep -q "no NSFW filter, no violence filter (give --violence-detector FILE)" "$tmp/v1.log"; then
    pass retrieve_violence_filter_off
  else fail retrieve_violence_filter_off "$(sed 1d "$tmp/v0.jsonl" | wc -l) kept; $(grep 'local index' "$tmp/v1.log")"; fi
  # a detector of the wrong width, a remote back end: refused with the reason
  python3 tests/tools/violence_detector.py --matrix 2 3 "$tmp/bad.npy"
  if "$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --violence-detector "$tmp/bad.npy" --out "$tmp/vb.jsonl" >"$tmp/vb.log" 2>&1; then
    fail retrieve_violence_bad_detector "succeeded"
  elif grep -q "bad.npy': expected \[n >= 2, 16\] prompt embeddings (row 1 = violent), got 2 x 3" "$tmp/vb.log"; then
    pass retrieve_violence_bad_detector
  else fail retrieve_violence_bad_detector "$(cat "$tmp/vb.log")"; fi
  "$RT" --endpoint http://127.0.0.1:9 --prompt "$Q" --violence-detector "$tmp/viol.npy" --out "$tmp/vr.jsonl" >"$tmp/vr.log" 2>&1
  rc=$?
  if [ $rc = 2 ] && grep -q "violence-detector filters a local --index" "$tmp/vr.log"; then pass retrieve_violence_remote_refused
  else fail retrieve_violence_remote_refused "exit $rc: $(cat "$tmp/vr.log")"; fi
else
  fail retrieve_violence_filter "python3 (make deps installs it) could not build the detector"
fi

# --append: the same files again double the count; ids continue
if "$IX" --embeddings "$tmp/corpus.npy" --metadata "$tmp/corpus.jsonl" --out "$tmp/ix" --append >"$tmp/ap.log" 2>&1 \
   && grep -q '"count":	600' "$tmp/ix/index.json"; then
  "$RT" --index "$tmp/ix" --clip "$CLIP" --prompt "$Q" --num 2 --dedup-urls=0 --near-dup 1.01 --out "$tmp/a.jsonl" >/dev/null 2>&1
  ids=$(sed 1d "$tmp/a.jsonl" | sed -n 's/.*"id":\([0-9]*\),.*/\1/p' | sort -n | tr '\n' ' ')
  case "$ids" in
    "0 300 ") pass index_append;;
    *) fail index_append "ids of the two copies: $ids";;
  esac
else
  fail index_append "$(tail -3 "$tmp/ap.log")"
fi

# errors: missing index folder, no prompt
if "$RT" --index "$tmp/none" --clip "$CLIP" --prompt x --out "$tmp/e.jsonl" >"$tmp/e.log" 2>&1; then
  fail retrieve_missing_index "succeeded"
elif grep -q "none/index.json" "$tmp/e.log"; then pass retrieve_missing_index
else fail retrieve_missing_index "$(cat "$tmp/e.log")"; fi
if "$RT" --index "$tmp/ix" --clip "$CLIP" --out "$tmp/e.jsonl" >"$tmp/e.log" 2>&1; then fail retrieve_no_prompt "succeeded"
else pass retrieve_no_prompt; fi

# --serve, then the remote client against it
port=$((20000 + $$ % 20000))
"$RT" --serve --index "$tmp/ix" --clip "$CLIP" --port $port --index-name corpus --serve-seconds 60 >"$tmp/srv.log" 2>&1 &
srv=$!
i=0
while [ $i -lt 50 ] && ! grep -q "serving" "$tmp/srv.log"; do sleep 0.1; i=$((i + 1)); done
if "$RT" --endpoint "http://127.0.0.1:$port" --index-name corpus --prompt "$Q" --num 3 --out "$tmp/rm.jsonl" >"$tmp/rm.log" 2>&1 \
   && sed -n 2p "$tmp/rm.jsonl" | grep -q "\"caption\":\"$Q\""; then
  pass remote_against_own_server
else
  fail remote_against_own_server "$(tail -3 "$tmp/rm.log"; cat "$tmp/srv.log")"
fi
if "$RT" --endpoint "http://127.0.0.1:$port/knn-service" --index-name nosuch --prompt "$Q" --num 3 --retries 0 \
     --out "$tmp/rm2.jsonl" >"$tmp/rm2.log" 2>&1; then
  fail remote_unknown_index "succeeded"
elif grep -q "400" "$tmp/rm2.log"; then pass remote_unknown_index
else fail remote_unknown_index "$(cat "$tmp/rm2.log")"; fi
if command -v curl >/dev/null 2>&1; then
  l=$(curl -s "http://127.0.0.1:$port/indices-list")
  m=$(curl -s -X POST -d '{"ids":[137],"indice_name":"corpus"}' "http://127.0.0.1:$port/metadata")
  if [ "$l" = '["corpus"]' ] && printf '%s' "$m" | grep -q '"id":137,"metadata":{"url":"http://img.example/137.jpg"'; then
    pass serve_indices_list_and_metadata
  else
    fail serve_indices_list_and_metadata "list=$l metadata=$m"
  fi
fi
# sim_ok LINE: the line's similarity is within 0.001 of 1
sim_ok() { printf '%s\n' "$1" | sed -n 's/.*"similarity":\([-0-9.e]*\).*/\1/p' | awk '{ exit !($1 > 0.999 && $1 < 1.001) }'; }
# post BODY: "<http code> <body>" of a POST to the server on $port
post() { curl -s -o "$tmp/post.out" -w '%{http_code}' -X POST --data-binary "$1" "http://127.0.0.1:$port/knn-service"; printf ' '; cat "$tmp/post.out"; }
# a file server on loopback for image_url (tests/httpd.h)
mkdir -p "$tmp/imgs"
"$BUILD/tests/test_index" --make-images "$tmp/imgs" 6 >"$tmp/mi.log" 2>&1 || fail make_images "$(cat "$tmp/mi.log")"
: >"$tmp/fs.log"
"$BUILD/tests/test_index" --serve-files "$tmp/imgs" 60 >"$tmp/fs.log" 2>&1 &
fsrv=$!
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; [ -n "$fsrv" ] && kill "$fsrv" 2>/dev/null; rm -rf "$tmp"' EXIT
i=0
while [ $i -lt 50 ] && ! grep -q "^port " "$tmp/fs.log"; do sleep 0.1; i=$((i + 1)); done
fport=$(sed -n 's/^port //p' "$tmp/fs.log")
if command -v curl >/dev/null 2>&1; then
  # embedding_input: row 7 of corpus.npy (float32, d=16 after the npy header), scaled by 3
  # (the server normalises): row 7 or its --append copy 307 first with similarity ~1
  hl=$(od -A n -t u2 -j 8 -N 2 "$tmp/corpus.npy" | tr -d ' ')
  vec=$(od -A n -v -t f4 -j $((10 + hl + 7 * 64)) -N 64 "$tmp/corpus.npy" | tr -s ' \n' '\n\n' | sed '/^$/d' \
        | awk '{ printf "%s%.9g", (NR > 1 ? "," : ""), 3 * $1 }')
  r=$(post "{\"embedding_input\":[$vec],\"modality\":\"image\",\"num_images\":2,\"indice_name\":\"corpus\"}")
  first=$(printf '%s' "$r" | sed 's/},{.*//')
  case "$r" in
    "200 "*) if printf '%s' "$first" | grep -qE '"id":(7|307),' && sim_ok "$first"; then pass serve_embedding_input
             else fail serve_embedding_input "$r"; fi;;
    *) fail serve_embedding_input "$r";;
  esac
  r=$(post '{"embedding_input":[1,2,3],"num_images":2}')
  case "$r" in "400 "*'"message":"embedding_input must be an array of 16 numbers'*'it has 3"'*) pass serve_embedding_wrong_length;;
    *) fail serve_embedding_wrong_length "$r";; esac
  # started without --allow-loopback: an image_url on loopback is refused
  r=$(post "{\"image_url\":\"http://127.0.0.1:$fport/files/img1.png\",\"num_images\":2}")
  case "$r" in "400 "*refused_address*) pass serve_image_url_loopback_refused;; *) fail serve_image_url_loopback_refused "$r";; esac
fi
kill "$srv" 2>/dev/null
wait "$srv" 2>/dev/null
srv=""

# query by example image: an index of 6 images, served with --allow-loopback (image_url tests)
if "$IX" --images "$tmp/imgs" --clip "$CLIP" --out "$tmp/imx" >"$tmp/imx.log" 2>&1; then :; else fail image_index "$(tail -3 "$tmp/imx.log")"; fi
if "$RT" --index "$tmp/imx" --clip "$CLIP" --image "$tmp/imgs/img3.png" --num 3 --near-dup 1.01 --out "$tmp/li.jsonl" >"$tmp/li.log" 2>&1; then
  h=$(sed -n 1p "$tmp/li.jsonl"); first=$(sed -n 2p "$tmp/li.jsonl")
  if printf '%s' "$h" | grep -q "\"query\":\"$tmp/imgs/img3.png\"" && printf '%s' "$first" | grep -q '"url":"file://[^"]*/img3.png"' \
     && sim_ok "$first" && [ "$(sed 1d "$tmp/li.jsonl" | wc -l)" = 3 ]; then pass retrieve_local_image_query
  else fail retrieve_local_image_query "$h $first"; fi
else
  fail retrieve_local_image_query "$(tail -3 "$tmp/li.log")"
fi
port=$((port + 1))
: >"$tmp/srv2.log"
"$RT" --serve --index "$tmp/imx" --clip "$CLIP" --port $port --index-name imgs --serve-seconds 60 --allow-loopback >"$tmp/srv2.log" 2>&1 &
srv=$!
i=0
while [ $i -lt 50 ] && ! grep -q "serving" "$tmp/srv2.log"; do sleep 0.1; i=$((i + 1)); done
if "$RT" --endpoint "http://127.0.0.1:$port/knn-service" --index-name imgs --image "$tmp/imgs/img5.png" --num 2 --near-dup 1.01 \
     --retries 0 --out "$tmp/ri.jsonl" >"$tmp/ri.log" 2>&1; then
  h=$(sed -n 1p "$tmp/ri.jsonl"); first=$(sed -n 2p "$tmp/ri.jsonl")
  if printf '%s' "$h" | grep -q "\"query\":\"$tmp/imgs/img5.png\"" && printf '%s' "$first" | grep -q '/img5.png"' \
     && printf '%s' "$first" | grep -q "\"query\":\"$tmp/imgs/img5.png\"" && sim_ok "$first"; then pass remote_image_query
  else fail remote_image_query "$h $first"; fi
else
  fail remote_image_query "$(tail -3 "$tmp/ri.log"; cat "$tmp/srv2.log")"
fi
if command -v curl >/dev/null 2>&1; then
  b=$(base64 <"$tmp/imgs/img2.png" | tr -d '\n')
  r=$(post "{\"text\":null,\"image\":\"$b\",\"image_url\":null,\"embedding_input\":null,\"modality\":\"image\",\"num_images\":3,\"indice_name\":\"imgs\"}")
  first=$(printf '%s' "$r" | sed 's/},{.*//')
  case "$r" in "200 "*) if printf '%s' "$first" | grep -q '"id":2,' && sim_ok "$first"; then pass serve_image_base64
                        else fail serve_image_base64 "$r"; fi;;
    *) fail serve_image_base64 "$r";; esac
  r=$(post "{\"image_url\":\"http://127.0.0.1:$fport/files/img4.png\",\"modality\":\"image\",\"num_images\":3}")
  first=$(printf '%s' "$r" | sed 's/},{.*//')
  case "$r" in "200 "*) if printf '%s' "$first" | grep -q '"id":4,' && sim_ok "$first"; then pass serve_image_url
                        else fail serve_image_url "$r"; fi;;
    *) fail serve_image_url "$r";; esac
  ok=1; why=""
  for c in '{"image":"@@not base64@@","num_images":2}|not base64' \
           '{"image":"bm90IGFuIGltYWdl","num_images":2}|undecodable image' \
           "{\"image_url\":\"http://10.0.0.1/x.png\",\"num_images\":2}|refused_address" \
           "{\"image_url\":\"http://127.0.0.1:$fport/404\",\"num_images\":2}|image_url" \
           '{"image_url":"file:///etc/passwd","num_images":2}|bad_url' \
           '{"num_images":2}|give a non-empty'; do
    r=$(post "${c%|*}")
    case "$r" in "400 {\"message\":\""*"${c##*|}"*) ;; *) ok=0; why="$why [${c%|*} -> $r]";; esac
  done
  if [ $ok = 1 ]; then pass serve_image_errors_400; else fail serve_image_errors_400 "$why"; fi
fi
kill "$srv" "$fsrv" 2>/dev/null
wait "$srv" "$fsrv" 2>/dev/null
srv=""; fsrv=""
# --serve --violence-detector: a request with use_violence_detector drops what the local filter
# drops (the index holds the corpus twice now: 600 rows), one without keeps everything
if command -v curl >/dev/null 2>&1 && [ -s "$tmp/viol.npy" ] && [ -n "${nd:-}" ]; then
  port=$((port + 2))
  "$RT" --serve --index "$tmp/ix" --clip "$CLIP" --port $port --index-name corpus --serve-seconds 60 \
    --violence-detector "$tmp/viol.npy" >"$tmp/srv3.log" 2>&1 &
  srv=$!
  i=0
  while [ $i -lt 50 ] && ! grep -q "serving" "$tmp/srv3.log"; do sleep 0.1; i=$((i + 1)); done
  r1=$(post "{\"text\":\"$Q\",\"num_images\":600,\"num_result_ids\":600,\"use_violence_detector\":true}")
  r0=$(post "{\"text\":\"$Q\",\"num_images\":600,\"num_result_ids\":600,\"use_violence_detector\":false}")
  n1=$(printf '%s' "$r1" | grep -o '"similarity"' | wc -l); n0=$(printf '%s' "$r0" | grep -o '"similarity"' | wc -l)
  if [ "$n1" = $((2 * (300 - nd))) ] && [ "$n0" = 600 ]; then pass serve_violence_detector
  else fail serve_violence_detector "with the filter $n1 results (want $((2 * (300 - nd)))), without $n0 (want 600)"; fi
  kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; srv=""
fi
exit 0
