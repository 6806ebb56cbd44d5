"""Optional 4/8-bit export with bitsandbytes (`export_quantization_bit: 4 | 8`).

The merged model is saved first (full precision, in export_dir), then loaded again through
transformers' BitsAndBytesConfig on a CUDA GPU and saved over itself. The result loads in plain
transformers (with bitsandbytes installed) because its config.json carries the
quantization_config. bitsandbytes needs a CUDA GPU for this, so the check happens before any
weights load. Not tested in CI (no GPU there); GPTQ/AWQ/GGUF exports are not offered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.export.files import readable_weights, remove_weights
from tuneforge.log import note

BITS = (4, 8)


def check_quantization(bit: int) -> None:
    """Fail fast: a supported bit width, bitsandbytes installed, a CUDA GPU present."""
    if bit not in BITS:
        raise ConfigError(f"export_quantization_bit {bit} is not supported (4 or 8, with bitsandbytes)")
    try:
        import bitsandbytes  # noqa: F401  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(f"export_quantization_bit: {bit} needs bitsandbytes: pip install 'tuneforge[bnb]' "
                          "(on a CUDA machine); or remove export_quantization_bit to export unquantized") from None
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"export_quantization_bit: {bit} quantizes with bitsandbytes, which needs a CUDA GPU; "
                          "none is visible here")


def quantize_export(export_dir: Path, bit: int, dtype: Any, max_shard_size: int) -> None:
    """Reload the merged model from export_dir in `bit` bits and save it over the full-precision files."""
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if bit == 4:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                    bnb_4bit_use_double_quant=True)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(export_dir, quantization_config=config, device_map={"": 0},
                                                 dtype=dtype)
    # save next to the export, then swap the weights in, so a failure leaves the unquantized export
    with tempfile.TemporaryDirectory(dir=export_dir.parent, prefix=f".{export_dir.name}-q") as tmp:
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        remove_weights(export_dir)
        for path in Path(tmp).iterdir():
            if path.name != "generation_config.json":  # keep the one with the template's stop tokens
                shutil.move(str(path), export_dir / path.name)
    readable_weights(export_dir)
    note(f"quantized to {bit} bits with bitsandbytes ({'nf4' if bit == 4 else 'int8'}); loading it needs bitsandbytes")
