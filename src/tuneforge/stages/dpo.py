"""Preference optimisation on chosen/rejected pairs: `stage: dpo` with `pref_loss` sigmoid | hinge | ipo | orpo | simpo.

sigmoid, hinge and ipo run trl's DPOTrainer against a frozen reference policy:
- LoRA: the reference is the base with the adapter disabled, so no second copy of anything is held;
- an explicit `ref_model` (with `ref_model_adapters` merged into it) otherwise, or, for full and freeze
  fine-tuning without one, a frozen copy of the base, loaded by our loader in the compute dtype.
`pref_beta` is DPO's beta, `pref_ftx` weights trl's "sft" loss term (the chosen answers' NLL), and
`dpo_label_smoothing` gives the conservative (cDPO) sigmoid loss.

orpo and simpo need no reference: they score an answer by its mean per-token log-probability under the policy.
trl keeps them in trl.experimental (ORPOTrainer; CPOTrainer with loss_type "simpo"), but those trainers always
re-tokenize from text (prompt/chosen/rejected strings, adding BOS/EOS themselves), so they cannot take our
pre-tokenized pairs as they are. DPOTrainer can't host them either: without a reference model it loads a second
copy of the policy for full fine-tuning. So `ReferenceFreeTrainer` below is a small Trainer that reuses trl's
preference collator and scores answers with tuneforge's chunked head (model/fused_loss.py: no full logits), the
one fused head tuneforge's own code uses (trl's DPO/KTO/GRPO trainers keep their own inside). Measured with
bench/fused_heads.py (CPU, 0.5B width, 2,048 tokens half prompt): ours 323 tok/s and +514 MiB, trl's
add_fused_lm_head 104 tok/s and +2,273 MiB (off Triton it scores prompt positions too and recomputes the
logits in the backward), full logits 113 tok/s and +3,636 MiB; gradients equal within 1e-6.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import is_peft_model
from transformers import Trainer
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import disable_dropout_in_model

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.model.fused_loss import attach_chunked_loss
from tuneforge.stages import StageContext, StageDef, StageResult
from tuneforge.stages.run import run_trainer
from tuneforge.stages.trl_hooks import require_hooks
from tuneforge.stages.trl_shared import reference_model, trl_config, use_disabled_adapter_as_reference
from tuneforge.train.arguments import checkpointing_on

REFERENCE_FREE = ("orpo", "simpo")
PLOT_KEYS = ("loss", "eval_loss", "rewards/accuracies")


def check(cfg: RunConfig) -> None:
    """Settings that contradict each other, refused before any weights load; and the trl hook we override."""
    pref = cfg.pref
    if pref.pref_loss not in REFERENCE_FREE:
        require_hooks(DPOTrainer, "_prepare_dataset")
    if pref.pref_loss in REFERENCE_FREE and (pref.ref_model or pref.ref_model_adapters):
        raise ConfigError(f"pref_loss {pref.pref_loss} uses no reference model; remove ref_model/ref_model_adapters "
                          "(or use pref_loss sigmoid, hinge or ipo)")
    if pref.ref_model_adapters and not pref.ref_model:
        raise ConfigError("ref_model_adapters needs ref_model (the model those adapters belong to)")
    if pref.dpo_label_smoothing and pref.pref_loss != "sigmoid":
        raise ConfigError(f"dpo_label_smoothing applies to pref_loss sigmoid (conservative DPO) only, not "
                          f"{pref.pref_loss}; remove it or set it to 0")
    if pref.dpo_label_smoothing >= 0.5:
        raise ConfigError(f"dpo_label_smoothing {pref.dpo_label_smoothing} must be below 0.5 (at 0.5 chosen and "
                          "rejected count equally and nothing is learned)")


def dpo_loss_terms(pref: Any) -> tuple[list[str], list[float]]:
    """trl loss types and weights for sigmoid/hinge/ipo, plus the SFT term when pref_ftx > 0.

    Conservative DPO, (1-e)*a + e*b with a = -logsigmoid(beta*d) and b = -logsigmoid(-beta*d), is not a trl 1.16
    loss type (its "sigmoid" ignores label_smoothing). trl's "robust" loss is ((1-e)*a - e*b) / (1-2e), so
    2(1-e)*sigmoid - (1-2e)*robust is exactly cDPO, and the trainer stays unmodified."""
    eps = pref.dpo_label_smoothing
    if pref.pref_loss == "sigmoid" and eps > 0:
        types, weights = ["sigmoid", "robust"], [2 * (1 - eps), -(1 - 2 * eps)]
    else:
        types, weights = [pref.pref_loss], [1.0]
    if pref.pref_ftx > 0:
        types.append("sft")
        weights.append(pref.pref_ftx)
    return types, weights


class PretokenizedDPOTrainer(DPOTrainer):
    """trl's DPOTrainer on our pre-tokenized pairs, with the LoRA reference being the adapter switched off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Given a PeftModel and no ref_model, trl 1.16 copies the adapter into a second one named "ref" to score
        # the reference; dropping it makes trl fall back to the base with the adapter disabled (no copy held).
        use_disabled_adapter_as_reference(self.accelerator.unwrap_model(self.model))

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        # Our pairs arrive as prompt_ids/chosen_ids/rejected_ids rendered by the template, each answer already
        # ending in its stop token; trl's preparation would extract prompts, append EOS and re-tokenize text.
        return dataset


