"""`rope_scaling: linear | dynamic | yarn | llama3` as LLaMA-Factory reads it: the factor is
ceil(model_max_length / the model's max_position_embeddings) (model_max_length is cutoff_len when training,
config/load.py), 2.0 when no length is given; nothing changes when the length already fits.

The scaling itself is transformers' (its `rope_parameters` and the rotary embedding built from them); here is
only the translation of LLaMA-Factory's one word into those parameters.
"""

from __future__ import annotations

import math
from typing import Any

# LLaMA 3.1's published frequency bands (transformers' llama3 rope needs them stated)
LLAMA3_BANDS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0}


def scale_rope(config: Any, kind: str | None, length: int | None) -> str | None:
    """Set `config`'s RoPE parameters for `kind` and a context of `length` tokens (in place). Returns the line
    that says what changed (or why nothing did); None when rope_scaling is not set."""
    if not kind:
        return None
    current = getattr(config, "max_position_embeddings", None)
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, dict) or "rope_theta" not in params:
        return f"rope_scaling: {kind} is ignored: this model's config has no RoPE parameters to scale"
    if length is not None:
        if not current or length <= current:
            return (f"rope_scaling: {kind} is off: model_max_length/cutoff_len {length} fits the model's "
                    f"{current} positions")
        factor = float(math.ceil(length / current))
    else:
        factor = 2.0
    scaled = {**params, "rope_type": kind, "factor": factor}
    if kind in ("dynamic", "yarn", "llama3") and current:
        scaled["original_max_position_embeddings"] = current
    if kind == "llama3":
        scaled.update(LLAMA3_BANDS)
    config.rope_parameters = scaled
    if length is not None:
        config.max_position_embeddings = length
    return (f"rope_scaling: {kind}, factor {factor:g}"
            + (f" (positions {current} -> {length})" if length is not None else " (no model_max_length given)"))
