"""Training stages: one module per stage (sft, pt, rm, dpo, kto, ppo, grpo, rloo).

Each module ends with `STAGE`, an object satisfying `Stage`; `stages/registry.py` lists them all
(the only place a stage name is looked up) and imports a stage's module when it is asked for. `tuneforge train` (cli/train.py) calls, in order:
`check(cfg)` before anything loads, `build_model(...)` once data is ready, then `run(ctx)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from tuneforge.config.schema import RunConfig
from tuneforge.data.dataset import EncodedData
from tuneforge.data.templates import BoundTemplate
from tuneforge.model.kernels import FastPath
from tuneforge.model.load import Precision


@dataclass
class StageContext:
    """Everything a stage needs, validated and loaded before it starts."""

    cfg: RunConfig
    args: Any  # transformers.TrainingArguments, already checked
    model: Any
    tokenizer: Any
    template: BoundTemplate
    data: EncodedData
    precision: Precision
    fast: FastPath  # batching / attention / loss of this run (model/kernels.py)
    resume: str | None = None

    @property
    def attention(self) -> str | None:
        """attn_implementation for the run's other models (reference, reward): the run's one choice."""
        return self.fast.attn_implementation


@dataclass
class StageResult:
    metrics: dict[str, Any]
    eval_metrics: dict[str, Any] | None
    log_history: list[dict[str, Any]]
    plot_keys: tuple[str, ...] = ("loss", "eval_loss")  # which logged values get a training_<key>.png


class Stage(Protocol):
    """What `tuneforge train` needs of a stage."""

    name: str

    def check(self, cfg: RunConfig) -> None:
        """Refuse settings that contradict each other; reads no weights and no data."""

    def build_model(self, cfg: RunConfig, precision: Precision, attention: str | None) -> Any:
        """The model to train, the fine-tuning method applied."""

    def run(self, ctx: StageContext) -> StageResult:
        """Train, save the model and the standard outputs into ctx.args.output_dir."""


def causal_lm(cfg: RunConfig, precision: Precision, attention: str | None) -> Any:
    """The usual model: the causal LM with LoRA / freeze / full applied."""
    from tuneforge.model.adapters import apply_method
    from tuneforge.model.load import load_model

    return apply_method(load_model(cfg.model, precision, attn_implementation=attention), cfg.method, cfg.model)


@dataclass(frozen=True)
class StageDef:
    """A `Stage` made of plain functions (each stage module builds one as `STAGE`)."""

    name: str
    train: Callable[[StageContext], StageResult]
    checks: Callable[[RunConfig], object] | None = None
    model: Callable[[RunConfig, Precision, str | None], Any] = causal_lm

    def check(self, cfg: RunConfig) -> None:
        from tuneforge.train.optimizers import check_ready

        check_ready(cfg.method, cfg.train.max_grad_norm)  # the method extras' packages (GaLore, BAdam, ...)
        if self.checks is not None:
            self.checks(cfg)

    def build_model(self, cfg: RunConfig, precision: Precision, attention: str | None) -> Any:
        from tuneforge.train.optimizers import attach_method

        # the Trainer's create_optimizer builds the extras' optimizers (LoRA+, BAdam, Muon) from these settings
        return attach_method(self.model(cfg, precision, attention), cfg.method)

    def run(self, ctx: StageContext) -> StageResult:
        return self.train(ctx)