def _log1mexp(x: Any) -> Any:
    """log(1 - exp(x)) for x < 0, stable near 0 and for very negative x."""
    x = x.clamp(max=-1e-6)  # a certain answer (mean log-prob 0) would make log(0)
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def reference_free_losses(kind: str, chosen: Any, rejected: Any, beta: float, gamma: float,
                          ftx: float) -> tuple[Any, dict[str, Any]]:
    """Per-pair losses from the policy's mean per-token log-probs of the chosen and rejected answers.

    orpo:  -chosen + beta * -logsigmoid(log odds(chosen) - log odds(rejected)), odds(p) = p / (1 - p)
    simpo: -logsigmoid(beta * (chosen - rejected) - gamma)
    pref_ftx adds ftx * -chosen (the chosen answers' NLL per token) to either."""
    nll = -chosen
    extra: dict[str, Any] = {"nll_loss": nll}
    if kind == "orpo":
        log_odds = (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))
        losses = nll - beta * F.logsigmoid(log_odds)
        extra["log_odds_ratio"] = log_odds
    elif kind == "simpo":
        losses = -F.logsigmoid(beta * (chosen - rejected) - gamma)
    else:
        raise ValueError(f"not a reference-free loss: {kind}")
    if ftx > 0:
        losses = losses + ftx * nll
    return losses, extra


class ReferenceFreeTrainer(Trainer):
    """ORPO and SimPO on pre-tokenized pairs: one forward of the policy over chosen and rejected, no reference."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean; Trainer divides by accumulation

    def __init__(self, *args: Any, loss: str, beta: float, gamma: float, ftx: float, **kwargs: Any) -> None:
        model, tokenizer = kwargs["model"], kwargs["processing_class"]
        if kwargs.get("data_collator") is None:
            kwargs["data_collator"] = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
        disable_dropout_in_model(model)  # as trl's preference trainers do: both answers see the same network
        attach_chunked_loss(model)  # answers are scored inside the model's forward: DDP and autocast wrap it
        super().__init__(*args, **kwargs)
        if is_peft_model(model) and checkpointing_on(self.args):
            model.enable_input_require_grads()
        self.loss_kind, self.beta, self.gamma, self.ftx = loss, beta, gamma, ftx
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        scored = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       answer_mask=inputs["completion_mask"])
        mean_logps = scored["logprob_sums"] / scored["answer_tokens"].clamp(min=1)
        chosen, rejected = mean_logps.chunk(2, dim=0)  # the collator stacks [chosen..., rejected...]
        losses, extra = reference_free_losses(self.loss_kind, chosen, rejected, self.beta, self.gamma, self.ftx)
        self._record(chosen.detach(), rejected.detach(), {k: v.detach() for k, v in extra.items()})
        loss = losses.mean()
        return (loss, {"mean_logps": mean_logps}) if return_outputs else loss

    def _record(self, chosen: Any, rejected: Any, extra: dict[str, Any]) -> None:
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        chosen_rewards, rejected_rewards = self.beta * chosen, self.beta * rejected
        values = {"rewards/chosen": chosen_rewards, "rewards/rejected": rejected_rewards,
                  "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
                  "rewards/margins": chosen_rewards - rejected_rewards,
                  "logps/chosen": chosen, "logps/rejected": rejected, **extra}
        for key, value in values.items():
            self._metrics[mode][key].append(gather(value).mean().item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v}
        prefix = "eval_" if mode == "eval" else ""
        logs.update({prefix + k: v for k, v in metrics.items()})
        super().log(logs, start_time)
        self._metrics[mode].clear()

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[Any, None, None]:
        # the batch has no `labels`, so Trainer's default would skip the loss
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None


def run(ctx: StageContext) -> StageResult:
    pref = ctx.cfg.pref
    check(ctx.cfg)
    if pref.pref_loss in REFERENCE_FREE:
        result = run_trainer(ctx.args, ctx.model, ctx.tokenizer, ctx.data, None, ctx.resume,
                             trainer_class=ReferenceFreeTrainer, loss=pref.pref_loss,
                             beta=pref.pref_beta, gamma=pref.simpo_gamma, ftx=pref.pref_ftx)
    else:
        types, weights = dpo_loss_terms(pref)
        # max_length=None: pairs are already cut to cutoff_len, both answers alike (data/encode/preference.py)
        args = trl_config(DPOConfig, ctx.args, beta=pref.pref_beta, loss_type=types, loss_weights=weights,
                          label_smoothing=pref.dpo_label_smoothing, max_length=None)
        result = run_trainer(args, ctx.model, ctx.tokenizer, ctx.data, None, ctx.resume,
                             trainer_class=PretokenizedDPOTrainer,
                             ref_model=reference_model(ctx.cfg, ctx.precision, ctx.attention))
    result.plot_keys = PLOT_KEYS
    return result


STAGE = StageDef("dpo", run, checks=check)
