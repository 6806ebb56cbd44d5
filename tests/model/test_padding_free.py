"""Padding-free and packed rows compute exactly what padded batches compute (LoRA, fp32), on the tiny
model and on tiny random models of every architecture family whose attention differs (sliding
windows, softcapping, sinks, q/k norms, fused projections: model/tiny_archs.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tuneforge.data.collate import PaddingFreeCollator, padded_collator
from tuneforge.model import attention
from tuneforge.model.tiny_archs import ARCHS, ensure_arch


def _path(arch, tiny_path):
    return tiny_path if arch == "tiny" else ensure_arch(arch)


def _implementation(path, flash_attn):
    """What a padding-free run chooses for this architecture on this machine."""
    from transformers import AutoConfig

    eager = attention.needs_eager(AutoConfig.from_pretrained(path))
    return attention.choose_attention(flash_attn, "cpu", padding_free=True, eager_only=eager).implementation


def _model(path, impl):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    attention.register()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=impl)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False))
    return model


def _samples(n=4):
    g = torch.Generator().manual_seed(3)
    out = []
    for length in (9, 23, 5, 16)[:n]:
        ids = torch.randint(5, 400, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:]})
    return out


def _per_sample_losses(logits, labels, bounds):
    """Summed cross-entropy of each sample (shifted inside the sample)."""
    return [F.cross_entropy(logits[s:e - 1], labels[s + 1:e], reduction="sum") for s, e in bounds]


def _padded(model, tokenizer, samples):
    batch = padded_collator(tokenizer, "cpu")([dict(s) for s in samples])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return [_per_sample_losses(logits[i], batch["labels"][i], [(0, len(s["input_ids"]))])[0]
            for i, s in enumerate(samples)]


def _flat(model, batch):
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
    cu = batch["cu_seq_lens_q"].tolist()
    return _per_sample_losses(logits, batch["labels"][0], list(zip(cu[:-1], cu[1:])))


def _grads(model, losses, tokens):
    model.zero_grad()
    (sum(losses) / tokens).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _packed_rows(samples):
    """Two packed rows, as data/packing.py builds them (positions restart per sample)."""
    return [{"input_ids": a["input_ids"] + b["input_ids"], "labels": a["labels"] + b["labels"],
             "position_ids": list(range(len(a["input_ids"]))) + list(range(len(b["input_ids"])))}
            for a, b in ((samples[0], samples[1]), (samples[2], samples[3]))]


@pytest.mark.parametrize("flash_attn", ["auto", "eager"])
@pytest.mark.parametrize("arch", ["tiny", *ARCHS])
def test_padding_free_and_packed_rows_match_the_padded_batch(tiny_path, tiny_tokenizer, arch, flash_attn):
    path = _path(arch, tiny_path)
    padded_model = _model(path, None)  # transformers' default attention on padded batches: the reference
    model = _model(path, _implementation(path, flash_attn))
    samples = _samples()
    tokens = sum(sum(1 for x in s["labels"][1:] if x != -100) for s in samples)
    padded = _padded(padded_model, tiny_tokenizer, samples)
    g_padded = _grads(padded_model, padded, tokens)

    flat = _flat(model, PaddingFreeCollator()(samples))
    g_flat = _grads(model, flat, tokens)
    packed = _flat(model, PaddingFreeCollator()(_packed_rows(samples)))
    g_packed = _grads(model, packed, tokens)

    for got in (flat, packed):
        assert torch.allclose(torch.stack(got), torch.stack(padded), atol=1e-5, rtol=1e-5), arch
    assert g_padded and set(g_flat) == set(g_padded)
    if arch == "tiny":
        assert len(g_padded) == 2 * 7 * 2  # LoRA A and B of 7 linears in 2 layers
    for got in (g_flat, g_packed):
        for name, grad in g_padded.items():
            assert torch.allclose(got[name], grad, atol=1e-5, rtol=1e-4), (arch, name)


@pytest.mark.parametrize(("arch", "dropped"), [("qwen2_sliding", "sliding_window"), ("mistral", "sliding_window"),
                                               ("gemma2", "softcap")])
def test_dropping_the_window_or_softcap_changes_the_losses_so_the_parity_can_fail(monkeypatch, tiny_tokenizer,
                                                                                  arch, dropped):
    """What padding-free rows computed before windows and softcapping were honoured differs from the
    padded reference: the parity test above would catch a path that loses them again."""
    path = ensure_arch(arch)
    impl = _implementation(path, "auto")
    samples = _samples()
    model = _model(path, impl)
    with torch.no_grad():
        right = torch.stack(_flat(model, PaddingFreeCollator()(samples)))
        function = attention.varlen_eager_attention if impl == attention.VARLEN_EAGER else attention.varlen_attention

        def without(*args, **kwargs):
            kwargs.pop(dropped, None)
            return function(*args, **kwargs)

        from transformers import AttentionInterface

        monkeypatch.setitem(AttentionInterface._global_mapping, impl, without)
        wrong = torch.stack(_flat(model, PaddingFreeCollator()(samples)))
    assert not torch.allclose(right, wrong, atol=1e-3)


def test_transformers_own_packed_masks_leak_between_gpt_oss_samples_so_ours_are_used(tiny_tokenizer):
    """Why `flash_attn: eager` / `sdpa` on padding-free rows use the per-sample paths: transformers'
    gpt-oss builds its masks without position_ids, so the block-diagonal mask other architectures get
    is missing there and packed samples attend to each other."""
    path = ensure_arch("gpt_oss")
    samples = _samples()
    with torch.no_grad():
        padded = torch.stack(_padded(_model(path, None), tiny_tokenizer, samples))
        leaked = torch.stack(_flat(_model(path, "eager"), PaddingFreeCollator()(samples)))
    assert not torch.allclose(leaked, padded, atol=1e-3)


def test_softcapped_attention_is_refused_by_the_sdpa_path_not_computed_wrong():
    layer = torch.nn.Module()
    q = k = v = torch.zeros(1, 2, 6, 8)
    with pytest.raises(RuntimeError, match="softcapping or sinks"):
        attention.varlen_attention(layer, q, k, v, None, softcap=1.0)


def test_a_samples_logits_do_not_change_when_others_are_packed_beside_it(tiny_path):
    model = _model(tiny_path, attention.VARLEN)
    a, b, c = _samples(3)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([a["input_ids"]])).logits[0]
        row = PaddingFreeCollator()([b, a, c])
        packed = model(**{k: v for k, v in row.items() if k != "labels"}).logits[0]
    start = len(b["input_ids"])
    beside = packed[start:start + len(a["input_ids"])]
    assert torch.allclose(beside, alone, atol=1e-5)
    # and without the boundaries (one long causal sequence) they would change: the test can fail
    with torch.no_grad():
        leaked = model(input_ids=row["input_ids"]).logits[0][start:start + len(a["input_ids"])]
    assert not torch.allclose(leaked, alone, atol=1e-3)


def _fake_varlen(new_api: bool):
    """PyTorch's varlen_attn contract ([T, H, D] tensors, cumulative boundaries), computed on CPU;
    `new_api`: torch >= 2.13 keywords (window_size, enable_gqa, scale); else 2.10's is_causal."""
    calls = []

    def varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **kw):
        calls.append({**kw, "dtype": q.dtype})
        if not new_api:
            assert kw == {"is_causal": True} and q.shape[1] == k.shape[1]
        left = kw.get("window_size", (-1, 0))[0]
        assert kw.get("window_size", (-1, 0))[1] == 0  # causal
        bounds = cu_q.tolist()
        outs = []
        for s, e in zip(bounds[:-1], bounds[1:]):
            mask = attention.causal_mask(e - s, left + 1 if left >= 0 else None, q.device)
            outs.append(F.scaled_dot_product_attention(q[s:e].transpose(0, 1), k[s:e].transpose(0, 1),
                                                       v[s:e].transpose(0, 1), attn_mask=mask, scale=kw.get("scale"),
                                                       enable_gqa=kw.get("enable_gqa", False)).transpose(0, 1))
        return torch.cat(outs)

    params = {"window_size", "enable_gqa", "scale"} if new_api else {"is_causal"}
    return (varlen_attn, frozenset(params)), calls


