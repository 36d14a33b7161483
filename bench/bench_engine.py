"""Engine benchmark (run on demand, not a test): our backup and restore next to the bare
driver calls they are built on, against one local SecantusDB, in the same run.

    .venv/bin/python bench/bench_engine.py                       # 1M small + 100k large docs
    .venv/bin/python bench/bench_engine.py --docs 100000 --large-docs 20000 --repeat 3
    .venv/bin/python bench/bench_engine.py --compressions zstd,gzip,none --standalone
    .venv/bin/python bench/bench_engine.py --encrypted       # + encrypted backups and restores

Three data sets, each in its own database, generated once as raw BSON: `small` (--docs,
~210-byte documents of mixed types, compressible like real records, one collection),
`large` (--large-docs of ~--large-size bytes, mostly random bytes: nearly incompressible,
one collection) and `many` (--many-collections collections of --many-docs small documents:
the per-collection overheads show there). Per data set, in this order (the order is part of
the result, because of caches):

  load        raw insert_many of the generated batches (creates the source collections)
  warm-up     a raw drain whose figures are shown but not used
  then --repeat times, alternating:
    raw drain bare `find_raw_batches()` of every collection, one after the other, nothing
              else (the synchronous driver: the stricter baseline)                    (a)
    backup    run_backup to a local folder, per --compressions                        (b)
  raw drain   once through the asyncio driver the engine uses, for its CPU share (not in
              the ratios), once through the engine's own cursor (engine/cursor.py), and once
              more with the synchronous driver (after)
  (small and large only, not many:)
  then --repeat times, alternating:
    raw insert  insert_many(RawBSONDocument..., ordered=False) of the same batches    (c)
              into a fresh collection, with as many threads as the restore's insert workers
    rename    (first repetition only) renameCollection of that copy alone: the restore's
              swap, O(1) on mongod, a copy of every document on SecantusDB
    restore   run_restore of the first compression's backup into a fresh database,
              verify off, then verify on (it reads every restored document back)      (d)
  raw insert  again, after the restores

With --encrypted, each backup runs twice per repetition, plain and encrypted (AES-256-GCM
under a local key), and each repetition restores the encrypted backup too (verify on); the
encrypted runs come second on odd repetitions and first on even ones (SecantusDB slows down
as it churns). The summary pairs each encrypted run with the plain run of its repetition.

Ratios pair each backup with the raw drain of its own repetition (b_i / a_i) and each
restore with the raw insert of its own (d_i / c_i): medians and min-max over repetitions.
Time to first byte, per backup: from the call of run_backup to (1) the first data object
opened (a collection's dump has begun), (2) the first batch of documents read from the
server and compressed (the first progress callback with bytes_done > 0), (3) the first
write() of compressed bytes to a data object (the engine gathers 4 MiB before writing, so a
compressible collection of under ~20 MB writes only at its end); next to it the raw drain's
time to its first batch, which is the server's own share of the wait. The restore's
per-phase timings (RestoreResult.timings, when the engine has them) are printed too.

Every fresh collection is dropped after its measurement, so each write starts from the
same server state. Each measurement runs in its own spawned child process: its CPU seconds
(user+sys, zstd's threads included) come from getrusage(RUSAGE_SELF) around the measured
work, and its peak RSS is the child's VmHWM (interpreter and imports included). The
server's CPU seconds over the same interval are shown too: they tell who is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import multiprocessing
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import bson
import psutil
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from tests.support.mongo import secantus_server  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024
#: raw insert batches, the size the restore hands to one insert_many
INSERT_BATCH_BYTES = 4 * MiB
COLLECTION = "docs"
#: targets (issue 10), checked in the summary
TARGET_BACKUP = 1.05
TARGET_BACKUP_MANY = 1.20
TARGET_RESTORE = 1.15
TARGET_CPU = 1.30
TARGET_RSS = 200 * MiB


# ---------------------------------------------------------------- data generation


def _small_document(i: int, rng: random.Random, start: datetime) -> dict[str, Any]:
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")
    return {
        "_id": bson.ObjectId(),
        "seq": i,
        "customer": f"customer-{rng.randrange(100_000):06d}",
        "status": rng.choice(("new", "paid", "shipped", "returned")),
        "amount": round(rng.uniform(1, 5000), 2),
        "created": start + timedelta(seconds=i),
        "tags": rng.sample(words, 3),
        "note": " ".join(rng.choices(words, k=6)),
    }


def _large_document(i: int, rng: random.Random, size: int) -> dict[str, Any]:
    return {
        "_id": i,
        "kind": "blob",
        "created": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
        "payload": bson.Binary(rng.randbytes(max(0, size - 80))),
    }


def generate(path: Path, kind: str, count: int, size: int) -> int:
    """Write `count` documents as one raw BSON stream; return its size in bytes."""
    rng = random.Random(f"{kind}-{count}-{size}")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    encode = bson.encode
    with path.open("wb") as out:
        chunk: list[bytes] = []
        for i in range(count):
            doc = _small_document(i, rng, start) if kind == "small" else _large_document(i, rng, size)
            chunk.append(encode(doc))
            if len(chunk) == 10_000:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))
    return path.stat().st_size


def raw_batches(path: Path, batch_bytes: int = INSERT_BATCH_BYTES) -> Iterator[list[RawBSONDocument]]:
    """The generated stream cut into insert batches of whole documents."""
    with path.open("rb") as source:
        tail = b""
        while block := source.read(batch_bytes):
            buf = tail + block
            docs, pos, end = [], 0, len(buf)
            while end - pos >= 4:
                size = int.from_bytes(buf[pos : pos + 4], "little")
                if pos + size > end:
                    break
                docs.append(RawBSONDocument(buf[pos : pos + size]))
                pos += size
            tail = buf[pos:]
            if docs:
                yield docs


def many_batches(path: Path, per_collection: int) -> Iterator[list[RawBSONDocument]]:
    """The generated stream cut into one insert batch per collection of the `many` set."""
    batch: list[RawBSONDocument] = []
    for docs in raw_batches(path):
        for doc in docs:
            batch.append(doc)
            if len(batch) == per_collection:
                yield batch
                batch = []
    if batch:
        yield batch


def many_name(i: int) -> str:
    return f"c{i:04d}"


# ---------------------------------------------------------------- measured work (in children)


@dataclass
class Meter:
    """Wall and CPU seconds of this process around a block."""

    wall: float = 0.0
    cpu_user: float = 0.0
    cpu_sys: float = 0.0

    def __enter__(self) -> Meter:
        self._r0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_user = r1.ru_utime - self._r0.ru_utime
        self.cpu_sys = r1.ru_stime - self._r0.ru_stime

    def since_start(self) -> float:
        return time.perf_counter() - self._t0


def _sync_client(uri: str) -> MongoClient[Any]:
    client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=20_000)
    client.admin.command("ping")
    return client


def phase_drain(meter: Meter, uri: str, db: str, **_: Any) -> dict[str, Any]:
    """Every collection of `db`, one after the other (listing them is part of the work)."""
    client = _sync_client(uri)
    total = 0
    first: float | None = None
    with meter:
        for name in sorted(client[db].list_collection_names()):
            for batch in client[db][name].find_raw_batches():
                if first is None:
                    first = meter.since_start()
                total += len(batch)
    client.close()
    return {"bytes": total, "extra": {"first_batch": first}}


def phase_drain_async(
    meter: Meter, uri: str, db: str, engine_cursor: bool = False, **_: Any
) -> dict[str, Any]:
    """The same drain through the asyncio driver the engine uses: the driver's share of the
    backup's CPU; with `engine_cursor`, through the engine's own cursor (engine/cursor.py:
    the driver's cursor, its replies unpacked without an object per document)."""
    from pymongo import AsyncMongoClient

    from mongo_backup.engine.cursor import raw_batches as engine_batches

    async def main() -> dict[str, Any]:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, serverSelectionTimeoutMS=20_000)
        await client.admin.command("ping")
        total = 0
        with meter:
            for name in sorted(await client[db].list_collection_names()):
                collection = client[db][name]
                cursor = engine_batches(collection, 0) if engine_cursor else collection.find_raw_batches()
                async for batch in cursor:
                    total += len(batch)
        await client.close()
        return {"bytes": total}

    return asyncio.run(main())


