"""The fast path's GPU checks in a few minutes: one table, every check in its own process.

    python bench/gpu_check.py                 # on the GPU machine: bf16, the 1.5b shape for memory
    python bench/gpu_check.py --shape small   # anywhere (CPU: fp32; checks the script itself)
    python bench/gpu_check.py --one NAME      # one check (what the driver runs in a child process)

Each check runs in a fresh child process, so what one leaves behind cannot change another: Liger
patches transformers' classes at module level, `enable_input_require_grads` hooks stay on a model,
the CUDA allocator's peak and cache are per process.

| check            | what                                                                          |
| ---------------- | ----------------------------------------------------------------------------- |
| kernel           | PyTorch's varlen flash kernel (model/attention.py) vs per-sample fp32 SDPA,   |
|                  | with and without a sliding window                                             |
| parity_*         | per-sample losses and gradients of a padding-free row vs one sample at a time |
|                  | (what a padded batch computes), bf16 autocast: qwen2 LoRA (bf16 weights),     |
|                  | qwen2 full (fp32 master weights: q/k reach the kernel cast to bf16), mistral  |
|                  | with a 64-token sliding window                                                |
| vision_*         | tiny Qwen2-VL / LLaVA: per-token losses and gradients of a padding-free row   |
|                  | of samples with 0-2 pictures vs their padded batch, bf16 autocast             |
| liger            | Liger's patched loss vs the chunked loss on the same row (if installed)       |
| memory_*         | lora / freeze / full at the chosen shape, gradient accumulation 1 and 4:      |
|                  | torch.cuda.max_memory_allocated of real steps vs the estimate (within 15%)    |
| vllm_predict     | `tuneforge train ... do_predict=true infer_backend=vllm` on the tiny model    |

Prints `CHECK name ok|FAIL|n/a detail` per check, then the markdown table; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHECKS = ["kernel", "parity_qwen2_lora", "parity_qwen2_full", "parity_mistral_window", "vision_qwen2_vl",
          "vision_llava", "liger",
          "memory_lora_ga1", "memory_lora_ga4", "memory_freeze_ga1", "memory_freeze_ga4", "memory_full_ga1",
          "memory_full_ga4", "vllm_predict"]
SHAPES = {  # ../shared/bench/make_model.py's shapes; "small" runs anywhere in seconds
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=32000, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=151936, tie_word_embeddings=False),
}
METHODS = {"lora": dict(finetuning_type="lora", lora_rank=8, lora_target=["all"]),
           "freeze": dict(finetuning_type="freeze", freeze_trainable_layers=2),
           "full": dict(finetuning_type="full")}
PER_CHECK_S = 240


def report(name: str, ok: bool | None, detail: str) -> None:
    status = "n/a" if ok is None else "ok" if ok else "FAIL"
    print(f"CHECK {name} {status} {detail}", flush=True)


def device_and_dtype():
    import torch

    return ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)


def run_one(name: str, shape: str, tokens: int) -> None:
    from gpu_checks import memory, parity, vision  # bench/gpu_checks/: the checks themselves

    if name == "kernel":
        parity.check_kernel(report)
    elif name.startswith("parity_"):
        parity.check_parity(name, report)
    elif name.startswith("vision_"):
        vision.check_vision(name, report)
    elif name == "liger":
        parity.check_liger(report)
    elif name.startswith("memory_"):
        _, method, ga = name.split("_")
        memory.check_memory(name, shape, METHODS[method], int(ga[2:]), tokens, report)
    elif name == "vllm_predict":
        memory.check_vllm_predict(report)
    else:
        raise SystemExit(f"unknown check {name}")


def run_all(names: list[str], shape: str, tokens: int) -> int:
    rows = []
    for name in names:
        started = time.perf_counter()
        try:
            child = subprocess.run([sys.executable, __file__, "--one", name, "--shape", shape, "--tokens", str(tokens)],
                                   capture_output=True, text=True, timeout=PER_CHECK_S)
            lines = [line for line in child.stdout.splitlines() if line.startswith("CHECK ")]
            if not lines:
                tail = (child.stderr.strip().splitlines() or ["no output"])[-1][:300]
                lines = [f"CHECK {name} FAIL exit {child.returncode}: {tail}"]
        except subprocess.TimeoutExpired:
            lines = [f"CHECK {name} FAIL timed out after {PER_CHECK_S} s"]
        for line in lines:
            print(line, flush=True)
            _, check, status, *detail = line.split(" ", 3) + [""]
            rows.append((check, status, " ".join(detail).strip(), time.perf_counter() - started))
    print("\n| check | result | detail | s |\n| --- | --- | --- | ---: |")
    for check, status, detail, seconds in rows:
        print(f"| {check} | {status} | {detail} | {seconds:.0f} |")
    return 1 if any(status == "FAIL" for _, status, _, _ in rows) else 0


def main() -> None:
    import torch

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1.5b" if cuda else "small", choices=SHAPES)
    parser.add_argument("--tokens", type=int, default=4096 if cuda else 256, help="tokens per micro-batch (memory)")
    parser.add_argument("--one", help="run this check only, in this process")
    parser.add_argument("--checks", default=",".join(CHECKS), help="comma-separated subset, in this order")
    args = parser.parse_args()
    if args.one:
        return run_one(args.one, args.shape, args.tokens)
    print(f"META gpu_check torch {torch.__version__}, device {torch.cuda.get_device_name(0) if cuda else 'cpu'}, "
          f"memory shape {args.shape}, {args.tokens} tokens per micro-batch", flush=True)
    sys.exit(run_all(args.checks.split(","), args.shape, args.tokens))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
