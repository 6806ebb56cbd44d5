"""The memory estimator (model/memory/) against what PyTorch and peft really do.

- parameter counts: exactly what peft / adapters.py report, on the real tiny model and on
  meta-device models of real shapes;
- activations: the bytes autograd saves, measured with `saved_tensors_hooks` (unique storages,
  parameters excluded), equal the walked formula for every method and precision;
- the peak: at the real Qwen2.5-1.5B width, a forward + backward with the chunked loss is
  measured on CPU from the allocator's own events (torch.profiler) and compared with the prediction.
"""

from __future__ import annotations

import pytest

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import MethodConfig, ModelConfig
from tuneforge.model import memory
from tuneforge.model.memory import GIB, choose_checkpointing, estimate_memory, saved_bytes

QWEN15 = {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
          "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": True}
BENCH_TOKENS = 8 * 2048  # per_device_train_batch_size x cutoff_len of shared/bench/sft_lora.yaml

METHODS = {
    "lora all": {},
    "lora q,v r4": {"lora_target": "q_proj,v_proj", "lora_rank": 4},
    "dora": {"use_dora": True},
    "freeze last 1": {"finetuning_type": "freeze", "freeze_trainable_layers": 1},
    "freeze first 1 mlp + embed": {"finetuning_type": "freeze", "freeze_trainable_layers": -1,
                                   "freeze_trainable_modules": "mlp", "freeze_extra_modules": "embed_tokens"},
    "full": {"finetuning_type": "full"},
}


def qwen2(**shape):
    from transformers import Qwen2Config

    return Qwen2Config(**{**QWEN15, **shape})


def _apply(model, method: MethodConfig):
    from tuneforge.model.adapters import apply_method, count_parameters

    return count_parameters(apply_method(model, method, ModelConfig(model_name_or_path="x")))


@pytest.mark.parametrize("name", METHODS)
def test_trainable_count_is_what_peft_reports_on_the_tiny_model(tiny_path, name):
    from transformers import AutoModelForCausalLM

    method = MethodConfig(**METHODS[name])
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    assert memory.count_parameters(model.config, method) == _apply(model, method)


@pytest.mark.parametrize("model_type", ["qwen2", "llama", "qwen3", "mistral"])
def test_counts_exact_for_real_shapes_on_meta_device(model_type):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dict(QWEN15, num_hidden_layers=3)  # the count is per layer; three keep it quick
    config = AutoConfig.for_model(model_type, **shape)
    for method in (MethodConfig(), MethodConfig(finetuning_type="full"), MethodConfig(lora_target="o_proj,down_proj")):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        assert memory.count_parameters(config, method) == _apply(model, method), (model_type, method)


def test_user_mistakes_are_config_errors():
    with pytest.raises(ConfigError, match="lora_target qkv matches no linear layer"):
        memory.count_parameters(qwen2(), MethodConfig(lora_target="qkv"))
    with pytest.raises(ConfigError, match="exceeds the model's 28 layers"):
        memory.count_parameters(qwen2(), MethodConfig(finetuning_type="freeze", freeze_trainable_layers=40))
    with pytest.raises(ConfigError, match="mixture-of-experts"):
        memory.Shape.of(qwen2(num_experts=8))


def test_estimate_grows_linearly_with_tokens():
    kw = {"dtype_bytes": 2, "checkpointing": False, "fused_loss": True}
    acts = [estimate_memory(qwen2(), MethodConfig(), tokens=t, **kw).activation_bytes for t in (4096, 8192, 12288)]
    assert acts[2] - acts[1] == acts[1] - acts[0] > 0
    peaks = [estimate_memory(qwen2(), MethodConfig(), tokens=t, **kw).peak_bytes for t in (4096, 8192, 12288)]
    assert peaks[0] < peaks[1] < peaks[2]
    assert abs((peaks[2] - peaks[1]) / (peaks[1] - peaks[0]) - 1) < 0.01  # same slope


