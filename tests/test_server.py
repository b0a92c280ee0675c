"""The local server as an attacker on this machine meets it: raw HTTP requests, no browser.

Only the page, which is given the per-session token, may read what the server holds;
traversal in any spelling, unregistered files and uploads it did not ask for are refused.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pytest_browserml.browser.channel import ChannelClosed
from pytest_browserml.browser.server import HarnessServer

SECRET = b"private key material"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """An ORT dist folder, a model folder, and a secret beside and above them."""
    root = tmp_path_factory.mktemp("served")
    (root / "dist").mkdir()
    (root / "dist" / "ort.all.min.mjs").write_text("export const version = 1;")
    (root / "models").mkdir()
    (root / "models" / "model.onnx").write_bytes(b"model bytes")
    (root / "models" / "notes.txt").write_bytes(SECRET)  # beside a registered model, never registered
    (root / "secret.txt").write_bytes(SECRET)
    return root


@pytest.fixture(scope="module")
def server(tree):
    """One server for the module: stopping one waits for its poll interval (0.5 s)."""
    server = HarnessServer(tree / "dist")
    yield server
    server.close()


def own_file(tree: Path, name: str, content: bytes = b"model bytes") -> Path:
    """A model file of one test's own, in the models folder."""
    path = tree / "models" / name
    path.write_bytes(content)
    return path


def outward_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: routed by default, never reached
            return probe.getsockname()[0]
        except OSError:
            return None


def request(server: HarnessServer, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes]:
    """Send `path` exactly as written (http.client does not normalise `..` or `%2e`)."""
    address = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def get(server: HarnessServer, route: str) -> tuple[int, bytes]:
    return request(server, "GET", f"/{server.token}/{route}")


def test_it_listens_on_loopback_only(server):
    host, port = server._httpd.server_address[:2]
    assert host == "127.0.0.1" and urlsplit(server.base_url).hostname == "127.0.0.1"
    address = outward_address()
    if address is None or address.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    with pytest.raises(ConnectionRefusedError):  # from the network side nothing listens on that port
        socket.create_connection((address, port), timeout=5).close()


def test_the_token_is_random_per_server_and_required(tree, server):
    other = HarnessServer(tree / "dist")
    try:
        assert other.token != server.token and len(server.token) >= 22  # 16 random bytes
    finally:
        other.close()
    assert get(server, "index.html")[0] == 200
    wrong = "A" * len(server.token)
    for path in ("/index.html", "/", f"/{wrong}/index.html", f"/{server.token[:-1]}/index.html",
                 f"/{server.token}x/index.html", f"/{server.token}", f"/x/{server.token}/index.html"):
        status, body = request(server, "GET", path)
        assert status == 404 and body == b"not served", path
    assert request(server, "GET", f"http://127.0.0.1/{wrong}/index.html")[0] == 403  # its Host lacks the port


def test_registered_files_are_served_and_nothing_else(tree, server):
    url = server.register_file("models/abc/model.onnx", tree / "models" / "model.onnx")
    assert url == server.url("models/abc/model.onnx")
    assert get(server, "models/abc/model.onnx") == (200, b"model bytes")
    assert get(server, "ort/ort.all.min.mjs")[0] == 200
    for route in ("models/abc/notes.txt", "models/abc/", "models/abc", "models/", "ort/", "secret.txt", "tensors/0"):
        assert get(server, route) == (404, b"not served"), route


@pytest.mark.parametrize("route", [
    "models/abc/../../secret.txt",
    "models/abc/%2e%2e/%2e%2e/secret.txt",
    "models/abc/%2E%2E/%2E%2E/secret.txt",
    "models/abc/..%2f..%2fsecret.txt",
    "models/abc/..%5c..%5csecret.txt",
    "models/abc/model.onnx/../notes.txt",
    "ort/../../secret.txt",
    "./models/abc/notes.txt",
    "/etc/passwd",
    "//etc/passwd",
    "{tree}/secret.txt",
    "{tree}/models/notes.txt",
    "%2Fetc%2Fpasswd",
    "models/abc/notes.txt%00.onnx",
    "models/abc/model.onnx?../notes.txt",
])
def test_traversal_in_any_spelling_is_refused(tree, server, route):
    server.register_file("models/abc/model.onnx", tree / "models" / "model.onnx")
    status, body = get(server, route.format(tree=tree))
    assert SECRET not in body
    assert status == 404 or body == b"model bytes"  # the query string is no part of the route


@pytest.mark.parametrize("location", ["../secret.txt", "/etc/passwd", "sub/../../secret.txt", "a//b",
                                      "..\\secret.txt"])