def phase_raw_insert(meter: Meter, uri: str, db: str, source: str, workers: int, **_: Any) -> dict[str, Any]:
    client = _sync_client(uri)
    collection = client[db][COLLECTION]
    lock = threading.Lock()
    totals = {"documents": 0, "bytes": 0}
    with meter:
        batches = raw_batches(Path(source))

        def worker() -> None:
            while True:
                with lock:
                    docs = next(batches, None)
                if docs is None:
                    return
                collection.insert_many(docs, ordered=False, bypass_document_validation=True)
                with lock:
                    totals["documents"] += len(docs)
                    totals["bytes"] += sum(len(d.raw) for d in docs)

        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    client.close()
    return totals


def phase_load_many(
    meter: Meter, uri: str, db: str, source: str, per_collection: int, **_: Any
) -> dict[str, Any]:
    client = _sync_client(uri)
    totals = {"documents": 0, "bytes": 0}
    with meter:
        for i, docs in enumerate(many_batches(Path(source), per_collection)):
            client[db][many_name(i)].insert_many(docs, ordered=False, bypass_document_validation=True)
            totals["documents"] += len(docs)
            totals["bytes"] += sum(len(d.raw) for d in docs)
    client.close()
    return totals


def _encryption_key(key_file: str | None) -> Any:
    from mongo_backup.engine.encryption import LocalKey

    return LocalKey.from_file(key_file) if key_file else None


