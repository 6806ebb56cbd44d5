"""The chunked linear+cross-entropy gives the loss and gradients of the plain computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tuneforge.model import fused_loss


def _reference(hidden, weight, targets, normalizer):
    return F.cross_entropy((hidden @ weight.t()).float(), targets, reduction="sum") / normalizer


def test_loss_and_gradients_match_full_logits_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(fused_loss, "CHUNK_BYTES", 64 * 4 * 97)  # 64-row chunks: 300 rows cross several
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(300, 32, generator=g, requires_grad=True)
    weight = torch.randn(97, 32, generator=g, requires_grad=True)
    targets = torch.randint(0, 97, (300,), generator=g)
    normalizer = torch.tensor(450)  # e.g. tokens of the whole accumulated batch, not just these rows
    ours = fused_loss.linear_cross_entropy(hidden, weight, targets, normalizer)
    (ours * 3.0).backward()  # a scaled loss (fp16 loss scaling, accumulation) must scale the gradients
    g_hidden, g_weight = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = _reference(hidden, weight, targets, normalizer)
    (ref * 3.0).backward()
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(g_hidden, hidden.grad, atol=1e-5)
    assert torch.allclose(g_weight, weight.grad, atol=1e-5)


def test_frozen_head_gets_no_gradient_and_no_grad_mode_computes_only_the_loss():
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(20, 8)
    targets = torch.randint(0, 20, (10,))
    loss = fused_loss.linear_cross_entropy(hidden, weight, targets, torch.tensor(10))
    loss.backward()
    assert hidden.grad is not None and weight.grad is None
    with torch.no_grad():
        assert torch.allclose(fused_loss.linear_cross_entropy(hidden, weight, targets, torch.tensor(10)), loss)


def test_causal_lm_loss_equals_the_models_own_loss(tiny_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32)
    ids = torch.randint(5, 400, (2, 12), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :5] = -100
    assert fused_loss.supports_fused_loss(model)
    ours = fused_loss.causal_lm_loss(model, {"input_ids": ids, "labels": labels})
    assert torch.allclose(ours, model(input_ids=ids, labels=labels).loss, atol=1e-5)
