#!/bin/bash
# bench/device.sh ENTRY — the tuneforge vs LLaMA-Factory comparison of ../shared/bench, run from the
# repo root on the lent GPU machine; one device `run` call per entry, each inside the 10-minute limit.
#
#   main   1.5b shape, sft_lora.yaml as is: LLaMA-Factory default, LLaMA-Factory packing+liger,
#          tuneforge default, tuneforge packing                                         (~7 min)
#   sweep  1.5b shape, tuneforge only: packing at cutoff_len 1024/2048/4096/8192 (yaml otherwise
#          as is), then default at the same cutoffs with max_samples=300                (~7 min)
#   7b     7b shape, max_samples=300 on every row (as the shared README's 7b figures):
#          LF packing+liger, tuneforge default, tuneforge packing, LF default           (~8 min)
#
# Every row goes through ../shared/bench/measure.sh (GPU memory sampled by nvidia-smi; without it,
# as on a CPU, peak reads 0 and the table says n/a). Tokens come from ../shared/bench/count_tokens.py
# via bench/tokens.py, the same count for both frameworks. Each tuneforge row first asks
# `tuneforge estimate` with the same config for its "predicted peak".
#
# Writes to $OUT (default $BENCH_TMP/out), 4 files: results.txt (META/RUN/CMD/RESULT/ESTIMATE/
# NOTE/SKIP lines, read by bench/table.py), table.md, env.txt, logs.tar.gz. results.txt and
# table.md are rewritten after every row, so a call cut short still brings back what finished.
#
# Environment, all optional:
#   BENCH_DRY=1             print every command, run nothing (needs no GPU, wheels or .shared)
#   BENCH_PY                python with torch (python3: the image's)
#   BENCH_SHARED            copy of the shared folder, holding bench/ and data/ (.shared)
#   BENCH_WHL_LF, _TF       wheel folders (.whl-lf, .whl-tf), installed to /tmp/lf-site, /tmp/tf-site
#   BENCH_SHAPE             make_model.py shape instead of the entry's (tiny for a CPU smoke)
#   BENCH_MODEL             a ready model folder instead of building one
#   BENCH_EXTRA             key=value overrides added to every row of both frameworks
#   BENCH_FRAMEWORKS        "lf tf" (default), or one of them
#   BENCH_RUNS              only these row names (the others are listed as not run)
#   BENCH_BUDGET_S          start no row after this many seconds (560; a device command gets 600)
#   BENCH_TMP               scratch (/tmp/bench): models, runs, logs, token cache; kept while warm
#   BENCH_PYTHONPATH_EXTRA  appended to both sides' PYTHONPATH (CPU smoke: an image-like site)
#   BENCH_REV               tuneforge revision to record (the device copy has no .git)
set -u
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
entry=${1:-}
dry=${BENCH_DRY:-0}
py=${BENCH_PY:-python3}
case $py in */*) py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py") ;; esac
shared=${BENCH_SHARED:-.shared}
whl_lf=${BENCH_WHL_LF:-.whl-lf}
whl_tf=${BENCH_WHL_TF:-.whl-tf}
lf_site=/tmp/lf-site
tf_site=/tmp/tf-site
tmp=${BENCH_TMP:-/tmp/bench}
budget=${BENCH_BUDGET_S:-560}
frameworks=${BENCH_FRAMEWORKS:-lf tf}
only=${BENCH_RUNS:-}
extra=${BENCH_EXTRA:-}
out=${OUT:-$tmp/out}
yaml=$shared/bench/sft_lora.yaml
data=$shared/data/llamafactory
t0=$(date +%s)
export BENCH_TMP=$tmp HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export PATH=$tmp/bin:$PATH
unset PYTHONPATH

names=() fws=() labels=() ovs=()
plan() {  # plan NAME FW LABEL [key=value ...]: one table row, in table order
  names+=("$1"); fws+=("$2"); labels+=("$3"); shift 3; ovs+=("$*")
}
shrink="" ref="" est_missing=0
case $entry in
  main)
    shape=1.5b ref=lf_pack_liger
    plan lf_default lf "LLaMA-Factory default"
    plan lf_pack_liger lf "LLaMA-Factory packing+liger" packing=true enable_liger_kernel=true
    plan tf_default tf "tuneforge default"
    plan tf_packing tf "tuneforge packing" packing=true
    order="lf_pack_liger tf_default tf_packing lf_default" ;;
  sweep)
    shape=1.5b
    for c in 1024 2048 4096 8192; do plan "tf_pack_c$c" tf "tuneforge packing, cutoff $c" packing=true "cutoff_len=$c"; done
    for c in 1024 2048 4096 8192; do plan "tf_default_c$c" tf "tuneforge default, cutoff $c" "cutoff_len=$c" max_samples=300; done
    order="${names[*]}" ;;
  7b)
    shape=7b shrink="max_samples=300" ref=lf7b_pack_liger
    plan lf7b_default lf "LLaMA-Factory default"
    plan lf7b_pack_liger lf "LLaMA-Factory packing+liger" packing=true enable_liger_kernel=true
    plan tf7b_default tf "tuneforge default"
    plan tf7b_packing tf "tuneforge packing" packing=true
    order="lf7b_pack_liger tf7b_default tf7b_packing lf7b_default" ;;
  *)
    echo "usage: bash bench/device.sh main|sweep|7b    (BENCH_DRY=1 prints the commands; see bench/README.md)" >&2
    exit 2 ;;
esac
shape=${BENCH_SHAPE:-$shape}
model=${BENCH_MODEL:-$tmp/models/$shape}

show() { local s; s=$(printf '%q ' "$@"); echo "${s% }"; }
results=$out/results.txt
say() {  # one result line: printed, and recorded unless dry
  echo "$*"
  [ "$dry" = 1 ] || echo "$*" >> "$results"
}
fatal() { say "META fatal $*"; echo "bench: $*" >&2; exit 1; }
elapsed() { echo $(( $(date +%s) - t0 )); }
wanted() {  # wanted NAME FW: not filtered out by BENCH_FRAMEWORKS / BENCH_RUNS
  case " $frameworks " in *" $2 "*) ;; *) echo "BENCH_FRAMEWORKS=$frameworks"; return 1 ;; esac
  if [ -n "$only" ]; then case " $only " in *" $1 "*) ;; *) echo "not in BENCH_RUNS"; return 1 ;; esac; fi
  return 0
}
uses() { local i; for i in "${!names[@]}"; do [ "${fws[$i]}" = "$1" ] && wanted "${names[$i]}" "$1" >/dev/null && return 0; done; return 1; }
tf_path="$tf_site:$repo/src${BENCH_PYTHONPATH_EXTRA:+:$BENCH_PYTHONPATH_EXTRA}"
lf_path="$lf_site${BENCH_PYTHONPATH_EXTRA:+:$BENCH_PYTHONPATH_EXTRA}"

install_site() {  # install_site WHEEL_DIR SITE: pip install --no-index --no-deps, skipped when unchanged
  local wheels=("$1"/*.whl)
  if [ "$dry" = 1 ]; then
    echo "+ $(show "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2") $1/*.whl"
    return 0
  fi
  [ -f "${wheels[0]}" ] || fatal "no wheels in $1: fetch them first (bench/README.md)"
  local want; want=$(printf '%s\n' "${wheels[@]##*/}" | sort | cksum)
  [ -f "$2/.bench-wheels" ] && [ "$(cat "$2/.bench-wheels")" = "$want" ] && return 0
  rm -rf "$2"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "${wheels[@]}" \
    || fatal "pip install into $2 failed"
  echo "$want" > "$2/.bench-wheels"
}

