"""A torch.distributed all-reduce (gloo backend, CPU) across a cluster of 2 containers.

torch comes from the CPU build that machines of this kind keep on disk (TORCH_WHEEL, about 190 MB), copied
into the image and installed from there (its few pure-Python dependencies come from PyPI): PyPI's x86-64 torch
is the CUDA build, about 2.5 GB. test_clustered_torch.py skips where the file is missing."""

import os
from pathlib import PurePosixPath

import modal
import modal.experimental

TORCH_WHEEL = os.environ.get(
    "BERTH_TORCH_WHEEL", "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
)
_IN_IMAGE = f"/wheels/{PurePosixPath(TORCH_WHEEL).name}"

app = modal.App("e2e-clustered-torch")
image = modal.Image.debian_slim().add_local_file(TORCH_WHEEL, _IN_IMAGE, copy=True).pip_install(_IN_IMAGE)


@app.function(image=image, timeout=600)
@modal.clustered(size=2)
def gloo_all_reduce() -> float:
    import torch
    import torch.distributed as dist

    info = modal.experimental.get_cluster_info()
    os.environ["GLOO_SOCKET_IFNAME"] = "i6pn0"  # the cluster's private link
    dist.init_process_group(
        backend="gloo",
        init_method=f"tcp://{info.container_ipv4_ips[0]}:29500",
        rank=info.rank,
        world_size=len(info.container_ips),
    )
    tensor = torch.tensor([float(info.rank + 1)])
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    dist.destroy_process_group()
    return float(tensor.item())
