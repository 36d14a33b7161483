"""Storage benchmark (run on demand, not a test): upload and download throughput of one large
stream through each backend against its local emulator, next to the SDK's own plain call on
the same bytes in the same run.

    .venv/bin/python bench/bench_storage.py --size-mb 1024 --backends gcs,s3,azure,file

Ours: `Storage.open_write` fed 4 MiB chunks read from a file (as the engine feeds it), and
`Storage.read` drained. SDK: `upload_from_file` / `upload_fileobj` / `upload_blob` of the same
file with the SDK's defaults, and its plain download into a sink. Printed per phase: wall
seconds, MB/s, our time / the SDK's, and the peak RSS of this process during the phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from tests.support.emulators import (  # noqa: E402
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    azure_emulator,
    gcs_emulator,
    s3_emulator,
)

from mongo_backup.storage import Storage, StorageSettings, open_storage  # noqa: E402
from mongo_backup.storage.location import (  # noqa: E402
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AZURE_STORAGE_CONNECTION_STRING,
)

MiB = 1024 * 1024
FEED_CHUNK = 4 * MiB
BUCKET = "bench"


class PeakRss:
    """Peak RSS of this process while a phase runs (sampled every 10 ms in a thread)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = 0
        self.start = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self.start = self._process.memory_info().rss
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@dataclass
class Phase:
    backend: str
    what: str  # "upload" | "download"
    who: str  # "ours" | "sdk"
    seconds: float
    size: int
    peak_rss: int
    start_rss: int

    @property
    def mb_s(self) -> float:
        return self.size / MiB / self.seconds


class Sink:
    """A write-only file that drops what it gets (for the SDKs' downloads)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass


async def our_upload(storage: Storage, name: str, source: Path) -> None:
    f = await asyncio.to_thread(open, source, "rb")
    try:
        async with storage.open_write(name, overwrite=True) as writer:
            while chunk := await asyncio.to_thread(f.read, FEED_CHUNK):
                await writer.write(chunk)
    finally:
        f.close()


async def our_download(storage: Storage, name: str) -> int:
    size = 0
    async for chunk in storage.read(name):
        size += len(chunk)
    return size


def make_file(path: Path, size: int) -> None:
    block = os.urandom(FEED_CHUNK)
    with open(path, "wb") as f:
        for i in range(0, size, FEED_CHUNK):
            f.write(i.to_bytes(8, "big") + block[8 : min(FEED_CHUNK, size - i)])


def our_storage(backend: str, endpoint: str) -> Storage:
    # BENCH_PART_MB: our part/chunk size (default: each backend's own)
    part = int(os.environ.get("BENCH_PART_MB", "0")) * MiB or None
    settings_common: dict[str, Any] = {"part_size": part}
    if backend == "gcs":
        return open_storage(f"gs://{BUCKET}", StorageSettings(gcs_endpoint=endpoint, **settings_common))
    if backend == "s3":
        creds = {AWS_ACCESS_KEY_ID: "bench", AWS_SECRET_ACCESS_KEY: "bench"}
        return open_storage(
            f"s3://{BUCKET}", StorageSettings(s3_endpoint=endpoint, credentials=creds, **settings_common)
        )
    if backend == "azure":
        conn = azure_connection_string(endpoint)
        return open_storage(
            f"azure://{BUCKET}",
            StorageSettings(credentials={AZURE_STORAGE_CONNECTION_STRING: conn}, **settings_common),
        )
    return open_storage(f"file://{endpoint}")


def azure_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )


def sdk_client(backend: str, endpoint: str) -> Any:
    if backend == "gcs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        client = gcs.Client(
            project="bench",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        return client.bucket(BUCKET)
    if backend == "s3":
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
    if backend == "azure":
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(
            azure_connection_string(endpoint)
        ).get_container_client(BUCKET)
    return Path(endpoint)


def sdk_upload(backend: str, client: Any, source: Path, key: str) -> None:
    """The SDK's own plain call, with its defaults."""
    with open(source, "rb") as f:
        if backend == "gcs":
            client.blob(key).upload_from_file(f)
        elif backend == "s3":
            client.upload_fileobj(f, BUCKET, key)
        elif backend == "azure":
            client.upload_blob(key, f, overwrite=True)
        else:
            with open(client / key, "wb") as dst:
                shutil.copyfileobj(f, dst, FEED_CHUNK)
                dst.flush()
                os.fsync(dst.fileno())


def sdk_download(backend: str, client: Any, key: str, sink: Sink) -> None:
    if backend == "gcs":
        client.blob(key).download_to_file(sink)
    elif backend == "s3":
        client.download_fileobj(BUCKET, key, sink)
    elif backend == "azure":
        client.download_blob(key).readinto(sink)
    else:
        with open(client / key, "rb") as src:
            shutil.copyfileobj(src, sink, FEED_CHUNK)  # type: ignore[misc]


