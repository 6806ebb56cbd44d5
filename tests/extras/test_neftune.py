"""NEFTune (`neftune_noise_alpha`, the Trainer's own argument): while training, the input embeddings carry
noise in train mode and none in eval mode; after training, none at all."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from extras.helpers import build


class EmbeddingProbe(TrainerCallback):
    def __init__(self, ids: torch.Tensor):
        self.ids, self.seen = ids, []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        embed = model.get_input_embeddings()
        clean = embed.weight[self.ids].detach()
        with torch.no_grad():
            model.train()
            noisy = embed(self.ids)
            model.eval()
            quiet = embed(self.ids)
            model.train()
        self.seen.append(((noisy - clean).abs().max().item(), (quiet - clean).abs().max().item()))


def test_neftune_noise_only_in_training_mode(tmp_path, tiny_tokenizer):
    from datasets import Dataset

    _, trainer = build(tmp_path, neftune_noise_alpha=5.0, max_steps=2, per_device_train_batch_size=1,
                       logging_steps=1)
    assert trainer.args.neftune_noise_alpha == 5.0  # the config key reached TrainingArguments
    ids = tiny_tokenizer("你好，世界。Hello world.")["input_ids"]
    trainer.train_dataset = Dataset.from_dict({"input_ids": [ids] * 4, "labels": [ids] * 4})
    probe = EmbeddingProbe(torch.tensor([ids]))
    trainer.add_callback(probe)
    trainer.train()
    assert len(probe.seen) == 2
    for noise_train, noise_eval in probe.seen:
        assert noise_train > 1e-3 and noise_eval == 0.0
    # the noise hook is gone after training: chat and predict see clean embeddings
    embed = trainer.model.get_input_embeddings()
    trainer.model.train()
    with torch.no_grad():
        assert torch.equal(embed(torch.tensor([ids])), embed.weight[torch.tensor([ids])])
