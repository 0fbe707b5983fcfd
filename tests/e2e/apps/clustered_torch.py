"""A torch.distributed all-reduce (gloo backend, CPU) across a cluster of 2 containers. torch comes from PyPI
with its CUDA libraries (about 2.5 GB): this runs under `make test-torch`, not in CI (see test_clustered_torch.py)."""

import os

import modal
import modal.experimental

app = modal.App("e2e-clustered-torch")
image = modal.Image.debian_slim().pip_install("torch")


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
