"""A fault-injecting HTTP proxy in front of a loopback registry (standard library only).

The proxy listens on 127.0.0.1 and forwards every request to one upstream (a real
``docker-registry`` serving plain HTTP), keeping the ``Host`` header so that the upload
``Location`` URLs the registry builds point back at the proxy. :class:`Fault` rules pick
requests by method, path pattern and count ("the 2nd GET of this blob") and do one thing to
them instead of, or on top of, forwarding:

=================  ======================================================================
``status``         answer ``status`` (429, 500, 502, 503...) with or without ``Retry-After``;
                   a request body is read and dropped first; nothing reaches the registry
``reset``          reset the connection (RST) before any answer; with ``after``, once that many
                   bytes of the request body were read (a push cut mid-upload)
``stall_request``  read the request, then answer nothing for ``seconds`` (a push that hangs)
``forward_status`` forward (the registry does the work), then answer ``status`` instead
``reset_body``     forward, send the headers and ``after`` bytes of the body, then RST
``short_body``     forward, promise the whole body (Content-Length) but send ``after``
                   bytes, then close cleanly (FIN)
``corrupt``        forward, flip bytes of the body: ``at="middle"`` (inside a deflate
                   stream: breaks gzip), ``at="gzip-mtime"`` (the gzip header's MTIME: still
                   valid gzip, same content, other bytes) or an offset
``stall``          forward, send the headers and ``after`` bytes, then nothing for
                   ``seconds`` (longer than the client's timeout)
=================  ======================================================================

A TLS ClientHello (what a client tries first) gets what the Go registry answers, a plain
``400`` (the client sees ``WRONG_VERSION_NUMBER`` and falls back to HTTP); with
``tls="close"`` the connection is closed without a byte (a server that hangs up on the
handshake: the client's TLS library sees an EOF), with ``tls="reset"`` it is reset.

Everything is logged: :attr:`FaultProxy.log` has one :class:`Event` per request (and per TLS
attempt), naming the fault applied, so a test asserts the fault really happened. Stalls end
when the proxy stops.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import re
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

BLOB = r"/blobs/sha256:[0-9a-f]{64}$"
MANIFEST = r"/manifests/[^/]+$"
UPLOAD = r"/blobs/uploads/"
PUSH_METHODS = ("POST", "PATCH", "PUT")

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}
ACTIONS = (
    "status",
    "reset",
    "stall_request",
    "forward_status",
    "reset_body",
    "short_body",
    "corrupt",
    "stall",
)


@dataclass
class Fault:
    """What to do to the requests matching ``method`` (or ``"*"``, or a tuple) and ``path`` (a
    regex searched in the request path, query included).

    ``nth``: which of the matching requests (1-based, counted per rule); ``None``: every one.
    """

    method: str | tuple[str, ...]
    path: str
    action: str
    nth: tuple[int, ...] | None = (1,)
    status: int = 503
    retry_after: str | None = None
    after: int = 0
    seconds: float = 300.0
    at: str | int = "middle"
    label: str = ""
    seen: int = 0  # matching requests so far
    applied: list[int] = field(default_factory=list)  # the counts it was applied at

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")
        self._re = re.compile(self.path)
        if not self.label:
            self.label = f"{self.action} {self.method} {self.path}"

    def matches(self, method: str, path: str) -> bool:
        methods = (self.method,) if isinstance(self.method, str) else self.method
        return ("*" in methods or method in methods) and self._re.search(path) is not None


@dataclass(frozen=True)
class Event:
    """One request (or TLS attempt) as the proxy handled it."""

    seq: int
    time: float  # time.monotonic() when it arrived
    method: str
    path: str
    range: str | None
    fault: str | None  # the label of the fault applied, None: forwarded untouched
    outcome: str  # "HTTP 200", "status 503", "reset after 1024 bytes", "tls 400"...


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FaultProxy


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def handle(self) -> None:
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16":  # a TLS handshake record: this is a plain HTTP server
            self.server.owner._tls(self)
            return
        if first:
            with contextlib.suppress(ConnectionError, TimeoutError):
                super().handle()

    def _any(self) -> None:
        self.server.owner._serve(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def log_message(self, *args: Any) -> None:
        pass


def _reset(h: http.server.BaseHTTPRequestHandler) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset by peer'."""
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        h.connection.close()


def _hang_up(h: http.server.BaseHTTPRequestHandler) -> None:
    """Close cleanly (FIN)."""
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.connection.shutdown(socket.SHUT_RDWR)


def flip(body: bytes, at: str | int) -> bytes:
    """``body`` with one byte inverted: ``middle``, ``gzip-mtime`` (byte 4 of a gzip member:
    still valid gzip with the same content) or an offset."""
    if not body:
        return body
    if at == "gzip-mtime":
        if body[:2] != b"\x1f\x8b":
            raise ValueError("gzip-mtime: the body is not gzip")
        i = 4
    elif at == "middle":
        i = len(body) // 2
    else:
        i = int(at)
    out = bytearray(body)
    out[i] ^= 0xFF
    return bytes(out)


