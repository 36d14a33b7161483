"""A TCP proxy between a MongoDB client and its server that a test can cut or stall.

- `cut()`: reset every open connection at once (as a crashed load balancer or a lost node
  would), and keep refusing new ones until `heal()`;
- `stall()`: keep the connections open but forward nothing, in either direction (a network
  partition: the client sees no error, only silence) until `heal()`.

Clients must connect with `directConnection=true` to the proxy's address (`uri`): otherwise
the driver learns the server's own address from `hello` and goes around the proxy.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

_LINGER_RST = b"\x01\x00\x00\x00\x00\x00\x00\x00"


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._open = threading.Event()
        self._open.set()  # set: bytes flow; clear: stalled
        self._refusing = False
        self._closed = False
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    def uri(self, query: str = "") -> str:
        extra = f"&{query}" if query else ""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true{extra}"

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._open.set()
        with suppress(OSError):
            self._listener.close()
        self._reset_all()

    # What tests call.

    def cut(self) -> None:
        """Reset every connection now and refuse new ones until heal()."""
        self._refusing = True
        self._reset_all()

    def stall(self) -> None:
        """Forward nothing until heal(); connections stay open."""
        self._open.clear()

    def heal(self) -> None:
        self._refusing = False
        self._open.set()

    # Inside.

    def _reset_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                with suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                with suppress(OSError):
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                    client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self.connections += 1
            with self._lock:
                self._pairs.append((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._open.wait()
                if self._closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def tcp_proxy(uri: str) -> Iterator[TcpProxy]:
    """A proxy in front of the (single) host of a mongodb:// URI."""
    hostport = uri.split("://", 1)[1].split("/", 1)[0].split(",")[0]
    host, _, port = hostport.rpartition(":")
    with TcpProxy(host or "127.0.0.1", int(port or 27017)) as proxy:
        yield proxy