def test_checkpointing_lowers_the_activation_term():
    kw = {"tokens": BENCH_TOKENS, "dtype_bytes": 2, "fused_loss": True}
    off = estimate_memory(qwen2(), MethodConfig(), checkpointing=False, **kw)
    on = estimate_memory(qwen2(), MethodConfig(), checkpointing=True, **kw)
    assert on.activation_bytes < off.activation_bytes / 10
    assert on.peak_bytes < off.peak_bytes
    assert (on.weights_bytes, on.optimizer_bytes, on.trainable_params) == (
        off.weights_bytes, off.optimizer_bytes, off.trainable_params)
    # 28 layer inputs (bf16) and one layer recomputed in the backward, nothing else big
    one_input = BENCH_TOKENS * 1536 * 2
    assert 28 * one_input < on.activation_bytes < 28 * one_input + off.activation_bytes / 28 * 1.2


def test_full_logits_cost_what_the_chunked_loss_saves():
    kw = {"tokens": BENCH_TOKENS, "dtype_bytes": 2, "checkpointing": True}
    fused = estimate_memory(qwen2(), MethodConfig(), fused_loss=True, **kw)
    plain = estimate_memory(qwen2(), MethodConfig(), fused_loss=False, **kw)
    assert fused.loss_bytes < 1 * GIB
    assert plain.loss_bytes == 12 * BENCH_TOKENS * 151936  # fp32 log-probs + two fp32 gradients
    assert plain.peak_bytes - fused.peak_bytes > 20 * GIB


def test_decision_flips_when_the_card_is_smaller_than_the_prediction():
    kw = {"tokens": BENCH_TOKENS, "dtype_bytes": 2, "fused_loss": True}
    off = estimate_memory(qwen2(), MethodConfig(), checkpointing=False, **kw)
    on = estimate_memory(qwen2(), MethodConfig(), checkpointing=True, **kw)
    use, reason = choose_checkpointing(qwen2(), MethodConfig(), card_bytes=off.peak_bytes + GIB, **kw)
    assert not use and reason.startswith("off (predicted") and "GiB usable" in reason
    use, reason = choose_checkpointing(qwen2(), MethodConfig(), card_bytes=off.peak_bytes - GIB, **kw)
    assert use and reason.startswith("on (predicted") and f"{on.peak_gib:.1f} GiB with it" in reason
    use, reason = choose_checkpointing(qwen2(), MethodConfig(), card_bytes=on.peak_bytes - GIB, **kw)
    assert use and "still too big" in reason and "cutoff_len" in reason


# ------------------------------------------------------------------ measured on CPU


def _saved_by_autograd(config, method: MethodConfig, tokens: int, dtype, autocast: bool, attention: str = "sdpa",
                       loss: bool = False, profile: bool = False, checkpointing: bool = False) -> dict[str, int]:
    """Bytes of the unique storages autograd saves in a forward (parameters excluded); with `loss`,
    the chunked loss and a backward too, and with `profile` the peak of allocated bytes over both
    (from the CPU allocator's events, so the peak includes every temporary)."""
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM

    from tuneforge.model.adapters import apply_method
    from tuneforge.model.fused_loss import causal_lm_loss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    model.config.use_cache = False
    model = apply_method(model, method, ModelConfig(model_name_or_path="x"))
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    skip |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            saved.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    ids = torch.randint(0, config.vocab_size, (1, tokens))
    inputs = {"input_ids": ids, "position_ids": torch.arange(tokens)[None], "labels": ids}
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) \
        if profile else contextlib.nullcontext()
    with prof:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if loss:
                result = causal_lm_loss(model, inputs)
            else:
                base = model.get_base_model() if hasattr(model, "get_base_model") else model
                result = base.model(input_ids=ids, position_ids=inputs["position_ids"]).last_hidden_state
        if loss:
            result.backward()
    out = {"saved": sum(saved.values())}
    if profile:
        events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                        key=lambda e: e.start_ns())
        current = peak = 0
        for event in events:
            current += event.nbytes()
            peak = max(peak, current)
        out["peak"] = peak
    return out


