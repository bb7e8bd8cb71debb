"""A scripted HTTP server standing in for a lying registry (redirect loops, huge or schema 1
manifests, blobs longer than declared): routes map a path to (status, headers, body)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from galley.fixtures.images import BuiltImage

Route = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, dict[str, str]], Route]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # clients that hang up on purpose (size limits) are expected here


class FakeRegistry:
    """Serves routes[path] (exact path without query); 404 otherwise. Records paths asked."""

    def __init__(self) -> None:
        self.routes: dict[str, Route | Handler] = {"/v2/": (200, {}, b"{}")}
        self.seen: list[str] = []
        self.headers: list[dict[str, str]] = []
        owner = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.seen.append(self.path)
                owner.headers.append(dict(self.headers.items()))
                path = self.path.split("?", 1)[0]
                route = owner.routes.get(path, (404, {}, b'{"errors":[]}'))
                if callable(route):
                    status, headers, body = route(self.path, dict(self.headers.items()))
                else:
                    status, headers, body = route
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.do_GET()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = _QuietServer(("127.0.0.1", 0), _H)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def serve_image(self, repo: str, image: BuiltImage, tag: str = "t", api: str = "/v2") -> None:
        """Route image's manifest (under tag) and blobs for repo, below api."""
        ctype = {"Content-Type": image.descriptor.media_type}
        self.routes[f"{api}/{repo}/manifests/{tag}"] = (200, ctype, image.manifest)
        for digest, data in image.blobs().items():
            self.routes[f"{api}/{repo}/blobs/{digest}"] = (200, {}, data)

    def close(self) -> None:
        """Stop serving and join the thread."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
