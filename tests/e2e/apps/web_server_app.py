"""@modal.web_server: the container starts a plain HTTP server on a port and Modal proxies to it."""

import ctypes
import os
import signal
import subprocess
import sys
import tempfile

import modal

app = modal.App("e2e-web-server")
PORT = 18731


@app.function()
@modal.concurrent(max_inputs=20)
@modal.web_server(PORT, startup_timeout=60)
def files():
    root = tempfile.mkdtemp()
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write(f"served by the container's own server (pid {os.getpid()})\n")
    subprocess.Popen(
        [sys.executable, "-m", "http.server", str(PORT), "--bind", "0.0.0.0", "--directory", root],
        # The process runtime does not reap a container's children: let the server die with its container.
        preexec_fn=lambda: ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM),  # PR_SET_PDEATHSIG
    )
