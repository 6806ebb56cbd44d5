"""What stage ppo writes, and how a stopped PPO run continues: its checkpoints hold everything the
hand-written loop (stages/ppo.py) carries from one step to the next, so a resumed run repeats the
uninterrupted one exactly.

checkpoint-N/ (written whole, through train/checkpoints.py's staging folder and manifest):
- the adapter, value_head.safetensors, the tokenizer: the model, as the final save writes it;
- ppo_state.pt: optimizer, scheduler and GradScaler states, the adaptive KL coefficient, the running
  score statistics, the losses so far, and the RNG states (python, numpy, torch CPU and CUDA), which
  decide the next rollouts' samples;
- trainer_state.json: step, planned steps, log history.
The prompt order needs no state: it is a seeded walk (ppo._prompt_batches) replayed up to step N.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from tuneforge.train import testhooks
from tuneforge.train.checkpoints import STATE, rotate, staged, staged_files, write_through
from tuneforge.train.disk import save_errors

VALUE_HEAD_FILE = "value_head.safetensors"
PPO_STATE_FILE = "ppo_state.pt"


def save_model(model: Any, tokenizer: Any, folder: Path) -> None:
    """The policy's adapter, the value head next to it, the tokenizer."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.policy.save_pretrained(str(folder))
    head = {k: v.detach().cpu().contiguous() for k, v in model.value_head.state_dict().items()}
    save_file(head, str(folder / VALUE_HEAD_FILE))
    tokenizer.save_pretrained(str(folder))


def _rng_state() -> dict[str, Any]:
    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ctx: Any, ppo: Any, training: Any, state: Any) -> Path:
    """checkpoint-<state.global_step> of the run, whole or not at all; then save_total_limit."""
    out, step = Path(ctx.args.output_dir), state.global_step
    with save_errors(str(out / f"checkpoint-{step}"), out), staged(out, step) as folder:
        save_model(ppo.model, ctx.tokenizer, folder)
        testhooks.pause_in_save()
        testhooks.fail_save(step)
        torch.save({"optimizer": training.optimizer.state_dict(), "scheduler": training.scheduler.state_dict(),
                    "scaler": ppo.scaler.state_dict(), "kl_coef": ppo.kl.value,
                    "scores": vars(ppo.score_stats).copy(), "losses": list(training.losses),
                    "rng": _rng_state()}, folder / PPO_STATE_FILE)
        state.save_to_json(str(folder / STATE))
    rotate(out, ctx.args.save_total_limit)
    return out / f"checkpoint-{step}"


def load_checkpoint(folder: str | Path, ppo: Any, training: Any) -> Any:
    """Restore what save_checkpoint wrote into the model, `ppo` and `training`; returns the TrainerState.
    The RNG states are restored last, right before the next step."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    folder = Path(folder)
    model = ppo.model
    set_peft_model_state_dict(model.policy, load_file(str(folder / "adapter_model.safetensors")))
    model.value_head.load_state_dict(load_file(str(folder / VALUE_HEAD_FILE)))
    saved = torch.load(folder / PPO_STATE_FILE, map_location="cpu", weights_only=False)  # our own file
    training.optimizer.load_state_dict(saved["optimizer"])
    training.scheduler.load_state_dict(saved["scheduler"])
    ppo.scaler.load_state_dict(saved["scaler"])
    ppo.kl.value = saved["kl_coef"]
    vars(ppo.score_stats).update(saved["scores"])
    training.losses[:] = saved["losses"]
    _set_rng_state(saved["rng"])
    return TrainerState.load_from_json(str(folder / STATE))


def write_outputs(ctx: Any, model: Any, state: Any, metrics: dict[str, Any]) -> None:
    """The final adapter and value head, train_results.json and all_results.json, each replaced whole;
    trainer_state.json last (its presence at the last step says the final files are all written)."""
    out = Path(ctx.args.output_dir)
    with save_errors(f"the final model to {out}", out):
        with staged_files(out) as tmp:
            save_model(model, ctx.tokenizer, tmp)
            for name in ("train_results.json", "all_results.json"):
                (tmp / name).write_text(json.dumps(metrics, indent=4, sort_keys=True) + "\n", encoding="utf-8")
        write_through(out / STATE, state.save_to_json)
