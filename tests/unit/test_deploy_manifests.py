"""The worker manifests in deploy/ are valid Kubernetes resources, and every flag they pass to
`berth worker` is one it takes (checked, never applied)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from berth.cli.main import parser

MANIFESTS = sorted((Path(__file__).parents[2] / "deploy" / "kubernetes").glob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_the_manifest_is_a_valid_kubernetes_resource(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_the_worker_command_line_is_one_berth_accepts(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            command = container["command"] + container["args"]
            assert command[:2] == ["berth", "worker"]
            args = parser().parse_args(command[1:])
            assert args.server.startswith("https://") and args.ca


def test_there_are_manifests_to_check() -> None:
    assert len(MANIFESTS) >= 2
