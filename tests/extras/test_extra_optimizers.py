"""The optimizer extras do what defines them: LoRA+'s B matrices learn ratio x faster; GaLore, APOLLO and
Adam-mini keep less optimizer state than AdamW on the same model; BAdam updates one block per switch
interval; Muon takes exactly the hidden 2-D matrices. Each lowers the loss on a fixed batch."""

from __future__ import annotations

import pytest
import torch

from extras.helpers import batch, build, config, state_numel, steps
from tuneforge.config.errors import ConfigError

FULL = {"finetuning_type": "full"}


@pytest.fixture(scope="module")
def data(tiny_tokenizer):
    return batch(tiny_tokenizer)


def test_loraplus_b_matrices_get_ratio_times_the_learning_rate(tmp_path, data):
    _, trainer = build(tmp_path, loraplus_lr_ratio=16, learning_rate=2e-4)
    lr_of = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    named = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
    b = [lr_of[id(p)] for n, p in named if "lora_B" in n]
    a = [lr_of[id(p)] for n, p in named if "lora_A" in n]
    assert b and a and len(lr_of) == len(named)  # every trained parameter is in the optimizer once
    assert b == pytest.approx([16 * 2e-4] * len(b)) and a == pytest.approx([2e-4] * len(a))
    losses = steps(trainer, data, 4)
    assert losses[-1] < losses[0]


def test_loraplus_embedding_adapters_get_loraplus_lr_embedding(tmp_path, tiny_path):
    """tuneforge's lora_target puts adapters on linear layers only; on a model whose embedding carries a LoRA
    adapter (made with peft directly), loraplus_lr_embedding is that adapter's learning rate."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneforge.train.optimizers import build_optimizer

    cfg, trainer = build(tmp_path, loraplus_lr_ratio=8, loraplus_lr_embedding=3e-6)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_path),
                           LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]))
    optimizer = build_optimizer(cfg.method, model, trainer.args)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    embedding = [lr_of[id(p)] for n, p in model.named_parameters() if "embed_tokens.lora_embedding" in n]
    b = [lr_of[id(p)] for n, p in model.named_parameters() if "q_proj.lora_B" in n]
    assert len(embedding) == 2 and embedding == pytest.approx([3e-6] * 2)
    assert b and b == pytest.approx([8 * trainer.args.learning_rate] * len(b))


def test_loraplus_is_refused_without_lora(tmp_path):
    with pytest.raises(ConfigError, match="loraplus_lr_ratio is for finetuning_type: lora"):
        config(tmp_path, loraplus_lr_ratio=16, **FULL)


def _adamw_state(tmp_path, data) -> int:
    _, trainer = build(tmp_path / "adamw", **FULL)
    steps(trainer, data, 1)
    return state_numel(trainer.optimizer)


@pytest.mark.parametrize("keys", [
    {"use_galore": True, "galore_rank": 4, "galore_update_interval": 2},
    {"use_galore": True, "galore_rank": 4, "galore_layerwise": True, "max_grad_norm": 0},
    {"use_apollo": True, "apollo_rank": 4, "apollo_update_interval": 2},
    {"use_apollo": True, "apollo_rank": 4, "apollo_layerwise": True, "max_grad_norm": 0},
    {"use_adam_mini": True},
], ids=["galore", "galore-layerwise", "apollo", "apollo-layerwise", "adam-mini"])
def test_optimizer_state_is_smaller_than_adamw_and_loss_falls(tmp_path, data, keys):
    _, trainer = build(tmp_path / "extra", learning_rate=1e-3, **FULL, **keys)
    losses = steps(trainer, data, 5)
    assert losses[-1] < losses[0] - 0.1, losses
    extra, adamw = state_numel(trainer.optimizer), _adamw_state(tmp_path, data)
    assert 0 < extra < 0.8 * adamw, (extra, adamw)


def test_galore_targets_become_transformers_optimizer_settings(tmp_path):
    cfg, trainer = build(tmp_path, use_galore=True, galore_target="mlp,self_attn", galore_rank=4,
                         galore_layerwise=True, max_grad_norm=0, **FULL)
    args = trainer.args
    assert args.optim == "galore_adamw_layerwise" and "rank=4" in args.optim_args
    projected = [g for o in trainer.optimizer.optimizer_dict.values() for g in o.param_groups if "rank" in g]
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    projected_names = {names[id(p)] for g in projected for p in g["params"]}
    # every linear weight inside mlp and self_attn, nothing else (no embeddings, norms, biases)
    assert projected_names == {n for n in names.values() if (".mlp." in n or ".self_attn." in n) and
                               n.endswith("proj.weight")}


def test_layerwise_with_gradient_accumulation_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot accumulate gradients over 4 micro-batches"):
        config(tmp_path, use_galore=True, galore_layerwise=True, gradient_accumulation_steps=4, **FULL)


@pytest.mark.parametrize("keys,message", [
    ({"use_galore": True}, "use_galore trains full weights"),
    ({"use_badam": True, "finetuning_type": "freeze"}, "use_badam picks the trained block itself"),
    ({"use_galore": True, "use_badam": True, **FULL}, "use_galore and use_badam each choose the optimizer"),
    ({"use_llama_pro": True, **FULL}, "use_llama_pro trains only the expanded blocks"),
    ({"use_apollo": True, "apollo_scale_front": True, **FULL}, "only in apollo-torch's quantized APOLLO"),
    ({"use_muon": True, "stage": "ppo", "reward_model": "rm", **FULL}, "stage ppo runs its own update loop"),
])
def test_impossible_combinations_are_refused_before_anything_loads(tmp_path, keys, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **keys)


def test_a_missing_optimizer_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    from tuneforge.train.optimizers import check_ready

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "badam" else real(name, *a))
    cfg = config(tmp_path, use_badam=True, **FULL)
    with pytest.raises(ConfigError, match=r"use_badam needs the badam package: pip install 'tuneforge\[extras\]'"):
        check_ready(cfg.method, cfg.train.max_grad_norm)


def _layer_changes(model, before: dict[str, torch.Tensor]) -> set[str]:
    """Which blocks changed: 'layers.N' for decoder layers, else the parameter's name."""
    changed = set()
    for name, param in model.named_parameters():
        if not torch.equal(param.detach(), before[name]):
            parts = name.split(".")
            changed.add(".".join(parts[1:3]) if "layers" in parts else name)
    return changed


