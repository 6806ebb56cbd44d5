"""Reward modelling: a value head on the causal LM, trained on preference pairs with trl's RewardTrainer.

The model is the causal LM loaded as `AutoModelForSequenceClassification(num_labels=1)` (the
decoder plus a linear `score` head read at the last token), so trl trains it as is: pairwise loss
-log sigmoid(r_chosen - r_rejected), logging accuracy and margin (eval accuracy lands in
all_results.json). What is ours: loading that model with the fine-tuning method applied
(`build_model`: the LoRA adapter must be a SEQ_CLS adapter whose saved file also holds the head),
and joining our pre-tokenized prompt and answers into the full sequences trl scores.
See model/reward.py for the saved layout and how stage ppo loads it back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.model.load import Precision, resolve_model_path
from tuneforge.stages import StageContext, StageDef, StageResult
from tuneforge.stages.run import run_trainer
from tuneforge.stages.trl_shared import trl_config

HEAD = "score"  # the value head's module name in transformers' ...ForSequenceClassification


def _is_reward_adapter(path: str) -> bool:
    config = Path(path).expanduser() / "adapter_config.json"
    return config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("task_type") == "SEQ_CLS"


def _apply_lora(model: Any, cfg: RunConfig) -> Any:
    """LoRA on the decoder's linear layers; the head trains in full (modules_to_save) and is saved with the adapter.
    adapters.apply_lora builds a CAUSAL_LM adapter, which would neither train nor save the head, hence this one."""
    from peft import get_peft_model

    from tuneforge.model.adapters import linear_module_names, load_adapters, lora_config
    from tuneforge.model.reward import merge_adapters

    method = cfg.method
    adapters = cfg.model.adapter_name_or_path or []
    if adapters and _is_reward_adapter(adapters[-1]) and not method.create_new_adapter:
        return load_adapters(model, adapters, trainable_last=True)  # continue training a reward adapter
    model = merge_adapters(model, adapters, "adapter_name_or_path")  # e.g. the SFT adapter this rm starts from
    available = [name for name in linear_module_names(model) if name != HEAD]
    return get_peft_model(model, lora_config(method, available, task_type="SEQ_CLS", extra_modules=(HEAD,)))


def build_model(cfg: RunConfig, precision: Precision, attention: str | None) -> Any:
    """The causal LM with a fresh one-output head, the fine-tuning method applied; the head always trains."""
    import torch

    from tuneforge.model.adapters import apply_freeze, apply_method
    from tuneforge.model.reward import load_sequence_classifier

    model = load_sequence_classifier(resolve_model_path(cfg.model.model_name_or_path), cfg.model,
                                     precision.load_dtype, attn_implementation=attention)
    model.config.use_cache = False
    method = cfg.method
    if method.finetuning_type == "lora":
        model.requires_grad_(False)
        model = _apply_lora(model, cfg)
    elif method.finetuning_type == "freeze":
        model = apply_freeze(model, method, also=(HEAD,))
    else:
        model = apply_method(model, method, cfg.model)
    for param in model.parameters():  # the head (and adapters) keep fp32 master weights under bf16/fp16
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return model


def _join_pairs(dataset: Any) -> Any:
    """prompt_ids + chosen_ids / rejected_ids -> whole sequences, the form trl's preference collator pads."""
    if dataset is None:
        return None

    def join(batch: dict[str, list]) -> dict[str, list]:
        return {"chosen_ids": [p + c for p, c in zip(batch["prompt_ids"], batch["chosen_ids"])],
                "rejected_ids": [p + r for p, r in zip(batch["prompt_ids"], batch["rejected_ids"])]}

    drop = [c for c in dataset.column_names if c not in ("chosen_ids", "rejected_ids")]
    return dataset.map(join, batched=True, remove_columns=drop)


def run(ctx: StageContext) -> StageResult:
    from trl import RewardConfig, RewardTrainer

    # max_length None: cutoff_len already truncated both answers alike (trl would drop long pairs instead).
    # disable_dropout False: keep the user's lora_dropout.
    args = trl_config(RewardConfig, ctx.args, max_length=None, disable_dropout=False,
                      pad_to_multiple_of=8 if ctx.precision.device == "cuda" else None)
    data = dataclasses.replace(ctx.data, train=_join_pairs(ctx.data.train), eval=_join_pairs(ctx.data.eval))
    result = run_trainer(args, ctx.model, ctx.tokenizer, data, None, ctx.resume, trainer_class=RewardTrainer)
    result.plot_keys = ("loss", "accuracy", "eval_loss", "eval_accuracy")
    return result


STAGE = StageDef("rm", run, model=build_model)
