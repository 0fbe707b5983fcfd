"""modal.Queue against a real Berth server: FIFO partitions, blocking gets with timeouts, a full queue
that makes the client back off, many concurrent producers and consumers, the `modal queue` CLI."""

from __future__ import annotations

import json
import uuid

from tests.e2e.conftest import BerthServer, last_json, modal, sdk


def test_queue_api_is_fifo_per_partition(berth: BerthServer) -> None:
    name = f"e2e-queue-{uuid.uuid4().hex[:8]}"
    out = sdk(
        berth,
        f"""
        import json, queue, modal
        q = modal.Queue.from_name({name!r}, create_if_missing=True)
        q.put(1)
        q.put_many([2, {{"three": 3}}, (4,)])
        q.put_many(["a", "b"], partition="p1")
        r = {{"len": q.len(), "len_p1": q.len(partition="p1"), "total": q.len(total=True)}}
        r["iterated"] = [repr(v) for v in q.iterate()]
        r["len_after_iterate"] = q.len()
        r["get"] = q.get()
        r["get_many"] = [repr(v) for v in q.get_many(10)]
        r["p1"] = q.get_many(10, partition="p1")
        r["nonblocking"] = repr(q.get(block=False))
        try:
            q.get(timeout=1)
        except queue.Empty:
            r["timeout"] = "queue.Empty"
        q.put_many([5, 6]); q.put(7, partition="p2")
        q.clear()
        r["after_clear"] = [q.len(), q.len(partition="p2")]
        q.clear(all=True)
        r["after_clear_all"] = q.len(total=True)
        print(json.dumps(r))
        """,
    )
    r = last_json(out)
    assert (r["len"], r["len_p1"], r["total"]) == (4, 2, 6)
    assert r["iterated"] == ["1", "2", "{'three': 3}", "(4,)"] and r["len_after_iterate"] == 4
    assert r["get"] == 1 and r["get_many"] == ["2", "{'three': 3}", "(4,)"]
    assert r["p1"] == ["a", "b"]
    assert r["nonblocking"] == "None" and r["timeout"] == "queue.Empty"
    assert r["after_clear"] == [0, 1] and r["after_clear_all"] == 0


def test_blocking_get_returns_an_item_put_while_it_waits(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import threading, time, modal
        with modal.Queue.ephemeral() as q:
            threading.Timer(1.5, lambda: q.put("late")).start()
            started = time.monotonic()
            value = q.get(timeout=30)
            print(f"got={value} waited={time.monotonic() - started:.1f}")
        """,
    )
    assert "got=late" in out
    waited = float(out.split("waited=")[1].split()[0])
    assert 1.0 <= waited < 25


def test_full_queue_answers_resource_exhausted_and_the_client_backs_off(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import queue, time, modal
        with modal.Queue.ephemeral() as q:
            q.put_many(list(range(5000)))
            try:
                q.put("one more", block=False)
            except queue.Full as exc:
                print("nonblocking: queue.Full")
            started = time.monotonic()
            try:
                q.put("one more", timeout=3)
            except queue.Full:
                print(f"blocking: queue.Full after {time.monotonic() - started:.1f}s")
            q.get_many(10)
            q.put("fits now", block=False)
            print("len", q.len())
        """,
    )
    assert "nonblocking: queue.Full" in out
    assert "blocking: queue.Full after" in out
    # One refused put takes milliseconds; the client kept retrying with backoff before it gave up.
    assert float(out.split("queue.Full after ")[1].split("s")[0]) >= 0.3
    assert "len 4991" in out


def test_many_concurrent_producers_and_consumers_neither_lose_nor_duplicate(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import json, queue, threading, modal
        PRODUCERS, PER = 8, 150
        with modal.Queue.ephemeral() as q:
            got, lock = [], threading.Lock()
            def produce(p):
                for i in range(0, PER, 10):
                    q.put_many([f"{p}-{j}" for j in range(i, i + 10)])
            def consume():
                while True:
                    try:
                        items = q.get_many(7, timeout=4)
                    except queue.Empty:
                        return
                    with lock:
                        got.extend(items)
            threads = [threading.Thread(target=consume) for _ in range(8)]
            threads += [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
            for t in threads: t.start()
            for t in threads: t.join()
            expected = {f"{p}-{j}" for p in range(PRODUCERS) for j in range(PER)}
            print(json.dumps({"n": len(got), "distinct": len(set(got)), "match": set(got) == expected}))
        """,
    )
    assert last_json(out) == {"n": 1200, "distinct": 1200, "match": True}


def test_missing_queue_raises_not_found_and_oversized_item_is_refused(berth: BerthServer) -> None:
    out = sdk(
        berth,
        """
        import modal
        from modal.exception import InvalidError, NotFoundError
        try:
            modal.Queue.from_name("e2e-queue-never-created").len()
        except NotFoundError as exc:
            print("NotFoundError:", exc)
        with modal.Queue.ephemeral() as q:
            try:
                q.put(b"x" * (2 * 1024 * 1024))
            except InvalidError as exc:
                print("InvalidError:", exc)
            q.put("ok")
            print("len", q.len())
        """,
    )
    assert "NotFoundError: Queue 'e2e-queue-never-created' not found" in out
    assert "InvalidError: Queue item of" in out and "exceeds the limit" in out
    assert "len 1" in out


def test_modal_queue_cli_creates_lists_peeks_measures_clears_and_deletes(berth: BerthServer) -> None:
    name = f"e2e-queue-cli-{uuid.uuid4().hex[:8]}"
    assert modal(berth, "queue", "create", name).returncode == 0
    sdk(berth, f"import modal; q = modal.Queue.from_name({name!r}); q.put_many(['x', 'y']); q.put('z', partition='p')")
    listed = modal(berth, "queue", "list", "--json")
    assert listed.returncode == 0, listed.output
    row = next(r for r in json.loads(listed.stdout) if r["name"] == name)
    assert (row["partitions"], row["total_size"]) == (2, 3)
    peek = modal(berth, "queue", "peek", name, "2")
    assert peek.returncode == 0 and peek.stdout.split() == ["x", "y"], peek.output
    length = modal(berth, "queue", "len", name, "--total")
    assert length.returncode == 0 and length.stdout.strip() == "3", length.output
    assert modal(berth, "queue", "clear", name, "--all", "--yes").returncode == 0
    assert modal(berth, "queue", "len", name, "--total").stdout.strip() == "0"
    assert modal(berth, "queue", "delete", name, "--yes").returncode == 0
    gone = modal(berth, "queue", "len", name)
    assert gone.returncode != 0 and "not found" in gone.output
