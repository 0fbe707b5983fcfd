"""Credentials and paths, checked without a server: every comparison of a secret, digest or signature in
src/berth is constant-time (hmac.compare_digest, never ==), and paths from clients stay where they belong
(volume paths with NUL, COPY destinations with '..' that a relative workdir lets through)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.services.volume_fs import relative
from berth.worker.builder import _place, copy_targets

SRC = Path(__file__).resolve().parents[2] / "src" / "berth"
# Names that hold a credential or a value derived from one (a digest of it, a signature over it).
CREDENTIAL = re.compile(r"secret|digest|signature|\bsig\b|password|token_hash|secret_hash|jwt", re.IGNORECASE)


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _name(node.func)
    if isinstance(node, ast.Subscript):
        return _name(node.value)
    return ""


def _variable_credential(node: ast.expr) -> bool:
    """A value that may be a credential: a name like one, not a constant, None or a type check."""
    name = _name(node)
    # hashlib's hexdigest() of uploaded content is an integrity check of public data, not a credential.
    return not isinstance(node, ast.Constant) and name != "hexdigest" and bool(CREDENTIAL.search(name))


def test_every_comparison_of_a_credential_is_constant_time() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for op, (a, b) in zip(node.ops, zip(operands, operands[1:], strict=False), strict=True):
                if not isinstance(op, ast.Eq | ast.NotEq):
                    continue
                if isinstance(a, ast.Constant) or isinstance(b, ast.Constant):
                    continue  # against a literal ("" or None): not a secret compared with a secret
                if _variable_credential(a) or _variable_credential(b):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == [], "compare credentials with hmac.compare_digest:\n" + "\n".join(offenders)


@pytest.mark.parametrize("path", ["a\0b", "/dir/\0", "\0"])
def test_a_volume_path_with_nul_is_invalid(path: str) -> None:
    with pytest.raises(InvalidArgument, match="NUL"):
        relative(path)


def test_a_copy_destination_never_leaves_its_layer(tmp_path: Path) -> None:
    host = tmp_path / "src.txt"
    host.write_text("payload")
    layer = tmp_path / "layer"
    layer.mkdir()
    context = {"/src.txt": host}
    targets = copy_targets(["src.txt"], "../../../escaped.txt", "", context)
    targets += [("../../escaped-too.txt", host, None)]
    _place(layer, targets)
    assert not list(tmp_path.parent.glob("escaped*")) and not list(tmp_path.glob("escaped*"))
    assert sorted(p.name for p in layer.rglob("*.txt")) == ["escaped-too.txt", "escaped.txt"]
