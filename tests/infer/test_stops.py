"""The one stop-string mechanism (tuneforge.infer.stops): a stream cut and held back piece by piece
joins to exactly the non-streamed answer."""

from __future__ import annotations

import random

from tuneforge.infer.stops import StopCutter, cut_at_stop


def test_stop_cutter_streams_exactly_the_non_streamed_text():
    rng = random.Random(0)
    cases = [("  hello STOP world", ["STOP"]), ("hello world  ", []), ("ab\n\nEND tail", ["END", "ta"]),
             ("我是 Forge，由 Tuneforge Lab 开发", ["Tuneforge"]), ("xx STO", ["STOP"]), ("a  b", ["  b"])]
    for text, stops in cases:
        expected = text
        for word in stops:  # what the engine does for the non-streamed answer
            if word in expected:
                expected = expected[:expected.index(word)]
        expected = expected.strip()
        assert cut_at_stop(text, stops)[0].strip() == expected  # the non-streamed answer's cut
        for _ in range(30):
            cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 6))))
            pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
            cutter = StopCutter(stops)
            got = "".join(cutter.feed(p) for p in pieces) + cutter.finish()
            assert got == expected, (text, stops, pieces)