def test_routes_that_leave_their_folder_cannot_be_registered(tree, server, location):
    """An external data location is written by whoever made the model: it must not reach other files."""
    with pytest.raises(ValueError, match="does not serve .* the route has a '..' or empty part"):
        server.register_file(f"models/abc/{location}", tree / "models" / location)


def test_a_dot_part_is_dropped_as_the_browser_drops_it(tree, server):
    url = server.register_file("models/dot/./model.onnx", tree / "models" / "." / "model.onnx")
    assert url == server.url("models/dot/model.onnx")
    assert get(server, "models/dot/model.onnx") == (200, b"model bytes")


def test_a_symlink_out_of_its_folder_is_not_registered(tree, server):
    link = tree / "models" / "weights.bin"
    link.symlink_to(tree / "secret.txt")
    with pytest.raises(ValueError, match=r"weights\.bin: it is a symlink to .*secret\.txt, outside its folder"):
        server.register_file("models/abc/weights.bin", link)
    inside = tree / "models" / "alias.onnx"
    inside.symlink_to(tree / "models" / "model.onnx")  # a link within the folder is fine
    server.register_file("models/abc/alias.onnx", inside)
    assert get(server, "models/abc/alias.onnx") == (200, b"model bytes")


def test_a_file_swapped_for_a_symlink_after_registration_is_not_followed(tree, server):
    model = own_file(tree, "swapped.onnx")
    server.register_file("models/abc/swapped.onnx", model)
    model.unlink()
    model.symlink_to(tree / "secret.txt")
    assert get(server, "models/abc/swapped.onnx") == (404, b"not served")


def test_a_symlink_in_the_ort_folder_is_not_served(tmp_path):
    (tmp_path / "ort.all.min.mjs").write_text("export const version = 1;")
    (tmp_path / "ort-wasm.wasm").symlink_to(tmp_path.parent / "elsewhere.wasm")
    (tmp_path.parent / "elsewhere.wasm").write_bytes(SECRET)
    server = HarnessServer(tmp_path)
    try:
        assert get(server, "ort/ort-wasm.wasm") == (404, b"not served")
        assert get(server, "ort/ort.all.min.mjs")[0] == 200
    finally:
        server.close()


def test_a_registered_folder_or_vanished_file_is_not_served(tree, server):
    gone = own_file(tree, "gone.onnx")
    server.register_file("models/abc/gone.onnx", gone)
    gone.unlink()
    assert get(server, "models/abc/gone.onnx") == (404, b"not served")
    server.register_file("models/abc/folder", tree / "models")
    assert get(server, "models/abc/folder") == (404, b"not served")


def test_offered_tensors_are_served_once(server):
    url = server.offer([b"abc", memoryview(b"def")])
    route = url.removeprefix(server.base_url)
    assert get(server, route) == (200, b"abcdef")
    assert get(server, route) == (404, b"not served")


def test_puts_go_only_to_mailboxes_the_server_issued_and_only_once(tree, server):
    server.register_file("models/abc/model.onnx", tree / "models" / "model.onnx")
    mailbox = server.mailbox()
    route = mailbox.removeprefix(server.base_url)
    for target in ("index.html", "models/abc/model.onnx", "ort/ort.all.min.mjs", "tensors/9999", "tensors/x", ""):
        status, _ = request(server, "PUT", f"/{server.token}/{target}", body=b"overwrite")
        assert status == 403, target
    assert get(server, "models/abc/model.onnx") == (200, b"model bytes")
    assert request(server, "PUT", f"/wrong/{route}", body=b"data")[0] == 404
    assert request(server, "PUT", f"/{server.token}/{route}", body=b"outputs")[0] == 204
    assert request(server, "PUT", f"/{server.token}/{route}", body=b"again")[0] == 403
    assert server.collect(mailbox) == bytearray(b"outputs")
    assert server.collect(mailbox) is None


def test_a_mailbox_closes_when_collected_or_discarded_unused(server):
    for close in (server.collect, server.discard):
        mailbox = server.mailbox()
        close(mailbox)
        route = mailbox.removeprefix(server.base_url)
        assert request(server, "PUT", f"/{server.token}/{route}", body=b"late")[0] == 403


def test_a_put_without_a_length_is_refused(server):
    mailbox = server.mailbox().removeprefix(server.base_url)
    status, _ = request(server, "PUT", f"/{server.token}/{mailbox}", headers={"Content-Length": "-5"})
    assert status == 411


def test_other_methods_are_not_implemented(server):
    for method in ("POST", "DELETE", "PATCH"):
        assert request(server, method, f"/{server.token}/index.html", body=b"x")[0] == 501