def phase_backup(
    meter: Meter, uri: str, db: str, target: str, compression: str, key_file: str | None = None, **_: Any
) -> dict[str, Any]:
    from mongo_backup.engine import BackupOptions, Progress, open_client, run_backup
    from mongo_backup.engine.metadata import DATA_SUFFIX
    from mongo_backup.storage import ObjectInfo, ObjectWriter, open_storage
    from mongo_backup.storage.base import PrefixedStorage

    marks: dict[str, float] = {}

    def mark(what: str) -> None:
        marks.setdefault(what, meter.since_start())

    class FirstWrite(ObjectWriter):
        """A data object's writer that notes when its first bytes are handed to storage."""

        def __init__(self, inner: ObjectWriter) -> None:
            self.name = inner.name
            self._inner = inner

        async def write(self, data: bytes) -> None:
            mark("first_write")
            await self._inner.write(data)

        async def commit(self) -> ObjectInfo:
            return await self._inner.commit()

        async def abort(self) -> None:
            await self._inner.abort()

    class Watched(PrefixedStorage):
        def open_write(
            self, name: str, *, overwrite: bool = False, size_hint: int | None = None
        ) -> ObjectWriter:
            writer = super().open_write(name, overwrite=overwrite, size_hint=size_hint)
            if DATA_SUFFIX in name:
                mark("first_open")
                return FirstWrite(writer)
            return writer

    def progress(p: Progress) -> None:
        if p.bytes_done > 0:
            mark("first_batch")

    async def main() -> dict[str, Any]:
        client = open_client(uri)
        await client.admin.command("ping")
        storage = Watched(open_storage(Path(target).parent.as_uri()), Path(target).name)
        options = BackupOptions(
            compression=compression,  # type: ignore[arg-type]
            include=[f"{db}.*"],
            encryption_key=_encryption_key(key_file),
        )
        with meter:
            result = await run_backup(client, storage, options, progress)
        await client.close()
        return {
            "documents": result.documents,
            "bytes": result.data_bytes,
            "stored_bytes": result.stored_bytes,
            "extra": marks,
        }

    return asyncio.run(main())


def _timings(result: Any) -> dict[str, float]:
    """RestoreResult.timings (seconds per phase) when the engine has it: a dataclass or a
    mapping; {} for an engine without it."""
    timings = getattr(result, "timings", None)
    if dataclasses.is_dataclass(timings) and not isinstance(timings, type):
        timings = asdict(timings)
    if not isinstance(timings, Mapping):
        return {}
    return {str(k): float(v) for k, v in timings.items() if isinstance(v, int | float)}


