"""Engine benchmark (run on demand, not a test): our backup and restore next to the bare
driver calls they are built on, against one local SecantusDB, in the same run.

    .venv/bin/python bench/bench_engine.py                       # 1M small + 100k large docs
    .venv/bin/python bench/bench_engine.py --docs 100000 --json out.json
    .venv/bin/python bench/bench_engine.py --compressions zstd,gzip,none --standalone

Two data sets, each in its own database with one collection, generated once as raw BSON:
`small` (--docs, ~200-byte documents of mixed types, compressible like real records) and
`large` (--large-docs of ~--large-size bytes, mostly random bytes: nearly incompressible).
Per data set, in this order (the order is part of the result, because of caches):

  load        raw insert_many of the generated batches (creates the source collection)
  warm-up     a raw drain whose figures are shown but not used
  raw drain   bare `find_raw_batches()` of the collection, nothing else          (a)
              (the synchronous driver: the stricter baseline), then once more through
              the asyncio driver the engine uses, for its CPU share (not in the ratios)
  backup      run_backup to a local folder, per --compressions                  (b)
  raw drain   again, after the backups: the ratio uses the mean of both drains
  collStats   alone: the backup's planning step, O(1) on mongod, scans on SecantusDB
  raw insert  insert_many(RawBSONDocument..., ordered=False) of the same batches  (c)
              into a fresh collection, with as many threads as the restore's insert workers
  rename      renameCollection of that copy alone: the restore's swap, O(1) on mongod,
              a copy of every document on SecantusDB
  restore     run_restore of the zstd backup into a fresh database, verify off  (d)
  restore     the same with verify on (it reads every restored document back)
  raw insert  again, after the restores: the ratio uses the mean of both inserts

Every fresh collection is dropped after its measurement, so each write starts from the
same server state. Each measurement runs in its own spawned child process: its CPU seconds
(user+sys, zstd's threads included) come from getrusage(RUSAGE_SELF) around the measured
work, and its peak RSS is the child's VmHWM (interpreter and imports included). The
server's CPU seconds over the same interval are shown too: they tell who is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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


def _sync_client(uri: str) -> MongoClient[Any]:
    client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=20_000)
    client.admin.command("ping")
    return client


def phase_drain(meter: Meter, uri: str, db: str, **_: Any) -> dict[str, Any]:
    client = _sync_client(uri)
    total = 0
    with meter:
        for batch in client[db][COLLECTION].find_raw_batches():
            total += len(batch)
    client.close()
    return {"bytes": total}


def phase_drain_async(meter: Meter, uri: str, db: str, **_: Any) -> dict[str, Any]:
    """The same drain through the asyncio driver the engine uses: the driver's share of the
    backup's CPU."""
    from pymongo import AsyncMongoClient

    async def main() -> dict[str, Any]:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, serverSelectionTimeoutMS=20_000)
        await client.admin.command("ping")
        total = 0
        with meter:
            async for batch in client[db][COLLECTION].find_raw_batches():
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


def phase_backup(meter: Meter, uri: str, db: str, target: str, compression: str, **_: Any) -> dict[str, Any]:
    from mongo_backup.engine import BackupOptions, open_client, run_backup
    from mongo_backup.storage import open_storage

    async def main() -> dict[str, Any]:
        client = open_client(uri)
        await client.admin.command("ping")
        storage = open_storage(Path(target).parent.as_uri()).child(Path(target).name)
        options = BackupOptions(compression=compression, include=[f"{db}.*"])  # type: ignore[arg-type]
        with meter:
            result = await run_backup(client, storage, options)
        await client.close()
        return {
            "documents": result.documents,
            "bytes": result.data_bytes,
            "stored_bytes": result.stored_bytes,
        }

    return asyncio.run(main())


