"""The method extras on the tiny model, built the way `tuneforge train` builds them (config -> stage model ->
TrainingArguments -> our Trainer's create_optimizer), with a few optimizer steps on one fixed batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# a Chinese and an English sample: token ids come from the tiny tokenizer
TEXTS = ["用户：你好，请介绍一下你自己。助手：我是 Forge，由 Tuneforge Lab 训练。",
         "User: what is the capital of France? Assistant: Paris is the capital of France."]


def config(tmp_path: Path, **keys: Any) -> Any:
    from tuneforge.config.load import load

    base = {"model_name_or_path": "tuneforge/tiny", "output_dir": str(tmp_path / "out"), "report_to": "none",
            "learning_rate": 1e-3, "save_strategy": "no", **keys}
    return load(base=base)[0]


def build(tmp_path: Path, **keys: Any) -> tuple[Any, Any]:
    """(cfg, trainer) with the extra's optimizer already created."""
    from transformers import Trainer

    from tuneforge.model.load import choose_precision
    from tuneforge.stages.registry import get_stage
    from tuneforge.train.arguments import training_arguments
    from tuneforge.train.optimizers import with_extra_optimizers

    cfg = config(tmp_path, **keys)
    stage = get_stage(cfg.method.stage)
    stage.check(cfg)
    precision = choose_precision(cfg.train, cfg.method.finetuning_type)
    model = stage.build_model(cfg, precision, None)
    args = training_arguments(cfg, precision, has_eval=False)
    trainer = with_extra_optimizers(Trainer)(model=model, args=args)
    trainer.create_optimizer()
    return cfg, trainer


def batch(tokenizer: Any) -> dict[str, Any]:
    import torch

    ids = [tokenizer(text)["input_ids"][:48] for text in TEXTS]
    width = min(len(i) for i in ids)
    input_ids = torch.tensor([i[:width] for i in ids])
    return {"input_ids": input_ids, "labels": input_ids.clone()}


def steps(trainer: Any, data: dict[str, Any], n: int) -> list[float]:
    """n optimizer steps on the same batch; the losses before each step."""
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    losses = []
    for _ in range(n):
        loss = model(**data).loss
        loss.backward()  # a layer-wise optimizer steps here, inside the backward pass
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def state_numel(optimizer: Any) -> int:
    """Numbers the optimizer keeps per parameter: every tensor in its state, including those held by objects
    in it (GaLore's projector matrices); a layer-wise optimizer's per-parameter optimizers counted too."""
    import torch

    def count(value: Any, seen: set[int]) -> int:
        if id(value) in seen:
            return 0
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            return value.numel()
        if isinstance(value, dict):
            return sum(count(v, seen) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(count(v, seen) for v in value)
        if hasattr(value, "__dict__") and not isinstance(value, type):
            return sum(count(v, seen) for v in vars(value).values())
        return 0

    inner = getattr(optimizer, "optimizer_dict", None)  # transformers' LayerWiseDummyOptimizer
    optimizers = list(inner.values()) if inner else [optimizer]
    seen: set[int] = set()
    return sum(count(dict(o.state), seen) for o in optimizers)
