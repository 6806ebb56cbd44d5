"""Reward models: a causal LM with a one-output value head, as `stage: rm` trains and saves it.

The model is transformers' `AutoModelForSequenceClassification` with `num_labels=1` (what trl's
RewardTrainer trains): the decoder plus a linear `score` head, read at the last non-pad token.
What `stage: rm` writes to output_dir, and what `load_reward_scorer` reads back:

- `reward_model_type: lora` — a peft adapter with task_type SEQ_CLS (`adapter_config.json`,
  `adapter_model.safetensors`); the value head (`score.weight`) is saved in that same safetensors
  file next to the LoRA weights (peft's `modules_to_save`). It loads on the policy's base model
  (`model_name_or_path`); `reward_model_adapters` (e.g. the SFT adapter the rm was trained on top
  of) are merged into that base first.
- `reward_model_type: full` — a whole `...ForSequenceClassification` folder (full or freeze rm),
  with `reward_model_adapters` merged on top if given.

The scorer is inference-only (no gradients, eval mode) and uses the policy's tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import ModelConfig, PreferenceConfig
from tuneforge.data.templates import BoundTemplate
from tuneforge.model.load import Precision, hub_errors, resolve_model_path


def load_sequence_classifier(path: str, model_cfg: ModelConfig, dtype: Any, *, attn_implementation: str | None,
                             key: str = "model_name_or_path") -> Any:
    """`path` (a causal LM or a saved reward model) as a one-label sequence classifier.

    Loading a causal LM this way drops its lm_head and adds a freshly initialised `score` head;
    trl's context manager keeps transformers from warning about exactly those two keys."""
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    if model_cfg.quantization_bit is not None:
        raise ConfigError(f"quantization_bit is not supported for reward models yet (stage rm, and the reward model "
                          f"of ppo/grpo/rloo); remove quantization_bit to load '{path}' unquantized")
    kwargs: dict[str, Any] = dict(dtype=dtype, num_labels=1, trust_remote_code=model_cfg.trust_remote_code,
                                  cache_dir=model_cfg.cache_dir)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with hub_errors("reward model", path, key), suppress_seqcls_warning():
        if model_cfg.rope_scaling:  # as for the causal LM (model/rope.py): the scaled RoPE travels in the config
            from transformers import AutoConfig

            from tuneforge.model.rope import scale_rope

            kwargs["config"] = AutoConfig.from_pretrained(path, num_labels=kwargs.pop("num_labels"),
                                                          trust_remote_code=model_cfg.trust_remote_code,
                                                          cache_dir=model_cfg.cache_dir)
            scale_rope(kwargs["config"], model_cfg.rope_scaling, model_cfg.model_max_length)
        return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)


def merge_adapters(model: Any, paths: list[str], what: str) -> Any:
    """Merge LoRA adapters into a sequence classifier. An SFT (causal LM) adapter applies to the decoder only:
    peft's causal-LM wrapper would expect generation methods the classifier lacks, so it loads as a plain one."""
    from peft import PeftConfig

    from tuneforge.model.adapters import open_adapter

    for path in paths:
        if not (Path(path).expanduser() / "adapter_config.json").is_file():
            raise ConfigError(f"{what} '{path}' has no adapter_config.json (is it a LoRA adapter folder?)")
        config = PeftConfig.from_pretrained(path)
        if config.task_type == "CAUSAL_LM":
            config.task_type = None
        model = open_adapter(model, path, config=config).merge_and_unload()
    return model


def _check_layout(path: Path, kind: str) -> None:
    """Say precisely what is wrong when reward_model points at the wrong kind of folder."""
    name = str(path)
    if not path.is_dir():
        raise ConfigError(f"reward_model '{name}' does not exist (train one with stage: rm; give its output_dir)")
    adapter = path / "adapter_config.json"
    if kind == "lora":
        if not adapter.is_file():
            hint = " (it holds a full model: set reward_model_type: full)" if (path / "config.json").is_file() else ""
            raise ConfigError(f"reward_model '{name}' has no adapter_config.json; reward_model_type lora needs the "
                              f"output_dir of a LoRA stage: rm run{hint}")
        task = json.loads(adapter.read_text(encoding="utf-8")).get("task_type")
        if task != "SEQ_CLS":
            raise ConfigError(f"reward_model '{name}' is a {task or 'plain'} adapter, not a reward model "
                              "(stage: rm saves task_type SEQ_CLS); train one with stage: rm")
        return
    config = path / "config.json"
    if not config.is_file():
        hint = " (it holds a LoRA adapter: set reward_model_type: lora)" if adapter.is_file() else ""
        raise ConfigError(f"reward_model '{name}' has no config.json; reward_model_type full needs a saved "
                          f"reward model folder{hint}")
    archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ConfigError(f"reward_model '{name}' is a {archs[0]}, not a reward model (no value head); "
                          "train one with stage: rm")


