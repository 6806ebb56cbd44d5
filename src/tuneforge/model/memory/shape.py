"""The decoder shape memory depends on, and what a fine-tuning method trains (counted as peft counts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import MethodConfig
from tuneforge.model.memory.constants import LINEARS, MOE_KEYS
from tuneforge.model.selection import freeze_trained, lora_targets

# --------------------------------------------------------------------------------------------
# Shape and trainable parameters


@dataclass(frozen=True)
class Shape:
    """The numbers of a Llama-style decoder that memory depends on."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool  # Qwen3: an RMSNorm on every query and key head

    @classmethod
    def of(cls, config: Any) -> Shape:
        model_type = str(getattr(config, "model_type", "") or "")
        text = getattr(config, "text_config", None)
        if text is not None and getattr(config, "hidden_size", None) is None:
            config = text  # multimodal configs keep the decoder's numbers in text_config
        if any(getattr(config, key, None) for key in MOE_KEYS):
            raise ConfigError(f"tuneforge estimate does not model mixture-of-experts models yet ({model_type})")
        missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                               "vocab_size") if not isinstance(getattr(config, k, None), int)]
        if missing:
            raise ConfigError(f"tuneforge estimate needs a Llama-style decoder config; model_type "
                              f"'{model_type}' has no {', '.join(missing)}")
        heads = config.num_attention_heads
        attention_bias = bool(getattr(config, "attention_bias", False))
        qwen2 = model_type == "qwen2"  # Qwen2 always has q/k/v biases and none on o_proj
        return cls(
            model_type=model_type, hidden=config.hidden_size, intermediate=config.intermediate_size,
            layers=config.num_hidden_layers, heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            vocab=config.vocab_size, tied=bool(getattr(config, "tie_word_embeddings", False)),
            qkv_bias=qwen2 or attention_bias, o_bias=attention_bias and not qwen2,
            mlp_bias=bool(getattr(config, "mlp_bias", False)), qk_norm=model_type == "qwen3")

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear of a decoder layer."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_params(self) -> dict[str, int]:
        """Parameter name inside a decoder layer -> element count (named as transformers names them)."""
        out: dict[str, int] = {}
        bias = {"q_proj": self.qkv_bias, "k_proj": self.qkv_bias, "v_proj": self.qkv_bias, "o_proj": self.o_bias,
                "gate_proj": self.mlp_bias, "up_proj": self.mlp_bias, "down_proj": self.mlp_bias}
        for name, (n_in, n_out) in self.linear_dims().items():
            block = "self_attn" if name in LINEARS[:4] else "mlp"
            out[f"{block}.{name}.weight"] = n_in * n_out
            if bias[name]:
                out[f"{block}.{name}.bias"] = n_out
        if self.qk_norm:
            out["self_attn.q_norm.weight"] = self.head_dim
            out["self_attn.k_norm.weight"] = self.head_dim
        out["input_layernorm.weight"] = self.hidden
        out["post_attention_layernorm.weight"] = self.hidden
        return out

    def named_params(self) -> dict[str, int]:
        """Every parameter of the causal LM once (tied embeddings are one parameter, as in
        `model.named_parameters()`)."""
        out = {"model.embed_tokens.weight": self.vocab * self.hidden}
        layer = self.layer_params()
        for index in range(self.layers):
            out.update({f"model.layers.{index}.{name}": n for name, n in layer.items()})
        out["model.norm.weight"] = self.hidden
        if not self.tied:
            out["lm_head.weight"] = self.vocab * self.hidden
        return out


@dataclass(frozen=True)
class Plan:
    """What a fine-tuning method trains."""

    kind: str  # lora | freeze | full
    params: int  # all parameters, adapters included (as peft counts them)
    trainable: int
    lora_rank: int = 0
    lora_targets: frozenset[str] = frozenset()
    lora_dropout: float = 0.0
    dora: bool = False
    trained: frozenset[str] = frozenset()  # full names of the base model's parameters that train
    extra_trained: int = 0  # peft modules_to_save copies (additional_target)

    def layer_trained(self, index: int) -> frozenset[str]:
        prefix = f"model.layers.{index}."
        return frozenset(n[len(prefix):] for n in self.trained if n.startswith(prefix))

    @property
    def embed(self) -> bool:
        return "model.embed_tokens.weight" in self.trained

    def head_trains(self, shape: Shape) -> bool:
        """The output head trains: its own weight, or the embedding it is tied to."""
        return "lm_head.weight" in self.trained or shape.tied and self.embed


def plan_method(shape: Shape, method: MethodConfig) -> Plan:
    """Which parameters train, counted exactly as peft / adapters.py would count them."""
    named = shape.named_params()
    total = sum(named.values())
    if method.finetuning_type == "full":
        return Plan("full", total, total, trained=frozenset(named))
    if method.finetuning_type == "freeze":
        trained = frozenset(freeze_trained(named, shape.layers, method))
        return Plan("freeze", total, sum(named[n] for n in trained), trained=trained)
    targets = lora_targets(method, LINEARS)
    dims = shape.linear_dims()
    r = method.lora_rank
    per_layer = sum(r * (dims[t][0] + dims[t][1]) + (dims[t][1] if method.use_dora else 0) for t in set(targets))
    adapters = per_layer * shape.layers
    # additional_target (peft modules_to_save): a trainable copy of each named module
    extra = 0
    for module in method.additional_target or []:
        extra += sum(n for name, n in named.items() if f".{module}." in f".{name}")
    return Plan("lora", total + adapters + extra, adapters + extra, lora_rank=r, lora_targets=frozenset(targets),
                lora_dropout=method.lora_dropout, dora=method.use_dora, extra_trained=extra)


def count_parameters(model_config: Any, method: MethodConfig) -> tuple[int, int]:
    """(trainable, total), as adapters.count_parameters reports them after apply_method."""
    plan = plan_method(Shape.of(model_config), method)
    return plan.trainable, plan.params