def _qkv(tokens=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 4, tokens, 16, generator=g)
    k = torch.randn(1, 2, tokens, 16, generator=g)  # grouped-query attention: 2 kv heads for 4 query heads
    v = torch.randn(1, 2, tokens, 16, generator=g)
    return q, k, v


@pytest.mark.parametrize("new_api", [True, False])
@pytest.mark.parametrize("window", [None, 4])
def test_cuda_kernel_call_is_shaped_like_the_reference(monkeypatch, new_api, window):
    fake, calls = _fake_varlen(new_api)
    monkeypatch.setattr(attention, "_cuda_varlen", lambda: fake)
    q, k, v = _qkv()
    span = attention.Span(torch.tensor([0, 7, 20], dtype=torch.int32), 13, 0.3, 0.0, window)
    ref = attention._per_sample(q, k, v, span)
    if window and not new_api:  # torch 2.10's kernel has no window: the decision keeps it off
        monkeypatch.setattr(attention, "on_gpu", lambda t: True)
        assert attention._kernel_dtype(q.bfloat16(), 0.0, span) is None
        return
    out = attention._cuda_kernel(q, k, v, span)
    assert calls and out.shape == ref.shape == (1, 20, 4, 16)
    if new_api:
        assert calls[0]["window_size"] == ((window - 1) if window else -1, 0)
    assert torch.allclose(out, ref, atol=1e-5)