def inference_dtype(precision: Precision) -> Any:
    import torch

    return torch.bfloat16 if precision.bf16 else torch.float16 if precision.fp16 else torch.float32


def check_reward_model(pref: PreferenceConfig, stage: str) -> Path:
    """reward_model is set and its folder fits reward_model_type; cheap, so stages call it before loading weights."""
    if not pref.reward_model:
        raise ConfigError(f"stage {stage} needs reward_model: the output_dir of a stage: rm run")
    return reward_model_path(pref.reward_model, pref.reward_model_type)


def reward_model_path(name: str, kind: str) -> Path:
    """The reward model's folder, checked against reward_model_type (`kind`)."""
    path = Path(name).expanduser()
    _check_layout(path, kind)
    return path


def load_reward_model(pref: PreferenceConfig, model_cfg: ModelConfig, precision: Precision,
                      attention: str | None) -> Any:
    """The reward model named by `pref`, in eval mode on precision.device, without gradients
    (a LoRA reward model loads on the policy's base, `model_cfg`)."""
    path = reward_model_path(pref.reward_model or "", pref.reward_model_type)
    dtype = inference_dtype(precision)
    if pref.reward_model_type == "lora":
        from tuneforge.model.adapters import open_adapter

        base = load_sequence_classifier(resolve_model_path(model_cfg.model_name_or_path), model_cfg, dtype,
                                        attn_implementation=attention)
        base = merge_adapters(base, pref.reward_model_adapters or [], "reward_model_adapters")
        model = open_adapter(base, str(path)).merge_and_unload()
    else:
        model = load_sequence_classifier(str(path), model_cfg, dtype, attn_implementation=attention,
                                         key="reward_model")
        model = merge_adapters(model, pref.reward_model_adapters or [], "reward_model_adapters")
    model.requires_grad_(False)
    return model.to(precision.device).eval()


class RewardScorer:
    """Scores (prompt, completion) pairs with a reward model; one float per pair, higher is better.

    `__call__` takes rendered prompt text (up to and including the assistant header, as in the
    `prompt` column of the ppo/grpo/rloo datasets) and the generated answer text without the
    stop token; the template's stop token is appended, as the rm saw every answer end with it.
    `score_ids` takes token batches (left or right padded) and returns a float32 tensor."""

    def __init__(self, model: Any, tokenizer: Any, stop_text: str, batch_size: int = 16):
        self.model, self.tokenizer, self.stop_text, self.batch_size = model, tokenizer, stop_text, batch_size
        # The head is read at the last token that is not pad_token_id; rm training (trl) set that id from the
        # tokenizer, so the same tokenizer's pad decides here too (a base model's config may say otherwise).
        self.pad_id = tokenizer.pad_token_id
        model.config.get_text_config().pad_token_id = self.pad_id

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def score_ids(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        # Positions count attended tokens only, so a left-padded sequence gets the same positions
        # as it had in rm training (right padding). The head reads the last non-pad token.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = []
        with torch.no_grad():
            for start in range(0, input_ids.shape[0], self.batch_size):
                part = slice(start, start + self.batch_size)
                logits = self.model(input_ids=input_ids[part].to(self.device),
                                    attention_mask=attention_mask[part].to(self.device),
                                    position_ids=position_ids[part].to(self.device), use_cache=False).logits
                out.append(logits[:, 0].float())
        return torch.cat(out).to(input_ids.device)

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        import torch

        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [p + c + ("" if c.endswith(self.stop_text) else self.stop_text) for p, c in zip(prompts, completions)]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):  # left padding: every sequence ends at the last column
            input_ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
        return self.score_ids(input_ids, mask).tolist()


def load_reward_scorer(pref: PreferenceConfig, model_cfg: ModelConfig, template: BoundTemplate,
                       precision: Precision, attention: str | None) -> RewardScorer:
    """The reward model of pref.reward_model, scoring text of the policy's tokenizer and template."""
    stops = template.stop_strings()
    model = load_reward_model(pref, model_cfg, precision, attention)
    tokenizer = template.tokenizer
    return RewardScorer(model, tokenizer, stops[0] if stops else (tokenizer.eos_token or ""))