@pytest.mark.parametrize("mode,order", [("ascending", ["layers.0", "layers.1"]),
                                        ("descending", ["layers.1", "layers.0"])])
def test_badam_updates_one_block_per_switch_interval(tmp_path, data, mode, order):
    _, trainer = build(tmp_path, use_badam=True, badam_switch_interval=2, badam_switch_mode=mode, **FULL)
    model = trainer.model
    seen, losses = [], []
    for _ in range(4):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        losses += steps(trainer, data, 1)
        seen.append(_layer_changes(model, before))
    # each step updates exactly one decoder layer (embeddings, final norm and head never), starting from the
    # first block of the order; the block changes every badam_switch_interval (2) steps (badam switches once
    # after its first step, then every interval: steps 2 and 3 share a block)
    assert all(len(s) == 1 and next(iter(s)).startswith("layers.") for s in seen), seen
    assert seen[0] == {order[0]} and seen[1] == seen[2] == {order[1]} and seen[3] == {order[0]}, seen
    assert losses[-1] < losses[0]


def test_badam_switch_interval_minus_one_keeps_one_block(tmp_path, data):
    _, trainer = build(tmp_path, use_badam=True, badam_switch_interval=-1, badam_start_block=1, **FULL)
    seen = []
    for _ in range(3):
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        steps(trainer, data, 1)
        seen.append(_layer_changes(trainer.model, before))
    assert seen == [{"layers.1"}] * 3


def test_badam_ratio_mode_updates_a_share_of_each_weight(tmp_path, data):
    _, trainer = build(tmp_path, use_badam=True, badam_mode="ratio", badam_update_ratio=0.1, **FULL)
    weight = dict(trainer.model.named_parameters())["model.layers.0.mlp.up_proj.weight"]
    before = weight.detach().clone()
    losses = steps(trainer, data, 3)
    share = (weight.detach() != before).float().mean().item()
    assert 0 < share <= 0.15, share
    assert losses[-1] < losses[0]


def test_badam_ratio_mode_trains_through_the_trainer_with_gradient_clipping(tmp_path):
    """Its gradients are sparse tensors: the Trainer's clipping (max_grad_norm 1.0) goes through badam's own."""
    from e2e.helpers import log_lines, train

    out = train(tmp_path, finetuning_type="full", use_badam=True, badam_mode="ratio", max_steps=3, logging_steps=1)
    assert all(entry["grad_norm"] > 0 for entry in log_lines(out) if "loss" in entry)


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(tmp_path, data):
    _, trainer = build(tmp_path, use_muon=True, learning_rate=2e-3, **FULL)
    muon, adamw = trainer.optimizer.optimizers
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert in_muon == {n for n in names.values() if ".layers." in n and n.endswith("proj.weight")}
    assert "model.embed_tokens.weight" in in_adamw and not in_muon & in_adamw
    assert in_muon | in_adamw == set(names.values())
    losses = steps(trainer, data, 4)
    assert losses[-1] < losses[0]
    # the Trainer's checkpoint holds both optimizers' state and loads back
    saved = trainer.optimizer.state_dict()
    _, fresh = build(tmp_path / "again", use_muon=True, **FULL)
    fresh.optimizer.load_state_dict(saved)
    def kept(optimizer) -> int:
        return sum(state_numel(o) for o in optimizer.optimizers)

    assert kept(fresh.optimizer) == kept(trainer.optimizer) > 0
