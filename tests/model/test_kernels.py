"""Which fast path a config gets, and the one-line errors for switches the machine cannot honour."""

from __future__ import annotations

import pytest

from tuneforge.config.errors import ConfigError
from tuneforge.config.load import load
from tuneforge.model import kernels
from tuneforge.model import attention
from tuneforge.model.attention import VARLEN


def _cfg(**keys):
    return load(base={"model_name_or_path": "tuneforge/tiny", "dataset": "identity", "output_dir": "/tmp/unused",
                      **keys})[0]


def test_cpu_default_is_padding_free_with_isolating_attention():
    fast = kernels.plan(_cfg(), "cpu")
    assert fast.padding_free and not fast.packing and not fast.liger
    assert fast.attn_implementation == VARLEN
    assert "padding-free" in fast.describe()


def test_llamafactory_switches():
    assert kernels.plan(_cfg(neat_packing=True), "cpu").packing
    assert not kernels.plan(_cfg(padding_free=False), "cpu").padding_free
    sdpa = kernels.plan(_cfg(flash_attn="sdpa"), "cpu")  # padding-free rows: SDPA sample by sample
    assert sdpa.attn_implementation == VARLEN and "SDPA" in sdpa.attention
    assert kernels.plan(_cfg(flash_attn="eager"), "cpu").attn_implementation == attention.VARLEN_EAGER
    assert kernels.plan(_cfg(flash_attn="eager", padding_free=False), "cpu").attn_implementation == "eager"
    assert not kernels.plan(_cfg(stage="dpo", dataset="preference_demo"), "cpu").padding_free


def test_packing_outside_sft_and_pt_is_a_one_line_error():
    with pytest.raises(ConfigError) as err:
        kernels.plan(_cfg(packing=True, stage="dpo", dataset="preference_demo"), "cpu")
    assert "packing: true applies to stage sft or pt" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("keys, says", [({"enable_liger_kernel": True}, "enable_liger_kernel: true needs a CUDA GPU"),
                                        ({"flash_attn": "fa2"}, "flash_attn: fa2 needs flash-attn")])
def test_gpu_only_switches_fall_back_with_a_note_so_one_yaml_runs_anywhere(keys, says):
    fast = kernels.plan(_cfg(**keys), "cpu")
    assert any(says in text for text in fast.notes)
    assert not fast.liger and fast.attn_implementation == VARLEN and fast.padding_free


def test_fused_loss_is_settled_from_the_loaded_model(tiny_path):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32)
    assert kernels.settle_loss(kernels.plan(_cfg(), "cpu"), _cfg(), model).fused_loss
    assert not kernels.settle_loss(kernels.plan(_cfg(fused_loss=False), "cpu"), _cfg(fused_loss=False),
                                   model).fused_loss


def _fake_liger(monkeypatch, patched_types):
    """liger-kernel needs CUDA and Triton: a stand-in with its real module path and map name."""
    import sys
    import types

    monkey_patch = types.ModuleType("liger_kernel.transformers.monkey_patch")
    monkey_patch.MODEL_TYPE_TO_APPLY_LIGER_FN = {t: object() for t in patched_types}
    for name, module in (("liger_kernel", types.ModuleType("liger_kernel")),
                         ("liger_kernel.transformers", types.ModuleType("liger_kernel.transformers")),
                         ("liger_kernel.transformers.monkey_patch", monkey_patch)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(kernels, "liger_installed", lambda: True)


@pytest.mark.parametrize("asked", [None, True])
def test_liger_only_for_the_model_types_it_patches(monkeypatch, asked):
    """Liger's patcher logs and returns for a type outside its map: the run would compute full logits
    while the log said 'Liger fused'. Such types keep tuneforge's chunked loss (asked for: with a note)."""
    from transformers import Qwen2Config

    keys = {} if asked is None else {"enable_liger_kernel": True}
    _fake_liger(monkeypatch, {"llama", "qwen2"})
    assert kernels.plan(_cfg(**keys), "cuda", Qwen2Config()).liger
    _fake_liger(monkeypatch, {"llama"})
    fast = kernels.plan(_cfg(**keys), "cuda", Qwen2Config())
    assert not fast.liger and kernels.fused_loss_wanted(fast, _cfg(**keys))
    assert any("Liger has no kernels for qwen2" in text for text in fast.notes) == bool(asked)


def test_zero3_turns_the_chunked_loss_off_with_a_note(tmp_path):
    import json

    ds = tmp_path / "ds_z3.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3}}), encoding="utf-8")
    cfg = _cfg(deepspeed=str(ds))
    fast = kernels.plan(cfg, "cpu")
    assert not kernels.fused_loss_wanted(fast, cfg)
    assert any("ZeRO-3" in text for text in fast.notes)
    assert kernels.fused_loss_wanted(kernels.plan(_cfg(), "cpu"), _cfg())


def test_softcapped_and_sink_architectures_plan_the_eager_per_sample_path():
    from transformers import Gemma2Config, GptOssConfig, Qwen2Config

    for config in (Gemma2Config(), GptOssConfig()):
        fast = kernels.plan(_cfg(), "cuda", config)
        assert fast.attn_implementation == attention.VARLEN_EAGER and "eager" in fast.attention
    assert kernels.plan(_cfg(), "cpu", Qwen2Config()).attn_implementation == VARLEN
