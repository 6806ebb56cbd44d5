"""Every export ends by loading what it wrote with the target runtime (where installed) and comparing
greedy answers with the merged model on a few prompts, English and Chinese. The result is one line;
an answer that differs is a warning naming the prompt. The merged model (transformers, fp32) is the
reference; the prompt is our template's generation prompt, given to both as the same token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.data.example import Example, Message
from tuneforge.log import note

PROMPTS = ("Who are you?", "你是谁", "What can you do for me?")
NEW_TOKENS = 16


@dataclass
class Parity:
    runtime: str
    equal: list[str] = field(default_factory=list)
    different: dict[str, tuple[str, str]] = field(default_factory=dict)  # prompt -> (reference, runtime)

    def report(self) -> None:
        total = len(self.equal) + len(self.different)
        note(f"load-back {self.runtime}: greedy answers equal to the merged model's on {len(self.equal)}/{total} "
             f"prompts ({NEW_TOKENS} tokens)")
        for prompt, (ours, theirs) in self.different.items():
            note(f"warning: {self.runtime} answers {prompt!r} differently: {theirs!r} (merged model: {ours!r})")


def prompt_ids(bound: Any, tokenizer: Any) -> dict[str, list[int]]:
    out = {}
    for prompt in PROMPTS:
        text = bound.render_text(Example(messages=[Message("user", prompt)]), for_generation=True)
        out[prompt] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return out


def reference_answers(model_dir: Path, prompts: dict[str, list[int]], stop_ids: list[int]) -> dict[str, list[int]]:
    """Greedy ids of the merged model (transformers, fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return {p: transformers_greedy(model, ids, stop_ids) for p, ids in prompts.items()}


def transformers_greedy(model: Any, ids: list[int], stop_ids: list[int]) -> list[int]:
    import torch

    tensor = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        out = model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=NEW_TOKENS,
                             do_sample=False, eos_token_id=stop_ids, pad_token_id=stop_ids[0])
    return _until_stop(out[0, len(ids):].tolist(), stop_ids)


def _until_stop(ids: list[int], stop_ids: list[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in stop_ids:
            return ids[:i + 1]
    return ids


def llama_cpp_greedy(path: Path, prompts: dict[str, list[int]], stop_ids: list[int]) -> dict[str, list[int]]:
    """Greedy ids from llama.cpp (llama-cpp-python) for the same prompt ids."""
    from llama_cpp import Llama  # type: ignore[import-not-found]

    llm = Llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False, seed=0)
    out = {}
    for prompt, ids in prompts.items():
        llm.reset()
        answer: list[int] = []
        for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            answer.append(token)
            if token in stop_ids or len(answer) >= NEW_TOKENS:
                break
        out[prompt] = answer
    return out


def compare(runtime: str, reference: dict[str, list[int]], answers: dict[str, list[int]], tokenizer: Any) -> Parity:
    parity = Parity(runtime)
    for prompt, ours in reference.items():
        theirs = answers[prompt]
        if theirs == ours:
            parity.equal.append(prompt)
        else:
            parity.different[prompt] = (tokenizer.decode(ours), tokenizer.decode(theirs))
    parity.report()
    return parity


def transformers_answers(model_dir: Path, prompts: dict[str, list[int]], stop_ids: list[int]) -> dict[str, list[int]]:
    """Greedy ids of a quantized checkpoint loaded by plain transformers."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    return {p: transformers_greedy(model, ids, stop_ids) for p, ids in prompts.items()}
