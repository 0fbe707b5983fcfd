"""Scale of work (`make bench-scale`): a large `experimental_spawn_map` on a throwaway `berth up` (process
runtime), through the stock modal SDK. Reports how fast inputs are accepted and run, decile by decile (they
must not slow down as the input table grows), and the server's memory: its peak RSS and its RSS along the way.
Writes its section into docs/benchmarks.md between the scale-bench markers.

    python bench/scale.py [--inputs 1000000] [--no-write]

`spawn_map` itself makes one FunctionMap per input, so the stock client's own CPU bounds it (see the
container-loop section); `experimental_spawn_map` sends inputs in batches to one call, which is what a large
fan-out uses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from berth_server import berth_server
from report import replace_section

BIN = Path(sys.executable).parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- scale-bench -->", "<!-- /scale-bench -->"

DRIVER = """
import json, time, modal
app = modal.App("bench-scale")

@app.function(max_containers=8)
def tick(i: int) -> float:
    return time.time()

if __name__ == "__main__":
    n = {n}
    marks = []
    def inputs():
        for i in range(n):
            if i % (n // 10) == 0:
                marks.append(time.time())
            yield i
    with app.run():
        start = time.time()
        call = tick.experimental_spawn_map(inputs())
        accepted = time.time()
        marks.append(accepted)
        done = sorted(call.iter())
        print("RESULT " + json.dumps({{"start": start, "accepted": accepted, "marks": marks, "done": done}}))
"""


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(n: int, workdir: Path) -> dict[str, object]:
    script = workdir / "scale_driver.py"
    script.write_text(textwrap.dedent(DRIVER.format(n=n)))
    rss: list[tuple[float, int]] = []
    with berth_server(BIN, workdir / "server.log") as server:
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(2.0):
                rss.append((time.time(), rss_kib(server.pid, "VmRSS")))

        threading.Thread(target=sample, daemon=True).start()
        run = subprocess.run(
            [str(BIN / "python"), str(script)], env=server.env, capture_output=True, text=True, cwd=workdir
        )
        stop.set()
        peak = rss_kib(server.pid, "VmHWM")
    if run.returncode != 0:
        raise RuntimeError(run.stdout[-2000:] + run.stderr[-4000:])
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    return {**result, "rss": rss, "peak_kib": peak, "n": n}


def section(r: dict[str, object]) -> list[str]:
    n = int(r["n"])  # type: ignore[call-overload]
    marks: list[float] = r["marks"]  # type: ignore[assignment]
    done: list[float] = r["done"]  # type: ignore[assignment]
    tenth = n // 10
    enqueue = [tenth / (b - a) for a, b in zip(marks, marks[1:], strict=False) if b > a]
    ran = [
        tenth / (done[(i + 1) * tenth - 1] - done[i * tenth])
        for i in range(10)
        if done[(i + 1) * tenth - 1] > done[i * tenth]
    ]
    rss: list[tuple[float, int]] = r["rss"]  # type: ignore[assignment]
    accepted_s = float(r["accepted"]) - float(r["start"])  # type: ignore[arg-type]
    drained_s = done[-1] - float(r["start"])  # type: ignore[arg-type]
    return [
        f"## Scale of work (`bench/scale.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`experimental_spawn_map` of {n:,} trivial inputs on a throwaway `berth up` (process runtime, up to 8",
        "containers), through the stock SDK; the outputs read back with `FunctionCall.iter()`.",
        "",
        f"- accepted in {accepted_s:.0f} s ({n / accepted_s:,.0f} inputs/s); all run {drained_s:.0f} s after the call",
        "- inputs accepted per second, decile by decile: " + ", ".join(f"{x:,.0f}" for x in enqueue),
        "- inputs run per second, decile by decile: " + ", ".join(f"{x:,.0f}" for x in ran),
        f"- server RSS: peak {int(r['peak_kib']) / 1024:.0f} MiB; along the way (every 2 s, in MiB) min "  # type: ignore[call-overload]
        f"{min(v for _, v in rss) / 1024:.0f}, median {sorted(v for _, v in rss)[len(rss) // 2] / 1024:.0f}, "
        f"last {rss[-1][1] / 1024:.0f}"
        if rss
        else "- server RSS: not sampled",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=1_000_000)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    lines = section(measure(args.inputs, Path(tempfile.mkdtemp(prefix="berth-scale-"))))
    print("\n".join(lines))
    if not args.no_write:
        replace_section(DOC, BEGIN, END, [BEGIN, *lines, END])
    return 0


if __name__ == "__main__":
    sys.exit(main())
