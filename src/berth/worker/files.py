"""Placing a task's mounted files into its container filesystem."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from berth.domain.spec import MountedFile


def place_files(files: list[MountedFile], root: Path) -> None:
    """Copy mounted files to their container paths under `root`; ValueError for a path that would escape."""
    for f in files:
        parts = Path(f.remote_path).parts
        if ".." in parts or not f.remote_path.startswith("/"):
            raise ValueError(f"Refusing mount path {f.remote_path!r}")
        dest = root / Path(*parts[1:])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.source, dest)
        os.chmod(dest, f.mode & 0o7777 or 0o644)
