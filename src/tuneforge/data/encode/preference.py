"""Encodings for the preference and RL stages, in the column names trl's trainers accept pre-tokenized.

- pairwise (rm, dpo): prompt_ids, chosen_ids, rejected_ids. The prompt (system, history, last user
  turn, assistant header) is shared and never trains; each answer ends with the stop token.
- kto: prompt_ids, completion_ids, label.
- prompts (ppo, grpo, rloo): prompt_ids (rendered up to the assistant header) and the reference answer.
Truncation keeps the two answers of a pair comparable: both are cut to the same length.
"""

from __future__ import annotations

from typing import Any

from tuneforge.data.encode.supervised import cut_prompt
from tuneforge.data.encode.tokenize import tokenize_turns
from tuneforge.data.example import Example
from tuneforge.data.templates import BoundTemplate


def _prompt_and_answer(template: BoundTemplate, example: Example) -> tuple[list[int], list[int]]:
    turns = tokenize_turns(template.tokenizer, template.render(example))
    prompt = [t for turn in turns[:-1] for t in turn.prompt + turn.answer + turn.suffix] + turns[-1].prompt
    return prompt, turns[-1].answer


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _fit(prompt: list[int], answers: list[list[int]], cutoff: int) -> tuple[list[int], list[list[int]]] | None:
    longest = max(len(a) for a in answers)
    total = len(prompt) + longest
    if total <= cutoff:
        return prompt, answers
    keep = min(longest, max(cutoff - len(prompt), cutoff * longest // total))
    prompt_keep = cutoff - keep
    if keep <= 0 or prompt_keep <= 0:
        return None
    return cut_prompt(prompt, prompt_keep), [a[:keep] for a in answers]


def encode_pairwise(template: BoundTemplate, example: Example, cutoff_len: int) -> dict[str, Any] | None:
    prompt_c, chosen = _prompt_and_answer(template, example.with_answer(example.chosen))
    prompt_r, rejected = _prompt_and_answer(template, example.with_answer(example.rejected))
    shared = _common_prefix(prompt_c, prompt_r)
    if shared < len(prompt_c) or shared < len(prompt_r):  # a token merged across the boundary
        chosen, rejected = prompt_c[shared:] + chosen, prompt_r[shared:] + rejected
    full_len = shared + max(len(chosen), len(rejected))
    fitted = _fit(prompt_c[:shared], [chosen, rejected], cutoff_len)
    if fitted is None:
        return None
    prompt, (chosen, rejected) = fitted
    return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected, "full_len": full_len}


def encode_kto(template: BoundTemplate, example: Example, cutoff_len: int) -> dict[str, Any] | None:
    prompt, completion = _prompt_and_answer(template, example)
    full_len = len(prompt) + len(completion)
    fitted = _fit(prompt, [completion], cutoff_len)
    if fitted is None:
        return None
    prompt, (completion,) = fitted
    return {"prompt_ids": prompt, "completion_ids": completion, "label": bool(example.kto_label),
            "full_len": full_len}


def encode_prompt(template: BoundTemplate, example: Example, cutoff_len: int) -> dict[str, Any] | None:
    """For online RL: the conversation without its last answer, rendered up to the assistant header."""
    messages = list(example.messages)
    reference = ""
    if messages and messages[-1].role in ("assistant", "function"):
        reference = messages.pop().content
    prompt_example = Example(messages=messages, system=example.system, tools=example.tools)
    text = template.render_text(prompt_example, for_generation=True)
    ids = template.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > cutoff_len:
        ids = cut_prompt(ids, cutoff_len)
    return {"prompt_ids": ids, "prompt": text, "reference": reference, "full_len": len(ids)}
