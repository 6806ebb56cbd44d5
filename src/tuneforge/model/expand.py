"""LLaMA Pro block expansion (`tuneforge expand`): a copy of the model with `num_expand` new decoder blocks,
one after each group of `num_layers / num_expand` original blocks. Each new block copies the block before it
with its attention output (o_proj) and MLP output (down_proj) zeroed, so it adds nothing to the residual
stream: the expanded model computes exactly what the original did until training changes the new blocks
(`use_llama_pro: true` with `finetuning_type: freeze` trains only those; model/selection.expanded_layers).

Written on the loaded modules rather than on raw checkpoint keys, so the saved folder is an ordinary
transformers model with its config (num_hidden_layers, layer_types) updated by transformers' own save."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError

ZEROED = ("o_proj", "down_proj")  # the two projections that write into the residual stream


def decoder_layers(model: Any) -> Any:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ConfigError(f"expand: {type(model).__name__} keeps its decoder blocks elsewhere than model.layers; "
                          "block expansion supports LLaMA-style models (Llama, Qwen, Mistral, Gemma, ...)")
    return layers


def identity_block(layer: Any) -> Any:
    """A copy of `layer` whose output projections are zero (weights and biases)."""
    import torch

    block = copy.deepcopy(layer)
    zeroed = [name for name, module in block.named_modules() if name.split(".")[-1] in ZEROED]
    if len(zeroed) < 2:
        raise ConfigError(f"expand: the decoder block {type(layer).__name__} has no {' and '.join(ZEROED)} "
                          "projections to zero; block expansion supports LLaMA-style blocks")
    with torch.no_grad():
        for name in zeroed:
            for param in block.get_submodule(name).parameters():
                param.zero_()
    return block


def check_num_expand(n: int, num_expand: int) -> None:
    if num_expand <= 0 or n % num_expand:
        raise ConfigError(f"expand: --num_expand must divide the model's {n} layers (e.g. "
                          f"{', '.join(str(d) for d in range(1, n + 1) if n % d == 0)}), got {num_expand}")


def expand_model(model: Any, num_expand: int) -> Any:
    """`model` with `num_expand` identity blocks inserted (in place; returned for convenience)."""
    import torch

    layers = decoder_layers(model)
    n = len(layers)
    check_num_expand(n, num_expand)
    split = n // num_expand
    blocks, kinds = [], []
    types = list(getattr(model.config, "layer_types", None) or [])
    for i, layer in enumerate(layers):
        blocks.append(layer)
        kinds.append(types[i] if types else None)
        if (i + 1) % split == 0:
            blocks.append(identity_block(layer))
            kinds.append(types[i] if types else None)
    for index, block in enumerate(blocks):  # the KV cache is indexed by each attention's layer_idx
        attention = getattr(block, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = index
    model.model.layers = torch.nn.ModuleList(blocks)
    model.config.num_hidden_layers = len(blocks)
    if types:
        model.config.layer_types = kinds
    return model


def expand(model_name_or_path: str, output_dir: str, num_expand: int) -> Path:
    """Load, expand and save the model and its tokenizer to `output_dir`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tuneforge.model.load import resolve_model_path

    out = Path(output_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"expand: output_dir {out} is not empty; choose a new folder")
    path = resolve_model_path(model_name_or_path)
    check_num_expand(AutoConfig.from_pretrained(path).num_hidden_layers, num_expand)  # before the weights load
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    expand_model(model, num_expand)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(path).save_pretrained(str(out))
    return out
