"""Stop strings, the one implementation: the engines cut answers at the first stop string, and a
stream holds back what could be the start of one, so that the streamed text equals the
non-streamed answer (cut at the first stop string, whitespace trimmed at both ends)."""

from __future__ import annotations

from typing import Any


def stop_words(stop: Any) -> list[str]:
    """OpenAI's `stop` is a string or a list of strings."""
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else [str(s) for s in stop]


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop string in it, and whether there was one."""
    hits = [text.index(s) for s in stops if s in text]
    return (text[:min(hits)], True) if hits else (text, False)


class StopCutter:
    """Turns streamed pieces into deltas that join to the non-streamed answer: cut at the first stop
    string (then `stopped` is true and nothing more comes), hold back what could be the start of
    one, and trim whitespace at both ends (the non-streamed answer is `.strip()`ped). Call
    `finish()` at the end of the stream for the held-back rest."""

    def __init__(self, stops: list[str]):
        self.stops, self.buf, self.started, self.stopped = stops, "", False, False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.buf += piece
        if not self.started:
            self.buf = self.buf.lstrip()
            if not self.buf:
                return ""
            self.started = True
        cut, self.stopped = cut_at_stop(self.buf, self.stops)
        if self.stopped:
            self.buf = ""
            return cut.rstrip()
        keep = len(self.buf) - len(self.buf.rstrip())
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buf)), keep, -1):
                if self.buf.endswith(s[:k]):
                    keep = k
                    break
        ready = len(self.buf[:len(self.buf) - keep].rstrip())  # whitespace before a held stop start waits too
        out, self.buf = self.buf[:ready], self.buf[ready:]
        return out

    def finish(self) -> str:
        out, self.buf = self.buf.rstrip(), ""
        return out
