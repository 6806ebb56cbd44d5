"""Qwen-VL's 3-D (m)rope positions for padding-free rows, computed by the model's own `get_rope_index`.

A Qwen-VL forward computes its positions (temporal, height, width per image token; text positions running on
after each image by its larger side) from input_ids, mm_token_type_ids and the image grids, over a whole
batch row. A padding-free row holds several samples, so the collator (data/collate.py) asks for them sample by
sample, on the same padded batch the model would see, and lays them end to end.

The function is the model class's own, called without the weights: in transformers 5 it reads only
`self.config` and the class's `get_vision_position_ids` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL), so the collator
(which DataLoader workers copy) never holds the model, and the positions are exactly the forward's.
"""

from __future__ import annotations

from typing import Any


class RopeIndex:
    """A padded batch (input_ids, mm_token_type_ids, attention_mask, the grids, ...) -> [3, batch, length] positions.
    Of the batch's keys it passes those get_rope_index names (image/video grids, Qwen2.5-VL's second_per_grid_ts)."""

    def __init__(self, model_class: type, config: Any) -> None:
        import inspect

        self.model_class = model_class
        self.config = config
        self.names = frozenset(inspect.signature(model_class.get_rope_index).parameters) - {"self", "kwargs"}

    def get_vision_position_ids(self, *args: Any, **kwargs: Any) -> Any:
        return self.model_class.get_vision_position_ids(self, *args, **kwargs)

    def __call__(self, **batch: Any) -> Any:
        return self.model_class.get_rope_index(self, **{k: v for k, v in batch.items() if k in self.names})[0]


def rope_index(model: Any) -> RopeIndex | None:
    """The rope index of a loaded model (peft-wrapped or not) whose positions are 3-D; None for 1-D rope (LLaVA and
    text models), whose padding-free rows need only positions restarting at 0."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for module in (base, getattr(base, "model", None)):
        if module is not None and hasattr(type(module), "get_rope_index"):
            return RopeIndex(type(module), module.config)
    return None
