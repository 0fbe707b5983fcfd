"""A Modal Server (@app.server): Berth refuses it by name at deploy and run."""

import subprocess

import modal

app = modal.App("e2e-server-refused")


@app.server(port=8080, min_containers=1)
class Web:
    @modal.enter()
    def start(self) -> None:
        self.proc = subprocess.Popen(["python3", "-m", "http.server", "8080"])
