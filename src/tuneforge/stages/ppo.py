"""PPO (RLHF with a reward model from stage rm), written by hand: trl 1.16 no longer ships a PPO trainer.

One PPO step:
1. rollout — the policy (causal LM + LoRA) samples answers to a batch of prompts with the
   `generate` settings of the config (max_new_tokens, do_sample, temperature, top_p, top_k);
   an answer ends at the template's first stop token;
2. score — the reward model (model/reward.py) scores each prompt + answer: one number per answer
   (`ppo_score_norm`: normalised by the running mean and std of all scores so far);
3. per-token rewards — minus kl_coef x (log p_policy - log p_ref) on every answer token, plus the
   score on the last one. The reference is the same model with the LoRA adapter disabled, so no
   second copy is held; `ppo_target` steers kl_coef (adaptive KL controller of Ziegler et al. 2019);
   `ppo_whiten_rewards` whitens them first;
4. advantages — a value head (one linear layer on the policy's last hidden state, trained with it)
   estimates each state's return; GAE (gamma, lambda) gives advantages, whitened over the batch;
5. update — `ppo_epochs` passes over the batch in mini-batches of per_device_train_batch_size,
   clipped policy loss + clipped value loss, an optimizer step every gradient_accumulation_steps
   mini-batches. A PPO batch holds per_device_train_batch_size x gradient_accumulation_steps x
   ppo_buffer_size prompts (LLaMA-Factory's sizing).

Only LoRA is supported: the reference is the adapter switched off. Full or freeze tuning would
need a second full model copy as reference; they fail with a ConfigError instead. To make an SFT
adapter the reference, set create_new_adapter: true (the SFT adapter is merged into the base and
a fresh adapter trains on top); otherwise training continues that adapter and the reference is
the bare base model. Dropout is switched off: PPO's probability ratio must start at exactly 1.

Outputs as for the other stages: the adapter, value_head.safetensors next to it, trainer_log.jsonl
(loss, lr, reward, kl, ...), trainer_state.json, all_results.json, training_loss.png and
training_reward.png. Checkpoints (stages/ppo_state.py) hold the whole loop state, so
resume_from_checkpoint continues a stopped run exactly; SIGTERM/SIGINT save the step and stop as in
every other stage (train/stop.py).
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.model.load import Precision
from tuneforge.stages import StageContext, StageDef, StageResult, causal_lm
from tuneforge.stages.ppo_ranks import Ranks

# PPO constants (the values of the original RLHF setups, as trl's former PPO trainer used them).
CLIP_RANGE = 0.2  # policy ratio clipped to [1 - c, 1 + c]
VALUE_CLIP = 0.2  # value predictions move at most this far from the rollout's values per update
VALUE_COEF = 0.1  # weight of the value loss in the total loss
GAMMA, LAMBDA = 1.0, 0.95  # discount and GAE lambda
INIT_KL_COEF, KL_HORIZON = 0.2, 10_000  # adaptive KL controller: starting coefficient and horizon


def check(cfg: RunConfig) -> None:
    """What PPO needs, checked before any weights load."""
    from tuneforge.model.reward import check_reward_model

    if cfg.method.finetuning_type != "lora":
        raise ConfigError(f"stage ppo supports finetuning_type lora only (got {cfg.method.finetuning_type}): the "
                          "reference model is the policy with its adapter disabled; full or freeze would need a "
                          "second model copy")
    check_reward_model(cfg.pref, cfg.method.stage)


def build_model(cfg: RunConfig, precision: Precision, attention: str | None) -> PolicyWithValue:
    """The LoRA policy with a value head."""
    return PolicyWithValue(causal_lm(cfg, precision, attention))


class PolicyWithValue(torch.nn.Module):
    """The policy (a peft causal LM) and a value head reading its last hidden state, one value per position."""

    def __init__(self, policy: Any):
        super().__init__()
        self.policy = policy
        self.value_head = torch.nn.Linear(policy.config.get_text_config().hidden_size, 1)
        torch.nn.init.zeros_(self.value_head.weight)  # values start at 0: no made-up baseline before training
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.policy(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=positions(attention_mask), output_hidden_states=True, use_cache=False)
        return out.logits, self.value_head(out.hidden_states[-1].float()).squeeze(-1)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting attended tokens only (prompts are left-padded, answers right-padded)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class Rollout:
    """One mini-batch of sampled answers and everything PPO keeps fixed while it updates on them."""

    input_ids: torch.Tensor  # [B, P + R]: left-padded prompt, then the answer, right-padded
    attention_mask: torch.Tensor
    prompt_width: int  # P
    mask: torch.Tensor  # [B, R] 1 on answer tokens (up to and including the stop token)
    logprobs: torch.Tensor  # [B, R] under the policy that sampled
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor  # [B] reward model scores (raw)
    rewards: torch.Tensor | None = None  # [B, R] per-token rewards
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None


class RunningMoments:
    """Running mean and standard deviation of all scores seen (for ppo_score_norm)."""

    def __init__(self) -> None:
        self.count, self.mean, self.var = 0, 0.0, 1.0

    def update(self, x: torch.Tensor) -> None:
        n, mean, var = x.numel(), x.mean().item(), x.var(unbiased=False).item()
        total = self.count + n
        delta = mean - self.mean
        self.var = (self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.var * self.count / max(self.count - 1, 1))


class AdaptiveKL:
    """kl_coef grows when the measured KL is above `target`, shrinks below it (by at most 20% of n/horizon)."""

    def __init__(self, target: float):
        self.value, self.target = INIT_KL_COEF, target

    def update(self, kl: float, n_samples: int) -> None:
        error = max(min(kl / self.target - 1, 0.2), -0.2) if self.target > 0 else 0.0
        self.value *= 1 + error * n_samples / KL_HORIZON


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(tensors: list[torch.Tensor], masks: list[torch.Tensor], shift_mean: bool = True) -> list[torch.Tensor]:
    """Normalise to unit variance (and zero mean) over the answer tokens of the whole PPO batch."""
    flat = torch.cat([t[m.bool()] for t, m in zip(tensors, masks)])
    mean, std = flat.mean(), flat.std(unbiased=False) + 1e-8
    return [((t - mean) / std + (0 if shift_mean else mean)) * m for t, m in zip(tensors, masks)]


def answer_logprobs(logits: torch.Tensor, ids: torch.Tensor, prompt_width: int, temperature: float) -> torch.Tensor:
    """log p(answer token t) from the logits at the position before it, at the sampling temperature."""
    logits = logits[:, prompt_width - 1:-1].float()
    if temperature > 0:
        logits = logits / temperature
    return torch.log_softmax(logits, -1).gather(-1, ids[:, prompt_width:, None]).squeeze(-1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the answer tokens -> (advantages, returns)."""
    values, rewards = values * mask, rewards * mask
    advantages, last = torch.zeros_like(rewards), torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + GAMMA * next_value - values[:, t]
        last = delta + GAMMA * LAMBDA * last
        advantages[:, t] = last
    return advantages * mask, (advantages + values) * mask


