"""Where a model named by a hub id comes from: the Hugging Face hub (or the mirror HF_ENDPOINT names; the
hub library reads it), or ModelScope with USE_MODELSCOPE_HUB=1 as in LLaMA-Factory (modelscope's own
snapshot_download; one line naming the package when it is missing)."""

from __future__ import annotations

import functools
import os

from tuneforge.config.errors import ConfigError
from tuneforge.config.switches import switched_on


def hub_endpoint() -> str:
    """The Hugging Face endpoint downloads go to (HF_ENDPOINT, else the hub's own address)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def use_modelscope() -> bool:
    return switched_on(os.environ, "USE_MODELSCOPE_HUB")


@functools.lru_cache(maxsize=16)
def modelscope_folder(name: str, revision: str = "master", cache_dir: str | None = None) -> str:
    """`name` downloaded from ModelScope (once per process): the local folder."""
    from tuneforge.log import note

    try:
        from modelscope import snapshot_download  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(f"model '{name}': USE_MODELSCOPE_HUB=1 needs modelscope: pip install modelscope (or unset "
                          "USE_MODELSCOPE_HUB to use the Hugging Face hub; HF_ENDPOINT names a mirror)") from None
    try:
        folder = snapshot_download(name, revision=revision, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - modelscope raises many kinds; the first line says which
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"cannot download model '{name}' from ModelScope (USE_MODELSCOPE_HUB=1): {first}") from None
    note(f"model '{name}' from ModelScope: {folder}")
    return str(folder)
