"""A small HTTP reverse proxy that sits between a storage client and its emulator and can be
told to answer the next requests with an error status or to drop their connection.

Faults are injected before the request reaches the emulator, so the emulator never sees a
failed request: what a client sees is exactly an overloaded or flaky front end. Headers that
name the emulator (e.g. a GCS resumable-session `Location`) are rewritten to the proxy, so
follow-up requests go through it too.
"""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


@dataclass
class Fault:
    #: HTTP status to answer with, or None to drop the connection without an answer
    status: int | None
    #: how many matching requests to hit; -1: every one until cleared
    count: int
    method: str | None = None
    path_contains: str | None = None
    #: forward the request, but cut the answer's body after this many bytes
    cut_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


@dataclass
class Hold:
    """Keep one matching request back before forwarding it, until a request of `until_method`
    has been answered or `timeout` seconds have passed: a part upload still in flight when the
    client moves on (e.g. to the DELETE of its cleanup)."""

    path_contains: str
    until_method: str
    timeout: float
    #: only requests of this method (None: any)
    method: str | None = None
    #: set when the request is being held
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    taken: bool = False


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = upstream.rstrip("/")
        self._up_host = parts.hostname or "127.0.0.1"
        self._up_port = parts.port or 80
        self._faults: list[Fault] = []
        self._holds: list[Hold] = []
        self._lock = threading.Lock()
        #: (method, path, status or "dropped") of every request seen
        self.seen: list[tuple[str, str, int | str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True)

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # What tests call.

    def fail(
        self,
        count: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next `count` matching requests with `status` (-1: all, until `clear()`)."""
        with self._lock:
            self._faults.append(Fault(status, count, method, path_contains))

    def drop(self, count: int = 1, *, method: str | None = None, path_contains: str | None = None) -> None:
        """Close the connection of the next `count` matching requests without answering."""
        with self._lock:
            self._faults.append(Fault(None, count, method, path_contains))

    def cut(self, count: int = 1, after: int = 1024 * 1024, *, method: str | None = None) -> None:
        """Forward the next `count` matching requests but close the connection after `after`
        bytes of the answer's body, as a connection lost mid-download."""
        with self._lock:
            self._faults.append(Fault(None, count, method, None, cut_after=after))

    def hold(
        self,
        path_contains: str,
        *,
        until_method: str = "DELETE",
        timeout: float = 2.0,
        method: str | None = None,
    ) -> Hold:
        """Hold the next request (of `method`) whose path contains `path_contains` (see
        `Hold`); wait for `hold.held` to know it is in flight, set `hold.released` to let it go."""
        hold = Hold(path_contains, until_method, timeout, method)
        with self._lock:
            self._holds.append(hold)
        return hold

    def _take_hold(self, method: str, path: str) -> Hold | None:
        with self._lock:
            for hold in self._holds:
                if not hold.taken and hold.path_contains in path and hold.method in (None, method):
                    hold.taken = True
                    return hold
        return None

    def _answered(self, method: str) -> None:
        with self._lock:
            for hold in self._holds:
                if hold.until_method == method:
                    hold.released.set()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def injected(self) -> int:
        return sum(1 for _, _, result in self.seen if result in ("dropped", "cut", 429, 500, 502, 503, 504))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.count != 0 and fault.matches(method, path):
                    # A cut is counted when it happens (a short answer is not cut).
                    if fault.count > 0 and fault.cut_after is None:
                        fault.count -= 1
                    return fault
        return None

    def _consume(self, fault: Fault) -> bool:
        with self._lock:
            if fault.count == 0:
                return False
            if fault.count > 0:
                fault.count -= 1
            return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._read_body()
                fault = proxy._take_fault(self.command, self.path)
                if fault is not None and fault.status is None and fault.cut_after is None:
                    proxy.seen.append((self.command, self.path, "dropped"))
                    # An abrupt close (RST), as a crashed load balancer would.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None and fault.status is not None:
                    proxy.seen.append((self.command, self.path, fault.status))
                    payload = (
                        b'{"error": {"code": %d, "message": "injected by the test proxy"}}' % fault.status
                    )
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                hold = proxy._take_hold(self.command, self.path)
                if hold is not None:
                    hold.held.set()
                    hold.released.wait(hold.timeout)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(proxy._up_host, proxy._up_port, timeout=120)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                cut = (
                    fault is not None
                    and fault.cut_after is not None
                    and len(data) > fault.cut_after
                    and proxy._consume(fault)
                )
                proxy.seen.append((self.command, self.path, "cut" if cut else response.status))
                proxy._answered(self.command)
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    # A HEAD answer's Content-Length is the object's size: pass it through.
                    if key.lower() in _HOP_BY_HOP or (
                        key.lower() == "content-length" and self.command != "HEAD"
                    ):
                        continue
                    self.send_header(key, value.replace(proxy.upstream, proxy.endpoint))
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if cut and fault is not None and fault.cut_after is not None:
                    self.wfile.write(data[: fault.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        return Handler
