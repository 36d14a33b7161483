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

from pymongo import MongoClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def secantus_server(storage: Path | str, *, standalone: bool = False) -> Iterator[str]:
    """Start SecantusDB (replica-set mode unless `standalone`) and yield its URI."""
    port = free_port()
    args = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--storage-path", str(storage), "--log-level", "WARNING"]
    if standalone:
        args.append("--standalone")
    uri = f"mongodb://127.0.0.1:{port}/" + ("" if standalone else "?replicaSet=secantus")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(proc, f"mongodb://127.0.0.1:{port}/?directConnection=true")
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
