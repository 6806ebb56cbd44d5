"""The parity table: per architecture and path, the largest |difference| of a sample's summed loss
and of a LoRA gradient against the padded batch (CPU, fp32, the tiny models of model/tiny_archs.py).

    .venv/bin/python bench/arch_parity.py

The same computation tests/model/test_padding_free.py asserts (1e-5); this prints the numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from model.test_padding_free import (  # noqa: E402  (the test's own helpers: one definition of the paths)
    _flat,
    _grads,
    _implementation,
    _model,
    _packed_rows,
    _padded,
    _samples,
)

from tuneforge.data.collate import PaddingFreeCollator  # noqa: E402
from tuneforge.model import tiny  # noqa: E402
from tuneforge.model.tiny_archs import ARCHS, ensure_arch  # noqa: E402


def max_delta(got, ref) -> float:
    return max(abs(a.item() - b.item()) for a, b in zip(got, ref))


def grad_delta(got, ref) -> float:
    return max((got[n] - g).abs().max().item() for n, g in ref.items())


def main() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure())
    print("| architecture | path | attention | max abs dloss (summed per sample) | max abs dgrad |")
    print("| --- | --- | --- | ---: | ---: |")
    for arch in ["tiny", *ARCHS]:
        path = tiny.ensure() if arch == "tiny" else ensure_arch(arch)
        samples = _samples()
        tokens = sum(sum(1 for x in s["labels"][1:] if x != -100) for s in samples)
        reference = _model(path, None)
        padded = _padded(reference, tokenizer, samples)
        g_padded = _grads(reference, padded, tokens)
        for flash_attn in ("auto", "eager"):
            impl = _implementation(path, flash_attn)
            model = _model(path, impl)
            for label, batch in (("padding-free", samples), ("packed", _packed_rows(samples))):
                losses = _flat(model, PaddingFreeCollator()(batch))
                grads = _grads(model, losses, tokens)
                print(f"| {arch} | {label}, flash_attn {flash_attn} | {impl} | {max_delta(losses, padded):.2e} | "
                      f"{grad_delta(grads, g_padded):.2e} |", flush=True)


if __name__ == "__main__":
    main()
