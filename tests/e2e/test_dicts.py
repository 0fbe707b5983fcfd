"""modal.Dict against a real Berth server: the SDK API, ephemeral dicts shared with containers, the
`modal dict` CLI and bad input."""

from __future__ import annotations

import json
import subprocess
import uuid

from tests.e2e.conftest import BIN, BerthServer, modal, python, sdk


def test_dict_api_stores_picklable_keys_and_values(berth: BerthServer) -> None:
    name = f"e2e-dict-{uuid.uuid4().hex[:8]}"
    out = sdk(
        berth,
        f"""
        import datetime, json, modal
        d = modal.Dict.from_name({name!r}, create_if_missing=True)
        d["a"] = 1
        d[("tuple", 2)] = {{"nested": [1, 2, {{3}}]}}
        d[b"bytes"] = datetime.date(2024, 1, 2)
        first = d.put("new", "x", skip_if_exists=True)
        second = d.put("new", "y", skip_if_exists=True)
        d.update({{"u1": 1, "u2": 2}}, u3=3)
        same = modal.Dict.from_name({name!r})
        result = {{
            "first": first, "second": second, "new": same["new"],
            "tuple": repr(same[("tuple", 2)]), "date": same.get(b"bytes").isoformat(),
            "missing": same.get("nope", "default"), "contains": ["a" in same, "zzz" in same],
            "len": same.len(), "keys": sorted(map(repr, same.keys())),
            "values_u": sorted(v for k, v in same.items() if isinstance(k, str) and k.startswith("u")),
            "pop": same.pop("a"), "pop_default": same.pop("a", "gone"), "len_after_pop": same.len(),
        }}
        try:
            same.pop("a")
        except KeyError:
            result["pop_missing"] = "KeyError"
        same.clear()
        result["len_after_clear"] = d.len()
        result["values_after_clear"] = list(d.values())
        print(json.dumps(result))
        """,
    )
    r = json.loads(out.strip().splitlines()[-1])
    assert r["first"] is True and r["second"] is False and r["new"] == "x"
    assert r["tuple"] == "{'nested': [1, 2, {3}]}"
    assert r["date"] == "2024-01-02"
    assert r["missing"] == "default"
    assert r["contains"] == [True, False]
    assert r["len"] == 7
    assert r["keys"] == sorted(map(repr, ["a", ("tuple", 2), b"bytes", "new", "u1", "u2", "u3"]))
    assert r["values_u"] == [1, 2, 3]
    assert r["pop"] == 1 and r["pop_default"] == "gone" and r["len_after_pop"] == 6
    assert r["pop_missing"] == "KeyError"
    assert r["len_after_clear"] == 0 and r["values_after_clear"] == []


def test_missing_dict_raises_not_found_unless_create_if_missing(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import modal
        from modal.exception import NotFoundError
        try:
            modal.Dict.from_name("e2e-dict-never-created").len()
        except NotFoundError as exc:
            print("NotFoundError:", exc)
        """,
    )
    assert "NotFoundError: Dict 'e2e-dict-never-created' not found" in out


def test_ephemeral_dict_and_queue_are_shared_with_a_container(berth: BerthServer) -> None:
    run = modal(berth, "run", "state_share.py", "--n", "5")
    assert run.returncode == 0, run.output
    assert "container-len=5" in run.stdout
    assert "local-k3=9" in run.stdout
    assert "queue=['item-0', 'item-1', 'item-2', 'item-3', 'item-4']" in run.stdout
    assert "side=from-container" in run.stdout
    assert "named=True" in run.stdout


def test_oversized_dict_value_gets_a_clear_error_and_the_dict_keeps_working(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import modal
        from modal.exception import InvalidError
        with modal.Dict.ephemeral() as d:
            try:
                d["big"] = b"x" * (40 * 1024 * 1024)
            except InvalidError as exc:
                print("InvalidError:", exc)
            d["small"] = 1
            print("len", d.len())
        """,
    )
    assert "InvalidError: Dict value of" in out and "exceeds the limit of 32 MiB" in out
    assert "len 1" in out


def test_modal_dict_cli_creates_lists_shows_clears_and_deletes(berth: BerthServer) -> None:
    name = f"e2e-dict-cli-{uuid.uuid4().hex[:8]}"
    assert modal(berth, "dict", "create", name).returncode == 0
    sdk(berth, f"import modal; modal.Dict.from_name({name!r}).update(color='blue', size=3)")
    listed = modal(berth, "dict", "list", "--json")
    assert listed.returncode == 0, listed.output
    assert name in [row["name"] for row in json.loads(listed.stdout)]
    got = modal(berth, "dict", "get", name, "color")
    assert got.returncode == 0 and "blue" in got.stdout, got.output
    items = modal(berth, "dict", "items", name, "--json")
    assert items.returncode == 0, items.output
    assert sorted((row["key"], row["value"]) for row in json.loads(items.stdout)) == [("color", "blue"), ("size", 3)]
    assert modal(berth, "dict", "clear", name, "--yes").returncode == 0
    assert json.loads(modal(berth, "dict", "items", name, "--json").stdout) == []
    assert modal(berth, "dict", "delete", name, "--yes").returncode == 0
    gone = modal(berth, "dict", "get", name, "color")
    assert gone.returncode != 0 and "not found" in gone.output


def test_named_dicts_live_in_their_environment_and_scoped_tokens_stay_in_theirs(berth: BerthServer) -> None:
    env_name = f"dicts-{uuid.uuid4().hex[:6]}"
    assert modal(berth, "environment", "create", env_name).returncode == 0
    made = subprocess.run(
        [str(BIN / "berth"), "token", "create", "--env", env_name, "--data-dir", str(berth.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    pairs = dict(line.split("=", 1) for line in made.stdout.split())
    scoped = {"MODAL_TOKEN_ID": pairs["token_id"], "MODAL_TOKEN_SECRET": pairs["token_secret"]}
    out = sdk(
        berth,
        f"""
        import modal
        modal.Dict.from_name("twin-dict", create_if_missing=True)["where"] = "main"
        modal.Dict.from_name("twin-dict", environment_name={env_name!r}, create_if_missing=True)["where"] = "other"
        print("main sees", modal.Dict.from_name("twin-dict")["where"])
        print("other sees", modal.Dict.from_name("twin-dict", environment_name={env_name!r})["where"])
        try:
            modal.Dict.from_name("twin-dict", environment_name="no-such-env").len()
        except Exception as exc:
            print(type(exc).__name__, exc)
        """,
    )
    assert "main sees main" in out and "other sees other" in out
    assert "NotFoundError Environment 'no-such-env' not found" in out
    code = "import modal; print(modal.Dict.from_name('twin-dict', environment_name='main').len())"
    refused = python(berth, "-c", code, env=scoped)
    assert refused.returncode != 0 and f"may only act in environment '{env_name}'" in refused.output
    inside = python(
        berth,
        "-c",
        "import modal; print(modal.Dict.from_name('twin-dict')['where'])",
        env={**scoped, "MODAL_ENVIRONMENT": env_name},
    )
    assert inside.returncode == 0 and inside.stdout.strip() == "other", inside.output