SMALL = {"vocab_size": 1000, "hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2}
# (method, weights dtype, autocast): how tuneforge trains them (lora/freeze: half base weights; full: fp32)
PRECISIONS = [("lora all", "float32", False), ("lora all", "bfloat16", True), ("lora all", "bfloat16", False),
              ("lora q,v r4", "bfloat16", True), ("full", "float32", True), ("freeze last 1", "float32", False),
              ("freeze first 1 mlp + embed", "bfloat16", True)]


@pytest.mark.parametrize("name,dtype,autocast", PRECISIONS)
def test_saved_activations_equal_the_formula(name, dtype, autocast):
    import torch

    config = qwen2(**SMALL)
    method = MethodConfig(**METHODS[name])
    measured = _saved_by_autograd(config, method, 256, getattr(torch, dtype), autocast)["saved"]
    half = 2 if dtype == "bfloat16" or autocast else 4
    assert saved_bytes(config, method, tokens=256, dtype_bytes=half, autocast=autocast) == measured


@pytest.mark.parametrize("vocab,checkpointing", [(32000, False), (1000, True)])
def test_activations_and_peak_at_the_real_1_5b_width(vocab, checkpointing):
    """Qwen2.5-1.5B's layer (hidden 1536, intermediate 8960, 12 heads, 2 kv heads), two layers,
    1024 tokens, LoRA r8 on all linear layers, fp32, causal SDPA (on CPU its flash kernel keeps
    the output and logsumexp, as the GPU kernel does), the chunked loss. With vocab 32000 the
    peak is at the loss; with vocab 1000 and checkpointing, in the recomputed layer's backward.
    fp32 because on CPU half precision adds temporaries a GPU does not have (bf16 matmuls
    accumulate into an fp32 buffer; mixed-dtype adds copy their half input to fp32)."""
    import torch

    config = qwen2(vocab_size=vocab, num_hidden_layers=2)
    method = MethodConfig()
    measured = _saved_by_autograd(config, method, 1024, torch.float32, False, loss=True, profile=True,
                                  checkpointing=checkpointing)
    est = estimate_memory(config, method, tokens=1024, dtype_bytes=4, checkpointing=checkpointing,
                          fused_loss=True, attention="sdpa", device="cpu")
    if not checkpointing:
        # what autograd saves = the model's activations + the chunked loss's kept input gradient
        predicted_saved = est.activation_bytes + 1024 * 1536 * 4 + 16 * 1024
        assert abs(predicted_saved / measured["saved"] - 1) < 0.10, (predicted_saved, measured["saved"])
    predicted_peak = est.peak_bytes - est.weights_bytes - est.optimizer_bytes  # the measured part
    assert abs(predicted_peak / measured["peak"] - 1) < 0.10, (predicted_peak, measured["peak"])


def _full_model(config, checkpointing=False):
    import torch
    from transformers import AutoModelForCausalLM

    from tuneforge.model.adapters import apply_method

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    model = apply_method(model, MethodConfig(finetuning_type="full"), ModelConfig(model_name_or_path="x"))
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _memory_events(prof):
    return sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                  key=lambda e: e.start_ns())


MARKER = 123457  # bytes of a marker allocation that says where the forward ended


@pytest.mark.parametrize("checkpointing", [False, True])
def test_autocast_weight_copies_stay_until_the_forward_ends_even_with_checkpointing(checkpointing):
    """Full fine-tuning under bf16 autocast: autocast caches a bf16 copy of every fp32 weight it
    casts and keeps it until its context exits, after the forward (and the loss inside it). With
    checkpointing nothing else of the layers is kept, so those copies are most of what is alive."""
    import torch

    config = qwen2(**SMALL)
    model = _full_model(config, checkpointing)
    tokens = 256
    ids = torch.randint(0, config.vocab_size, (1, tokens))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.model(input_ids=ids, position_ids=torch.arange(tokens)[None])  # held: its graph lives
            torch.empty(MARKER, dtype=torch.uint8)
    assert out.last_hidden_state.requires_grad
    alive = 0
    for event in _memory_events(prof):
        if event.nbytes() == MARKER:
            break
        alive += event.nbytes()
    est = estimate_memory(config, MethodConfig(finetuning_type="full"), tokens=tokens, dtype_bytes=2,
                          checkpointing=checkpointing, fused_loss=True, attention="sdpa", device="cpu")
    assert abs(est.forward_bytes / alive - 1) < 0.10, (est.forward_bytes, alive)
    if checkpointing:  # without the copies the prediction would be a fraction of it: the test can fail
        copies = sum(p.numel() for n, p in model.named_parameters() if "layers." in n) * 2
        assert (est.forward_bytes - copies) / alive < 0.5