def run_phase(backend: str, endpoint: str, what: str, who: str, source: Path, size: int) -> dict[str, float]:
    """One phase in this (fresh) process: its peak RSS is the phase's own."""
    key = f"{who}.bin"
    storage = our_storage(backend, endpoint) if who == "ours" else None
    client = sdk_client(backend, endpoint) if who == "sdk" else None
    with PeakRss() as rss:
        started = time.perf_counter()
        if who == "ours" and what == "upload":
            assert storage is not None
            asyncio.run(our_upload(storage, key, source))
        elif who == "ours":
            assert storage is not None
            got = asyncio.run(our_download(storage, key))
            assert got == size, f"read {got} bytes of {size}"
        elif what == "upload":
            sdk_upload(backend, client, source, key)
        else:
            sink = Sink()
            sdk_download(backend, client, key, sink)
            assert sink.size == size, f"SDK read {sink.size} bytes of {size}"
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss": rss.peak, "start_rss": rss.start}


def start_emulator(backend: str, work: Path, stack: ExitStack) -> str:
    """Start the backend's emulator, create the bucket; return the endpoint (a folder for `file`)."""
    if backend == "gcs":
        emu = stack.enter_context(gcs_emulator(work / "gcs"))
        sdk_client(backend, emu.endpoint).client.create_bucket(BUCKET)
    elif backend == "s3":
        emu = stack.enter_context(s3_emulator(work / "s3"))
        sdk_client(backend, emu.endpoint).create_bucket(Bucket=BUCKET)
    elif backend == "azure":
        emu = stack.enter_context(azure_emulator(work / "azure"))
        sdk_client(backend, emu.endpoint).create_container()
    elif backend == "file":
        root = work / "file-store"
        root.mkdir(parents=True, exist_ok=True)
        return str(root)
    else:
        raise SystemExit(f"unknown backend {backend!r}: use gcs, s3, azure, file")
    return emu.endpoint


def phase_in_child(backend: str, endpoint: str, what: str, who: str, source: Path, size: int) -> Phase:
    out = subprocess.run(
        [sys.executable, __file__, "--child", f"{backend},{endpoint},{what},{who}", "--source", str(source),
         "--size-mb", str(size // MiB)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    phase = Phase(
        backend, what, who, result["seconds"], size, int(result["peak_rss"]), int(result["start_rss"])
    )
    print(
        f"  {backend:6} {what:8} {who:5} {phase.seconds:7.2f} s {phase.mb_s:8.1f} MB/s  "
        f"peak RSS {phase.peak_rss / MiB:5.0f} MB (at start {phase.start_rss / MiB:.0f} MB)",
        flush=True,
    )
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the stream (default 1024)")
    parser.add_argument("--backends", default="gcs,s3,azure,file", help="comma-separated (default: all)")
    parser.add_argument("--workdir", type=Path, default=None, help="emulator data and source file (temp dir)")
    parser.add_argument(
        "--part-mb", type=int, default=0, help="our part/chunk size in MiB (default: each backend's default)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size_mb * MiB
    if args.part_mb:
        os.environ["BENCH_PART_MB"] = str(args.part_mb)  # children inherit it
    if args.child:
        backend, endpoint, what, who = args.child.split(",")
        print(json.dumps(run_phase(backend, endpoint, what, who, args.source, size)))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-storage-"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source.bin"
    print(
        f"storage benchmark: {args.size_mb} MB stream, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        flush=True,
    )
    make_file(source, size)
    phases: list[Phase] = []
    try:
        for backend in args.backends.split(","):
            with ExitStack() as stack:
                endpoint = start_emulator(backend, work, stack)
                # The SDK first, then ours, so neither gains from the other's warm-up.
                for what, who in (
                    ("upload", "sdk"),
                    ("upload", "ours"),
                    ("download", "ours"),
                    ("download", "sdk"),
                ):
                    phases.append(phase_in_child(backend, endpoint, what, who, source, size))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        "| backend | direction | ours s | ours MB/s | SDK s | SDK MB/s | ours/SDK time | ours peak RSS | SDK peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for i in range(0, len(phases), 4):
        group = phases[i : i + 4]
        by = {(p.what, p.who): p for p in group}
        for what in ("upload", "download"):
            ours, sdk = by[(what, "ours")], by[(what, "sdk")]
            print(
                f"| {ours.backend} | {what} | {ours.seconds:.2f} | {ours.mb_s:.0f} | {sdk.seconds:.2f} "
                f"| {sdk.mb_s:.0f} | {ours.seconds / sdk.seconds:.2f}x | {ours.peak_rss / MiB:.0f} MB "
                f"| {sdk.peak_rss / MiB:.0f} MB |"
            )
    print("\nEach phase runs in a fresh process; peak RSS includes the interpreter and imported SDKs.")


if __name__ == "__main__":
    main()
