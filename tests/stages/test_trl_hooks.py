"""The private trl hooks our stages rely on are still called by the trl installed.

Each override below is dead code the day trl renames the method it replaces, and nothing would
fail: trl would quietly re-tokenize our rows (a second BOS, EOS appended), keep a copied "ref"
adapter, or lose pref_ftx. So every test here spies on the REAL trainer class, builds the real
trainer on the tiny model with a handful of records, and (where the hook runs during training)
trains one step. A failure here means: read trl's changelog for the named method before raising
pyproject's trl bound.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO

BASE = {"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "report_to": "none",
        "finetuning_type": "lora", "cutoff_len": 64, "max_steps": 1, "logging_steps": 1, "save_strategy": "no",
        "learning_rate": 1e-4}


def build(tmp_path: Path, stage: str, has_eval: bool = False, **keys) -> SimpleNamespace:
    """Config, tokenizer, template, encoded data, LoRA model and TrainingArguments, as the stage gets them."""
    from tuneforge.config.load import load
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import get_template
    from tuneforge.model.adapters import apply_method
    from tuneforge.model.load import choose_precision, load_model, load_tokenizer
    from tuneforge.train.arguments import training_arguments

    cfg, _ = load(base={**BASE, "stage": stage, "output_dir": str(tmp_path / "out"), **keys})
    tokenizer = load_tokenizer(cfg.model)
    template = get_template(cfg.data.template, tokenizer)
    data = build_datasets(cfg.data, template, stage)
    precision = choose_precision(cfg.train, cfg.method.finetuning_type)
    model = apply_method(load_model(cfg.model, precision, attn_implementation=None), cfg.method, cfg.model)
    args = training_arguments(cfg, precision, has_eval=has_eval)
    train = data.train.remove_columns([c for c in data.train.column_names if c == "full_len"])
    return SimpleNamespace(cfg=cfg, tokenizer=tokenizer, template=template, train=train, model=model, args=args)


def spy_on(monkeypatch, cls: type, name: str, calls: list[tuple] | None = None) -> list[tuple]:
    """Replace cls.<name> by a wrapper recording (args, kwargs, result) of every call into `calls`."""
    calls = [] if calls is None else calls
    original = getattr(cls, name)

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(cls, name, spy)
    return calls


def dataset_names(calls: list[tuple]) -> list[str]:
    """The dataset_name argument of each recorded _prepare_dataset(dataset, processing_class, args, dataset_name)."""
    return [args[3] if len(args) > 3 else kwargs["dataset_name"] for args, kwargs, _ in calls]


@pytest.fixture
def disabled_adapter(monkeypatch) -> list:
    """Every PeftModel.disable_adapter() entered (how trl scores the reference when there is no "ref" adapter)."""
    from peft import PeftModel

    entered: list = []
    original = PeftModel.disable_adapter

    @contextlib.contextmanager
    def spy(self):
        entered.append(self)
        with original(self):
            yield

    monkeypatch.setattr(PeftModel, "disable_adapter", spy)
    return entered


def assert_reference_is_the_disabled_adapter(trainer, disabled_adapter: list) -> None:
    """After construction only our adapter exists; one training step scores the reference through disable_adapter."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert set(model.peft_config) == {"default"}, (
        f"adapters {sorted(model.peft_config)}: trl made a reference copy that use_disabled_adapter_as_reference "
        "(stages/trl_shared.py) no longer removes (renamed from 'ref'?)")
    disabled_adapter.clear()
    trainer.train()
    assert disabled_adapter, ("one training step never entered PeftModel.disable_adapter(): trl no longer scores "
                              "the LoRA reference with the adapter disabled")


# -- require_hooks ----------------------------------------------------------------------------------------------

# What the stages override or read on trl's classes (the lead wires these into the stages).
RELIED_ON = [
    ("DPOTrainer", ("_prepare_dataset",)),
    ("KTOTrainer", ("_prepare_dataset", "_metrics", "calculate_KL")),
    ("GRPOTrainer", ("_tokenize_prompts", "_tokenizer")),
    ("RLOOTrainer", ("_tokenize_prompts", "_tokenizer")),
]


@pytest.mark.parametrize("class_name, names", RELIED_ON, ids=[c for c, _ in RELIED_ON])
def test_installed_trl_has_every_hook(class_name, names):
    import trl

    from tuneforge.stages.trl_hooks import require_hooks

    require_hooks(getattr(trl, class_name), *names)


