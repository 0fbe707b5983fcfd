"""A small static site served by a web_server container (the standard library's http.server), for the
crawler example: six distinct URLs that link to each other. Containers reach it at its endpoint URL,
which their network allows (unlike arbitrary ports on the host). The front page links every page: the
example stops once its queue stays empty for 5 s, and a deeper chain of freshly started crawler
containers could take longer than that on a loaded machine (it did once in CI)."""

import ctypes
import os
import signal
import subprocess
import sys
import tempfile

import modal

app = modal.App("e2e-static-site")
PORT = 18733
SITE = {
    "index.html": (
        '<a href="a.html">A</a> <a href="b.html">B</a> <a href="sub/c.html">C</a> <a href="sub/d.html">D</a>'
    ),
    "a.html": '<a href="index.html">home</a> <a href="b.html">B</a>',
    "b.html": '<a href="a.html">A</a> <a href="sub/c.html">C</a>',
    "sub/c.html": '<a href="../index.html">home</a> <a href="d.html">D</a>',
    "sub/d.html": '<a href="c.html">C</a>',
}


@app.function()
@modal.concurrent(max_inputs=50)
@modal.web_server(PORT, startup_timeout=60)
def site():
    root = tempfile.mkdtemp()
    for name, body in SITE.items():
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        with open(os.path.join(root, name), "w") as f:
            f.write(f"<html><body>{body}</body></html>")
    subprocess.Popen(
        [sys.executable, "-m", "http.server", str(PORT), "--bind", "0.0.0.0", "--directory", root],
        # The process runtime does not reap a container's children: let the server die with its container.
        preexec_fn=lambda: ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM),  # PR_SET_PDEATHSIG
    )
