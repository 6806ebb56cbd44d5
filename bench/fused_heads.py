"""Which fused LM head to keep: full logits vs tuneforge's chunked linear+CE vs trl's add_fused_lm_head.

    .venv/bin/python bench/fused_heads.py            # all three, alternated, one process per run

A Qwen2 decoder at the bench's 0.5B width (hidden 896, Qwen's 151,936-token vocabulary) cut to two
layers so the head dominates, fp32 on the CPU; one SFT-like row of 2,048 tokens whose first half
is prompt (label -100); forward + backward with the head frozen (LoRA's case). Each run reports
tokens/s over 3 steps after one warm-up, the process's peak RSS, the loss, and the gradient of
one decoder weight, which the summary compares with the full-logits run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

TOKENS, PROMPT, STEPS = 2048, 1024, 3


def build():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=2,
                         num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).float()
    model.get_output_embeddings().weight.requires_grad_(False)  # frozen head (and the embedding tied to it)
    ids = torch.randint(0, config.vocab_size, (1, TOKENS), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :PROMPT] = -100
    return model, ids, labels


def one(kind: str) -> dict:
    import torch

    model, ids, labels = build()
    if kind == "trl":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)

    def step() -> float:
        model.zero_grad(set_to_none=True)
        if kind == "full":
            loss = model(input_ids=ids, labels=labels).loss
        elif kind == "tuneforge":
            from tuneforge.model.fused_loss import causal_lm_loss

            loss = causal_lm_loss(model, {"input_ids": ids, "labels": labels})
        else:
            loss = model(input_ids=ids, labels=labels, fused_lm_head=True).loss
        loss.backward()
        return float(loss)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    started = time.perf_counter()
    for _ in range(STEPS):
        loss = step()
    seconds = (time.perf_counter() - started) / STEPS
    grad = model.model.layers[0].self_attn.q_proj.weight.grad
    return {"kind": kind, "loss": loss, "tok_s": TOKENS / seconds, "peak_mib": (resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss - base) / 1024, "grad": grad.flatten()[:4096].tolist()}


def main() -> None:
    runs: dict[str, list[dict]] = {"full": [], "tuneforge": [], "trl": []}
    for _ in range(2):  # alternated, so a busy machine hurts all three alike
        for kind in runs:
            out = subprocess.run([sys.executable, __file__, kind], capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    import torch

    ref = torch.tensor(runs["full"][0]["grad"])
    print(f"{'loss':>10} | {'tok/s (best of 2)':>18} | {'extra peak RSS MiB':>18} | {'max |dgrad| vs full':>20} | loss")
    for kind, results in runs.items():
        grad = torch.tensor(results[0]["grad"])
        rel = float((grad - ref).abs().max() / ref.abs().max())
        print(f"{kind:>10} | {max(r['tok_s'] for r in results):18,.0f} | {min(r['peak_mib'] for r in results):18,.0f} "
              f"| {rel:20.2e} | {results[0]['loss']:.6f}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(one(sys.argv[1])))
    else:
        main()
