"""`tuneforge estimate` for several GPUs: per-GPU memory under DDP and DeepSpeed ZeRO 1-3 (with CPU offload), on the
shape of Qwen2.5-7B's config.json (no weights)."""

from __future__ import annotations

import pytest

from tuneforge.config.load import load
from tuneforge.model.memory import GIB, estimate_memory
from tuneforge.model.memory.sharding import Sharding


@pytest.fixture(scope="module")
def qwen7b():
    from transformers import Qwen2Config

    return Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)


def _full(config, sharding=None):
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "finetuning_type": "full"})
    return estimate_memory(config, cfg.method, tokens=4096, dtype_bytes=2, checkpointing=True, fused_loss=True,
                           accumulation=4, sharding=sharding)


def zero(stage, world=8, **offload):
    return Sharding(world, stage, **offload)


def test_each_zero_stage_holds_less_per_gpu(qwen7b):
    one = _full(qwen7b)
    ddp, z1, z2, z3 = (_full(qwen7b, s) for s in (Sharding(8), zero(1), zero(2), zero(3)))
    assert ddp.peak_bytes == one.peak_bytes + one.grads_bytes  # DDP's gradient buckets, nothing sharded
    assert z1.optimizer_bytes == one.optimizer_bytes // 8 and z1.weights_bytes == one.weights_bytes
    assert z2.resident_grads_bytes == one.resident_grads_bytes // 8
    layer = (one.params - 2 * 152064 * 3584 - 3584) // 28 * 4  # one decoder layer's fp32 weights
    assert z3.weights_bytes == pytest.approx(one.weights_bytes / 8 + 2 * layer, rel=1e-3)
    assert one.peak_bytes > z1.peak_bytes > z2.peak_bytes > z3.peak_bytes
    assert one.peak_bytes / GIB > 100 > z3.peak_bytes / GIB  # 7B full fine-tuning: 8 GPUs with ZeRO-3
    offloaded = _full(qwen7b, zero(3, offload_optimizer=True, offload_params=True))
    assert offloaded.optimizer_bytes == 0 and offloaded.weights_bytes == 2 * layer
    assert any("ZeRO-3 over 8 GPU(s), optimizer and parameters offloaded to the CPU" in n for n in offloaded.notes)


def test_the_sharding_comes_from_the_deepspeed_config():
    assert Sharding.of(None, 2) == Sharding(2)
    assert Sharding.of({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"},
                                              "offload_param": {"device": "none"}}}, 4) == \
        Sharding(4, 3, offload_optimizer=True, offload_params=False)
    assert Sharding.of({"train_batch_size": "auto"}, 2) == Sharding(2, 0)


def test_estimate_command_reads_zero_stage_and_world_size(tmp_path, monkeypatch):
    from pathlib import Path

    from conftest import run_cli, write_yaml

    z3 = Path(__file__).resolve().parents[2] / "examples" / "deepspeed" / "ds_z3_offload_config.json"
    path = write_yaml(tmp_path / "est.yaml", model_name_or_path="tuneforge/tiny", finetuning_type="full",
                      template="qwen3_nothink", deepspeed=str(z3))
    for name in ("WORLD_SIZE", "NNODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NPROC_PER_NODE", "4")  # torchrun's processes per node, as `tuneforge train` reads it
    result = run_cli("estimate", str(path))
    assert result.returncode == 0, result.stderr
    assert "ZeRO-3 over 4 GPU(s), optimizer and parameters offloaded to the CPU: per-GPU memory" in result.stdout
