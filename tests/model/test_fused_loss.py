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


def test_under_half_autocast_the_head_matmuls_run_in_half_and_its_gradient_sums_in_fp32(monkeypatch):
    """Full fine-tuning: the head's weight is fp32 and trains, the hidden states are bf16 (autocast).
    Every matmul of the chunked loss must run in bf16 (autocast does not reach the in-place
    accumulation inside the autograd Function), while the weight's gradient is summed in fp32."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class MatmulDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm):
                self.seen.append(tuple(a.dtype for a in args if isinstance(a, torch.Tensor)))
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(fused_loss, "CHUNK_BYTES", 64 * 4 * 97)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(300, 32, generator=g).bfloat16().requires_grad_()
    weight = torch.randn(97, 32, generator=g, requires_grad=True)
    targets = torch.randint(0, 97, (300,), generator=g)
    spy = MatmulDtypes()
    with torch.autocast("cpu", dtype=torch.bfloat16), spy:
        loss = fused_loss.linear_cross_entropy(hidden, weight, targets, torch.tensor(300))
    assert spy.seen and all(set(dtypes) == {torch.bfloat16} for dtypes in spy.seen), spy.seen
    loss.backward()
    assert weight.grad.dtype == torch.float32 and hidden.grad.dtype == torch.bfloat16
    ref_w = weight.detach().clone().requires_grad_()
    _reference(hidden.detach().float(), ref_w, targets, 300).backward()
    assert torch.allclose(weight.grad, ref_w.grad, atol=2e-2, rtol=2e-2)  # bf16 products, fp32 sum


def test_the_chunked_loss_runs_inside_the_models_forward_so_wrappers_like_ddp_keep_working(tiny_path):
    """Trainer calls whatever wraps the model (peft, then DDP on several GPUs): the chunked loss is part
    of the causal LM's own forward, so it runs through DDP's forward (which prepares the gradient
    all-reduce) and gives the model's own loss and gradients. One-process gloo group on CPU."""
    import socket

    import torch.distributed as dist
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def lora_model():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32)
        model.config.use_cache = False
        return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))

    ids = torch.randint(5, 400, (2, 24), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :6] = -100
    plain = lora_model()
    expected = plain(input_ids=ids, labels=labels).loss
    expected.backward()
    chunked = lora_model()
    fused_loss.attach_chunked_loss(chunked)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(chunked)
        out = wrapped(input_ids=ids, labels=labels)
        assert out.logits is None  # no full logits were made
        out.loss.backward()
        # ORPO/SimPO score answers the same way: per-row log-probability sums through the wrapper
        mask = (labels != -100).long()
        scored = wrapped(input_ids=ids, attention_mask=torch.ones_like(ids), answer_mask=mask)
    finally:
        dist.destroy_process_group()
    with torch.no_grad():
        logps = torch.log_softmax(plain(input_ids=ids).logits[:, :-1].float(), -1)
        want = (logps.gather(-1, ids[:, 1:, None])[..., 0] * mask[:, 1:]).sum(-1)
    assert torch.allclose(scored["logprob_sums"], want, atol=1e-4)
    assert scored["answer_tokens"].tolist() == mask[:, 1:].sum(-1).tolist()
    assert torch.allclose(out.loss, expected, atol=1e-5)
    grads = {n: p.grad for n, p in plain.named_parameters() if p.grad is not None}
    for name, p in chunked.named_parameters():
        if name in grads:
            assert torch.allclose(p.grad, grads[name], atol=1e-5), name
    assert chunked(input_ids=ids).logits.shape == (2, 24, plain.config.vocab_size)  # no labels: logits as before
