#!/bin/bash
# bench/cpu_smoke.sh [ENTRY] — runs bench/device.sh ENTRY (main by default) on a CPU-only machine with
# PyPI access, on the shared harness's `tiny` shape and a handful of steps, to check the driver end to
# end before spending device time. Not a benchmark: peak memory is n/a (no nvidia-smi), liger rows fail
# (liger-kernel needs triton/CUDA), and the numbers only say that every command line runs.
#
# What it sets up under $SMOKE (/tmp/bench-cpu), mimicking the GPU image on this machine's Python:
#   whl-lf/, whl-tf/  the same pinned wheels as ../shared/bench/fetch_wheels.sh and bench/fetch_wheels.sh,
#                     for this Python (the device ones are cp312 builds)
#   img-site/         packages at the image's versions that this venv has at others (transformers 5.17,
#                     tokenizers 0.23.2, huggingface-hub 1.33 + httpx, requests): on PYTHONPATH after the
#                     wheel sites, so both frameworks import what they would import there
#   stubs/torchaudio  an empty module: LLaMA-Factory imports torchaudio at start-up, the image has it, and
#                     PyPI has no torchaudio for this venv's torch; text SFT never calls it
# Needs: a copy of the shared folder in .shared (bench/README.md step 2) and the project venv (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
entry=${1:-main}
smoke=${SMOKE:-/tmp/bench-cpu}
py=${BENCH_PY:-.venv/bin/python}
pipq() { "$py" -m pip "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
[ -d .shared/bench ] || { echo "cpu_smoke: no .shared/bench: rm -rf .shared && cp -r ../shared .shared" >&2; exit 1; }
mkdir -p "$smoke"
if [ ! -d "$smoke/whl-lf" ]; then  # pins as in ../shared/bench/fetch_wheels.sh
  pipq download -q --no-deps --only-binary=:all: -d "$smoke/whl-lf.tmp" llamafactory==0.9.5 datasets==4.0.0 \
    trl==0.24.0 peft==0.18.1 accelerate==1.11.0 transformers==5.6.0 tokenizers==0.22.2 tyro==0.8.14 fire \
    omegaconf docstring-parser shtab typeguard termcolor dill==0.3.8 multiprocess==0.70.16 liger-kernel==0.8.5
  mv "$smoke/whl-lf.tmp" "$smoke/whl-lf"
fi
if [ ! -d "$smoke/whl-tf" ]; then
  BENCH_NATIVE=1 PYTHON=$py bash bench/fetch_wheels.sh "$smoke/whl-tf.tmp" > /dev/null
  mv "$smoke/whl-tf.tmp" "$smoke/whl-tf"
fi
if [ ! -d "$smoke/img-site" ]; then
  pipq install -q --no-deps --target "$smoke/img-site.tmp" transformers==5.17.0 tokenizers==0.23.2 \
    huggingface_hub==1.33.0 "httpx<1" httpcore certifi requests urllib3 charset-normalizer
  mv "$smoke/img-site.tmp" "$smoke/img-site"
fi
mkdir -p "$smoke/stubs/torchaudio"
echo "# cpu_smoke stub: imported by LLaMA-Factory at start-up, never called by text SFT" \
  > "$smoke/stubs/torchaudio/__init__.py"

export BENCH_PY=$py BENCH_SHAPE=${BENCH_SHAPE:-tiny} BENCH_TMP=${BENCH_TMP:-$smoke/tmp}
export BENCH_WHL_LF=$smoke/whl-lf BENCH_WHL_TF=$smoke/whl-tf
export BENCH_PYTHONPATH_EXTRA=$smoke/img-site:$smoke/stubs
# bf16=false use_cpu=true: LLaMA-Factory refuses bf16 without a GPU (tuneforge switches it off itself)
export BENCH_EXTRA=${BENCH_EXTRA:-max_samples=64 num_train_epochs=1 bf16=false use_cpu=true}
export OUT=${OUT:-$smoke/out-$entry}
rm -rf "$OUT"
exec bash bench/device.sh "$entry"