versions() {  # versions PYTHONPATH NAME...: "name version, ..." as that side imports them
  PYTHONPATH=$1 "$py" - "${@:2}" <<'P' 2>/dev/null || echo "(could not read versions)"
import importlib.metadata as md, sys
out = []
for name in sys.argv[1:]:
    try:
        if name == "tuneforge":
            import tuneforge
            v = tuneforge.__version__
        else:
            v = md.version(name)
    except Exception:
        v = "-"
    out.append(f"{name} {v}")
print(", ".join(out))
P
}

device_desc() {
  local gpu
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
  if [ -n "$gpu" ]; then echo "$gpu"; return; fi
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs), $(nproc) cores, no nvidia-smi (peak n/a)"
}

train_cmd() {  # train_cmd NAME FW OVERRIDES...: sets cmd=(...) — the yaml as is plus overrides
  local name=$1 fw=$2; shift 2
  local plumbing=("$yaml" "model_name_or_path=$model" "dataset_dir=$data" "output_dir=$tmp/runs/$name")
  if [ "$fw" = lf ]; then  # as ../shared/bench/lf_sft.sh runs it
    cmd=(env "PYTHONPATH=$lf_path" DISABLE_VERSION_CHECK=1 "$py" -m llamafactory.cli train "${plumbing[@]}" "$@")
  else
    cmd=(tuneforge train "${plumbing[@]}" "$@")
  fi
}

