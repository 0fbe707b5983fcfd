"""Named images through the stock client: Image.publish / Image.from_name, `modal image build`, `modal image
pull`, `modal image names list|history|delete`, Image.from_id and image deletion, against a real server."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.e2e.conftest import BerthServer, last_json, modal, sdk


def _ok(server: BerthServer, *args: str, timeout: float = 300) -> str:
    run = modal(server, *args, timeout=timeout)
    assert run.returncode == 0, run.output
    return run.stdout


def test_publish_from_name_list_history_and_delete_a_named_image(berth: BerthServer) -> None:
    name = f"e2e-named-{secrets.token_hex(4)}"
    out = sdk(
        berth,
        f"""
        import json, modal
        app = modal.App.lookup("e2e-image-names", create_if_missing=True)
        first = modal.Image.debian_slim().env({{"NAMED": "first-{name}"}}).build(app)
        second = modal.Image.debian_slim().env({{"NAMED": "second-{name}"}}).build(app)
        first.publish({name!r})
        first.publish({name + ":v1"!r})
        second.publish({name!r})  # the name moves; its history keeps both
        runner = modal.App("e2e-image-names-run")
        named = modal.Image.from_name({name!r})
        @runner.function(image=named, serialized=True)
        def ping():
            return "pong"
        with runner.run():
            r = {{"pong": ping.remote(), "resolved": named.object_id}}
        r["first"], r["second"] = first.object_id, second.object_id
        print(json.dumps(r))
        """,
    )
    r = last_json(out)
    assert r["pong"] == "pong" and r["resolved"] == r["second"] != r["first"]

    listed = {row["tag"]: row["image_id"] for row in json.loads(_ok(berth, "image", "names", "list", "--json"))}
    assert listed[f"{name}:latest"] == r["second"] and listed[f"{name}:v1"] == r["first"]
    only = json.loads(_ok(berth, "image", "names", "list", "--prefix", f"{name}:v", "--json"))
    assert [row["tag"] for row in only] == [f"{name}:v1"]
    history = json.loads(_ok(berth, "image", "names", "history", name, "--json"))
    assert [row["image_id"] for row in history] == [r["second"], r["first"]]  # newest first

    no_tag = modal(berth, "image", "names", "delete", name, "--yes")
    assert no_tag.returncode != 0 and "explicit tag" in no_tag.output
    _ok(berth, "image", "names", "delete", f"{name}:latest", "--yes")
    tags = [row["tag"] for row in json.loads(_ok(berth, "image", "names", "list", "--json"))]
    assert f"{name}:latest" not in tags and f"{name}:v1" in tags
    missing = modal(berth, "image", "names", "history", name)
    assert missing.returncode != 0 and "No publishing history" in missing.output
    gone = sdk(
        berth,
        f"""
        import modal
        from modal.exception import NotFoundError
        app = modal.App("e2e-image-names-gone")
        @app.function(image=modal.Image.from_name({name!r}), serialized=True)
        def f():
            pass
        try:
            with app.run():
                pass
        except NotFoundError as exc:
            print("NotFoundError:", exc)
        """,
    )
    assert f"NotFoundError: Image '{name}:latest' not found in environment 'main'" in gone


def test_modal_image_build_publishes_a_dockerfile_image_under_its_name(berth: BerthServer, tmp_path: Path) -> None:
    name = f"e2e-built-{secrets.token_hex(4)}"
    (tmp_path / "hello.txt").write_text("hello")
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim-bookworm\nCOPY hello.txt /hello.txt\n")
    out = _ok(berth, "image", "build", str(tmp_path), "-t", f"{name}:v2")
    assert f"Image published as {name}:v2" in out
    listed = {row["tag"]: row["image_id"] for row in json.loads(_ok(berth, "image", "names", "list", "--json"))}
    assert listed[f"{name}:v2"].startswith("im-")
    bad = modal(berth, "image", "names", "list", "--env", "no-such-env")
    assert bad.returncode != 0 and "no-such-env" in bad.output


def test_built_dockerfile_image_runs_by_name_on_crun(berth_oci: BerthServer, tmp_path: Path) -> None:
    name = f"e2e-oci-built-{secrets.token_hex(4)}"
    (tmp_path / "hello.txt").write_text(f"hello {name}")
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11-slim-bookworm\nCOPY hello.txt /hello.txt\nRUN echo built-by-run > /built.txt\n"
    )
    _ok(berth_oci, "image", "build", str(tmp_path), "-t", name, timeout=900)
    out = sdk(
        berth_oci,
        f"""
        import json, modal
        app = modal.App("e2e-image-names-oci")
        @app.function(image=modal.Image.from_name({name!r}), serialized=True)
        def read():
            return {{"hello": open("/hello.txt").read(), "built": open("/built.txt").read().strip()}}
        with app.run():
            print(json.dumps(read.remote()))
        """,
        timeout=600,
    )
    assert last_json(out) == {"hello": f"hello {name}", "built": "built-by-run"}


def test_image_pull_of_a_python_image_says_berth_substituted_its_own_base(berth_oci: BerthServer) -> None:
    name = f"e2e-pulled-{secrets.token_hex(4)}"
    first = modal(berth_oci, "image", "pull", "docker.io/python:3.11-slim", "--name", name, timeout=900)
    assert first.returncode == 0, first.output
    warning = "docker.io/python:3.11-slim was not pulled from a registry: Berth substituted its own base"
    assert warning in first.output
    assert f"Image published as {name}" in first.output
    again = modal(berth_oci, "image", "pull", "docker.io/python:3.11-slim", timeout=300)
    assert again.returncode == 0, again.output
    assert warning in again.output  # a cache hit says so too


def _layers(server: BerthServer, image_id: str) -> list[Path]:
    found = list(server.data_dir.rglob(f"images/{image_id}.json"))
    assert len(found) == 1, found
    return [Path(p) for p in json.loads(found[0].read_text())["layers"]]


def test_deleting_a_name_collects_its_images_unique_layers_and_keeps_shared_ones(berth_oci: BerthServer) -> None:
    name, nonce = f"e2e-gc-{secrets.token_hex(4)}", secrets.token_hex(4)
    built = last_json(
        sdk(
            berth_oci,
            f"""
            import json, modal
            app = modal.App.lookup("e2e-image-gc", create_if_missing=True)
            shared = modal.Image.debian_slim().run_commands("echo shared-{nonce} > /shared")
            a = shared.run_commands("echo a-{nonce} > /a").build(app)
            b = shared.run_commands("echo b-{nonce} > /b").build(app)
            a.publish({name!r})
            b.publish({name + "-b"!r})
            print(json.dumps({{"a": a.object_id, "b": b.object_id}}))
            """,
            timeout=900,
        )
    )
    a_layers, b_layers = _layers(berth_oci, built["a"]), _layers(berth_oci, built["b"])
    assert a_layers[:-1] == b_layers[:-1] and a_layers[-1] != b_layers[-1]  # one step apart

    _ok(berth_oci, "image", "names", "delete", f"{name}:latest", "--yes")

    assert not a_layers[-1].exists()  # a's own layer went with it
    assert all(p.is_dir() for p in b_layers)  # the layers it shared with b stayed, as did b's own
    assert not list(berth_oci.data_dir.rglob(f"images/{built['a']}.json"))
    gone = modal(berth_oci, "shell", built["a"], "--cmd", "true", timeout=120)
    assert gone.returncode != 0 and f"Image {built['a']} not found" in gone.output

    delete_b = f"""
        import asyncio
        from modal.client import _Client
        from modal_proto import api_pb2
        async def main():
            client = await _Client.from_env()
            try:
                await client.stub.ImageDelete(api_pb2.ImageDeleteRequest(image_id={built["b"]!r}))
                print("deleted")
            except Exception as exc:
                print("refused:", exc)
        asyncio.run(main())
        """
    assert "refused: Image " + built["b"] + " cannot be deleted: a name points at it" in sdk(berth_oci, delete_b)
    _ok(berth_oci, "image", "names", "delete", f"{name}-b:latest", "--yes")  # collects b too
    assert not b_layers[-1].exists()
    assert "Image " + built["b"] + " not found" in sdk(berth_oci, delete_b)


def test_image_logs_shows_the_build_output_of_an_image_and_its_layers(berth_oci: BerthServer) -> None:
    nonce = secrets.token_hex(4)
    built = last_json(
        sdk(
            berth_oci,
            f"""
            import json, modal
            app = modal.App.lookup("e2e-image-logs", create_if_missing=True)
            lower = modal.Image.debian_slim().run_commands("echo lower-{nonce}")
            top = lower.run_commands("echo top-{nonce}").build(app)
            print(json.dumps({{"top": top.object_id}}))
            """,
            timeout=900,
        )
    )
    last = _ok(berth_oci, "image", "logs", built["top"])
    assert f"top-{nonce}" in last and f"lower-{nonce}" not in last  # the last layer only, by default
    every = _ok(berth_oci, "image", "logs", built["top"], "--all")
    assert every.index(f"lower-{nonce}") < every.index(f"top-{nonce}")
    assert "=> FROM python:" in every  # debian_slim's own base, built by Berth by design: no warning
    assert "not pulled from a registry" not in every
    unknown = modal(berth_oci, "image", "logs", "im-doesnotexist00000000")
    assert unknown.returncode != 0 and "not found" in unknown.output


def test_an_image_a_deployed_function_uses_outlives_its_name(berth_oci: BerthServer) -> None:
    name, nonce = f"e2e-held-{secrets.token_hex(4)}", secrets.token_hex(4)
    built = last_json(
        sdk(
            berth_oci,
            f"""
            import json, modal
            builder = modal.App.lookup("e2e-image-held-build", create_if_missing=True)
            image = modal.Image.debian_slim().run_commands("echo held-{nonce} > /held").build(builder)
            image.publish({name!r})
            app = modal.App("e2e-image-held-{nonce}")
            @app.function(image=modal.Image.from_name({name!r}), serialized=True)
            def held():
                return open("/held").read().strip()
            app.deploy()
            print(json.dumps({{"image": image.object_id}}))
            """,
            timeout=900,
        )
    )
    layers = _layers(berth_oci, built["image"])
    _ok(berth_oci, "image", "names", "delete", f"{name}:latest", "--yes")
    assert all(p.is_dir() for p in layers)  # the deployed function still uses the image
    out = sdk(
        berth_oci,
        f"""
        import modal
        print("RESULT=" + modal.Function.from_name("e2e-image-held-{nonce}", "held").remote())
        """,
        timeout=600,
    )
    assert f"RESULT=held-{nonce}" in out
    _ok(berth_oci, "app", "stop", f"e2e-image-held-{nonce}", "--yes")
