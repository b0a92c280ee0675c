"""The local HTTP server the page talks to.

It listens on 127.0.0.1 on a free port and answers only under a random
per-session token, so other local processes cannot read the models under
test. It serves the harness, the onnxruntime-web files, the model files tests
registered, and one-shot tensor mailboxes. Every response carries the
COOP/COEP headers that make the page cross-origin isolated (multi-threaded
wasm needs it).
"""

from __future__ import annotations

import itertools
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HARNESS_DIR = Path(__file__).parent / "js"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}


class HarnessServer:
    def __init__(self, ort_dist: Path):
        self.token = secrets.token_urlsafe(16)
        self._files: dict[str, Path] = {
            "index.html": HARNESS_DIR / "index.html",
            "harness.js": HARNESS_DIR / "harness.js",
        }
        for path in ort_dist.iterdir():
            self._files[f"ort/{path.name}"] = path
        self._blobs: dict[str, list] = {}
        self._received: dict[str, bytearray] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="browserml-server", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/{self.token}/"

    def url(self, route: str) -> str:
        return self.base_url + route

    def register_file(self, route: str, path: Path) -> str:
        """Serve `path` at `route` (e.g. models/<sha256>/model.onnx) and return its URL."""
        with self._lock:
            self._files[route] = path
        return self.url(route)

    def offer(self, parts: list) -> str:
        """A URL that serves the concatenated `parts` once."""
        key = f"tensors/{next(self._ids)}"
        with self._lock:
            self._blobs[key] = parts
        return self.url(key)

    def mailbox(self) -> str:
        """A URL the page PUTs bytes to; collect them with `collect`."""
        return self.url(f"tensors/{next(self._ids)}")

    def collect(self, url: str) -> bytearray | None:
        with self._lock:
            return self._received.pop(url.removeprefix(self.base_url), None)

    def discard(self, *urls: str) -> None:
        with self._lock:
            for url in urls:
                key = url.removeprefix(self.base_url)
                self._blobs.pop(key, None)
                self._received.pop(key, None)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- used by the request handler ---
    def _take_blob(self, key: str):
        with self._lock:
            return self._blobs.pop(key, None)

    def _file(self, key: str) -> Path | None:
        with self._lock:
            return self._files.get(key)

    def _store(self, key: str, data: bytearray) -> None:
        with self._lock:
            self._received[key] = data


def _handler_for(server: HarnessServer):
    prefix = f"/{server.token}/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # small responses must not wait for a delayed ACK (40 ms each)

        def do_GET(self):
            key = self._key()
            if key is None:
                return
            blob = server._take_blob(key)
            if blob is not None:
                self._respond(HTTPStatus.OK, "application/octet-stream", blob)
                return
            path = server._file(key or "index.html")
            if path is None or not path.is_file():
                self._respond(HTTPStatus.NOT_FOUND, "text/plain", [b"not served"])
                return
            with open(path, "rb") as handle:
                self._respond(HTTPStatus.OK, CONTENT_TYPES.get(path.suffix, "application/octet-stream"), [handle.read()])

        def do_PUT(self):
            key = self._key()
            if key is None:
                return
            if not key.startswith("tensors/"):
                self._respond(HTTPStatus.FORBIDDEN, "text/plain", [b"read-only"])
                return
            length = int(self.headers.get("Content-Length", 0))
            data = bytearray(length)
            view, received = memoryview(data), 0
            while received < length:
                n = self.rfile.readinto(view[received:])
                if not n:
                    break
                received += n
            server._store(key, data)
            self._respond(HTTPStatus.NO_CONTENT, "text/plain", [])

        def _key(self) -> str | None:
            path = self.path.split("?", 1)[0]
            if not path.startswith(prefix):
                self._respond(HTTPStatus.NOT_FOUND, "text/plain", [b"not served"])
                return None
            return path[len(prefix):]

        def _respond(self, status, content_type, parts):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(sum(len(memoryview(p).cast("B")) for p in parts)))
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            for part in parts:
                self.wfile.write(part)

        def log_message(self, format, *args):  # keep pytest's output clean
            pass

    return Handler
