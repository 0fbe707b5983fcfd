"""A schedule that can never fire: the server refuses it when the function is created."""

import modal

app = modal.App("e2e-bad-cron")


@app.function(schedule=modal.Cron("61 * * * *"))
def never() -> None:
    pass


@app.local_entrypoint()
def main() -> None:
    print("entrypoint ran")