def test_a_missing_hook_is_one_clear_runtime_error():
    from trl import GRPOTrainer

    from tuneforge.config.errors import TuneforgeError
    from tuneforge.stages.trl_hooks import TRL_RANGE, require_hooks, trl_version

    with pytest.raises(RuntimeError) as caught:
        require_hooks(GRPOTrainer, "train", "_no_such_method", "_no_such_attribute")
    message = str(caught.value)
    assert message == (f"tuneforge relies on trl's GRPOTrainer._no_such_method, GRPOTrainer._no_such_attribute, "
                       f"which this trl {trl_version()} lacks; install a trl within {TRL_RANGE} "
                       f"(pip install 'trl{TRL_RANGE}')")
    assert isinstance(caught.value, TuneforgeError)  # the CLI prints it as one line, exit 2
    assert "\n" not in message


def test_our_override_does_not_count_as_trl_having_the_hook():
    from trl import DPOTrainer

    from tuneforge.stages.trl_hooks import defines

    class Ours(DPOTrainer):
        def _prepare_dataset_renamed(self):
            ...

    assert defines(Ours, "_prepare_dataset_renamed")  # (so pass trl's class, as the stages do)
    assert not defines(DPOTrainer, "_prepare_dataset_renamed")


def test_trl_range_matches_pyproject_and_the_installed_trl():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    from tuneforge.stages.trl_hooks import TRL_RANGE

    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    trl_dep = next(d for d in deps if re.match(r"trl\b", d))
    assert SpecifierSet(trl_dep[len("trl"):]) == SpecifierSet(TRL_RANGE), (trl_dep, TRL_RANGE)
    assert version("trl") in SpecifierSet(TRL_RANGE)


# -- dpo --------------------------------------------------------------------------------------------------------

def dpo_trainer(tmp_path: Path, **keys):
    from trl import DPOConfig

    from tuneforge.stages.dpo import PretokenizedDPOTrainer
    from tuneforge.stages.trl_shared import trl_config

    run = build(tmp_path, "dpo", dataset="preference_demo", max_samples=4, per_device_train_batch_size=2, **keys)
    args = trl_config(DPOConfig, run.args, beta=0.1, loss_type=["sigmoid"], loss_weights=[1.0], max_length=None)
    trainer = PretokenizedDPOTrainer(model=run.model, args=args, train_dataset=run.train, eval_dataset=run.train,
                                     processing_class=run.tokenizer)
    return trainer, run


def test_dpo_prepare_dataset_override_is_called(tmp_path, monkeypatch):
    from tuneforge.stages.dpo import PretokenizedDPOTrainer

    calls = spy_on(monkeypatch, PretokenizedDPOTrainer, "_prepare_dataset")
    try:
        trainer, run = dpo_trainer(tmp_path)
    finally:  # when trl's own text preparation ran instead, it fails on our columns: say why
        names = dataset_names(calls)
        assert names == ["train", "eval"], (
            f"PretokenizedDPOTrainer._prepare_dataset calls {names}: trl's DPOTrainer no longer calls "
            "_prepare_dataset and re-tokenizes our pairs itself")
    assert trainer.train_dataset["chosen_ids"] == run.train["chosen_ids"]  # our ids, untouched
    assert trainer.train_dataset["prompt_ids"] == run.train["prompt_ids"]


def test_dpo_reference_is_the_disabled_adapter(tmp_path, disabled_adapter):
    trainer, _ = dpo_trainer(tmp_path)
    assert trainer.ref_model is None
    assert_reference_is_the_disabled_adapter(trainer, disabled_adapter)


# -- kto --------------------------------------------------------------------------------------------------------

def kto_trainer(tmp_path: Path, monkeypatch=None, ftx: float = 0.0, calls: list[tuple] | None = None):
    """Our KTO trainer on 4 kto_demo rows (2 desirable, 2 undesirable), all in one batch; with `monkeypatch`,
    its _prepare_dataset calls are recorded into `calls`."""
    from trl import KTOConfig

    from tuneforge.stages.kto import _trainer_class
    from tuneforge.stages.trl_shared import trl_config

    run = build(tmp_path, "kto", dataset="kto_demo", max_samples=4, per_device_train_batch_size=4)
    assert sorted(run.train["label"]) == [False, False, True, True]
    cls = _trainer_class()
    calls = spy_on(monkeypatch, cls, "_prepare_dataset", calls) if monkeypatch else []
    args = trl_config(KTOConfig, run.args, beta=0.1, max_length=None, train_sampling_strategy="sequential")
    trainer = cls(model=run.model, args=args, train_dataset=run.train, processing_class=run.tokenizer, ftx=ftx)
    return trainer, run, calls


