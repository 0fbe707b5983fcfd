"""Object ids: Modal's shape (prefix, dash, 22 base62 characters), and every character in use."""

from __future__ import annotations

import re
from collections import Counter

from berth.ids import new_id


def test_ids_have_modals_shape_and_do_not_repeat() -> None:
    ids = [new_id("fc") for _ in range(2000)]
    assert all(re.fullmatch(r"fc-[A-Za-z0-9]{22}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert re.fullmatch(r"ta-[A-Za-z0-9]{8}", new_id("ta", 8))


def test_every_base62_character_appears_about_equally_often() -> None:
    counts = Counter("".join(new_id("x")[2:] for _ in range(5000)))  # 110,000 characters, ~1,774 each
    assert len(counts) == 62
    assert min(counts.values()) > 1500 and max(counts.values()) < 2050
