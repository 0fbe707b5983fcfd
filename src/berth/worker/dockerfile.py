"""Parse the Dockerfile commands the modal client sends in an Image definition into build steps.
Pure: no I/O. Unsupported instructions are refused by name."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

# Instructions that only describe the image; they make no layer and change nothing we run.
IGNORED = {"LABEL", "EXPOSE", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "MAINTAINER"}
SUPPORTED = {"FROM", "RUN", "ENV", "WORKDIR", "COPY", "ADD", "CMD", "ENTRYPOINT", "ARG", "USER", *IGNORED}
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Step:
    op: str  # FROM | RUN | ENV | WORKDIR | COPY | CMD | ENTRYPOINT | ARG
    args: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # --from=..., --chown=...
    text: str = ""  # the instruction as written, for logs and cache keys

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)


@dataclass
class Plan:
    base: str  # the FROM argument: "base" or a registry tag
    steps: list[Step] = field(default_factory=list)


def join_lines(commands: list[str]) -> list[str]:
    """Fold backslash continuations and drop comments and blank lines."""
    out: list[str] = []
    pending = ""
    for raw in "\n".join(commands).splitlines():
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((pending + line).strip())
        pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out


def expand(value: str, env: dict[str, str]) -> str:
    """$VAR / ${VAR} substitution as Docker does for ENV, WORKDIR and COPY."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _split_options(rest: str) -> tuple[list[tuple[str, str]], str]:
    options = []
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        options.append((name, value))
        rest = rest.lstrip()
    return options, rest


def _exec_form(rest: str) -> list[str] | None:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None


def parse_env_pairs(rest: str) -> list[tuple[str, str]]:
    """ENV KEY=VALUE [KEY2="V 2" ...] or the legacy ENV KEY VALUE."""
    words = shlex.split(rest, posix=True)
    if words and "=" not in words[0]:
        key, _, value = rest.partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"Invalid ENV instruction: ENV {rest}")
        pairs.append((key, value))
    return pairs


def _step(op: str, rest: str, line: str) -> Step:
    options, rest = _split_options(rest) if op in ("COPY", "ADD", "RUN", "FROM") else ([], rest)
    if op in ("RUN", "CMD", "ENTRYPOINT"):
        exec_form = _exec_form(rest)
        args: tuple[str, ...] = ("exec", *exec_form) if exec_form is not None else ("shell", rest)
    elif op in ("COPY", "ADD"):
        words = _exec_form(rest) or shlex.split(rest)
        if len(words) < 2:
            raise InvalidArgument(f"{op} needs a source and a destination: {line}")
        args = tuple(words)
    elif op == "ENV":
        args = tuple(f"{k}={v}" for k, v in parse_env_pairs(rest))
    else:
        args = (rest,)
    return Step("COPY" if op == "ADD" else op, args, tuple(options), line)


def parse(commands: list[str]) -> Plan:
    plan: Plan | None = None
    for line in join_lines(commands):
        word, _, rest = line.partition(" ")
        op = word.upper()
        rest = rest.strip()
        if op not in SUPPORTED:
            raise InvalidArgument(f"Unsupported Dockerfile instruction {word!r} in: {line}")
        if op in IGNORED:
            continue
        if op == "FROM":
            if plan is not None:
                raise InvalidArgument(f"Multi-stage builds are not supported (second FROM): {line}")
            options, rest = _split_options(rest)
            plan = Plan(base=rest.split()[0] if rest else "")
            if not plan.base:
                raise InvalidArgument("FROM needs an image")
            continue
        if plan is None:
            raise InvalidArgument(f"The first Dockerfile instruction must be FROM, not: {line}")
        if op == "USER" and rest not in ("root", "0", "0:0", "root:root"):
            raise InvalidArgument(f"Unsupported Dockerfile instruction USER {rest}: containers run as root")
        if op == "USER":
            continue
        if op == "ADD" and re.match(r"^(--\S+\s+)*(https?|git)://", rest):
            raise InvalidArgument(f"Unsupported Dockerfile instruction ADD from a URL: {line}")
        plan.steps.append(_step(op, rest, line))
    if plan is None:
        raise InvalidArgument("The image has no FROM instruction")
    return plan