run_row() {  # run_row INDEX
  local i=$1 name=${names[$1]} fw=${fws[$1]}
  # shellcheck disable=SC2206
  local ov=(${ovs[$i]} $shrink $extra)
  local cmd=()
  train_cmd "$name" "$fw" "${ov[@]}"
  say "CMD $name $(show "${cmd[@]}")"
  local est=(tuneforge estimate "$yaml" "model_name_or_path=$model" "dataset_dir=$data" "output_dir=$tmp/runs/$name" "${ov[@]}")
  if [ "$dry" = 1 ]; then
    echo "+ $(show "$py" bench/tokens.py "$shared" "$model" "${ov[@]}")   # -> PER_EPOCH EPOCHS"
    [ "$fw" = tf ] && echo "+ $(show timeout "${BENCH_EST_TIMEOUT_S:-60}" "${est[@]}")   # -> ESTIMATE $name <predicted peak line>"
    echo "+ OUT= bash $shared/bench/measure.sh $name $tmp/runs/$name PER_EPOCH EPOCHS -- timeout -k 15 REMAINING_S $(show "${cmd[@]}")"
    return 0
  fi
  if [ $(( budget - $(elapsed) )) -lt "${BENCH_MIN_ROW_S:-45}" ]; then
    say "SKIP $name time budget ($(elapsed)s of ${BENCH_BUDGET_S:-560}s used)"
    return 0
  fi
  local per_epoch="" epochs=""
  read -r per_epoch epochs < <("$py" bench/tokens.py "$shared" "$model" "${ov[@]}" 2>>"$tmp/logs/tokens.txt")
  if [ -z "$per_epoch" ]; then say "SKIP $name token count failed (logs/tokens.txt)"; return 0; fi
  if [ "$fw" = tf ] && [ "$est_missing" = 1 ]; then
    say "ESTIMATE $name n/a"
  elif [ "$fw" = tf ]; then
    say "CMD est_$name $(show "${est[@]}")"
    timeout "${BENCH_EST_TIMEOUT_S:-60}" "${est[@]}" > "$tmp/logs/est_$name.txt" 2>&1
    local peak ckpt  # the peak row (one value per checkpointing column) and which column the run uses
    peak=$(grep -i -m1 'predicted peak' "$tmp/logs/est_$name.txt" | tr -s ' \t' ' ')
    ckpt=$(grep -i -m1 'gradient checkpointing:' "$tmp/logs/est_$name.txt" | tr -s ' \t' ' ')
    say "ESTIMATE $name ${peak:-n/a}${ckpt:+ ;; $ckpt}"
    grep -q "No such command" "$tmp/logs/est_$name.txt" && est_missing=1  # no estimate command: ask once
  fi
  rm -rf "$tmp/runs/$name"
  local rem=$(( budget - $(elapsed) )) res rc err
  [ "$rem" -lt 30 ] && rem=30
  res=$(OUT= bash "$shared/bench/measure.sh" "$name" "$tmp/runs/$name" "$per_epoch" "$epochs" -- \
        timeout -k 15 "$rem" "${cmd[@]}" | grep '^RESULT')
  cp "/tmp/log_$name.txt" "$tmp/logs/" 2>/dev/null
  say "${res:-RESULT $name rc=nan}"
  if [ "$fw" = tf ]; then  # tuneforge reports the tokens it trained on: they should be the counted ones
    local seen; seen=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_input_tokens_seen"])' \
                 "$tmp/runs/$name/all_results.json" 2>/dev/null)
    if [ -n "$seen" ] && ! "$py" -c 'import sys; s, p, e = map(float, sys.argv[1:]); sys.exit(abs(s - p * e) > 0.01 * p * e)' \
         "$seen" "$per_epoch" "$epochs"; then
      say "NOTE $name tuneforge saw $seen tokens, counted $per_epoch x $epochs"
    fi
  fi
  grep -qiE 'out of memory|OutOfMemoryError' "/tmp/log_$name.txt" 2>/dev/null && say "NOTE $name OOM"
  # train's own decision, sized on the largest micro-batch the data can form (padding-free rows are
  # far below estimate's batch x cutoff_len worst case): the estimate to set beside the measured peak
  local decided; decided=$(grep -m1 'gradient checkpointing' "/tmp/log_$name.txt" 2>/dev/null | cut -c1-220)
  [ -n "$decided" ] && say "NOTE $name train: ${decided#*tuneforge: }"
  rc=$(sed -n 's/.* rc=\([0-9]*\) .*/\1/p' <<<"$res")
  if [ "$rc" != 0 ]; then
    case $rc in 124|137) say "NOTE $name killed at the time budget" ;; esac
    err=$(grep -E '^(error: |[A-Za-z.]*(Error|Exception)\b)' "/tmp/log_$name.txt" 2>/dev/null | tail -1 | cut -c1-160)
    [ -n "$err" ] && say "NOTE $name $err"
  fi
  refresh
}

