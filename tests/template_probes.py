"""Conversations both template tests (data/test_templates.py) and export tests render: the package's
one probe set (tuneforge.data.templates.probes)."""

from __future__ import annotations

from tuneforge.data.templates.probes import CHAT_PROBES as PROBES
from tuneforge.data.templates.probes import SYSTEM, chat

__all__ = ["PROBES", "SYSTEM", "chat"]