def test_every_answer_keeps_the_page_cross_origin_isolated(server):
    address = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    for path in (f"/{server.token}/index.html", "/nope"):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.getheader("Cross-Origin-Opener-Policy") == "same-origin"
        assert response.getheader("Cross-Origin-Embedder-Policy") == "require-corp"
    connection.close()


def test_a_large_file_is_streamed_whole(tree, server):
    big = own_file(tree, "big.bin", os.urandom(3 << 20))
    server.register_file("models/abc/big.bin", big)
    assert get(server, "models/abc/big.bin") == (200, big.read_bytes())


def open_websocket(server: HarnessServer, path: str, origin: str | None = None) -> tuple[int, socket.socket]:
    """A browser's WebSocket handshake on `path`: the status line's code, and the connection."""
    address = urlsplit(server.base_url)
    connection = socket.create_connection((address.hostname, address.port), timeout=10)
    origin_line = f"Origin: {origin}\r\n" if origin else ""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n{origin_line}Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += connection.recv(1)
    if int(head.split()[1]) == 101:
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # RFC 6455's own example
    return int(head.split()[1]), connection


def page_frame(text: bytes, final: bool = True, opcode: int = 1) -> bytes:
    """A frame as a browser sends it: masked, payload under 126 bytes."""
    mask = b"\x01\x02\x03\x04"
    return bytes([(0x80 if final else 0) | opcode, 0x80 | len(text)]) + mask + bytes(
        byte ^ mask[i % 4] for i, byte in enumerate(text))


def test_a_call_channel_opens_once_under_the_token_and_carries_calls(server):
    url, connected = server.expect_channel()
    route = url.removeprefix("ws" + server.base_url.removeprefix("http"))
    assert open_websocket(server, f"/wrong/{route}")[0] == 404
    assert open_websocket(server, f"/{server.token}/channels/9999")[0] == 404
    status, page = open_websocket(server, f"/{server.token}/{route}")
    assert status == 101
    assert open_websocket(server, f"/{server.token}/{route}")[0] == 404  # once
    channel = connected.get(timeout=10)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(channel.call, '{"name": "probe"}', 10)
        assert page.recv(100) == b'\x81\x11{"name": "probe"}'  # unmasked, as a server sends
        page.sendall(page_frame(b'{"ok": ', final=False) + page_frame(b"true}", opcode=0))
        assert answer.result() == '{"ok": true}'
        with pytest.raises(TimeoutError):
            channel.call("{}", 0.2)
        late = pool.submit(channel.call, "{}", 10)
        page.close()
        with pytest.raises(ChannelClosed):
            late.result()
    channel.close()


@pytest.mark.parametrize("name", ["my model.onnx", "modèle_日本.onnx", "a#b.onnx", "what?.onnx", "100%.onnx",
                                  "a+b&c=d;e.onnx"])
def test_any_file_name_is_served_at_its_escaped_url(tree, server, name):
    own_file(tree, name, b"named " + name.encode())
    url = server.register_file(f"models/escaped/{name}", tree / "models" / name)
    assert " " not in url and "#" not in url and "?" not in url and url.isascii()
    assert request(server, "GET", url.removeprefix(server.origin)) == (200, b"named " + name.encode())


@pytest.mark.parametrize(("headers", "status"), [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Host": "evil.example"}, 403),
    ({"Host": "localhost"}, 403),
    ({}, 200),
])
def test_only_this_servers_host_and_origin_are_answered(server, headers, status):
    assert request(server, "GET", f"/{server.token}/index.html", headers=headers)[0] == status


def test_a_page_elsewhere_holding_the_token_is_not_handed_the_channel(server):
    url, connected = server.expect_channel()
    route = url.removeprefix("ws" + server.base_url.removeprefix("http"))
    status, page = open_websocket(server, f"/{server.token}/{route}", origin="http://evil.example")
    assert status == 403
    assert connected.empty()
    assert open_websocket(server, f"/{server.token}/{route}", origin=server.origin)[0] == 101


def test_a_client_resetting_its_connection_is_not_a_traceback(tree, server, capfd):
    big = own_file(tree, "reset.bin", os.urandom(32 << 20))
    url = server.register_file("models/reset/reset.bin", big)
    address = urlsplit(server.base_url)
    for _ in range(3):
        connection = socket.create_connection((address.hostname, address.port), timeout=10)
        connection.sendall(f"GET {url.removeprefix(server.origin)} HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode())
        connection.recv(1024)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()  # an RST while the server still writes
    assert get(server, "index.html")[0] == 200  # the server goes on
    time.sleep(1)  # the handlers meet the reset
    assert "Traceback" not in capfd.readouterr().err
