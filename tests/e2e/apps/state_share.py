"""Dicts and queues handed to containers: a function fills an ephemeral Dict and Queue the local side made."""

import modal

app = modal.App("e2e-state-share")


@app.function()
def fill(d: modal.Dict, q: modal.Queue, n: int) -> int:
    for i in range(n):
        d[f"k{i}"] = {"square": i * i}
    q.put_many([f"item-{i}" for i in range(n)])
    q.put("from-container", partition="side")
    named = modal.Dict.from_name("e2e-share-named", create_if_missing=True)
    named["written-in-container"] = True
    return d.len()


@app.local_entrypoint()
def main(n: int = 5) -> None:
    with modal.Dict.ephemeral() as d, modal.Queue.ephemeral() as q:
        print(f"container-len={fill.remote(d, q, n)}")
        print(f"local-k3={d['k3']['square']}")
        print(f"queue={q.get_many(100, timeout=5)}")
        print(f"side={q.get(timeout=5, partition='side')}")
    print(f"named={modal.Dict.from_name('e2e-share-named')['written-in-container']}")