def test_the_window_changes_the_output_so_the_tests_can_fail():
    q, k, v = _qkv()
    cu = torch.tensor([0, 7, 20], dtype=torch.int32)
    full = attention._per_sample(q, k, v, attention.Span(cu, 13, 0.3, 0.0, None))
    windowed = attention._per_sample(q, k, v, attention.Span(cu, 13, 0.3, 0.0, 4))
    assert torch.allclose(full[:, :4], windowed[:, :4], atol=1e-6)  # the first 4 positions see all they can
    assert not torch.allclose(full[:, 7:], windowed[:, 7:], atol=1e-3)


@pytest.mark.parametrize("weights", ["float32", "bfloat16"])
def test_fp32_queries_under_half_autocast_reach_the_kernel_in_half_precision(monkeypatch, weights):
    """Full fine-tuning keeps fp32 master weights, so q/k/v arrive in fp32 under bf16 autocast: the
    kernel must still be chosen, on bf16 copies (a CUDA-only kernel: stood in here on CPU)."""
    fake, calls = _fake_varlen(True)
    monkeypatch.setattr(attention, "_cuda_varlen", lambda: fake)
    monkeypatch.setattr(attention, "on_gpu", lambda t: True)
    q, k, v = (t.to(getattr(torch, weights)) for t in _qkv())
    layer = torch.nn.Module()
    layer.training = False
    cu = torch.tensor([0, 7, 20], dtype=torch.int32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attention.varlen_attention(layer, q, k, v, None, scaling=0.3, cu_seq_lens_q=cu)
    assert calls and calls[0]["dtype"] == torch.bfloat16 and out.dtype == torch.bfloat16
    # without autocast, fp32 stays on the exact per-sample path (the flash kernel has no fp32)
    calls.clear()
    attention.varlen_attention(layer, q.float(), k.float(), v.float(), None, scaling=0.3, cu_seq_lens_q=cu)
    assert not calls


def test_a_failing_kernel_falls_back_to_per_sample_attention_with_one_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for head_dim 96 on this build")

    monkeypatch.setattr(attention, "_cuda_varlen", lambda: (broken, frozenset({"window_size"})))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 12, 8, generator=g) for _ in range(3))
    span = attention.Span(torch.tensor([0, 5, 12], dtype=torch.int32), 7, 0.35, 0.0)
    layer = torch.nn.Module()
    with pytest.warns(UserWarning, match="varlen attention kernel failed"):
        out = attention._attend(layer, q, k, v, span, kernel_dtype=torch.float32)
    assert torch.allclose(out, attention._per_sample(q, k, v, span))
    assert getattr(layer, attention.KERNEL_FAILED)  # this layer's later steps go straight to the fallback
    assert not hasattr(torch.nn.Module(), attention.KERNEL_FAILED)  # and no other model is affected