class PPO:
    """Rollouts and updates for one run; `run` below drives it and writes the outputs."""

    def __init__(self, ctx: StageContext, scorer: Any):
        self.ctx, self.cfg, self.args, self.scorer = ctx, ctx.cfg, ctx.args, scorer
        self.model: PolicyWithValue = ctx.model
        self.device = ctx.precision.device
        self.stop_ids = ctx.template.stop_token_ids()
        self.pad_id = ctx.tokenizer.pad_token_id
        gen = self.cfg.generate
        self.sample = gen.do_sample and gen.temperature > 0
        self.temperature = gen.temperature if self.sample else 0.0
        self.gen_kwargs: dict[str, Any] = dict(max_new_tokens=gen.max_new_tokens, do_sample=self.sample,
                                               eos_token_id=self.stop_ids, pad_token_id=self.pad_id, use_cache=True)
        if self.sample:
            self.gen_kwargs.update(temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k)
        self.kl = AdaptiveKL(self.cfg.pref.ppo_target)
        self.ranks = Ranks()  # several processes: stages/ppo_ranks.py
        self.score_stats = RunningMoments()
        p = ctx.precision
        half = torch.bfloat16 if p.bf16 else torch.float16
        self.autocast = (lambda: torch.autocast(self.device, dtype=half)) if (p.bf16 or p.fp16) else nullcontext
        self.scaler = torch.amp.GradScaler(self.device, enabled=p.fp16)

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def rollout(self, prompts: list[list[int]]) -> Rollout:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):], mask[row, width - len(prompt):] = torch.tensor(prompt), 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with self.autocast():
            out = self.model.policy.generate(input_ids=ids, attention_mask=mask, **self.gen_kwargs)
        answer = out[:, width:]
        is_stop = torch.isin(answer, torch.tensor(self.stop_ids, device=answer.device)).long()
        answer_mask = ((is_stop.cumsum(-1) - is_stop) == 0).long()  # up to and including the first stop token
        answer = torch.where(answer_mask.bool(), answer, torch.full_like(answer, self.pad_id))
        full_ids, full_mask = torch.cat([ids, answer], 1), torch.cat([mask, answer_mask], 1)
        with self.autocast():
            logits, values = self.model(full_ids, full_mask)
            logprobs = answer_logprobs(logits, full_ids, width, self.temperature)
            with self.model.policy.disable_adapter():
                ref_logits = self.model.policy(input_ids=full_ids, attention_mask=full_mask,
                                               position_ids=positions(full_mask), use_cache=False).logits
            ref_logprobs = answer_logprobs(ref_logits, full_ids, width, self.temperature)
        scores = self.scorer.score_ids(full_ids, full_mask).float()
        values = values[:, width - 1:-1].float()
        m = answer_mask.float()
        return Rollout(full_ids, full_mask, width, m, logprobs * m, ref_logprobs * m, values * m, scores)

    def assign_rewards(self, batch: list[Rollout]) -> None:
        """Per-token rewards (KL penalty + score on the last token), then advantages and returns."""
        scores = self.ranks.gather(torch.cat([ro.scores for ro in batch]))
        if self.cfg.pref.ppo_score_norm:
            self.score_stats.update(scores)
        for ro in batch:
            score = ro.scores
            if self.cfg.pref.ppo_score_norm:
                score = (score - self.score_stats.mean) / (self.score_stats.std + 1e-8)
            rewards = -self.kl.value * (ro.logprobs - ro.ref_logprobs)
            last = ro.mask.sum(1).long() - 1
            rewards[torch.arange(len(last)), last] += score.to(rewards.device)
            ro.rewards = rewards * ro.mask
        whitened = self.ranks.whiten if self.ranks.on else whiten  # over every rank's batch
        if self.cfg.pref.ppo_whiten_rewards:
            for ro, rewards in zip(batch, whitened([r.rewards for r in batch], [r.mask for r in batch], False)):
                ro.rewards = rewards
        for ro in batch:
            ro.advantages, ro.returns = gae(ro.rewards, ro.values, ro.mask)
        for ro, adv in zip(batch, whitened([r.advantages for r in batch], [r.mask for r in batch])):
            ro.advantages = adv

    # ------------------------------------------------------------------ update
    def losses(self, ro: Rollout) -> tuple[torch.Tensor, dict[str, float]]:
        with self.autocast():
            logits, values = self.model(ro.input_ids, ro.attention_mask)
        logprobs = answer_logprobs(logits, ro.input_ids, ro.prompt_width, self.temperature)
        values = values[:, ro.prompt_width - 1:-1].float()
        ratio = torch.exp((logprobs - ro.logprobs) * ro.mask)
        policy_loss = masked_mean(torch.max(-ro.advantages * ratio,
                                            -ro.advantages * ratio.clamp(1 - CLIP_RANGE, 1 + CLIP_RANGE)), ro.mask)
        clipped = ro.values + (values - ro.values).clamp(-VALUE_CLIP, VALUE_CLIP)
        value_loss = 0.5 * masked_mean(torch.max((values - ro.returns) ** 2, (clipped - ro.returns) ** 2), ro.mask)
        loss = policy_loss + VALUE_COEF * value_loss
        clipfrac = masked_mean(((ratio - 1).abs() > CLIP_RANGE).float(), ro.mask)
        return loss, {"loss": loss.item(), "policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                      "clipfrac": clipfrac.item()}

    def update(self, batch: list[Rollout], optimizer: Any, scheduler: Any, params: list[Any]) -> dict[str, float]:
        accum = self.args.gradient_accumulation_steps
        stats: dict[str, list[float]] = {}
        grad_norms = []
        order = torch.Generator().manual_seed(self.args.seed + scheduler.last_epoch)
        for _ in range(self.cfg.pref.ppo_epochs):
            for i, index in enumerate(torch.randperm(len(batch), generator=order).tolist()):
                loss, parts = self.losses(batch[index])
                self.scaler.scale(loss / accum).backward()
                for key, value in parts.items():
                    stats.setdefault(key, []).append(value)
                if (i + 1) % accum == 0 or i + 1 == len(batch):
                    self.ranks.average_gradients(params)
                    self.scaler.unscale_(optimizer)
                    if self.args.max_grad_norm and self.args.max_grad_norm > 0:
                        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, self.args.max_grad_norm)))
                    self.scaler.step(optimizer)
                    self.scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
        out = {key: sum(values) / len(values) for key, values in stats.items()}
        if grad_norms:
            out["grad_norm"] = sum(grad_norms) / len(grad_norms)
        return self.ranks.mean(out, self.device)


