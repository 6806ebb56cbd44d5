"""Built-in templates for the common model families.

Each is checked in tests against the family's real Jinja chat template (ids must be equal).
Names follow LLaMA-Factory's `template:` values so its users' YAML works unchanged.
"""

from __future__ import annotations

from tuneforge.data.templates.base import Template
from tuneforge.data.templates.tools import GENERIC_TOOLS, QWEN_TOOLS
from tuneforge.data.templates.vision import LLAVA, QWEN3_VL, QWEN_VL

_CHATML_USER = "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
_QWEN_OBS = "<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
_QWEN = dict(
    user=_CHATML_USER, assistant="{content}<|im_end|>", suffix="\n", stop_words=("<|im_end|>",),
    system="<|im_start|>system\n{content}<|im_end|>\n", observation=_QWEN_OBS,
    function="{content}<|im_end|>", tools=QWEN_TOOLS,
)
_LLAMA3_HEAD = "<|start_header_id|>{role}<|end_header_id|>\n\n"

TEMPLATES: dict[str, Template] = {}


def _add(template: Template) -> None:
    TEMPLATES[template.name] = template
    for alias in template.aliases:
        TEMPLATES[alias] = template


_add(Template(name="qwen", default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
              always_system=True, aliases=("qwen2", "qwen2_5", "qwen2.5"),
              notes="Qwen1.5/2/2.5 chat models (chatml with Qwen's default system prompt)", **_QWEN))
_add(Template(name="qwen3_nothink", aliases=("qwen3_2507", "qwen3_instruct"),
              notes="Qwen3 instruct models without thinking (Qwen3-*-Instruct-2507): chatml, no default system",
              **_QWEN))
_add(Template(name="qwen3", thinking="qwen3",
              notes="Qwen3 hybrid-thinking models: the final answer carries a <think> block "
                    "(empty when the data has none; with enable_thinking: false it goes in the prompt)",
              **_QWEN))
_add(Template(name="qwen2_vl", default_system="You are a helpful assistant.", always_system=True, vision=QWEN_VL,
              aliases=("qwen2_5_vl", "qwen2.5_vl"),
              notes="Qwen2-VL / Qwen2.5-VL: chatml with a default system prompt; <image> -> the picture's image tokens, "
                    "<video> -> the video's tokens",
              **_QWEN))
_add(Template(name="qwen3_vl", thinking="qwen3", vision=QWEN3_VL,
              notes="Qwen3-VL thinking models: qwen3's <think> rules; <image> -> the picture's image tokens", **_QWEN))
_add(Template(name="qwen3_vl_nothink", vision=QWEN3_VL, aliases=("qwen3_vl_instruct",),
              notes="Qwen3-VL instruct models: chatml, no default system; <image> -> the picture's image tokens",
              **_QWEN))
_add(Template(name="llava", prefix="{bos}", system="{content} ", user="USER: {content} ASSISTANT:",
              assistant="{content}{eos}", function="{content}{eos}", stop_words=("{eos}",), always_system=True,
              default_system="A chat between a curious user and an artificial intelligence assistant. The assistant "
                             "gives helpful, detailed, and polite answers to the user's questions.",
              vision=LLAVA, notes="LLaVA-1.5 (vicuna format); <image> -> the picture's image tokens"))
_add(Template(name="chatml", prefix="{bos}", user=_CHATML_USER, assistant="{content}<|im_end|>",
              function="{content}<|im_end|>", suffix="\n",
              system="<|im_start|>system\n{content}<|im_end|>\n", stop_words=("<|im_end|>",), strip=True,
              tools=GENERIC_TOOLS, notes="generic chatml (trims messages)"))
_add(Template(name="llama3", prefix="{bos}", strip=True, stop_words=("<|eot_id|>",),
              system=_LLAMA3_HEAD.replace("{role}", "system") + "{content}<|eot_id|>",
              user=_LLAMA3_HEAD.replace("{role}", "user") + "{content}<|eot_id|>"
              + _LLAMA3_HEAD.replace("{role}", "assistant"),
              assistant="{content}<|eot_id|>", function="{content}<|eot_id|>",
              observation=_LLAMA3_HEAD.replace("{role}", "ipython") + "{content}<|eot_id|>"
              + _LLAMA3_HEAD.replace("{role}", "assistant"),
              tools=GENERIC_TOOLS, aliases=("llama3.1", "llama3_1", "llama3.2"),
              notes="Llama 3.x instruct"))
