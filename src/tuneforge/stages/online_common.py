"""What the online RL stages (grpo, rloo) share: rewards, prompts, generation settings, one run function.

trl's GRPOTrainer and RLOOTrainer sample `num_generations` completions per prompt, score them with
reward functions and update the policy; they do all of that themselves. Written here, and why:
- Rewards: the reward model of `stage: rm` (model/reward.py scores rendered prompt + answer text) and
  plain Python functions named in `reward_funcs`, both as trl reward functions. Every dataset column
  (e.g. `reference`, the dataset's own answer) reaches the Python functions as a keyword argument.
- Prompts: trl re-tokenizes the `prompt` text with the tokenizer's special tokens switched on (a second
  BOS for llama-style tokenizers) and without our cutoff_len; `_tokenize_prompts` hands it our ids.
- Generation stops at the template's stop tokens (trl reads them from model.generation_config) and uses
  the generate section (max_new_tokens, temperature, top_p, top_k, repetition_penalty). Sampling is
  always on: with greedy decoding every completion of a group is the same and nothing is learnt.
- A group of completions must not be split between generation rounds; when per_device_train_batch_size
  x gradient_accumulation_steps is not a multiple of num_generations, a round spans more micro-steps
  (trl's steps_per_generation) instead of failing.
- The reference (pref_beta > 0) is the base model with the LoRA adapter disabled (see trl_shared), or for
  full/freeze trl's own frozen copy of the starting model; with pref_beta 0 there is none.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Callable

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.log import note
from tuneforge.stages import StageContext, StageResult
from tuneforge.stages.run import run_trainer
from tuneforge.stages.trl_hooks import require_hooks
from tuneforge.stages.trl_shared import trl_config, use_disabled_adapter_as_reference

PLOT_KEYS = ("loss", "reward", "kl", "completions/mean_length", "eval_reward")


def import_reward_func(spec: str) -> Callable[..., list[float]]:
    """"package.module:function" or "path/to/file.py:function" -> the function."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(f"reward_funcs '{spec}': write module:function or path/to/file.py:function")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"reward_funcs '{spec}': no file {path}")
            module_spec = importlib.util.spec_from_file_location(f"tuneforge_reward_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as exc:  # the user's module failed to import: say so in one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"reward_funcs '{spec}': importing {target} failed ({type(exc).__name__}: {first})") from None
    func = getattr(module, name, None)
    if not callable(func):
        raise ConfigError(f"reward_funcs '{spec}': {target} has no function '{name}'")
    return func


def check(cfg: RunConfig) -> list[Callable[..., list[float]]]:
    """Mistakes found without loading any weights (run by `run_online` first; the CLI may call it earlier).
    Returns the imported reward_funcs."""
    stage, pref = cfg.method.stage, cfg.pref
    if not pref.reward_model and not pref.reward_funcs:
        raise ConfigError(f"stage {stage} needs a reward: reward_model (the output_dir of a stage: rm run) "
                          "and/or reward_funcs (module:function)")
    if pref.ref_model:
        raise ConfigError(f"stage {stage} takes no ref_model: its reference is the starting policy (LoRA adapter "
                          "disabled, or a frozen copy for full/freeze); set pref_beta: 0 for none")
    if cfg.generate.temperature <= 0:
        raise ConfigError(f"stage {stage} samples its completions: temperature must be above 0")
    return [import_reward_func(spec) for spec in pref.reward_funcs or []]


def reward_functions(ctx: StageContext,
                     python_funcs: list[Callable[..., list[float]]]) -> list[Callable[..., list[float]]]:
    """The reward model as a trl reward function (when given), then the Python ones."""
    pref = ctx.cfg.pref
    funcs = []
    if pref.reward_model:
        from tuneforge.model.reward import load_reward_scorer

        scorer = load_reward_scorer(pref, ctx.cfg.model, ctx.template, ctx.precision, ctx.attention)

        def reward_model(prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
            return scorer(prompts, completions)

        funcs.append(reward_model)  # its mean is logged as rewards/reward_model/mean
    return funcs + python_funcs


def steps_per_generation(per_step: int, accumulation: int, num_generations: int) -> int:
    """Micro-steps one generation round feeds: gradient_accumulation_steps, or the fewest above it whose
    completions hold whole groups of num_generations."""
    steps = accumulation
    while (per_step * steps) % num_generations:
        steps += 1
    return steps


def online_fields(ctx: StageContext) -> dict[str, Any]:
    """The trl config fields grpo and rloo share."""
    cfg, args = ctx.cfg, ctx.args
    pref, gen = cfg.pref, cfg.generate
    n = pref.num_generations
    per_step = args.per_device_train_batch_size * args.world_size
    steps = steps_per_generation(per_step, args.gradient_accumulation_steps, n)
    if steps != args.gradient_accumulation_steps:
        note(f"{cfg.method.stage}: {per_step * args.gradient_accumulation_steps} completions per optimizer step do "
             f"not hold whole groups of num_generations {n}; each generation round feeds {steps} micro-steps")
    fields: dict[str, Any] = dict(
        beta=pref.pref_beta, num_generations=n, steps_per_generation=steps,
        max_completion_length=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k,
        repetition_penalty=gen.repetition_penalty, remove_unused_columns=False,
        include_num_input_tokens_seen="no",  # trl counts prompt + completion tokens itself (num_tokens)
    )
    eval_batch = args.per_device_eval_batch_size * args.world_size
    if args.eval_strategy != "no" and eval_batch % n:
        fields["per_device_eval_batch_size"] = -(-args.per_device_eval_batch_size // n) * n
        note(f"{cfg.method.stage}: per_device_eval_batch_size raised to {fields['per_device_eval_batch_size']} "
             f"(a multiple of num_generations {n})")
    return fields


def trainer_class(base: Any) -> Any:
    """`base` (GRPOTrainer or RLOOTrainer) fed our prompt ids and our stop tokens."""
    require_hooks(base, "_tokenize_prompts", "_tokenizer")

    class OnlineTrainer(base):
        def __init__(self, *args: Any, data_collator: Any = None, prompt_ids: dict[str, list[int]], **kwargs: Any):
            # trl collates these trainers itself (data_collator is not an argument)
            self._tuneforge_prompt_ids = prompt_ids
            super().__init__(*args, **kwargs)
            use_disabled_adapter_as_reference(self.model)

        def _tokenize_prompts(self, prompts: list) -> Any:
            if not prompts or not isinstance(prompts[0], str):
                return super()._tokenize_prompts(prompts)
            ids = [self._tuneforge_prompt_ids.get(p) or self._tokenizer(p, add_special_tokens=False)["input_ids"]
                   for p in prompts]
            return ids, None, {}

    OnlineTrainer.__name__ = OnlineTrainer.__qualname__ = f"Tuneforge{base.__name__}"
    return OnlineTrainer


def run_online(ctx: StageContext, base: Any, config_class: Any, **stage_fields: Any) -> StageResult:
    python_funcs = check(ctx.cfg)
    args = trl_config(config_class, ctx.args, **{**online_fields(ctx), **stage_fields})
    # trl ends each completion at model.generation_config's eos ids (plus the tokenizer's eos)
    ctx.model.generation_config.eos_token_id = ctx.template.stop_token_ids()
    prompt_ids: dict[str, list[int]] = {}
    for split in (ctx.data.train, ctx.data.eval):
        if split is not None:
            prompt_ids.update(zip(split["prompt"], split["prompt_ids"]))
    rewards = reward_functions(ctx, python_funcs)
    result = run_trainer(args, ctx.model, ctx.tokenizer, ctx.data, None, ctx.resume,
                         trainer_class=trainer_class(base), reward_funcs=rewards, prompt_ids=prompt_ids)
    result.plot_keys = PLOT_KEYS
    return result
