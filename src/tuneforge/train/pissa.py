"""PiSSA's adapter, converted for the original base model at the end of training (`pissa_convert`).

A PiSSA adapter starts from the weights' principal singular vectors, which peft subtracts from the base
weights: the trained adapter belongs to that residual base. peft converts it into a plain LoRA adapter for the
untouched base (`save_pretrained(path_initial_model_for_weight_conversion=...)`, rank doubled), given the
adapter as it was at step 0. So the step-0 adapter is saved in `pissa_init/` when training starts, and the
converted one in `pissa_converted/` when it ends (LLaMA-Factory's folder names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuneforge.log import note

INIT, CONVERTED = "pissa_init", "pissa_converted"


def _saved_with_plain_init(model: Any, folder: Path) -> None:
    """Saved with init_lora_weights: true in its config, so that loading it never runs the SVD again."""
    config = model.peft_config["default"]
    init = config.init_lora_weights
    config.init_lora_weights = True
    try:
        model.save_pretrained(str(folder))
    finally:
        config.init_lora_weights = init


class PissaConvert(TrainerCallback):
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / INIT
        if state.is_world_process_zero and not (folder / "adapter_config.json").is_file():  # resumed: kept
            _saved_with_plain_init(model, folder)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        out = Path(args.output_dir)
        model.save_pretrained(str(out / CONVERTED), path_initial_model_for_weight_conversion=str(out / INIT))
        note(f"PiSSA: the adapter converted for the original base model is in {out / CONVERTED} (use it for chat, "
             "export and merging)")