class FaultProxy:
    """``FaultProxy(upstream_host).start()``; ``host`` is what clients use instead."""

    def __init__(self, upstream: str, faults: Iterable[Fault] = (), tls: str = "reply") -> None:
        self.upstream = upstream
        self.faults: list[Fault] = list(faults)
        self.tls = tls  # "reply" (400, as the Go registry), "close" or "reset"
        self.log: list[Event] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = int(self._server.server_address[1])
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules and what happened ------------------------------------------------------------

    def add(self, *faults: Fault) -> FaultProxy:
        """Apply these rules too (their counts start again: a rule object may be reused)."""
        with self._lock:
            for f in faults:
                f.seen = 0
                f.applied = []
            self.faults.extend(faults)
        return self

    def clear(self) -> None:
        """Drop every rule and the log (between two builds of one test)."""
        with self._lock:
            self.faults.clear()
            self.log.clear()

    def injected(self, label: str | None = None) -> list[Event]:
        """The events a fault was applied to (that fault's only, with ``label``)."""
        with self._lock:
            return [e for e in self.log if e.fault is not None and label in (None, e.fault)]

    def requests(self, method: str | None = None, path: str | None = None) -> list[Event]:
        """Every event, or those of ``method`` whose path matches the regex ``path``."""
        with self._lock:
            events = list(self.log)
        return [
            e
            for e in events
            if method in (None, e.method) and (path is None or re.search(path, e.path))
        ]

    def describe(self) -> str:
        with self._lock:
            return "\n".join(
                f"{e.seq:4} {e.method} {e.path} range={e.range} -> {e.outcome}"
                + (f" [{e.fault}]" if e.fault else "")
                for e in self.log
            )

    def _choose(self, method: str, path: str) -> tuple[int, float, Fault | None]:
        with self._lock:
            chosen = None
            for f in self.faults:
                if not f.matches(method, path):
                    continue
                f.seen += 1
                if chosen is None and (f.nth is None or f.seen in f.nth):
                    f.applied.append(f.seen)
                    chosen = f
            self._seq += 1
            return self._seq - 1, time.monotonic(), chosen

    def _record(self, event: Event) -> None:
        with self._lock:
            self.log.append(event)
            self.log.sort(key=lambda e: e.seq)

    # -- serving --------------------------------------------------------------------------

    def _tls(self, h: _Handler) -> None:
        with self._lock:
            seq = self._seq
            self._seq += 1
        if self.tls == "reset":
            _reset(h)
            outcome = "tls reset"
        elif self.tls == "close":
            _hang_up(h)
            outcome = "tls close"
        else:
            with contextlib.suppress(OSError):
                h.connection.sendall(
                    b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            _hang_up(h)
            outcome = "tls 400"
        self._record(Event(seq, time.monotonic(), "TLS", "", None, None, outcome))

    def _read_body(self, h: _Handler, limit: int | None = None) -> bytes:
        """The request body (Content-Length or chunked); at most ``limit`` bytes of it."""
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                want = size if limit is None else min(size, limit - len(out))
                out += h.rfile.read(want)
                if limit is not None and len(out) >= limit:
                    return bytes(out)
                h.rfile.read(size - want + 2)
        length = int(h.headers.get("Content-Length") or 0)
        if limit is not None:
            length = min(length, limit)
        return h.rfile.read(length) if length else b""

    def _serve(self, h: _Handler) -> None:
        method, path = h.command, h.path
        seq, t0, fault = self._choose(method, path)

        def record(outcome: str) -> None:
            label = fault.label if fault is not None else None
            self._record(Event(seq, t0, method, path, h.headers.get("Range"), label, outcome))

        if fault is not None and fault.action in ("status", "reset", "stall_request"):
            if fault.action == "reset":
                got = self._read_body(h, fault.after) if fault.after else b""
                _reset(h)
                record(f"reset after {len(got)} request bytes")
                return
            self._read_body(h)
            if fault.action == "stall_request":
                record(f"stalled {fault.seconds:g} s before answering")
                self._stop.wait(fault.seconds)
                _reset(h)
                return
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by the fault proxy"}]}'
            h.send_response(fault.status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            if fault.retry_after is not None:
                h.send_header("Retry-After", fault.retry_after)
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(body)
            record(f"status {fault.status}")
            return

        body = self._read_body(h)
        try:
            status, reason, headers, data = self._forward(h, body)
        except OSError as e:
            h.send_error(502, f"fault proxy: upstream failed: {e}")
            record(f"upstream failed: {e}")
            return
        if fault is not None and fault.action == "forward_status":
            status, reason, data = fault.status, "Injected", b""
            headers = [(k, v) for k, v in headers if k.lower() == "docker-distribution-api-version"]
            if fault.retry_after is not None:
                headers.append(("Retry-After", fault.retry_after))
        if fault is not None and fault.action == "corrupt" and method != "HEAD":
            data = flip(data, fault.at)
        h.send_response(status, reason)
        for k, v in headers:
            if k.lower() not in _HOP and k.lower() != "content-length":
                h.send_header(k, v)
        if method == "HEAD":
            length = next((v for k, v in headers if k.lower() == "content-length"), "0")
        else:
            length = str(len(data))
        h.send_header("Content-Length", length)
        h.end_headers()
        if method == "HEAD":
            record(f"HTTP {status}")
            return
        action = fault.action if fault is not None else None
        if action in ("reset_body", "short_body", "stall"):
            assert fault is not None
            n = min(fault.after, len(data))
            h.wfile.write(data[:n])
            h.wfile.flush()
            if action == "reset_body":
                time.sleep(0.05)  # let the first bytes reach the client before the RST
                _reset(h)
                record(f"HTTP {status}, reset after {n} of {len(data)} bytes")
            elif action == "short_body":
                _hang_up(h)
                record(f"HTTP {status}, closed after {n} of {len(data)} bytes")
            else:
                record(f"HTTP {status}, stalled {fault.seconds:g} s after {n} bytes")
                self._stop.wait(fault.seconds)
                _reset(h)
            return
        h.wfile.write(data)
        record(f"HTTP {status}" + (" (corrupted)" if action == "corrupt" else ""))

    def _forward(self, h: _Handler, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream, timeout=120)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
            headers["Content-Length"] = str(len(body))
            if h.command in ("GET", "HEAD", "DELETE") and not body:
                headers.pop("Content-Length")
            conn.request(h.command, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, list(resp.getheaders()), data
        finally:
            conn.close()