def phase_restore(
    meter: Meter,
    uri: str,
    db: str,
    target: str,
    source_db: str,
    verify: bool,
    workers: int,
    key_file: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    from mongo_backup.engine import RestoreOptions, open_client, run_restore
    from mongo_backup.storage import open_storage

    async def main() -> dict[str, Any]:
        client = open_client(uri)
        await client.admin.command("ping")
        storage = open_storage(Path(target).parent.as_uri()).child(Path(target).name)
        options = RestoreOptions(
            ns_from=[f"{source_db}.*"],
            ns_to=[f"{db}.*"],
            verify=verify,
            insert_workers=workers,
            key=_encryption_key(key_file),
        )
        with meter:
            result = await run_restore(client, storage, options)
        await client.close()
        if verify and result.verified != result.checked:
            raise RuntimeError(f"restore verification failed: {result.mismatches}")
        return {
            "documents": result.documents,
            "bytes": result.data_bytes,
            "extra": {"timings": _timings(result)},
        }

    return asyncio.run(main())


def phase_command(meter: Meter, uri: str, db: str, command: dict[str, Any], **_: Any) -> dict[str, Any]:
    client = _sync_client(uri)
    with meter:
        client[db].command(command)
    client.close()
    return {"bytes": 0}


PHASES: dict[str, Callable[..., dict[str, Any]]] = {
    "command": phase_command,
    "drain": phase_drain,
    "drain_async": phase_drain_async,
    "raw_insert": phase_raw_insert,
    "load_many": phase_load_many,
    "backup": phase_backup,
    "restore": phase_restore,
}


def _peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, because ru_maxrss keeps the high-water mark of
    the forked parent across exec and would report the benchmark's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_main(phase: str, kwargs: dict[str, Any], conn: Connection) -> None:
    try:
        meter = Meter()
        if kwargs.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            out = PHASES[phase](meter, **kwargs)
            profiler.disable()
            profiler.dump_stats(kwargs["profile"])
        else:
            out = PHASES[phase](meter, **kwargs)
        out.update(
            wall=meter.wall,
            cpu_user=meter.cpu_user,
            cpu_sys=meter.cpu_sys,
            max_rss=_peak_rss(),
        )
        conn.send(("ok", out))
    except BaseException as exc:  # the parent reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# ---------------------------------------------------------------- orchestration (parent)


@dataclass
class Result:
    dataset: str
    label: str
    documents: int
    bytes: int
    wall: float
    cpu_user: float
    cpu_sys: float
    max_rss: int
    server_cpu: float
    stored_bytes: int | None = None
    counted: bool = True
    rep: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


class Runner:
    def __init__(
        self,
        uri: str,
        server: psutil.Process | None,
        profile_dir: Path | None,
        json_path: Path | None,
        markdown_path: Path | None,
    ) -> None:
        self.uri = uri
        self.json_path = json_path
        self.markdown_path = markdown_path
        self.server = server
        self.profile_dir = profile_dir
        self.results: list[Result] = []
        self._mp = multiprocessing.get_context("spawn")

    def _server_cpu(self) -> float:
        if self.server is None:
            return 0.0
        times = self.server.cpu_times()
        return float(times.user + times.system)

    def measure(
        self,
        dataset: str,
        label: str,
        phase: str,
        documents: int,
        *,
        counted: bool = True,
        rep: int = 0,
        **kwargs: Any,
    ) -> Result:
        if self.profile_dir is not None and phase in ("backup", "restore"):
            name = f"{dataset}-{label.replace(' ', '_')}-{rep}.prof"
            kwargs["profile"] = str(self.profile_dir / name)
        parent, child = self._mp.Pipe(duplex=False)
        server0 = self._server_cpu()
        proc = self._mp.Process(target=_child_main, args=(phase, {"uri": self.uri, **kwargs}, child))
        proc.start()
        child.close()
        status, out = parent.recv()
        proc.join()
        server_cpu = self._server_cpu() - server0
        if status != "ok":
            raise SystemExit(f"{dataset} {label} failed: {out}")
        result = Result(
            dataset=dataset,
            label=label,
            documents=int(out.get("documents", documents)),
            bytes=int(out["bytes"]),
            wall=out["wall"],
            cpu_user=out["cpu_user"],
            cpu_sys=out["cpu_sys"],
            max_rss=out["max_rss"],
            server_cpu=server_cpu,
            stored_bytes=out.get("stored_bytes"),
            counted=counted,
            rep=rep,
            extra=out.get("extra") or {},
        )
        self.results.append(result)
        print(_row(result), flush=True)
        self.save()  # after every step: a long run that dies still leaves its figures
        return result

    def save(self) -> None:
        if self.json_path:
            results = [asdict(r) | {"cpu": r.cpu} for r in self.results]
            self.json_path.write_text(json.dumps({"uri": self.uri, "results": results}, indent=2))
        if self.markdown_path:
            self.markdown_path.write_text(markdown(self.results))

    def drop_database(self, name: str) -> None:
        client: MongoClient[Any] = MongoClient(self.uri)
        with client:
            client.drop_database(name)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ttfb(r: Result) -> str:
    """The time-to-first-byte marks of a backup or drain, for the console."""
    if r.label.startswith("backup"):
        return (
            f"  ttfb: open {_seconds(r.extra.get('first_open'))} s, first batch"
            f" {_seconds(r.extra.get('first_batch'))} s, first write {_seconds(r.extra.get('first_write'))} s"
        )
    if "first_batch" in r.extra:
        return f"  first batch {_seconds(r.extra['first_batch'])} s"
    return ""


def _phases(timings: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in timings.items() if v >= 0.005) or "-"


def _row(r: Result) -> str:
    per_million = r.cpu / r.documents * 1_000_000 if r.documents else 0.0
    stored = f"  stored {r.stored_bytes / MB:.1f} MB" if r.stored_bytes is not None else ""
    rep = f"#{r.rep}" if r.rep else "  "
    line = (
        f"  {r.label:<24}{rep} {r.wall:8.2f} s {r.documents / r.wall:10,.0f} docs/s"
        f" {r.bytes / MB / r.wall:7.1f} MB/s  cpu {r.cpu:6.2f} s ({per_million:5.2f} s/M docs)"
        f"  rss {r.max_rss / MiB:6.1f} MiB  server cpu {r.server_cpu:6.1f} s{stored}{_ttfb(r)}"
    )
    if "timings" in r.extra:
        line += f"\n      restore phases (s): {_phases(r.extra['timings'])}"
    return line


def _key_order(key_file: str | None, rep: int) -> list[str | None]:
    """Plain then encrypted on odd repetitions, the other way round on even ones."""
    if key_file is None:
        return [None]
    return [None, key_file] if rep % 2 else [key_file, None]


def run_dataset(
    runner: Runner,
    work: Path,
    name: str,
    count: int,
    size: int,
    compressions: list[str],
    workers: int,
    repeat: int,
    per_collection: int = 0,
    key_file: str | None = None,
) -> None:
    """One data set; `per_collection` > 0: the `many` set (count // per_collection
    collections), backed up but not restored. `key_file`: also back up (each compression) and
    restore (the first, verify on) encrypted, right after the plain run of the same repetition."""
    source = work / f"{name}.bson"
    t0 = time.perf_counter()
    total = generate(source, "large" if name == "large" else "small", count, size)
    shape = (
        f"{count // per_collection:,} collections of {per_collection:,}"
        if per_collection
        else "one collection of"
    )
    print(
        f"\n== {name}: {shape} {count:,} documents, {total / MB:.1f} MB raw BSON "
        f"(~{total // max(1, count)} bytes each; generated in {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    src_db = f"bench_{name}"
    if per_collection:
        runner.measure(
            name,
            "load",
            "load_many",
            count,
            counted=False,
            db=src_db,
            source=str(source),
            per_collection=per_collection,
        )
    else:
        runner.measure(
            name, "load", "raw_insert", count, counted=False, db=src_db, source=str(source), workers=workers
        )
    runner.measure(name, "warm-up drain", "drain", count, counted=False, db=src_db)
    for rep in range(1, repeat + 1):
        runner.measure(name, "raw drain", "drain", count, rep=rep, db=src_db)
        for compression in compressions:
            # with a key, plain and encrypted swap places every repetition: SecantusDB slows
            # down as it churns, and neither side should always come second
            for key in _key_order(key_file, rep):
                suffix = "-enc" if key else ""
                target = work / "backups" / f"{name}-{compression}{suffix}-{rep}"
                runner.measure(
                    name,
                    f"backup {compression}{' encrypted' if key else ''}",
                    "backup",
                    count,
                    rep=rep,
                    db=src_db,
                    target=str(target),
                    compression=compression,
                    key_file=key,
                )
                if rep < repeat:
                    shutil.rmtree(target, ignore_errors=True)
    runner.measure(name, "raw drain, async driver", "drain_async", count, counted=False, db=src_db)
    runner.measure(
        name, "raw drain, engine's cursor", "drain_async", count, counted=False, db=src_db, engine_cursor=True
    )
    runner.measure(name, "raw drain (after)", "drain", count, db=src_db)
    if per_collection:
        runner.drop_database(src_db)
        source.unlink()
        return

    fresh = f"bench_{name}_copy"
    for rep in range(1, repeat + 1):
        runner.measure(
            name, "raw insert", "raw_insert", count, rep=rep, db=fresh, source=str(source), workers=workers
        )
        if rep == 1:
            # the restore renames its temporary collection over the target: a catalog update on
            # mongod, a copy of every document on SecantusDB. Timed alone on the collection just written.
            rename = {"renameCollection": f"{fresh}.{COLLECTION}", "to": f"{fresh}.renamed"}
            runner.measure(
                name, "renameCollection alone", "command", count, counted=False, db="admin", command=rename
            )
        runner.drop_database(fresh)
        restores: list[tuple[bool, str | None]] = [(False, None), (True, None)]
        if key_file:
            encrypted = (True, key_file)
            restores = [encrypted, *restores] if rep % 2 == 0 else [*restores, encrypted]
        for verify, key in restores:
            label = (
                f"restore {compressions[0]}{' encrypted' if key else ''} verify {'on' if verify else 'off'}"
            )
            suffix = "-enc" if key else ""
            runner.measure(
                name,
                label,
                "restore",
                count,
                rep=rep,
                db=fresh,
                target=str(work / "backups" / f"{name}-{compressions[0]}{suffix}-{repeat}"),
                source_db=src_db,
                verify=verify,
                workers=workers,
                key_file=key,
            )
            runner.drop_database(fresh)
    runner.measure(
        name, "raw insert (after)", "raw_insert", count, db=fresh, source=str(source), workers=workers
    )
    runner.drop_database(fresh)
    runner.drop_database(src_db)
    source.unlink()


# ---------------------------------------------------------------- figures


@dataclass
class Spread:
    """Median and range of a figure over repetitions."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, unit: str = "", digits: int = 2) -> str:
        if not self.values:
            return "-"
        text = f"{self.median:.{digits}f}{unit}"
        if len(self.values) > 1:
            text += f" ({min(self.values):.{digits}f}-{max(self.values):.{digits}f})"
        return text


@dataclass
class Verdict:
    dataset: str
    label: str
    baseline: str
    ratio: Spread  # paired per repetition: ours / the baseline of the same repetition
    limit: float
    adjusted: Spread | None  # restores: without the rename, which is O(1) on mongod
    cpu_ratio: Spread  # client CPU, ours / the baseline's, paired
    rss: int  # the highest peak over the repetitions


def _paired(ours: list[Result], baselines: list[Result], value: Callable[[Result], float]) -> list[float]:
    by_rep = {b.rep: b for b in baselines}
    return [value(r) / value(by_rep[r.rep]) for r in ours if r.rep in by_rep and value(by_rep[r.rep]) > 0]


def verdicts(results: list[Result]) -> list[Verdict]:
    out = []
    for dataset in dict.fromkeys(r.dataset for r in results):
        rows = [r for r in results if r.dataset == dataset]
        drains = [r for r in rows if r.label == "raw drain"]
        inserts = [r for r in rows if r.label == "raw insert"]
        renames = [r.wall for r in rows if r.label == "renameCollection alone"]
        limit_backup = TARGET_BACKUP_MANY if dataset == "many" else TARGET_BACKUP
        for label in dict.fromkeys(r.label for r in rows):
            ours = [r for r in rows if r.label == label]
            rss = max(r.max_rss for r in ours)
            if label.startswith("backup") and drains:
                ratio = Spread(_paired(ours, drains, lambda r: r.wall))
                cpu = Spread(_paired(ours, drains, lambda r: r.cpu))
                out.append(Verdict(dataset, label, "raw drain", ratio, limit_backup, None, cpu, rss))
            elif label.startswith("restore") and inserts:
                ratio = Spread(_paired(ours, inserts, lambda r: r.wall))
                cpu = Spread(_paired(ours, inserts, lambda r: r.cpu))
                adjusted = None
                if renames:
                    by_rep = {i.rep: i.wall for i in inserts}
                    adjusted = Spread(
                        [(r.wall - renames[0]) / by_rep[r.rep] for r in ours if r.rep in by_rep]
                    )
                out.append(Verdict(dataset, label, "raw insert", ratio, TARGET_RESTORE, adjusted, cpu, rss))
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def summarize(results: list[Result]) -> list[str]:
    lines = ["", "== ratios and targets (paired per repetition: median (min-max))"]
    for v in verdicts(results):
        adjusted = f" (without the rename: {v.adjusted.show('x')})" if v.adjusted else ""
        lines.append(
            f"  {v.dataset:<6} {v.label:<24} {v.ratio.show('x')} {v.baseline}"
            f" [{_met(v.ratio.median <= v.limit)} <={v.limit:.2f}]{adjusted}"
            f"  client cpu {v.cpu_ratio.show('x')} [{_met(v.cpu_ratio.median <= TARGET_CPU)} <={TARGET_CPU:.2f}]"
            f"  rss {v.rss / MiB:.0f} MiB [{_met(v.rss < TARGET_RSS)} <200]"
        )
    for dataset, label, plain_label, ratio in encryption_rows(results):
        lines.append(f"  {dataset:<6} {label:<24} / {plain_label}: {ratio.show('x')} (paired per repetition)")
    for dataset, label, first_batch, first_write, drain_first in ttfb_rows(results):
        lines.append(
            f"  {dataset:<6} {label:<24} time to first batch {first_batch.show(' s')},"
            f" to first write {first_write.show(' s')}; raw drain's first batch {drain_first.show(' s')}"
        )
    for dataset, label, phases in phase_rows(results):
        lines.append(
            f"  {dataset:<6} {label:<24} phases (median s): {_phases({k: v.median for k, v in phases.items()})}"
        )
    return lines


def encryption_rows(results: list[Result]) -> list[tuple[str, str, str, Spread]]:
    """Each encrypted run against the plain run of the same repetition (wall time)."""
    out = []
    for dataset in dict.fromkeys(r.dataset for r in results):
        rows = [r for r in results if r.dataset == dataset]
        for label in dict.fromkeys(r.label for r in rows if " encrypted" in r.label):
            plain_label = label.replace(" encrypted", "")
            plain = [r for r in rows if r.label == plain_label]
            ours = [r for r in rows if r.label == label]
            if plain:
                out.append((dataset, label, plain_label, Spread(_paired(ours, plain, lambda r: r.wall))))
    return out


def ttfb_rows(results: list[Result]) -> list[tuple[str, str, Spread, Spread, Spread]]:
    out = []
    for dataset in dict.fromkeys(r.dataset for r in results):
        rows = [r for r in results if r.dataset == dataset]
        drain = Spread(
            [r.extra["first_batch"] for r in rows if r.label == "raw drain" and r.extra.get("first_batch")]
        )
        for label in dict.fromkeys(r.label for r in rows if r.label.startswith("backup")):
            ours = [r for r in rows if r.label == label]
            batch = Spread([r.extra["first_batch"] for r in ours if r.extra.get("first_batch") is not None])
            write = Spread([r.extra["first_write"] for r in ours if r.extra.get("first_write") is not None])
            out.append((dataset, label, batch, write, drain))
    return out


def phase_rows(results: list[Result]) -> list[tuple[str, str, dict[str, Spread]]]:
    out = []
    for dataset in dict.fromkeys(r.dataset for r in results):
        rows = [r for r in results if r.dataset == dataset and r.extra.get("timings")]
        for label in dict.fromkeys(r.label for r in rows):
            ours = [r.extra["timings"] for r in rows if r.label == label]
            phases = {k: Spread([t.get(k, 0.0) for t in ours]) for k in ours[0]}
            out.append((dataset, label, phases))
    return out


def markdown(results: list[Result]) -> str:
    """The tables BENCHMARKS.md shows."""
    out = []
    for dataset in dict.fromkeys(r.dataset for r in results):
        rows = [r for r in results if r.dataset == dataset]
        n = rows[0].documents
        mb = max(r.bytes for r in rows) / MB
        out += [
            f"**{dataset}**: {n:,} documents, {mb:.1f} MB of BSON",
            "",
            "| step (in run order) | rep | wall s | docs/s | MB/s | client CPU s | CPU s per 1M docs"
            " | peak RSS MiB | server CPU s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            note = "" if r.counted else " *"
            docs_s = f"{r.documents / r.wall:,.0f}" if r.bytes else "-"
            mb_s = f"{r.bytes / MB / r.wall:.1f}" if r.bytes else "-"
            cpu_m = f"{r.cpu / r.documents * 1e6:.2f}" if r.bytes else "-"
            out.append(
                f"| {r.label}{note} | {r.rep or ''} | {r.wall:.2f} | {docs_s} | {mb_s} | {r.cpu:.2f} | {cpu_m} |"
                f" {r.max_rss / MiB:.0f} | {r.server_cpu:.1f} |"
            )
        out += [
            "",
            "| ours vs baseline (paired per repetition) | wall ratio | target | without the rename"
            " | client CPU ratio | peak RSS MiB |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for v in verdicts(rows):
            met = "met" if v.ratio.median <= v.limit else "**missed**"
            cpu_met = "" if v.cpu_ratio.median <= TARGET_CPU else " **missed**"
            out.append(
                f"| {v.label} / {v.baseline} | {v.ratio.show('x')} | <= {v.limit:.2f}x: {met} |"
                f" {v.adjusted.show('x') if v.adjusted else '-'} | {v.cpu_ratio.show('x')}{cpu_met} |"
                f" {v.rss / MiB:.0f} |"
            )
        ttfb = ttfb_rows(rows)
        if ttfb:
            out += [
                "",
                "| time to first byte | first batch read, s | first write to storage, s"
                " | raw drain's first batch, s |",
                "|---|---:|---:|---:|",
            ]
            for _, label, batch, write, drain in ttfb:
                out.append(f"| {label} | {batch.show()} | {write.show()} | {drain.show()} |")
        for _, label, phases in phase_rows(rows):
            shown = {k: v for k, v in phases.items() if v.median >= 0.005}
            out += [
                "",
                f"| {label}: phase | " + " | ".join(shown) + " |",
                "|---|" + "---:|" * len(shown),
                "| median s (min-max) | " + " | ".join(v.show() for v in shown.values()) + " |",
            ]
        out.append("")
    return "\n".join(out)


def _server_process() -> psutil.Process | None:
    for proc in psutil.Process().children(recursive=True):
        try:
            if "secantus" in " ".join(proc.cmdline()):
                return proc
        except psutil.Error:
            continue
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=1_000_000, help="small documents (~200 bytes)")
    parser.add_argument("--large-docs", type=int, default=100_000, help="large documents (0: skip)")
    parser.add_argument("--large-size", type=int, default=4096, help="bytes per large document")
    parser.add_argument(
        "--many-collections", type=int, default=500, help="collections of the many set (0: skip)"
    )
    parser.add_argument(
        "--many-docs", type=int, default=200, help="small documents per collection of the many set"
    )
    parser.add_argument("--compressions", default="zstd,gzip", help="comma-separated; the first is restored")
    parser.add_argument(
        "--repeat", type=int, default=2, help="repetitions of drain/backup and insert/restore"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="insert threads / the restore's insert_workers"
    )
    parser.add_argument("--standalone", action="store_true", help="SecantusDB without replica set")
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="also back up and restore encrypted (AES-256-GCM, a local key), after each plain run",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", type=Path, help="write the result tables here")
    parser.add_argument("--profile-dir", type=Path, help="cProfile the backup/restore children into here")
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory, removed after")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-engine-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    compressions = [c.strip() for c in args.compressions.split(",") if c.strip()]
    import secantus

    mode = "standalone" if args.standalone else "replica set"
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
        f"Python {platform.python_version()}, SecantusDB {getattr(secantus, '__version__', '?')} ({mode}), "
        f"load average before {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        with secantus_server(work / "db", standalone=args.standalone) as uri:
            # a server starved of CPU may not answer a heartbeat within the driver's default
            # 10-20 s; the driver would then cancel the running operation
            sep = "&" if "?" in uri else "?"
            uri += f"{sep}connectTimeoutMS=120000&serverSelectionTimeoutMS=120000"
            runner = Runner(uri, _server_process(), args.profile_dir, args.json, args.markdown)
            key_file = None
            if args.encrypted:
                key_path = work / "bench.key"
                key_path.write_text(base64.b64encode(os.urandom(32)).decode())
                key_file = str(key_path)
            common = {
                "compressions": compressions,
                "workers": args.workers,
                "repeat": args.repeat,
                "key_file": key_file,
            }
            if args.docs:
                run_dataset(runner, work, "small", args.docs, 200, **common)
            if args.large_docs:
                run_dataset(runner, work, "large", args.large_docs, args.large_size, **common)
            if args.many_collections and args.many_docs:
                total = args.many_collections * args.many_docs
                run_dataset(runner, work, "many", total, 200, per_collection=args.many_docs, **common)
        print("\n".join(summarize(runner.results)))
        print(f"load average after {os.getloadavg()[0]:.2f}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
