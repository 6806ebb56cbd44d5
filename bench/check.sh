#!/bin/bash
# bench/check.sh — the fast path's GPU checks (bench/gpu_check.py): the varlen kernel, padding-free vs
# padded losses and gradients in bf16, Liger vs the chunked loss, and the memory estimate against
# torch.cuda.max_memory_allocated for real training steps of the 1.5b and 7b shapes. About 3 minutes.
# On the GPU machine, in the repo root, with .whl-tf carried (bench/README.md).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
py=${BENCH_PY:-python3}
site=/tmp/tf-site
if [ ! -d "$site" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl-tf/*.whl || exit 1
fi
export PYTHONPATH=$site:$(pwd)/src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
out=${OUT:-/tmp/bench/out}
mkdir -p "$out"
rc=0
"$py" bench/gpu_check.py --shape 1.5b 2>&1 | grep -v -i warn | tee "$out/gpu_check_1.5b.txt" || rc=1
grep -q "CHECK .* FAIL" "$out/gpu_check_1.5b.txt" && rc=1
"$py" bench/gpu_check.py --shape 7b --tokens 2048,8192 2>&1 | grep -v -i warn | tee "$out/gpu_check_7b.txt" || rc=1
grep -q "CHECK .* FAIL" "$out/gpu_check_7b.txt" && rc=1
exit $rc
