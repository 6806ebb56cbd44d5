#!/bin/bash
# bench/check.sh — the fast path's GPU checks (bench/gpu_check.py), each in its own process, one table:
# the varlen kernel (causal and windowed), padding-free = padded in bf16 (qwen2 LoRA, qwen2 full with fp32
# master weights, mistral with a sliding window), Liger vs the chunked loss, the memory estimate vs
# torch.cuda.max_memory_allocated for lora/freeze/full at gradient accumulation 1 and 4 (1.5b shape), and
# vLLM predict right after training. About 6 minutes. On the GPU machine, in the repo root, with .whl-tf
# carried (bench/README.md).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
py=${BENCH_PY:-python3}
site=/tmp/tf-site
if [ ! -d "$site" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl-tf/*.whl || exit 1
fi
export PYTHONPATH=$site:$(pwd)/src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TUNEFORGE_CACHE=/tmp/tf-cache
out=${OUT:-/tmp/bench/out}
mkdir -p "$out"
"$py" bench/gpu_check.py ${CHECK_ARGS:-} 2>&1 | grep -v -i warn | tee "$out/gpu_check.txt"
exit "${PIPESTATUS[0]}"
