"""Continued pre-training: every token of the cutoff_len blocks trains (data/encode/pretrain.py)."""

from __future__ import annotations

from tuneforge.stages import StageDef, sft

# Blocks carry labels equal to input_ids, so the supervised loop trains pre-training data as is.
STAGE = StageDef("pt", sft.run)
