"""`tuneforge env`: what is installed and what hardware is visible (for bug reports)."""

from __future__ import annotations

import platform
from importlib import metadata


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


CORE = ["torch", "transformers", "peft", "trl", "datasets", "accelerate", "safetensors", "tokenizers", "pydantic"]
EXTRAS = {"metrics": ["jieba", "nltk", "rouge-chinese"], "webui": ["gradio"], "api": ["fastapi", "uvicorn"],
          "liger": ["liger-kernel"], "bnb": ["bitsandbytes"], "deepspeed": ["deepspeed"], "ray": ["ray"],
          "vllm": ["vllm"],
          "flash-attn": ["flash-attn"], "extras": ["galore-torch", "apollo-torch", "badam", "adam-mini"]}


def show_env() -> None:
    from tuneforge import __version__

    print(f"tuneforge       {__version__}")
    print(f"python          {platform.python_version()} ({platform.platform()})")
    for dist in CORE:
        print(f"{dist:<15} {_version(dist) or 'missing'}")
    import torch

    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            print(f"device {i}        {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                  f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        print("device          Apple MPS")
    else:
        print(f"device          CPU only ({torch.get_num_threads()} threads)")
    for extra, dists in EXTRAS.items():
        found = [f"{d} {_version(d)}" for d in dists if _version(d)]
        print(f"extra {extra:<9} {', '.join(found) if found else 'not installed'}")