def test_gradient_accumulation_keeps_every_gradient_through_the_next_micro_batch():
    """Full fine-tuning with gradient_accumulation_steps 2: the first micro-batch's fp32 gradients
    are alive through the second one's forward and backward (zero_grad only follows the optimizer
    step). Peak of two forward+backward passes without zeroing, measured against the estimate."""
    import torch

    from tuneforge.model.fused_loss import causal_lm_loss

    config = qwen2(**SMALL)
    model = _full_model(config)
    tokens = 256
    ids = torch.randint(0, config.vocab_size, (1, tokens))
    inputs = {"input_ids": ids, "position_ids": torch.arange(tokens)[None], "labels": ids}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(2):
            causal_lm_loss(model, inputs).backward()
    current = peak = 0
    for event in _memory_events(prof):
        current += event.nbytes()
        peak = max(peak, current)

    def predicted(accumulation):
        est = estimate_memory(config, MethodConfig(finetuning_type="full"), tokens=tokens, dtype_bytes=4,
                              checkpointing=False, fused_loss=True, attention="sdpa", device="cpu", autocast=False,
                              accumulation=accumulation)
        return est.peak_bytes - est.weights_bytes - est.optimizer_bytes

    assert abs(predicted(2) / peak - 1) < 0.10, (predicted(2), peak)
    assert predicted(1) / peak < 0.85  # without the term: under by the gradients (the test can fail)


def test_the_checkpointing_decision_keeps_a_margin_below_the_free_memory(monkeypatch):
    """A run predicted just under the card's memory does not 'fit': the budget is the free memory
    minus 5% of the card (at least 1 GiB)."""
    from tuneforge.model.memory import settings

    budget = settings.memory_budget(80.0)
    assert budget.card == budget.free == 80 * GIB and budget.margin == 4 * GIB
    assert budget.usable == 76 * GIB and "76.0 GiB usable" in budget.describe()
    assert settings.memory_budget(8.0).margin == GIB  # small cards keep at least 1 GiB
    kw = {"tokens": BENCH_TOKENS, "dtype_bytes": 2, "fused_loss": True}
    off = estimate_memory(qwen2(), MethodConfig(), checkpointing=False, **kw)
    card_gib = (off.peak_bytes + GIB // 2) / GIB  # the prediction is half a GiB under the whole card
    use, reason = choose_checkpointing(qwen2(), MethodConfig(), card_bytes=settings.memory_budget(card_gib).usable,
                                       **kw)
    assert use and "usable" in reason


def test_train_sizes_checkpointing_on_the_largest_real_micro_batch(monkeypatch):
    from tuneforge.config.load import load
    from tuneforge.model.memory import settings

    assert settings.worst_micro_batch([5, 90, 40, 70], 2, padding_free=True) == 160
    assert settings.worst_micro_batch([5, 90, 40, 70], 2, padding_free=False) == 180  # padded to the longest
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "dataset": "identity", "output_dir": "/tmp/x",
                        "per_device_train_batch_size": 8, "cutoff_len": 2048})
    monkeypatch.setattr(settings, "card_bytes", lambda *a: (80 * GIB, "test card"))
    on, reason = settings.decide_checkpointing(cfg, 1000)
    assert not on and "off" in reason
    monkeypatch.setattr(settings, "card_bytes", lambda *a: (int(0.01 * GIB), "test card"))
    on, reason = settings.decide_checkpointing(cfg, 1000)
    assert on and "GiB" in reason
