"""LLaMA-Factory's on/off environment variables (FORCE_TORCHRUN, USE_RAY, USE_MODELSCOPE_HUB): one rule for
what counts as on, shared by the model loader and the launcher."""

from __future__ import annotations

from collections.abc import Mapping

ON = ("1", "true", "yes", "y", "on")


def switched_on(env: Mapping[str, str], name: str) -> bool:
    """Whether the variable `name` in `env` is set to an "on" value (case and spaces ignored)."""
    return env.get(name, "").strip().lower() in ON
