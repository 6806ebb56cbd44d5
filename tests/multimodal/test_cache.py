"""The tokenized cache of a vision dataset notices a picture edited in place under the same name."""

from __future__ import annotations

import random

from test_data import encoded
from vl import square, write_squares


def test_a_picture_edited_in_place_is_encoded_again(tmp_path, caplog):
    folder = write_squares(tmp_path / "数据", 3)
    first, _ = encoded(folder)
    cached, _ = encoded(folder)
    assert not first.from_cache and cached.from_cache
    picture = folder / "图片" / "1.png"
    square("red", random.Random(7)).resize((84, 84)).save(picture)  # same name, new pixels and size
    with caplog.at_level("INFO", logger="tuneforge"):
        again, _ = encoded(folder)
    assert not again.from_cache
    assert "1 image/video file(s) changed since the tokenized cache was written" in caplog.text
    assert again.train[1]["image_hw"] == [84, 84] and first.train[1]["image_hw"] == [56, 56]
    assert again.train[1]["images"] != first.train[1]["images"]
    assert encoded(folder)[0].from_cache  # the new cache holds until the next edit
