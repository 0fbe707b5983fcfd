"""A function that serves HTTP in its container and exposes the port with modal.forward() until the caller
says it is done (on the queue's "done" partition)."""

import http.server
import threading

import modal
from modal.exception import InvalidError

app = modal.App("e2e-tunnels")
PORT = 8000


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"forwarded from the function\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@app.function()
def expose(q: modal.Queue) -> str:
    """Puts the tunnel's URL and TCP socket on `q`; returns what forwarding the same port again raised."""
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), _Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    again = ""
    with modal.forward(PORT, unencrypted=True) as tunnel:
        q.put({"url": tunnel.url, "tcp": list(tunnel.tcp_socket)})
        try:
            with modal.forward(PORT):
                pass
        except InvalidError as exc:
            again = str(exc)
        q.get(timeout=240, partition="done")
    srv.shutdown()
    return again
