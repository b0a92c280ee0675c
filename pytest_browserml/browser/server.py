"""The local HTTP server the page talks to.

It listens on 127.0.0.1 on a free port and answers only under a random
per-session token, so other local processes cannot read the models under
test. It serves the harness, the onnxruntime-web files, the model files tests
registered, one-shot tensor mailboxes, and each page's call channel (a
WebSocket, see channel.py). Every response carries the
COOP/COEP headers that make the page cross-origin isolated (multi-threaded
wasm needs it).

Nothing is served by mapping a URL onto a folder: a request's path is looked
up as an exact key among the files registered, so `..`, `%2e%2e` or an
absolute path in a URL can only miss. Registering is the boundary, and it
refuses what would leave a file's folder: routes with `..` or empty parts (an
external data location such as `../../etc/passwd` or `/etc/passwd`) and
symlinks that point out of their folder. Files are opened without following a
symlink swapped in after registration, and only mailboxes the server issued
accept a PUT, once. Routes travel percent-encoded (any file name the OS allows:
spaces, `#`, `?`, non-ASCII) and are decoded before the lookup. A request whose
Host is not this server's address, or whose Origin is another site's (a page
elsewhere that learnt the token), is refused, the page's channel included.
"""

from __future__ import annotations

import itertools
import os
import queue
import secrets
import shutil
import stat
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

from .channel import PageChannel, accept_key

HARNESS_DIR = Path(__file__).parent / "js"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}
HOST = "127.0.0.1"
COPY_CHUNK = 1 << 20


