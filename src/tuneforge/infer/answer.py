"""Generated token ids -> a served answer, for the transformers backend's serving paths (continuous
batching and the one-at-a-time fallback feed the same decoder): incremental detokenization, the
template's stop tokens, stop strings, and the finish reason.

The pieces join to what `HFEngine.generate` answers for the same tokens: cut at the first stop token
and the first stop string, whitespace trimmed at both ends (`stops.StopCutter` does the streaming side).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tuneforge.infer.base import Piece, Response
from tuneforge.infer.stops import StopCutter, cut_at_stop


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt (no special tokens added: the template rendered them). The fast
    tokenizer's backend is used directly, so that concurrent threads never re-configure its padding
    (fast tokenizers raise 'Already borrowed' when one thread does while another encodes)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return list(tokenizer.encode(text, add_special_tokens=False))
    encoding = backend.encode(text, add_special_tokens=False)
    return [t for t, keep in zip(encoding.ids, encoding.attention_mask) if keep]


class AnswerDecoder:
    """Feed it the answer's new token ids as they come; it returns the text to send and knows when the
    answer ended (a stop token or a stop string) and why."""

    def __init__(self, tokenizer: Any, stop_ids: Iterable[int], stops: list[str], max_new_tokens: int,
                 skip_special_tokens: bool, prompt_tokens: int):
        self.tokenizer, self.stop_ids, self.stops = tokenizer, set(stop_ids), stops
        self.max_new_tokens, self.skip, self.prompt_tokens = max_new_tokens, skip_special_tokens, prompt_tokens
        self.ids: list[int] = []  # the answer's tokens, without the stop token
        self.finished = False  # a stop token or a stop string ended it
        self.cutter = StopCutter(stops)
        self.prefix = self.read = 0  # decode window: ids[prefix:read] is text already sent

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def text_delta(self, flush: bool = False) -> str:
        """Text the new ids add. A window of the last tokens is decoded rather than the whole answer, and
        nothing is released while it ends in an incomplete character (U+FFFD), unless `flush`."""
        sent = self.decode(self.ids[self.prefix:self.read])
        full = self.decode(self.ids[self.prefix:])
        if len(full) <= len(sent) or (full.endswith("\ufffd") and not flush):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return full[len(sent):]

    def feed(self, new_ids: list[int]) -> str:
        """The text to send for the answer's next tokens ("" once the answer has ended)."""
        if self.finished:
            return ""
        for i, token in enumerate(new_ids):
            if token in self.stop_ids:
                new_ids, self.finished = new_ids[:i], True
                break
        self.ids.extend(new_ids)
        delta = self.text_delta()
        out = self.cutter.feed(delta) if delta else ""
        self.finished = self.finished or self.cutter.stopped
        return out

    def finish(self) -> Piece:
        """The last piece: the held-back rest of the text, and the whole answer with its token counts."""
        rest = "" if self.cutter.stopped else self.cutter.feed(self.text_delta(flush=True))
        rest += self.cutter.finish()
        text, hit_stop = cut_at_stop(self.decode(self.ids), self.stops)
        ended = self.finished or hit_stop or len(self.ids) < self.max_new_tokens
        return Piece(rest, Response(text.strip(), self.prompt_tokens, len(self.ids), "stop" if ended else "length"))