def _progress() -> Any:
    """Trainer's progress bar with one line per log step, as for the other stages, with reward and kl in it."""
    from tuneforge.train.callbacks import ConciseProgress

    class PPOProgress(ConciseProgress):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if self.training_bar is None or not logs:
                return
            left = (time.time() - self.started) / max(state.global_step, 1) * (state.max_steps - state.global_step)
            self.training_bar.write(
                f"step {state.global_step}/{state.max_steps} | loss {logs['loss']:.4f} | reward {logs['reward']:.4f} "
                f"| kl {logs['kl']:.4f} | lr {logs['learning_rate']:.2e} | ~{int(left)}s left")

    return PPOProgress()


def _disable_dropout(model: Any) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _every(value: float, total: int) -> int:
    """logging_steps / save_steps: a number of steps, or a fraction (< 1) of all steps."""
    return max(1, math.ceil(value * total)) if value < 1 else int(value)


def _prompt_batches(prompts: list[list[int]], size: int, seed: int):
    """Endless batches of `size` prompts, walking through freshly shuffled epochs; yields (batch, prompts seen)."""
    order, queue, seen = torch.Generator().manual_seed(seed), [], 0
    while True:
        batch = []
        while len(batch) < size:
            if not queue:
                queue = torch.randperm(len(prompts), generator=order).tolist()
            batch.append(prompts[queue.pop()])
        seen += size
        yield batch, seen