class HarnessServer:
    def __init__(self, ort_dist: Path):
        self.token = secrets.token_urlsafe(16)
        self._files: dict[str, Path] = {
            "index.html": (HARNESS_DIR / "index.html").resolve(),
            "harness.js": (HARNESS_DIR / "harness.js").resolve(),
        }
        for path in ort_dist.iterdir():
            resolved = _resolved_inside_own_folder(path)
            if path.is_file() and resolved:  # a stray symlink out of the cache is not served
                self._files[f"ort/{path.name}"] = resolved
        self._blobs: dict[str, list] = {}
        self._mailboxes: set[str] = set()
        self._received: dict[str, bytearray] = {}
        self._channels: dict[str, queue.Queue] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._httpd = _QuietServer((HOST, 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # shutdown() waits for the loop's next poll: at the default 0.5 s that was most of a worker's exit
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="browserml-server", daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/{self.token}/"

    def url(self, route: str) -> str:
        return self.base_url + quote(route, safe="/")

    def redact(self, text: str) -> str:
        """`text` (a browser's or ORT's message) with each served file's URL replaced by its local path,
        and no session token left in it."""
        if self.token not in text:
            return text
        with self._lock:
            routes = sorted(self._files.items(), key=lambda item: -len(item[0]))
        for route, path in routes:
            text = text.replace(self.url(route), str(path)).replace(self.base_url + route, str(path))
        return text.replace(self.token, "<token>")

    def register_file(self, route: str, path: Path) -> str:
        """Serve `path` at `route` (e.g. models/<sha256>/model.onnx) and return its URL.

        Raises ValueError for a route with `..` or empty parts and for a symlink that leads
        out of its folder: a model's external data must not reach other files. A `.` part
        is dropped, as the browser drops it from the URL.
        """
        parts = [part for part in route.split("/") if part != "."]
        if any(part in ("", "..") for part in parts) or "\\" in route:
            raise ValueError(f"pytest-browserml does not serve {path} at {route!r}: the route has a '..' or "
                             "empty part (an external data location outside the model's folder?)")
        route = "/".join(parts)
        resolved = _resolved_inside_own_folder(path)
        if resolved is None:
            raise ValueError(f"pytest-browserml does not serve {path}: it is a symlink to {path.resolve()}, "
                             "outside its folder")
        with self._lock:
            self._files[route] = resolved
        return self.url(route)

    def offer(self, parts: list) -> str:
        """A URL that serves the concatenated `parts` once."""
        key = f"tensors/{next(self._ids)}"
        with self._lock:
            self._blobs[key] = parts
        return self.url(key)

    def expect_channel(self) -> tuple[str, queue.Queue]:
        """A ws:// URL a page connects to once, and the queue that then receives its PageChannel."""
        key = f"channels/{next(self._ids)}"
        connected: queue.Queue = queue.Queue(maxsize=1)
        with self._lock:
            self._channels[key] = connected
        return "ws" + self.url(key).removeprefix("http"), connected

    def mailbox(self) -> str:
        """A URL the page PUTs bytes to, once; collect them with `collect`."""
        key = f"tensors/{next(self._ids)}"
        with self._lock:
            self._mailboxes.add(key)
        return self.url(key)

    def collect(self, url: str) -> bytearray | None:
        """The bytes PUT to a mailbox (None if nothing came); the mailbox is closed either way."""
        key = url.removeprefix(self.base_url)
        with self._lock:
            self._mailboxes.discard(key)
            return self._received.pop(key, None)

    def discard(self, *urls: str) -> None:
        with self._lock:
            for url in urls:
                key = url.removeprefix(self.base_url)
                self._blobs.pop(key, None)
                self._mailboxes.discard(key)
                self._received.pop(key, None)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- used by the request handler ---
    def _take_blob(self, key: str):
        with self._lock:
            return self._blobs.pop(key, None)

    def _take_channel(self, key: str) -> queue.Queue | None:
        with self._lock:
            return self._channels.pop(key, None)

    def _file(self, key: str) -> Path | None:
        with self._lock:
            return self._files.get(key)

    def _open_mailbox(self, key: str) -> bool:
        """Whether `key` is a mailbox waiting for its one PUT; it takes no other."""
        with self._lock:
            if key not in self._mailboxes:
                return False
            self._mailboxes.remove(key)
            return True

    def _store(self, key: str, data: bytearray) -> None:
        with self._lock:
            self._received[key] = data


def _resolved_inside_own_folder(path: Path) -> Path | None:
    """The path resolved, or None for a symlink (or a path through `..`) that leads out of its folder."""
    resolved = path.resolve()
    return resolved if resolved.is_relative_to(path.parent.resolve()) else None


def _open_regular(path: Path):
    """The registered file opened for reading, or None if it is gone, is no regular file or became a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return open(fd, "rb")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A page that goes away mid-request (a closed or crashed tab, a reset) is no error of ours:
        socketserver would print its traceback into the test output."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _handler_for(server: HarnessServer):
    token = server.token.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # small responses must not wait for a delayed ACK (40 ms each)

        def do_GET(self):
            key = self._key()
            if key is None:
                return
            if self.headers.get("Upgrade", "").lower() == "websocket":
                self._open_channel(key)
                return
            blob = server._take_blob(key)
            if blob is not None:
                self._respond(HTTPStatus.OK, "application/octet-stream", blob)
                return
            path = server._file(key or "index.html")
            handle = _open_regular(path) if path else None
            if handle is None:
                self._respond(HTTPStatus.NOT_FOUND, "text/plain", [b"not served"])
                return
            with handle:
                size = os.fstat(handle.fileno()).st_size
                self._headers(HTTPStatus.OK, CONTENT_TYPES.get(path.suffix, "application/octet-stream"), size)
                shutil.copyfileobj(handle, self.wfile, COPY_CHUNK)  # a model of GBs is never held in memory

        def do_PUT(self):
            key = self._key()
            if key is None:
                return
            if not server._open_mailbox(key):
                self._respond(HTTPStatus.FORBIDDEN, "text/plain", [b"not a mailbox waiting for data"])
                self.close_connection = True  # its body, if any, is not read
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if length < 0:
                self._respond(HTTPStatus.LENGTH_REQUIRED, "text/plain", [b"Content-Length required"])
                self.close_connection = True
                return
            data = bytearray(length)
            view, received = memoryview(data), 0
            while received < length:
                n = self.rfile.readinto(view[received:])
                if not n:
                    break
                received += n
            if received < length:  # the page went away mid-upload: no half payload to decode
                self.close_connection = True
                return
            server._store(key, data)
            self._respond(HTTPStatus.NO_CONTENT, "text/plain", [])

        def _open_channel(self, key: str) -> None:
            """Hand the connection to the page's owner as a PageChannel; hold it open until that closes it."""
            connected = server._take_channel(key)
            client_key = self.headers.get("Sec-WebSocket-Key")
            if connected is None or not client_key:
                self._respond(HTTPStatus.NOT_FOUND, "text/plain", [b"no channel waiting here"])
                return
            self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept_key(client_key))
            self.end_headers()
            channel = PageChannel(self.connection, self.rfile)
            connected.put(channel)
            channel.wait_closed()
            self.close_connection = True

        def _key(self) -> str | None:
            """The route after `/<token>/`, decoded, or None once a 403 or 404 has been sent."""
            origin = self.headers.get("Origin")
            if self.headers.get("Host") != server.origin.removeprefix("http://") or origin not in (None, server.origin):
                self._respond(HTTPStatus.FORBIDDEN, "text/plain", [b"not for this host or origin"])
                self.close_connection = True
                return None
            path = self.path.split("?", 1)[0]
            given, slash, key = path.removeprefix("/").partition("/")
            if not (path.startswith("/") and slash and secrets.compare_digest(given.encode(), token)):
                self._respond(HTTPStatus.NOT_FOUND, "text/plain", [b"not served"])
                return None
            return unquote(key)

        def _respond(self, status, content_type, parts):
            self._headers(status, content_type, sum(len(memoryview(p).cast("B")) for p in parts))
            for part in parts:
                self.wfile.write(part)

        def _headers(self, status, content_type, length: int):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()

        def log_message(self, format, *args):  # keep pytest's output clean
            pass

    return Handler
