"""GPU check for a host with NVIDIA GPUs (not part of the test suite: CI has no GPU).

    python scripts/gpu_oci_check.py CRUN [--config-only]

Runs two crun containers configured by Berth's own code (berth.worker.oci_config, berth.worker.gpu,
berth.worker.cgroups, the default seccomp profile and capabilities): one given a GPU, which must see
its device nodes, nvidia-smi and (through the host's /opt/torch venv, where present) CUDA in torch,
and one without, which must not. The rootfs binds the host's /usr/bin, /usr/lib, /etc and /opt but
not /usr/local, where the driver lives on the machines it was run on, so the driver libraries and
device nodes come only from berth.worker.gpu. Run on an H100 machine (cgroup v2) on 2026-11-27: the
GPU container saw nvidia0, nvidia-smi listed the H100 and torch ran a matmul on it; the other saw
no device. Set OUT to a folder to keep the generated config.json."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from berth.worker import gpu  # noqa: E402
from berth.worker.cgroups import ContainerCgroup  # noqa: E402
from berth.worker.oci_config import Bind, ContainerConfig, build_config  # noqa: E402
from berth.worker.runtime.oci import device_entry  # noqa: E402

CRUN = sys.argv[1]
TORCH_PY = "/opt/torch/.venv/bin/python3"  # a Python with CUDA torch on the host, bound in with /opt
gpus = gpu.detect()
print("detected:", gpus)
pool = gpu.GpuPool(gpus)
taken = pool.take("ta-check", [("T4", 1), ("H100", 1), ("ANY", 1)])
print("taken:", taken)
libs = gpu.driver_libraries()
print("driver libraries:", len(libs), libs[:4])
smi = subprocess.run(["which", "nvidia-smi"], capture_output=True, text=True).stdout.strip()
print("nvidia-smi at", smi, os.path.realpath(smi), flush=True)
root = Path(tempfile.mkdtemp())
rootfs = root / "rootfs"
for d in ("usr/bin", "usr/lib", "usr/lib64", "usr/share", "etc", "opt", "tmp", "root", "proc", "dev", "sys"):
    (rootfs / d).mkdir(parents=True, exist_ok=True)
for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/bin")):
    (rootfs / link).symlink_to(target)
binds = [Bind(p, p) for p in ("/usr/bin", "/usr/lib", "/usr/lib64", "/usr/share", "/etc", "/opt") if os.path.isdir(p)]
binds += [Bind(lib, lib) for lib in libs]
if smi:
    binds.append(Bind(os.path.realpath(smi), "/usr/local/bin/nvidia-smi"))
probe = (
    "import os, subprocess, torch; print('CUDA_VISIBLE_DEVICES', os.environ.get('CUDA_VISIBLE_DEVICES'));"
    "print('devices', sorted(d for d in os.listdir('/dev') if d.startswith('nvidia')));"
    "print('smi', subprocess.run(['/usr/local/bin/nvidia-smi','-L'],capture_output=True,text=True).stdout.strip());"
    "print('torch', torch.cuda.device_count(), torch.cuda.get_device_name(0));"
    "x = torch.ones(1024, 1024, device='cuda'); print('matmul', float((x @ x).sum()))"
)
cg = ContainerCgroup("berth-gpu-check")
cg.create(8192)
print("cgroup v2:", cg.v2, cg.container_path, flush=True)
config = ContainerConfig(
    args=[TORCH_PY, "-c", probe] if os.path.exists(TORCH_PY) else ["/usr/local/bin/nvidia-smi", "-L"],
    env={"PATH": "/usr/local/bin:/usr/bin:/bin", **gpu.visible_devices_env(taken)},
    rootfs=str(rootfs),
    cwd="/",
    hostname="gpu-check",
    binds=binds,
    devices=[device_entry(d) for d in gpu.container_devices(taken)],
    cgroups_path=cg.container_path,
)
bundle = root / "bundle"
bundle.mkdir()
(bundle / "config.json").write_text(json.dumps(build_config(config)))
print("bundle", bundle, flush=True)
if os.environ.get("OUT"):
    Path(os.environ["OUT"], "config.json").write_text(json.dumps(build_config(config), indent=1))
if "--config-only" in sys.argv:
    sys.exit(0)


def run(name: str) -> None:
    """Write the config and run it as container `name`, printing its exit code and output."""
    (bundle / "config.json").write_text(json.dumps(build_config(config)))
    out = subprocess.run(
        [CRUN, "--root", str(root / "state"), "run", "--bundle", str(bundle), name],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    print("exit", out.returncode)
    print(out.stdout)
    print(out.stderr[-3000:])


run("gpu-check")
# The same container without devices must not see the GPU.
config.devices = []
config.env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
config.args = [
    TORCH_PY,
    "-c",
    "import os, torch; print('no-gpu devices', [d for d in os.listdir('/dev') if d.startswith('nvidia')],"
    " 'torch', torch.cuda.is_available())",
]
run("gpu-check2")

print("memory.max of parent:", (cg._memory_dir / "memory.max").read_text().strip(), "oom:", cg.oom_killed())
cg.remove()
print("parent removed:", not cg._memory_dir.exists())