def _optimizer(model: PolicyWithValue, args: Any, updates: int) -> tuple[Any, Any, list[Any]]:
    """AdamW on the adapter and value head with the run's learning rate, betas, weight decay and scheduler."""
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  eps=args.adam_epsilon, weight_decay=args.weight_decay)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(updates),
                              num_training_steps=updates)
    return optimizer, scheduler, params


def _steps(args: Any, pref: Any, n_prompts: int) -> tuple[int, int, int]:
    """(prompts per PPO step, PPO steps, optimizer updates) as LLaMA-Factory sizes a PPO run."""
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * pref.ppo_buffer_size
    if args.max_steps > 0:
        total = args.max_steps
    else:
        total = max(1, math.ceil(args.num_train_epochs * n_prompts / per_step))
    mini_batches = per_step // args.per_device_train_batch_size
    updates = total * pref.ppo_epochs * math.ceil(mini_batches / args.gradient_accumulation_steps)
    return per_step, total, updates


def _prepare_model(ctx: StageContext) -> PolicyWithValue:
    from tuneforge.train.arguments import checkpointing_on

    model: PolicyWithValue = ctx.model.to(ctx.precision.device)
    _disable_dropout(model)
    if checkpointing_on(ctx.args):
        model.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.policy.enable_input_require_grads()
    return model


def _step(ppo: PPO, chosen: list[list[int]], optimizer: Any, scheduler: Any, params: list[Any]) -> dict[str, float]:
    """One PPO step on `chosen` prompts: rollouts, rewards, updates; returns what the step logs."""
    model, mini = ppo.model, ppo.args.per_device_train_batch_size
    model.eval()  # dropout is off either way; eval() only keeps checkpointing out of generation
    batch = [ppo.rollout(chosen[i:i + mini]) for i in range(0, len(chosen), mini)]
    model.train()
    ppo.assign_rewards(batch)
    stats = ppo.update(batch, optimizer, scheduler, params)
    kls = ppo.ranks.gather(torch.cat([(ro.logprobs - ro.ref_logprobs).sum(1) for ro in batch]))  # every rank's
    ppo.kl.update(kls.mean().item(), len(kls))
    scores = ppo.ranks.gather(torch.cat([ro.scores for ro in batch]))
    return {**stats, "learning_rate": scheduler.get_last_lr()[0], "reward": scores.mean().item(),
            "reward_std": scores.std(unbiased=False).item(), "kl": kls.mean().item(), "kl_coef": ppo.kl.value,
            "response_length": ppo.ranks.gather(torch.cat([ro.mask.sum(1) for ro in batch])).mean().item()}


@dataclass
class Training:
    """What the loop updates besides the model: optimizer, scheduler, and every step's loss so far."""

    optimizer: Any
    scheduler: Any
    params: list[Any]
    losses: list[float] = field(default_factory=list)


