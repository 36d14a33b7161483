"""The MongoDB the tests talk to: SecantusDB in a child process, or a real mongod via MONGODB_URI.

A child process, not SecantusDB's in-process thread: the server then neither shares the
client's GIL nor inflates the client's memory figures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pymongo import MongoClient, monitoring


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SecantusProcess:
    """A SecantusDB server in a child process that a test may stop, kill and start again
    (same port, same storage)."""

    def __init__(self, storage: Path | str, *, standalone: bool = False) -> None:
        self.storage = str(storage)
        self.standalone = standalone
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/" + ("" if standalone else "?replicaSet=secantus")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SecantusProcess:
        args = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--storage-path", self.storage, "--log-level", "WARNING"]
        if self.standalone:
            args.append("--standalone")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_ready(self.proc, f"mongodb://127.0.0.1:{self.port}/?directConnection=true")
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextmanager
def secantus_server(storage: Path | str, *, standalone: bool = False) -> Iterator[str]:
    """Start SecantusDB (replica-set mode unless `standalone`) and yield its URI."""
    server = SecantusProcess(storage, standalone=standalone).start()
    try:
        yield server.uri
    finally:
        server.stop()


def _wait_ready(proc: subprocess.Popen[bytes], uri: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"SecantusDB exited with {proc.returncode}: {err[-2000:]}")
        try:
            with MongoClient(uri, serverSelectionTimeoutMS=300) as client:
                client.admin.command("ping")
                return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"SecantusDB did not answer within {timeout:.0f} s")


def external_uri() -> str | None:
    return os.environ.get("MONGODB_URI") or None


def split_documents(batch: bytes) -> list[bytes]:
    """The documents of a raw BSON batch (as `find_raw_batches` yields it), each as its bytes."""
    out: list[bytes] = []
    pos = 0
    while pos < len(batch):
        size = int.from_bytes(batch[pos : pos + 4], "little")
        out.append(bytes(batch[pos : pos + size]))
        pos += size
    return out


class Commands(monitoring.CommandListener):
    """Every command the client sends, in order, with its body."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]

    def of(self, name: str, collection: str | None = None) -> list[dict[str, Any]]:
        """The commands `name` sent, of `collection` if given (getMore names it apart)."""
        key = "collection" if name == "getMore" else name
        return [
            body
            for command, body in self.sent
            if command == name and (collection is None or body.get(key) == collection)
        ]