_add(Template(name="llama2", user="{bos}[INST] {content} [/INST]", assistant=" {content} {eos}",
              function=" {content} {eos}", system="<<SYS>>\n{content}\n<</SYS>>\n\n", system_style="merge",
              stop_words=("{eos}",), strip=True, tools=GENERIC_TOOLS, notes="Llama 2 chat"))
_add(Template(name="mistral", prefix="{bos}", system="{content}\n\n", user="[INST] {content} [/INST]",
              assistant=" {content}{eos}", function=" {content}{eos}", stop_words=("{eos}",), strip=True,
              tools=GENERIC_TOOLS, notes="Mistral instruct ([INST] ... [/INST])"))
_add(Template(name="gemma", prefix="{bos}", system="{content}\n\n", system_style="merge",
              user="<start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n",
              assistant="{content}<end_of_turn>", function="{content}<end_of_turn>", suffix="\n",
              stop_words=("<end_of_turn>",), strip=True, tools=GENERIC_TOOLS,
              aliases=("gemma2", "gemma3"), notes="Gemma 1/2/3 instruct (system merged into the first turn)"))
_add(Template(name="phi", system="<|system|>\n{content}<|end|>\n",
              user="<|user|>\n{content}<|end|>\n<|assistant|>\n", assistant="{content}<|end|>",
              function="{content}<|end|>", suffix="\n", stop_words=("<|end|>",), strip=True,
              tools=GENERIC_TOOLS, aliases=("phi3",), notes="Phi-3 instruct"))
_DEEPSEEK = dict(prefix="{bos}", system="{content}", user="<｜User｜>{content}<｜Assistant｜>",
                 assistant="{content}<｜end▁of▁sentence｜>", function="{content}<｜end▁of▁sentence｜>",
                 stop_words=("<｜end▁of▁sentence｜>",), tools=GENERIC_TOOLS)
_add(Template(name="deepseek3", aliases=("deepseekv3",), notes="DeepSeek-V3 chat", **_DEEPSEEK))
_add(Template(name="deepseekr1", generation_prefix="<think>\n", aliases=("deepseek_r1", "deepseek_r1_distill"),
              notes="DeepSeek-R1 and its distills (generation starts inside <think>)", **_DEEPSEEK))
_add(Template(name="glm4", prefix="[gMASK]<sop>", system="<|system|>\n{content}",
              user="<|user|>\n{content}<|assistant|>", assistant="\n{content}{eos}", function="\n{content}{eos}",
              observation="<|observation|>\n{content}<|assistant|>", stop_words=("{eos}", "<|user|>", "<|observation|>"),
              tools=GENERIC_TOOLS,
              notes="GLM-4 chat; answers are trained to end with eos (GLM's own template has no end token)"))
_add(Template(name="alpaca", prefix="{bos}", system="{content}\n\n", user="### Instruction:\n{content}\n\n### Response:\n",
              assistant="{content}{eos}", function="{content}{eos}", suffix="\n\n", stop_words=("{eos}",), strip=True,
              tools=GENERIC_TOOLS, notes="Stanford Alpaca prompt format"))
# The space after "Assistant:" belongs to the answer: BPE tokenizers merge it into the answer's
# first word (" The"), so a prompt ending in a space would own, and never train, that token.
_add(Template(name="default", prefix="{bos}", system="System: {content}\n", user="Human: {content}\nAssistant:",
              assistant=" {content}{eos}", function=" {content}{eos}", suffix="\n", stop_words=("{eos}",),
              tools=GENERIC_TOOLS, notes="plain Human/Assistant format for base models"))
_add(Template(name="empty", prefix="{bos}", user="{content}", assistant="{content}{eos}", function="{content}{eos}",
              stop_words=("{eos}",), notes="no formatting: prompt and answer concatenated"))