def phase_restore(
    meter: Meter, uri: str, db: str, target: str, source_db: str, verify: bool, workers: int, **_: Any
) -> dict[str, Any]:
    from mongo_backup.engine import RestoreOptions, open_client, run_restore
    from mongo_backup.storage import open_storage

    async def main() -> dict[str, Any]:
        client = open_client(uri)
        await client.admin.command("ping")
        storage = open_storage(Path(target).parent.as_uri()).child(Path(target).name)
        options = RestoreOptions(
            ns_from=[f"{source_db}.*"], ns_to=[f"{db}.*"], verify=verify, insert_workers=workers
        )
        with meter:
            result = await run_restore(client, storage, options)
        await client.close()
        if verify and result.verified != result.checked:
            raise RuntimeError(f"restore verification failed: {result.mismatches}")
        return {"documents": result.documents, "bytes": result.data_bytes}

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
        self, dataset: str, label: str, phase: str, documents: int, *, counted: bool = True, **kwargs: Any
    ) -> Result:
        if self.profile_dir is not None and phase in ("backup", "restore"):
            kwargs["profile"] = str(self.profile_dir / f"{dataset}-{label.replace(' ', '_')}.prof")
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


def _row(r: Result) -> str:
    per_million = r.cpu / r.documents * 1_000_000 if r.documents else 0.0
    stored = f"  stored {r.stored_bytes / MB:.1f} MB" if r.stored_bytes is not None else ""
    return (
        f"  {r.label:<22} {r.wall:8.2f} s {r.documents / r.wall:10,.0f} docs/s {r.bytes / MB / r.wall:7.1f} MB/s"
        f"  cpu {r.cpu:6.2f} s ({per_million:5.2f} s/M docs)  rss {r.max_rss / MiB:6.1f} MiB"
        f"  server cpu {r.server_cpu:6.1f} s{stored}"
    )


