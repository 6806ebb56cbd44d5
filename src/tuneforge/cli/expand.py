"""`tuneforge expand --model_name_or_path M --output_dir D --num_expand N`: LLaMA Pro block expansion."""

from __future__ import annotations

from tuneforge.log import note


def run_expand(model_name_or_path: str, output_dir: str, num_expand: int) -> None:
    from tuneforge.model.expand import expand

    out = expand(model_name_or_path, output_dir, num_expand)
    note(f"expanded {model_name_or_path} by {num_expand} blocks into {out}; train the new blocks with "
         f"model_name_or_path: {out}, finetuning_type: freeze, use_llama_pro: true, freeze_trainable_layers: "
         f"{num_expand}")