refresh() {  # table and logs after every row
  "$py" bench/table.py "$results" > "$out/table.md" 2>>"$tmp/logs/table.txt"
  tar czf "$out/logs.tar.gz" -C "$tmp" logs 2>/dev/null
}

# ---- start
if [ "$dry" != 1 ]; then
  mkdir -p "$out" "$tmp/runs" "$tmp/models" "$tmp/bin" "$tmp/cache"
  rm -rf "$tmp/logs"; mkdir -p "$tmp/logs"
  : > "$results"
fi
bench_env=""
for v in $(compgen -e | grep '^BENCH_' | sort); do
  [ "$v" = BENCH_TMP ] && [ "$tmp" = /tmp/bench ] && continue
  bench_env+="$v=$(printf '%q' "${!v}") "
done
say "META entry $entry"
say "META date $(date -u '+%Y-%m-%d %H:%M UTC')"
say "META command ${bench_env}bash bench/device.sh $entry"
say "META shape $shape ($model)"
[ -n "$shrink" ] && say "META shrink $shrink"
[ -n "$extra" ] && say "META extra $extra"
[ -n "$ref" ] && say "META reference $ref"
rev=${BENCH_REV:-}
if [ -z "$rev" ]; then
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo "unknown (no .git here: set BENCH_REV)")
  [ -n "$(git status --porcelain -- src 2>/dev/null)" ] && rev+=" + uncommitted changes in src/"
fi
say "META rev $rev"
say "META yaml $yaml$( [ -f "$yaml" ] && echo " sha256:$(sha256sum "$yaml" | cut -c1-12)")"
for i in "${!names[@]}"; do
  o=${ovs[$i]}; o=${o// /,}
  say "RUN ${names[$i]} ${fws[$i]} ${o:--} ${labels[$i]}"
done
for i in "${!names[@]}"; do
  why=$(wanted "${names[$i]}" "${fws[$i]}") || say "SKIP ${names[$i]} $why"
done

uses lf && install_site "$whl_lf" "$lf_site"
uses tf && install_site "$whl_tf" "$tf_site"
if [ "$dry" = 1 ]; then
  echo "+ $tmp/bin/tuneforge := PYTHONPATH=$tf_path exec $py -m tuneforge \"\$@\""
else
  printf '#!/bin/sh\nPYTHONPATH="%s" exec "%s" -m tuneforge "$@"\n' "$tf_path" "$py" > "$tmp/bin/tuneforge"
  chmod +x "$tmp/bin/tuneforge"
  say "META device $(device_desc)"
  uses lf && say "META versions_lf $(versions "$lf_path" llamafactory transformers peft trl datasets accelerate liger-kernel torch)"
  uses tf && say "META versions_tf $(versions "$tf_path" tuneforge transformers peft trl datasets accelerate liger-kernel torch tokenizers pyarrow fsspec)"
  { date -u; uname -a; nvidia-smi 2>&1; nproc; free -g; df -h /tmp; "$py" -V; "$py" -m pip list 2>/dev/null
    echo "== $lf_site"; ls "$lf_site" 2>&1; echo "== $tf_site"; ls "$tf_site" 2>&1; } > "$out/env.txt" 2>&1
fi

if [ ! -f "$model/config.json" ]; then
  if [ "$dry" = 1 ]; then
    echo "+ $(show "$py" "$shared/bench/make_model.py" "$model" "$shape")"
  else
    [ -n "${BENCH_MODEL:-}" ] && fatal "BENCH_MODEL=$model has no config.json"
    s=$(date +%s)
    rm -rf "$model.tmp"
    "$py" "$shared/bench/make_model.py" "$model.tmp" "$shape" > "$tmp/logs/make_model_$shape.txt" 2>&1 \
      || { refresh; fatal "make_model.py $shape failed (logs/make_model_$shape.txt)"; }
    mv "$model.tmp" "$model"
    say "META model_build_s $(( $(date +%s) - s ))"
  fi
fi

for name in $order; do
  for i in "${!names[@]}"; do
    [ "${names[$i]}" = "$name" ] || continue
    wanted "$name" "${fws[$i]}" >/dev/null && run_row "$i"
  done
done

if [ "$dry" != 1 ]; then
  say "META total_s $(elapsed)"
  refresh
  echo
  cat "$out/table.md"
  echo "bench: wrote $(ls "$out" | tr '\n' ' ')in $out"
fi
