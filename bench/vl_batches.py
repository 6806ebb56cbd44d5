"""Vision batches padded vs padding-free vs packed: tokens computed and forward+backward time per epoch.

    python bench/vl_batches.py [--samples 96] [--batch 8] [--model tuneforge/tiny-qwen2-vl] [--out /tmp/vl_rows]

Generated records with 0, 1 or 2 pictures of mixed sizes (56x56 to 112x112 for the tiny Qwen2-VL: 4 to 16 image
tokens each) and answers of 1 to 40 words, encoded by the run's own encoder; one epoch of micro-batches of
`--batch` samples (packed: `--batch` rows of cutoff_len 512) through the model in fp32 on the CPU, with the
collator each mode uses in `tuneforge train` (VisionCollator padded; VisionRowCollator; packed rows through it).
The tiny model makes the time mostly per-token overhead: read the token columns first, and compare times within
one run (the machine's load moves them).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "multimodal"))


def samples(model: str, count: int, folder: Path):
    from vl import COLOURS, square

    from tuneforge.config.load import load
    from tuneforge.data.encoded import batch_encoder
    from tuneforge.data.example import Example, Message
    from tuneforge.data.loader import example_row
    from tuneforge.data.templates import template_for
    from tuneforge.model.load import load_tokenizer
    from tuneforge.model.vision import vision_data

    cfg, _ = load(base={"model_name_or_path": model, "output_dir": "unused", "cutoff_len": 512})
    processor, data = vision_data(cfg.model, cfg.data)
    template = template_for(data, load_tokenizer(cfg.model), processor)
    rng, rows = random.Random(0), {}
    folder.mkdir(parents=True, exist_ok=True)
    encode = batch_encoder(template, "sft", data)
    for i in range(count):
        paths = []
        for k in range(rng.choice([0, 1, 1, 2])):
            path = folder / f"{i}_{k}.png"
            square(rng.choice(list(COLOURS)), rng).resize((rng.randint(56, 112), rng.randint(56, 112))).save(path)
            paths.append(str(path))
        answer = " ".join(rng.choice(list(COLOURS)) for _ in range(rng.randint(1, 40)))
        example = Example(messages=[Message("user", "<image>" * len(paths) + "Name the colours."),
                                    Message("assistant", answer)], images=paths)
        for key, values in encode({key: [value] for key, value in example_row(example).items()}).items():
            rows.setdefault(key, []).extend(values)
    return cfg, template, rows


def epoch(model, collator, rows: list[dict], batch: int) -> tuple[int, int, float, float]:
    """(micro-batches, tokens computed, seconds collating, seconds of forward + backward)."""
    steps = tokens = 0
    collating = seconds = 0.0
    for start in range(0, len(rows), batch):
        began = time.perf_counter()
        inputs = collator(rows[start:start + batch])
        collating += time.perf_counter() - began
        began = time.perf_counter()
        model(**inputs).loss.backward()
        seconds += time.perf_counter() - began
        steps += 1
        tokens += inputs["input_ids"].numel()
    model.zero_grad()
    return steps, tokens, collating, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="tuneforge/tiny-qwen2-vl")
    parser.add_argument("--out", default="/tmp/vl_rows")
    args = parser.parse_args()
    import torch
    from datasets import Dataset

    from tuneforge.data.collate import VisionRowCollator, padded_collator
    from tuneforge.data.encode.multimodal import vision_collator
    from tuneforge.data.encoded import features
    from tuneforge.data.packing import pack_dataset
    from tuneforge.model.attention import choose_attention
    from tuneforge.model.load import Precision, load_model
    from tuneforge.model.mrope import rope_index

    torch.manual_seed(0)
    cfg, template, columns = samples(args.model, args.samples, Path(args.out))
    dataset = Dataset.from_dict(columns, features=features("supervised", vision=True))
    single = [dataset[i] for i in range(len(dataset))]
    packed = list(pack_dataset(dataset, 512))
    precision = Precision(torch.float32, False, False, "cpu")
    padded = vision_collator(template, padded_collator(template.tokenizer, "cpu"))
    sdpa = load_model(cfg.model, precision, attn_implementation="sdpa")
    rows_impl = choose_attention(cfg.model.flash_attn, "cpu", padding_free=True).implementation
    rows_model = load_model(cfg.model, precision, attn_implementation=rows_impl)
    row = VisionRowCollator(padded, rope_index(rows_model))
    real = sum(len(r["input_ids"]) for r in single)
    print(f"{len(single)} samples, {real} real tokens, {sum(len(r['images']) for r in single)} pictures; "
          f"torch threads {torch.get_num_threads()}")
    print("| batches | micro-batches | tokens computed | padding | collate s | fwd+bwd s |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, model, collator, data in (("padded", sdpa, padded, single), ("padding-free", rows_model, row, single),
                                        ("packed (cutoff 512)", rows_model, row, packed)):
        epoch(model, collator, data[:args.batch], args.batch)  # warm-up
        steps, tokens, collating, seconds = epoch(model, collator, data, args.batch)
        print(f"| {name} | {steps} | {tokens:,} | {100 * (tokens - real) / tokens:.0f}% | {collating:.2f} | "
              f"{seconds:.2f} |")


if __name__ == "__main__":
    main()
