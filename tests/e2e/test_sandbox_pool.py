"""The warm pool of sandbox containers (berth.worker.sandbox_pool) through the stock client: once an image has
been used for a sandbox, the next sandboxes of it start in containers made ahead, and behave as fresh ones
(their own command, environment, secrets, working directory, hostname, exit code and stdin, nothing left by
an earlier sandbox); requests that need a container of their own (here: a blocked network, other limits)
still start one. Timings are in bench/sandboxes.py, not here."""

from __future__ import annotations

import textwrap

from tests.e2e.conftest import BerthServer, last_json, sdk

HEAD = """
import json, time, modal
from pathlib import Path
app = modal.App.lookup("sb-pool", create_if_missing=True)
image = modal.Image.debian_slim()
LOG = Path({log!r})

def ready_count():
    return LOG.read_text(errors="replace").count("is ready (image")

def pool_filled_since(before):
    deadline = time.monotonic() + 60
    while ready_count() <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready_count() > before, "no pooled container became ready"

def pooled(hostname):
    return f"sandbox {{hostname}} starts in pooled container" in LOG.read_text(errors="replace")
"""


def run(server: BerthServer, body: str) -> dict:  # type: ignore[type-arg]
    script = HEAD.format(log=str(server.log_path)) + textwrap.dedent(body)
    return last_json(sdk(server, script, timeout=240))


def test_a_pooled_sandbox_behaves_as_a_fresh_one(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        """
        before = ready_count()
        first = modal.Sandbox.create("sh", "-c", "touch /root/left-behind; sleep 300", app=app, image=image)
        assert first.exec("true").wait() == 0
        pool_filled_since(before)
        before = ready_count()
        secret = modal.Secret.from_dict({"POOL_SECRET": "s3"})
        sb = modal.Sandbox.create(
            "sh", "-c", "read line; echo \\"$FOO $POOL_SECRET $line $(pwd) $(hostname)\\"; echo err >&2; exit 7",
            app=app, image=image, workdir="/tmp", secrets=[secret], env={"FOO": "bar"},
        )
        sb.stdin.write(b"from-stdin\\n")
        sb.stdin.write_eof()
        sb.stdin.drain()
        sb.wait(raise_on_termination=False)
        out = sb.stdout.read()
        first.terminate()
        pool_filled_since(before)
        again = modal.Sandbox.create("sleep", "300", app=app, image=image)
        p = again.exec("sh", "-c", "ls /root; hostname; echo $MODAL_SANDBOX_ID")
        listing = p.stdout.read()
        p.wait()
        print(json.dumps({"out": out, "err": sb.stderr.read(), "rc": sb.returncode,
                          "pooled": pooled(out.split()[-1]), "listing": listing,
                          "again_pooled": pooled(listing.split()[-2]), "again_id": again.object_id}))
        again.terminate()
        """,
    )
    foo, secret, line, cwd, hostname = seen["out"].split()
    assert [foo, secret, line, cwd] == ["bar", "s3", "from-stdin", "/tmp"] and seen["rc"] == 7
    assert seen["err"] == "err\n"
    assert seen["pooled"] and hostname.startswith("ta-")  # its task's name, not the pool's
    listing = seen["listing"].split()
    assert "left-behind" not in listing  # nothing of an earlier sandbox
    assert seen["again_pooled"] and listing[-1] == seen["again_id"]


def test_requests_that_need_their_own_container_bypass_the_pool(berth_oci: BerthServer) -> None:
    seen = run(
        berth_oci,
        """
        warm = modal.Sandbox.create("sleep", "300", app=app, image=image)
        out = {}
        for name, options in (("blocked", {"block_network": True}), ("memory", {"memory": 300})):
            sb = modal.Sandbox.create("sh", "-c", "hostname; exit 3", app=app, image=image, **options)
            sb.wait(raise_on_termination=False)
            host = sb.stdout.read().strip()
            out[name] = [sb.returncode, pooled(host)]
        warm.terminate()
        print(json.dumps(out))
        """,
    )
    assert seen == {"blocked": [3, False], "memory": [3, False]}
