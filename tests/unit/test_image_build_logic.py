"""Pure logic of the image builder and OCI runtime: Dockerfile parsing, COPY placement, base selection,
config.json generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.errors import FailedPrecondition, InvalidArgument
from berth.worker.builder import BuildFailed, copy_targets
from berth.worker.cgroups import ContainerCgroup
from berth.worker.dockerfile import expand, parse
from berth.worker.oci_config import Bind, ContainerConfig, build_config
from berth.worker.rootfs import BaseRequest, parse_python_base, resolve_base


def test_debian_slim_commands_parse_into_run_steps_and_metadata() -> None:
    plan = parse(
        [
            "FROM python:3.11.12-slim-bookworm",
            "RUN apt-get update",
            "RUN echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections",
            'CMD ["sleep", "172800"]',
        ]
    )
    assert plan.base == "python:3.11.12-slim-bookworm"
    assert [s.op for s in plan.steps] == ["RUN", "RUN", "CMD"]
    assert plan.steps[1].args == (
        "shell",
        "echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections",
    )
    assert plan.steps[2].args == ("exec", "sleep", "172800")


def test_copy_from_and_env_forms_are_understood() -> None:
    plan = parse(
        [
            "FROM base",
            "COPY --from=ghcr.io/astral-sh/uv:0.8.0 /uv /.uv/uv",
            'ENV A=1 B="two words"',
            "ENV LEGACY value with spaces",
            "ARG VERSION=3",
        ]
    )
    copy, env, legacy, arg = plan.steps
    assert copy.option("from") == "ghcr.io/astral-sh/uv:0.8.0" and copy.args == ("/uv", "/.uv/uv")
    assert env.args == ("A=1", "B=two words")
    assert legacy.args == ("LEGACY=value with spaces",)
    assert arg.op == "ARG"


def test_continuations_and_comments_are_folded() -> None:
    plan = parse(["FROM base", "# a comment", "RUN apt-get install -y \\", "    curl \\", "    git"])
    assert plan.steps[0].args[1].split() == ["apt-get", "install", "-y", "curl", "git"]


@pytest.mark.parametrize("line", ["ONBUILD RUN x", 'SHELL ["/bin/bash", "-c"]', "FRobnicate x"])
def test_unsupported_instruction_is_named(line: str) -> None:
    word = line.split()[0]
    with pytest.raises(InvalidArgument, match=f"Unsupported Dockerfile instruction '{word}'"):
        parse(["FROM base", line])


def test_second_from_and_missing_from_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="Multi-stage"):
        parse(["FROM base", "FROM other"])
    with pytest.raises(InvalidArgument, match="must be FROM"):
        parse(["RUN true"])


def test_env_expansion_uses_the_current_environment() -> None:
    assert (
        expand("/.uv/.venv/bin:$PATH:${HOME}", {"PATH": "/usr/bin", "HOME": "/root"}) == "/.uv/.venv/bin:/usr/bin:/root"
    )


def test_copy_places_directory_contents_and_single_files_like_docker() -> None:
    context = {"/app/a.py": Path("/h/a"), "/app/sub/b.py": Path("/h/b"), "/.requirements.txt": Path("/h/r")}
    modes = {"/app/sub/b.py": 0o100755}  # a mounted file's mode travels with it
    assert copy_targets(["."], "/", "/root", context, modes) == [
        ("/.requirements.txt", Path("/h/r"), None),
        ("/app/a.py", Path("/h/a"), None),
        ("/app/sub/b.py", Path("/h/b"), 0o100755),
    ]
    assert copy_targets(["app"], "/srv", "/root", context) == [
        ("/srv/a.py", Path("/h/a"), None),
        ("/srv/sub/b.py", Path("/h/b"), None),
    ]
    assert copy_targets(["/.requirements.txt"], "/.uv/0/req.txt", "/", context) == [
        ("/.uv/0/req.txt", Path("/h/r"), None)
    ]
    assert copy_targets(["/.requirements.txt"], "data/", "/w", context) == [
        ("/w/data/.requirements.txt", Path("/h/r"), None)
    ]
    with pytest.raises(BuildFailed, match="not in the build context"):
        copy_targets(["missing.txt"], "/x", "/", context)


def test_python_tags_map_to_the_debian_release_that_carries_them() -> None:
    assert parse_python_base("python:3.11.12-slim-bookworm") == BaseRequest("bookworm", "3.11")
    assert parse_python_base("ubuntu:22.04") is None
    assert resolve_base(BaseRequest("bookworm", "3.11")) == BaseRequest("bookworm", "3.11")
    assert resolve_base(BaseRequest("bookworm", "3.13")) == BaseRequest("trixie", "3.13")
    with pytest.raises(
        FailedPrecondition, match=r"Python 3\.12 is not available.*3\.11 \(bookworm\), 3\.13 \(trixie\)"
    ):
        resolve_base(BaseRequest("bookworm", "3.12"))


def test_emulator_mode_substitutes_the_nearest_python_debian_carries() -> None:
    assert resolve_base(BaseRequest("bookworm", "3.12"), emulate=True) == BaseRequest("bookworm", "3.11")  # tie: older
    assert resolve_base(BaseRequest("bookworm", "3.14"), emulate=True) == BaseRequest("trixie", "3.13")
    assert resolve_base(BaseRequest("bookworm", "3.9"), emulate=True) == BaseRequest("bookworm", "3.11")
    # what Debian or a mirror can provide is never substituted
    assert resolve_base(BaseRequest("bookworm", "3.13"), emulate=True) == BaseRequest("trixie", "3.13")
    assert resolve_base(BaseRequest("bookworm", "3.12"), "http://m", emulate=True).standalone


def test_config_json_has_namespaces_limits_mounts_and_the_network_namespace() -> None:
    cg = ContainerCgroup("berth-ta-1", base="/outer")
    config = build_config(
        ContainerConfig(
            args=["python", "-m", "modal._container_entrypoint"],
            env={"A": "1"},
            rootfs="/t/merged",
            netns_path="/var/run/netns/berth-ta-1",
            cgroups_path=cg.container_path,
            cpu=0.5,
            pids_limit=100,
            binds=[Bind("/cache/pkg", "/pkg"), Bind("/data/vol", "/mnt/vol", readonly=False)],
        )
    )
    linux = config["linux"]
    assert {n["type"] for n in linux["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert {"type": "network", "path": "/var/run/netns/berth-ta-1"} in linux["namespaces"]
    assert linux["cgroupsPath"] == "/outer/berth/berth-ta-1/c"
    assert linux["resources"]["cpu"] == {"quota": 50000, "period": 100000}
    assert linux["resources"]["pids"] == {"limit": 100}
    assert "memory" not in linux["resources"]  # set on the parent cgroup, where the OOM evidence survives
    binds = {m["destination"]: m for m in config["mounts"] if m["type"] == "bind"}
    assert "ro" in binds["/pkg"]["options"] and "rw" in binds["/mnt/vol"]["options"]
    assert config["process"]["env"] == ["A=1"] and config["root"] == {"path": "/t/merged", "readonly": False}


def test_no_cpu_limit_without_cpu_request() -> None:
    config = build_config(ContainerConfig(args=["true"], env={}, rootfs="/r"))
    assert "cpu" not in config["linux"]["resources"]
    assert {"type": "network"} in config["linux"]["namespaces"]


def test_cgroup_v2_parents_live_under_berth_at_the_root_with_their_limit(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    cg = ContainerCgroup("berth-ta-1", root=tmp_path)
    assert cg.v2 and cg.container_path == "/berth/berth-ta-1/c"
    cg.create(100)
    parent = tmp_path / "berth" / "berth-ta-1"
    assert (parent / "memory.max").read_text() == str(100 * 1024 * 1024)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+pids"  # each controller written in turn
    assert not cg.oom_killed()
    (parent / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_killed()
