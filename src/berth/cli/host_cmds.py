"""`berth doctor [--fix]`: check that this host can run isolated (OCI) containers, and repair what it can.
The same repairs as scripts/setup-host.sh, which CI runs before the tests."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from berth.config import Settings, default_data_dir

REQUIRED_PACKAGES = {"crun": "crun", "debootstrap": "debootstrap", "ip": "iproute2", "iptables": "iptables"}
# runsc: gVisor, for `berth up --runtime runsc` (image builds still run on crun); s3fs: CloudBucketMount.
OPTIONAL_PACKAGES = {
    "runc": "runc",
    "runsc": "runsc",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "tini-static": "tini",
    "s3fs": "s3fs",
}
UNIFIED = Path("/sys/fs/cgroup/unified")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: Callable[[], None] | None = None
    required: bool = True


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdin=subprocess.DEVNULL)
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    subprocess.run(argv, check=True, env=env, stdin=subprocess.DEVNULL)


def v2_controllers() -> list[str]:
    try:
        return (UNIFIED / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def _move_controllers_to_v1() -> None:
    for ctl in v2_controllers():
        target = Path("/sys/fs/cgroup") / ctl
        target.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup", "-o", ctl, "cgroup", str(target)], check=True)


def _installer(package: str) -> Callable[[], None]:
    return lambda: _apt_install([package])


def _tool_checks() -> list[Check]:
    checks = []
    for packages, required in ((REQUIRED_PACKAGES, True), (OPTIONAL_PACKAGES, False)):
        for binary, package in packages.items():
            found = shutil.which(binary)
            fix = _installer(package) if found is None else None
            checks.append(Check(binary, found is not None, found or f"missing (apt package {package})", fix, required))
    return checks


def _bridge_fix() -> None:
    from berth.worker.network import ensure_bridge

    ensure_bridge()


def _host_checks(settings: Settings) -> list[Check]:
    from berth.worker import network

    controllers = v2_controllers()
    overlay = "overlay" in Path("/proc/filesystems").read_text()
    nat = subprocess.run(["iptables", "-C", *network.nat_rule()], capture_output=True).returncode == 0
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    cache = settings.image_cache_dir
    isolated, isolation = network.isolation_state()
    return [
        Check("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0 else "OCI containers need root"),
        Check(
            "cgroups",
            not controllers,
            "no controller left on cgroup2"
            if not controllers
            else f"cgroup2 holds {', '.join(controllers)}: crun refuses hybrid hierarchies until they move to v1",
            _move_controllers_to_v1 if controllers else None,
        ),
        Check("overlayfs", overlay, "kernel overlayfs available" if overlay else "overlay filesystem missing"),
        Check(
            "network",
            network.bridge_ready() and nat and forward,
            f"bridge {network.BRIDGE} {network.HOST_IP}, NAT and forwarding"
            if network.bridge_ready() and nat and forward
            else "bridge, NAT rule or ip_forward missing",
            None if network.bridge_ready() and nat and forward else _bridge_fix,
        ),
        Check("isolation", isolated, isolation, None if isolated else _bridge_fix),
        Check("ca-bundle", Path(settings.ca_bundle).is_file(), settings.ca_bundle, required=False),
        Check(
            "image-cache",
            any(cache.glob("base/*/ready")),
            f"{cache}: debian_slim base cached"
            if any(cache.glob("base/*/ready"))
            else f"{cache}: base not built yet (the first debian_slim build takes about a minute)",
            required=False,
        ),
    ]


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = Settings(data_dir=default_data_dir())
    checks = _tool_checks() + _host_checks(settings)
    if args.fix:
        for check in checks:
            if not check.ok and check.fix is not None:
                print(f"fixing {check.name} ...")
                try:
                    check.fix()
                except (OSError, subprocess.CalledProcessError) as exc:
                    print(f"  could not fix {check.name}: {exc}")
        checks = _tool_checks() + _host_checks(settings)
    failed = False
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        failed = failed or (check.required and not check.ok)
        print(f"[{mark}] {check.name}: {check.detail}")
    print(
        "berth: this host can run OCI containers (berth up --runtime crun)"
        if not failed
        else "berth: not ready for OCI containers; run `berth doctor --fix` as root (the process runtime still works)"
    )
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    doctor = sub.add_parser("doctor", help="check (and with --fix prepare) this host for isolated containers")
    doctor.add_argument("--fix", action="store_true", help="install missing packages and repair cgroups/network")
    doctor.set_defaults(func=cmd_doctor)
