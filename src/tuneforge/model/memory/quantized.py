"""What a quantized base (QLoRA: quantization_bit) takes on the card, as its quantizer stores it.

- bitsandbytes 4-bit (nf4/fp4): two weights per byte, plus one absmax per block of 64 weights: fp32
  (4 bytes), or with double quantization an 8-bit absmax plus one fp32 constant per 256 blocks;
- bitsandbytes 8-bit (LLM.int8): one byte per weight plus one fp32 scale per output row;
- hqq: `bits` per weight plus a scale and a zero point (half precision) per group of 64.
Every linear layer of the decoder is quantized; embeddings, norms, biases and the output head stay
in the load dtype. The forward and backward dequantize one weight at a time into the compute dtype:
the largest such copy is working memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.config.schema import ModelConfig
from tuneforge.model.memory.shape import Shape

BNB_BLOCK = 64
DOUBLE_QUANT_BLOCKS = 256
HQQ_GROUP = 64


@dataclass(frozen=True)
class Quantization:
    method: str  # bnb | hqq
    bits: int
    double: bool = True
    kind: str = "nf4"

    @classmethod
    def of(cls, m: ModelConfig) -> Quantization | None:
        if m.quantization_bit is None:
            return None
        return cls(m.quantization_method, m.quantization_bit, m.double_quantization, m.quantization_type)

    def bytes_per_weight(self) -> float:
        if self.method == "hqq":
            return self.bits / 8 + 2 * 2 / HQQ_GROUP
        if self.bits == 8:
            return 1.0
        constants = (1 + 4 / DOUBLE_QUANT_BLOCKS) / BNB_BLOCK if self.double else 4 / BNB_BLOCK
        return 0.5 + constants

    def describe(self) -> str:
        if self.method == "hqq":
            return f"{self.bits}-bit hqq"
        if self.bits == 8:
            return "8-bit bitsandbytes (LLM.int8)"
        return f"4-bit {self.kind} bitsandbytes{', double quantization' if self.double else ''}"


def quantized_linears(shape: Shape, quant: Quantization, half_bytes: int) -> tuple[int, int, int]:
    """(weights quantized, their bytes stored quantized, bytes of the largest dequantized copy)."""
    dims = shape.linear_dims().values()
    weights = shape.layers * sum(n_in * n_out for n_in, n_out in dims)
    stored = weights * quant.bytes_per_weight()
    if quant.method == "bnb" and quant.bits == 8:
        stored += shape.layers * sum(4 * n_out for _n_in, n_out in dims)
    largest = max(n_in * n_out for n_in, n_out in dims) * half_bytes
    return weights, int(stored), largest
