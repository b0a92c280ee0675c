"""The page's call channel: one WebSocket from the harness page to the plugin's server.

Calls into a local page go this way rather than through Playwright's page.evaluate,
whose path (Python -> Playwright's Node driver -> browser -> renderer) has one more
process hop each way: about 1 ms a call on a busy 2-core machine
(bench/bench_node_suite.py). Only what a browser sends is handled (RFC 6455):
masked text frames, fragments, ping and close.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CONTINUATION, _CLOSE, _PING, _PONG = 0x1, 0x0, 0x8, 0x9, 0xA


class ChannelClosed(Exception):
    """The page's end went away: the page closed, its renderer died or the browser exited."""


def accept_key(client_key: str) -> str:
    """Sec-WebSocket-Accept for the page's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(client_key.encode() + _ACCEPT_GUID).digest()).decode()


class PageChannel:
    """One page's end of the channel, once the handshake is done; one call at a time."""

    def __init__(self, connection: socket.socket, reader):
        self._socket = connection
        self._reader = reader  # the request handler's buffered reader: it may hold bytes already
        self._closed = threading.Event()

    def call(self, text: str, timeout_s: float) -> str:
        """Send one message and return the page's answer; TimeoutError past `timeout_s`."""
        self._socket.settimeout(timeout_s)
        try:
            self._send(_TEXT, text.encode())
            return self._receive().decode()
        except TimeoutError:
            raise
        except OSError as error:  # reset by a dying renderer or browser
            raise ChannelClosed(f"the channel broke ({error})") from None

    def abort(self) -> None:
        """End a call in flight from another thread: its read returns at once, as if the page had gone."""
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        if self._closed.is_set():
            return
        try:
            self._socket.settimeout(1)
            self._send(_CLOSE, b"")
        except OSError:
            pass
        self._closed.set()

    def wait_closed(self) -> None:
        """Block until `close`: the request handler holds the connection open until then."""
        self._closed.wait()

    def _send(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
        self._socket.sendall(header + payload)

    def _receive(self) -> bytes:
        message = bytearray()
        while True:
            first, second = self._read(2)
            opcode, size = first & 0x0F, second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", self._read(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if second & 0x80 else b""
            payload = _unmask(self._read(size), mask) if mask else self._read(size)
            if opcode == _CLOSE:
                raise ChannelClosed("the page closed the channel")
            if opcode == _PING:
                self._send(_PONG, payload)
                continue
            if opcode in (_TEXT, _CONTINUATION):
                message += payload
                if first & 0x80:  # the final fragment
                    return bytes(message)

    def _read(self, count: int) -> bytes:
        data = self._reader.read(count) if count else b""
        if len(data) < count:
            raise ChannelClosed("the channel closed mid-message" if data else "the channel closed")
        return data


def _unmask(data: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, as one big integer (a Python loop over bytes is 100 times slower)."""
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")
