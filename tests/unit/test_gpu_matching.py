"""GPU detection and matching on fake nvidia-smi / ldconfig output (no GPU on the CI machines)."""

from __future__ import annotations

import subprocess

import pytest
from modal_proto import api_pb2

from berth.domain.gpu import (
    FALLBACKS_KEY,
    Gpu,
    GpuRequestError,
    assign,
    fallbacks_option,
    function_requests,
    parse_request,
)
from berth.worker.gpu import GpuPool, detect, driver_libraries, visible_devices_env

SMI = """0, NVIDIA H100 80GB HBM3, GPU-aaaa, 81559
1, NVIDIA H100 80GB HBM3, GPU-bbbb, 81559
2, NVIDIA A100-SXM4-40GB, GPU-cccc, 40960
3, NVIDIA A10G, GPU-dddd, 23028
"""


def fake(outputs: dict[str, str]):  # type: ignore[no-untyped-def]
    def run(argv: list[str]) -> str:
        if argv[0] not in outputs:
            raise FileNotFoundError(argv[0])
        return outputs[argv[0]]

    return run


def test_detect_reads_nvidia_smi() -> None:
    gpus = detect(fake({"nvidia-smi": SMI}))
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert gpus[0] == Gpu(0, "NVIDIA H100 80GB HBM3", "GPU-aaaa", 81559)
    assert gpus[0].device == "/dev/nvidia0"


def test_no_driver_means_no_gpus() -> None:
    assert detect(fake({})) == []

    def failing(argv: list[str]) -> str:
        raise subprocess.CalledProcessError(9, argv)

    assert detect(failing) == []


@pytest.mark.parametrize(
    ("request_", "indexes"),
    [("H100", [0]), ("h100:2", [0, 1]), ("A100", [2]), ("A100-40GB", [2]), ("A10G", [3]), ("any:3", [0, 1, 2])],
)
def test_type_names_match_what_workers_report(request_: str, indexes: list[int]) -> None:
    gpu_type, count = parse_request(request_)
    assert [g.index for g in assign(gpu_type, count, detect(fake({"nvidia-smi": SMI})))] == indexes


def test_unmeetable_request_says_what_is_free() -> None:
    gpus = detect(fake({"nvidia-smi": SMI}))
    with pytest.raises(GpuRequestError, match=r"gpu=H100:3 now: 2 matching GPU\(s\) free"):
        assign("H100", 3, gpus)
    with pytest.raises(GpuRequestError, match="free GPUs: none"):
        assign("T4", 1, [])
    with pytest.raises(GpuRequestError, match="A100-80GB"):
        assign(*parse_request("A100-80GB"), gpus)


def test_unknown_type_and_bad_count_are_refused() -> None:
    with pytest.raises(GpuRequestError, match="Unknown GPU type 'V100X'"):
        parse_request("V100X")
    with pytest.raises(GpuRequestError, match="Invalid GPU count"):
        parse_request("H100:two")


def test_driver_libraries_and_visible_devices() -> None:
    ldconfig = (
        "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n"
        "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n"
        "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n"
    )
    assert driver_libraries(fake({"ldconfig": ldconfig})) == [
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
    ]
    gpus = detect(fake({"nvidia-smi": SMI}))[:2]
    assert visible_devices_env(gpus)["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa,GPU-bbbb"


def test_pool_hands_out_free_gpus_and_takes_fallbacks() -> None:
    pool = GpuPool(detect(fake({"nvidia-smi": SMI})))
    assert [g.uuid for g in pool.take("ta-1", [("H100", 2)])] == ["GPU-aaaa", "GPU-bbbb"]
    # both H100s are held: an H100 request waits, and says they are busy rather than absent
    assert pool.blocker([("H100", 1)]) == (
        "Waiting for gpu=H100: all matching GPUs are in use; the call stays queued until one is free"
    )
    # a fallback list takes the first alternative that fits
    assert [g.uuid for g in pool.take("ta-2", [("H100", 1), ("A10G", 1)])] == ["GPU-dddd"]
    pool.release("ta-1")
    assert pool.blocker([("H100", 1)]) is None


def test_pool_says_when_no_gpu_of_the_kind_exists() -> None:
    pool = GpuPool([])
    reason = pool.blocker([("T4", 1), ("L4", 2)])
    assert reason is not None and "gpu=T4 or L4:2: no worker has such a GPU (this worker has no GPU)" in reason
    with pytest.raises(GpuRequestError, match="no worker has such a GPU"):
        pool.take("ta-1", [("T4", 1)])
    assert pool.blocker([]) is None  # a CPU function never waits for GPUs


def test_function_requests_include_the_ranked_fallbacks() -> None:
    ranked = [
        api_pb2.Function(resources=api_pb2.Resources(gpu_config=api_pb2.GPUConfig(gpu_type=t, count=n)))
        for t, n in (("H100", 1), ("A100", 2), ("ANY", 1))
    ]
    fn = api_pb2.Function()
    fn.CopyFrom(ranked[0])
    fn.experimental_options[FALLBACKS_KEY] = fallbacks_option(ranked[1:])
    assert function_requests(fn) == [("H100", 1), ("A100", 2), ("ANY", 1)]
    assert function_requests(api_pb2.Function()) == []
