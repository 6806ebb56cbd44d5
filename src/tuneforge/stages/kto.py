"""KTO: trl's KTOTrainer on our pre-tokenized prompt_ids / completion_ids / label (data/encode/preference.py).

What is written here, and why (trl 1.16 does everything else: loss, KL term, reference pass, metrics):
- trl's dataset preparation always starts from text (`prompt`/`completion`) and re-tokenizes it, adding
  the tokenizer's eos to plain-text completions. Our rows are already tokenized by our template, and
  every completion already ends with the template's stop token, so `_prepare_dataset` keeps them as
  they are and only adds what trl's loss needs: the mismatched completions for the KL estimate.
- trl estimates the KL term from each prompt paired with a mismatched completion (`KL_completion_ids`).
  The pairs are made across the whole dataset, each row taking the previous row's answer, so any batch
  size works, 1 included (LLaMA-Factory's published KTO example uses 1 with gradient accumulation), and
  every rank of a multi-process run holds whole pairs. Datasets often list a prompt's good and bad answer
  side by side (kto_demo does), which would pair a prompt with its own other answer; the rows are
  shuffled once (seeded) first.
- `pref_ftx` (LLaMA-Factory's SFT term on desirable answers) is not in trl's KTO loss; it is added from
  the log-probabilities trl's own policy forward already computed, so it costs no extra pass.
- The reference is the base model with the LoRA adapter disabled (see trl_shared).
"""

from __future__ import annotations

from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.log import note
from tuneforge.stages import StageContext, StageDef, StageResult
from tuneforge.stages.run import run_trainer
from tuneforge.stages.trl_hooks import require_hooks
from tuneforge.stages.trl_shared import reference_model, trl_config, use_disabled_adapter_as_reference

PLOT_KEYS = ("loss", "eval_loss", "rewards/margins", "kl")


def _trainer_class() -> Any:
    from trl import KTOTrainer

    class TuneforgeKTOTrainer(KTOTrainer):
        def __init__(self, *args: Any, ftx: float = 0.0, **kwargs: Any):
            self.ftx = ftx
            train_args = kwargs["args"]
            batch = train_args.per_device_train_batch_size
            # trl refuses one-row batches: its KL pairs are made within a batch, where one row could only pair
            # with itself. Ours are made across the dataset (with_kl_pairs), so trl is built as for two rows.
            train_args.per_device_train_batch_size = max(batch, 2)
            try:
                super().__init__(*args, **kwargs)
            finally:
                train_args.per_device_train_batch_size = batch
            self._train_batch_size = train_args.train_batch_size  # what Trainer's dataloader reads, from the real size
            use_disabled_adapter_as_reference(self.model)

        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            if "prompt_ids" not in dataset.column_names:  # text rows: trl's own preparation
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if dataset_name == "train":
                dataset = dataset.shuffle(seed=args.seed).flatten_indices()
            return with_kl_pairs(dataset) if self.calculate_KL else dataset

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if not self.ftx:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            policy_outputs: list[Any] = []

            def keep_policy_pass(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
                # the first forward on the batch's own input_ids is the policy pass (the KL pass uses
                # KL_input_ids; the reference pass comes after it)
                if kwargs.get("input_ids") is inputs["input_ids"] and not policy_outputs:
                    policy_outputs.append(output)

            handle = model.register_forward_hook(keep_policy_pass, with_kwargs=True)
            try:
                result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                handle.remove()
            loss, outputs = result if return_outputs else (result, None)
            desirable = inputs["label"].bool()
            if policy_outputs and desirable.any():
                mask = inputs["completion_mask"][:, 1:].to(policy_outputs[0].log_probs.dtype)
                log_probs = policy_outputs[0].log_probs[:, -mask.shape[1]:]
                nll = -(log_probs * mask).sum(-1) / mask.sum(-1).clamp(min=1)
                sft = nll[desirable.to(nll.device)].mean()
                loss = loss + self.ftx * sft
                mode = "train" if self.model.training else "eval"
                self._metrics[mode]["sft_loss"].append(sft.detach().item())
            return (loss, outputs) if return_outputs else loss

    return TuneforgeKTOTrainer


def with_kl_pairs(dataset: Any) -> Any:
    """(x_1, y_1) ... (x_n, y_n) -> KL pairs (x_1, y_n), (x_2, y_1), ..., (x_n, y_(n-1)) over the whole dataset."""
    answers = dataset["completion_ids"]
    return dataset.add_column("KL_completion_ids", answers[-1:] + answers[:-1])


def check(cfg: RunConfig) -> None:
    """Mistakes found without loading any weights (run by `run` first; the CLI may call it earlier), and the
    trl hooks TuneforgeKTOTrainer relies on."""
    from trl import KTOTrainer

    require_hooks(KTOTrainer, "_prepare_dataset", "_metrics", "calculate_KL", "_train_batch_size")


def run(ctx: StageContext) -> StageResult:
    from trl import KTOConfig

    check(ctx.cfg)
    pref = ctx.cfg.pref
    labels = ctx.data.train["label"]
    desirable, undesirable = sum(labels), len(labels) - sum(labels)
    balance = pref.kto_chosen_weight * desirable / max(pref.kto_rejected_weight * undesirable, 1)
    if undesirable and desirable and not 1 <= balance <= 4 / 3:  # the KTO paper's advice (its eq. 8)
        note(f"kto: {desirable} desirable vs {undesirable} undesirable samples; the KTO paper advises "
             "kto_chosen_weight x desirable / (kto_rejected_weight x undesirable) between 1 and 4/3, here "
             f"{balance:.2f}")
    args = trl_config(
        KTOConfig, ctx.args, beta=pref.pref_beta, desirable_weight=pref.kto_chosen_weight,
        undesirable_weight=pref.kto_rejected_weight, max_length=None,  # rows are already cut to cutoff_len
        train_sampling_strategy="sequential",  # the rows are shuffled once already (see _prepare_dataset)
    )
    ref = reference_model(ctx.cfg, ctx.precision, ctx.attention)
    result = run_trainer(args, ctx.model, ctx.tokenizer, ctx.data, None, ctx.resume,
                         trainer_class=_trainer_class(), ref_model=ref, ftx=pref.pref_ftx)
    result.plot_keys = PLOT_KEYS
    return result


STAGE = StageDef("kto", run, checks=check)
