"""Figures a reliability test notes for docs/reliability.md: with BERTH_RELIABILITY_RECORD set to a file (as
`make reliability` sets it), each note is one JSON line appended to it; otherwise notes go nowhere."""

from __future__ import annotations

import json
import os


def note(test: str, **figures: object) -> None:
    path = os.environ.get("BERTH_RELIABILITY_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, **figures}) + "\n")
