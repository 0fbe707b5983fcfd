"""Small C helpers that Berth builds on the worker's host with its C compiler, once per source."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("berth.worker.native")


def compile_once(source: Path, cache: Path, stem: str, flags: list[str], without: str) -> Path | None:
    """`source` compiled with `flags` into `cache`, named by its content's hash so that a changed source is
    built again; None where there is no C compiler or the build fails (`without` says what is lost then)."""
    text = source.read_bytes()
    target = cache / f"{stem}-{hashlib.sha256(text).hexdigest()[:16]}{'.so' if '-shared' in flags else ''}"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler: %s", without)
        return None
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o755)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    out = subprocess.run([compiler, *flags, "-o", str(partial), str(source)], capture_output=True, text=True)
    if out.returncode != 0:
        log.warning("could not build %s (%s): %s", stem, out.stderr.strip(), without)
        partial.unlink(missing_ok=True)
        return None
    os.chmod(partial, 0o755)
    partial.replace(target)
    return target
