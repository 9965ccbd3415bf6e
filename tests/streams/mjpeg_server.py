"""A real MJPEG-over-HTTP server for the tests (stdlib http.server in a thread): `GET /<name>.mjpg` answers
multipart/x-mixed-replace, one JPEG part per frame at the clip's rate, as IP cameras do. The clip plays once
per connection. A `token` query parameter is required when the server is given one (to prove it is
redacted)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BOUNDARY = "securegateframe"


class MjpegServer:
    def __init__(self, clips: dict[str, list[tuple[float, bytes]]], fps: float, token: str | None = None) -> None:
        self.clips, self.fps, self.token = clips, fps, token
        self.connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                name = parts.path.strip("/").removesuffix(".mjpg")
                if server.token and parse_qs(parts.query).get("token", [None])[0] != server.token:
                    self.send_error(401)
                    return
                if name not in server.clips:
                    self.send_error(404)
                    return
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                started = time.monotonic()
                try:
                    for t, jpeg in server.clips[name]:
                        delay = started + t - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
                        self.wfile.write(jpeg + b"\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "MjpegServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, name: str) -> str:
        query = f"?token={self.token}" if self.token else ""
        return f"http://127.0.0.1:{self.port}/{name}.mjpg{query}"
