"""A cheap function for the load runs (tests/reliability/load.py): many callers at once share few containers."""

import modal

app = modal.App("e2e-load")


@app.function(max_containers=4)
@modal.concurrent(max_inputs=100)
def square(x: int) -> int:
    return x * x