def run(ctx: StageContext) -> StageResult:
    from transformers import TrainerState, set_seed

    from tuneforge.model.reward import load_reward_scorer

    args, pref = ctx.args, ctx.cfg.pref
    set_seed(args.seed)
    model = _prepare_model(ctx)
    ppo = PPO(ctx, load_reward_scorer(pref, ctx.cfg.model, ctx.template, ctx.precision, ctx.attention))
    if ppo.ranks.on:  # each rank samples its answers with its own draws (the weights are equal already)
        torch.manual_seed(args.seed + ppo.ranks.rank)
    prompts = [list(p) for p in ctx.data.train["prompt_ids"]]
    per_step, total, updates = _steps(args, pref, len(prompts))
    training = Training(*_optimizer(model, args, updates))
    state = TrainerState(max_steps=total, num_train_epochs=args.num_train_epochs)
    if ctx.resume:
        from tuneforge.stages.ppo_state import load_checkpoint

        state = load_checkpoint(ctx.resume, ppo, training)  # RNG states included: the next rollouts repeat
    return _loop(ctx, ppo, training, state, prompts, per_step)


def _loop(ctx: StageContext, ppo: PPO, training: Training, state: Any, prompts: list[list[int]],
          per_step: int) -> StageResult:
    """Steps state.global_step + 1 .. state.max_steps, then the final files; a signal saves the step and
    raises TrainingStopped (train/stop.py)."""
    from transformers import TrainerControl

    from tuneforge.stages.ppo_state import save_checkpoint
    from tuneforge.train import stop
    from tuneforge.train.callbacks import JsonlLogCallback

    args, total, control = ctx.args, state.max_steps, TrainerControl()
    callbacks = [JsonlLogCallback(args.output_dir), _progress()]
    log_every = _every(args.logging_steps, total)
    save_every = _every(args.save_steps, total) if getattr(args.save_strategy, "value", None) == "steps" else 0
    ranks = ppo.ranks
    state.is_world_process_zero = state.is_local_process_zero = ranks.rank == 0  # rank 0 logs
    batches = _prompt_batches(prompts, per_step * ranks.world, args.seed)  # the global batch; each rank its share
    seen = 0
    for _ in range(state.global_step):  # a resumed run: the prompts those steps used
        _, seen = next(batches)
    seen_before = seen
    with stop.training(f"after training finished; its outputs are in {args.output_dir}") as stops:
        for cb in callbacks:
            cb.on_train_begin(args, state, control)
        started, first = time.time(), state.global_step
        for step in range(first + 1, total + 1):
            chosen, seen = next(batches)
            logs = _step(ppo, ranks.share(chosen), training.optimizer, training.scheduler, training.params)
            training.losses.append(logs["loss"])
            state.global_step, state.epoch = step, seen / len(prompts)
            for cb in callbacks:
                cb.on_step_end(args, state, control)
            if step % log_every == 0 or step in (1, total):
                state.log_history.append({**{k: round(v, 6) for k, v in logs.items()},
                                          "epoch": round(state.epoch, 4), "step": step})
                for cb in callbacks:
                    cb.on_log(args, state, control, logs=logs)
            signalled = ranks.any(stops is not None and stops.received is not None, ppo.device)
            if step < total and (signalled or save_every and step % save_every == 0):
                checkpoint = save_checkpoint(ctx, ppo, training, state) if ranks.rank == 0 else None
                ranks.barrier()
                if signalled:
                    callbacks[1].on_train_end(args, state, control)  # close the progress bar
                    raise stop.TrainingStopped((stops and stops.received) or signal.SIGTERM, step, total,
                                               str(checkpoint or f"{args.output_dir}/checkpoint-{step}"),
                                               state.log_history)
        for cb in callbacks:
            cb.on_train_end(args, state, control)
        result = _finish(ctx, ppo, state, training.losses, seen - seen_before, time.time() - started, first)
        if stops is not None and stops.received is not None:
            raise stop.TrainingStopped(stops.received, total, total, "", state.log_history, finished=True)
    return result


def _finish(ctx: StageContext, ppo: PPO, state: Any, losses: list[float], seen: int,
            runtime: float, step: int = 0) -> StageResult:
    """The final files. `seen` prompts and the steps after `step` are this process's (a resumed run's
    speed counts only its own steps)."""
    from tuneforge.stages.ppo_state import write_outputs

    total = state.global_step
    rewards = [e["reward"] for e in state.log_history]
    metrics = {"epoch": round(state.epoch, 4), "train_loss": sum(losses) / len(losses),
               "train_runtime": round(runtime, 4), "train_steps_per_second": round((total - step) / runtime, 3),
               "train_samples_per_second": round(seen / runtime, 3), "reward": rewards[-1],
               "reward_first": rewards[0], "kl": state.log_history[-1]["kl"], "total_ppo_steps": total}
    if ppo.ranks.rank == 0:
        write_outputs(ctx, ppo.model, state, metrics)
    ppo.ranks.barrier()
    return StageResult(metrics, None, state.log_history, plot_keys=("loss", "reward", "kl"))


STAGE = StageDef("ppo", run, checks=check, model=build_model)
