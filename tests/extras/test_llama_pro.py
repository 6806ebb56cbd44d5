"""LLaMA Pro: `tuneforge expand` adds identity blocks (the expanded model's logits equal the original's),
and use_llama_pro trains exactly those blocks (freeze), or puts LoRA only on them."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import assert_one_error_line, run_cli
from extras.helpers import batch, build, steps


@pytest.fixture(scope="module")
def expanded(tmp_path_factory):
    from tuneforge.model.expand import expand

    return expand("tuneforge/tiny", str(tmp_path_factory.mktemp("pro") / "tiny-pro"), 2)


def test_expanded_model_computes_what_the_original_did(expanded, tiny_path, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    data = batch(tiny_tokenizer)  # a Chinese and an English sample
    original = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    pro = AutoModelForCausalLM.from_pretrained(expanded).eval()
    config = json.loads((expanded / "config.json").read_text())
    assert config["num_hidden_layers"] == 4 and len(config["layer_types"]) == 4
    with torch.no_grad():
        torch.testing.assert_close(pro(input_ids=data["input_ids"]).logits,
                                   original(input_ids=data["input_ids"]).logits, atol=1e-5, rtol=1e-5)
        # generation uses the KV cache, indexed by each block's layer_idx: same answer too
        kwargs = dict(max_new_tokens=8, do_sample=False)
        assert torch.equal(pro.generate(data["input_ids"][:1], **kwargs),
                           original.generate(data["input_ids"][:1], **kwargs))
    # the new blocks (1 and 3) are copies of the block before them with zeroed output projections
    new = pro.model.layers[1]
    assert torch.count_nonzero(new.self_attn.o_proj.weight) == 0 and torch.count_nonzero(new.mlp.down_proj.weight) == 0
    assert torch.equal(new.self_attn.q_proj.weight, original.model.layers[0].self_attn.q_proj.weight)


def _trainable_layers(model) -> set[str]:
    return {n.split("layers.")[1].split(".")[0] for n, p in model.named_parameters() if p.requires_grad and
            "layers." in n} | {n for n, p in model.named_parameters() if p.requires_grad and "layers." not in n}


def test_use_llama_pro_trains_only_the_expanded_blocks(expanded, tmp_path, tiny_tokenizer):
    _, trainer = build(tmp_path, model_name_or_path=str(expanded), finetuning_type="freeze", use_llama_pro=True,
                       freeze_trainable_layers=2)
    assert _trainable_layers(trainer.model) == {"1", "3"}
    losses = steps(trainer, batch(tiny_tokenizer), 3)
    assert losses[-1] < losses[0]


def test_use_llama_pro_with_lora_puts_adapters_on_the_expanded_blocks_only(expanded, tmp_path):
    _, trainer = build(tmp_path, model_name_or_path=str(expanded), finetuning_type="lora", use_llama_pro=True,
                       freeze_trainable_layers=2)
    assert _trainable_layers(trainer.model) == {"1", "3"}
    assert all("lora_" in n for n, p in trainer.model.named_parameters() if p.requires_grad)


def test_freeze_trainable_layers_must_count_the_added_blocks(expanded, tmp_path):
    from tuneforge.config.errors import ConfigError

    with pytest.raises(ConfigError, match="use_llama_pro: freeze_trainable_layers is the number of blocks"):
        build(tmp_path, model_name_or_path=str(expanded), finetuning_type="freeze", use_llama_pro=True,
              freeze_trainable_layers=3)


def test_expand_refuses_a_count_that_does_not_divide_the_layers_in_one_line(tmp_path):
    result = run_cli("expand", "--model_name_or_path", "tuneforge/tiny", "--output_dir", str(tmp_path / "模型"),
                     "--num_expand", "3", cwd=tmp_path)
    assert_one_error_line(result, "--num_expand must divide the model's 2 layers", "got 3")
    assert not (tmp_path / "模型").exists()