def run_dataset(
    runner: Runner, work: Path, name: str, count: int, size: int, compressions: list[str], workers: int
) -> None:
    source = work / f"{name}.bson"
    t0 = time.perf_counter()
    total = generate(source, name, count, size)
    print(
        f"\n== {name}: {count:,} documents, {total / MB:.1f} MB raw BSON "
        f"(~{total // max(1, count)} bytes each; generated in {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    src_db = f"bench_{name}"
    runner.measure(
        name, "load", "raw_insert", count, counted=False, db=src_db, source=str(source), workers=workers
    )
    runner.measure(name, "warm-up drain", "drain", count, counted=False, db=src_db)
    runner.measure(name, "raw drain", "drain", count, db=src_db)
    runner.measure(name, "raw drain, async driver", "drain_async", count, counted=False, db=src_db)
    for compression in compressions:
        target = work / "backups" / f"{name}-{compression}"
        runner.measure(
            name,
            f"backup {compression}",
            "backup",
            count,
            db=src_db,
            target=str(target),
            compression=compression,
        )
    runner.measure(name, "raw drain (after)", "drain", count, db=src_db)
    # the backup's planning asks collStats for sizes (largest first, progress totals): O(1) on
    # mongod, full scans on SecantusDB. Timed alone so its share of the backup is visible.
    runner.measure(
        name, "collStats alone", "command", count, counted=False, db=src_db, command={"collStats": COLLECTION}
    )

    fresh = f"bench_{name}_copy"
    runner.measure(name, "raw insert", "raw_insert", count, db=fresh, source=str(source), workers=workers)
    # the restore renames its temporary collection over the target: a catalog update on mongod,
    # a copy of every document on SecantusDB. Timed alone on the collection just written.
    rename = {"renameCollection": f"{fresh}.{COLLECTION}", "to": f"{fresh}.renamed"}
    runner.measure(
        name, "renameCollection alone", "command", count, counted=False, db="admin", command=rename
    )
    runner.drop_database(fresh)
    backup = work / "backups" / f"{name}-{compressions[0]}"
    for verify in (False, True):
        label = f"restore {compressions[0]} verify {'on' if verify else 'off'}"
        runner.measure(
            name,
            label,
            "restore",
            count,
            db=fresh,
            target=str(backup),
            source_db=src_db,
            verify=verify,
            workers=workers,
        )
        runner.drop_database(fresh)
    runner.measure(
        name, "raw insert (after)", "raw_insert", count, db=fresh, source=str(source), workers=workers
    )
    runner.drop_database(fresh)
    runner.drop_database(src_db)
    source.unlink()


@dataclass
class Verdict:
    dataset: str
    label: str
    ratio: float
    baseline: str
    limit: float
    adjusted: float | None  # the ratio without the step that is O(1) on mongod
    cpu_per_million: float
    rss: int


def verdicts(results: list[Result]) -> list[Verdict]:
    out = []
    for dataset in dict.fromkeys(r.dataset for r in results):
        rows = {r.label: r for r in results if r.dataset == dataset}
        # a run cut short still gets verdicts from the steps it finished
        drains = [rows[k].wall for k in ("raw drain", "raw drain (after)") if k in rows]
        inserts = [rows[k].wall for k in ("raw insert", "raw insert (after)") if k in rows]
        stats = rows["collStats alone"].wall if "collStats alone" in rows else None
        rename = rows["renameCollection alone"].wall if "renameCollection alone" in rows else None
        for label, r in rows.items():
            cpu_m = r.cpu / r.documents * 1e6 if r.documents else 0.0
            if label.startswith("backup") and drains:
                drain = sum(drains) / len(drains)
                adjusted = (r.wall - stats) / drain if stats is not None else None
                out.append(
                    Verdict(dataset, label, r.wall / drain, "raw drain", 1.10, adjusted, cpu_m, r.max_rss)
                )
            elif label.startswith("restore") and inserts:
                insert = sum(inserts) / len(inserts)
                adjusted = (r.wall - rename) / insert if rename is not None else None
                out.append(
                    Verdict(dataset, label, r.wall / insert, "raw insert", 1.15, adjusted, cpu_m, r.max_rss)
                )
    return out


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def summarize(results: list[Result]) -> list[str]:
    lines = ["", "== ratios and targets (baselines: mean of the two runs)"]
    for v in verdicts(results):
        met = "met" if v.ratio <= v.limit else "MISSED"
        cpu = ""
        if v.dataset == "small" and v.label.startswith("backup"):
            cpu = (
                f"  cpu {v.cpu_per_million:.2f} s/M docs [{'met' if v.cpu_per_million < 3 else 'MISSED'} <3]"
            )
        lines.append(
            f"  {v.dataset:<6} {v.label:<24} {v.ratio:5.2f}x {v.baseline} [{met} <={v.limit:.2f}]"
            f" (without the O(1)-on-mongod step: {_ratio(v.adjusted)}){cpu}"
            f"  rss {v.rss / MiB:.0f} MiB [{'met' if v.rss < 200 * MiB else 'MISSED'} <200]"
        )
    return lines


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
            "| step (in run order) | wall s | docs/s | MB/s | client CPU s | CPU s per 1M docs"
            " | peak RSS MiB | server CPU s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            note = "" if r.counted else " *"
            docs_s = f"{r.documents / r.wall:,.0f}" if r.bytes else "-"
            mb_s = f"{r.bytes / MB / r.wall:.1f}" if r.bytes else "-"
            cpu_m = f"{r.cpu / r.documents * 1e6:.2f}" if r.bytes else "-"
            out.append(
                f"| {r.label}{note} | {r.wall:.2f} | {docs_s} | {mb_s} | {r.cpu:.2f} | {cpu_m} |"
                f" {r.max_rss / MiB:.0f} | {r.server_cpu:.1f} |"
            )
        out += [
            "",
            "| ours vs baseline | ratio | target | without the O(1)-on-mongod step | CPU s per 1M docs"
            " | peak RSS MiB |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for v in verdicts(rows):
            met = "met" if v.ratio <= v.limit else "**missed**"
            out.append(
                f"| {v.label} / {v.baseline} | {v.ratio:.2f}x | <= {v.limit:.2f}x: {met} | {_ratio(v.adjusted)} |"
                f" {v.cpu_per_million:.2f} | {v.rss / MiB:.0f} |"
            )
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
    parser.add_argument("--compressions", default="zstd", help="comma-separated; the first is restored")
    parser.add_argument(
        "--workers", type=int, default=2, help="insert threads / the restore's insert_workers"
    )
    parser.add_argument("--standalone", action="store_true", help="SecantusDB without replica set")
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
            if args.docs:
                run_dataset(runner, work, "small", args.docs, 200, compressions, args.workers)
            if args.large_docs:
                run_dataset(
                    runner, work, "large", args.large_docs, args.large_size, compressions, args.workers
                )
        print("\n".join(summarize(runner.results)))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