def test_kto_prepare_dataset_override_is_called(tmp_path, monkeypatch):
    calls: list[tuple] = []
    try:
        trainer, run, calls = kto_trainer(tmp_path, monkeypatch, calls=calls)
    finally:
        names = dataset_names(calls)
        assert names == ["train"], (
            f"TuneforgeKTOTrainer._prepare_dataset calls {names}: trl's KTOTrainer no longer calls "
            "_prepare_dataset and re-tokenizes our rows itself")
    prepared = trainer.train_dataset
    assert "KL_completion_ids" in prepared.column_names  # added by our override only
    assert sorted(prepared["completion_ids"]) == sorted(run.train["completion_ids"])


def test_kto_reference_is_the_disabled_adapter(tmp_path, disabled_adapter):
    trainer, _, _ = kto_trainer(tmp_path)
    assert trainer.ref_model is None
    assert_reference_is_the_disabled_adapter(trainer, disabled_adapter)


def test_kto_pref_ftx_finds_trls_policy_pass(tmp_path):
    """compute_loss spots trl's policy forward by `kwargs["input_ids"] is inputs["input_ids"]`; if trl copies or
    renames the batch on the way, the SFT term silently disappears and sft_loss is never logged."""
    trainer, _, _ = kto_trainer(tmp_path, ftx=0.5)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and "sft_loss" in logged[0], (
        f"logged {sorted(logged[0]) if logged else None}: with pref_ftx > 0 no sft_loss was recorded, so "
        "TuneforgeKTOTrainer.compute_loss did not find trl's policy pass (the forward on the batch's own input_ids)")
    assert logged[0]["sft_loss"] > 0


# -- grpo / rloo ------------------------------------------------------------------------------------------------

def blue(prompts, completions, **kwargs) -> list[float]:
    return [float("Blue" in text) for text in completions]


def online_trainer(tmp_path: Path, base_name: str, monkeypatch):
    import trl

    from tuneforge.stages.online_common import trainer_class
    from tuneforge.stages.trl_shared import trl_config

    run = build(tmp_path, base_name.lower(), dataset="alpaca_demo", max_samples=2, per_device_train_batch_size=2,
                max_new_tokens=4, temperature=1.0)
    base = getattr(trl, f"{base_name}Trainer")
    cls = trainer_class(base)
    calls = spy_on(monkeypatch, cls, "_tokenize_prompts")
    args = trl_config(getattr(trl, f"{base_name}Config"), run.args, beta=0.1, num_generations=2,
                      steps_per_generation=1, max_completion_length=4, temperature=1.0, remove_unused_columns=False,
                      include_num_input_tokens_seen="no")
    run.model.generation_config.eos_token_id = run.template.stop_token_ids()
    prompt_ids = dict(zip(run.train["prompt"], run.train["prompt_ids"]))
    trainer = cls(model=run.model, args=args, train_dataset=run.train, processing_class=run.tokenizer,
                  reward_funcs=[blue], prompt_ids=prompt_ids)
    return trainer, run, calls, prompt_ids


@pytest.mark.parametrize("base_name", ["GRPO", "RLOO"])
def test_online_prompts_are_our_ids(base_name, tmp_path, monkeypatch, disabled_adapter):
    """One step: trl asks _tokenize_prompts for the prompt ids and gets ours; unknown text goes through
    trl's self._tokenizer without special tokens; the reference is the disabled adapter."""
    trainer, run, calls, prompt_ids = online_trainer(tmp_path, base_name, monkeypatch)
    assert trainer._tokenizer is run.tokenizer, f"{base_name}Trainer no longer keeps its tokenizer as _tokenizer"
    assert_reference_is_the_disabled_adapter(trainer, disabled_adapter)
    assert calls, (f"Tuneforge{base_name}Trainer._tokenize_prompts was never called: trl's {base_name}Trainer "
                   "tokenizes the prompt text itself (special tokens on: a second BOS, no cutoff_len)")
    for (prompts,), _, (ids, images, fields) in calls:
        assert prompts and all(isinstance(p, str) for p in prompts)
        assert ids == [prompt_ids[p] for p in prompts] and images is None and fields == {}
    text = "a prompt not in the dataset"
    ids, _, _ = trainer._tokenize_prompts([text])
    assert ids == [run.tokenizer(text, add_special_tokens=False)["input_ids"]]
