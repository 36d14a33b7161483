"""The transform chain alone (run on demand, not a test): CPU seconds per GB of BSON through
each chain, write (compress -> encrypt) and read (decrypt -> decompress), with and without
encryption, in this process, no server and no storage. CPU time rather than wall time: the
figure that a shared machine does not distort.

    .venv/bin/python bench/bench_transforms.py                   # 200 MB of generated BSON
    .venv/bin/python bench/bench_transforms.py --mb 500 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import UTC, datetime

import bson

from mongo_backup.engine.compression import CODECS
from mongo_backup.engine.encryption import BackupKeys
from mongo_backup.engine.transforms import Transforms

CHUNK = 4 * 1024 * 1024  # what the backup hands over per batch
READ_CHUNK = 1024 * 1024
KEYS = BackupKeys.from_data_key(os.urandom(32), os.urandom(16).hex())


def bson_stream(megabytes: int) -> bytes:
    """~210-byte records of mixed types, compressible like real ones (as bench_engine's small set)."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    docs = []
    size = 0
    i = 0
    while size < megabytes * 1_000_000:
        doc = bson.encode(
            {
                "_id": i,
                "user": f"user-{rng.randrange(100_000)}",
                "email": f"u{rng.randrange(10**6)}@example.com",
                "total": rng.random() * 1000,
                "items": [rng.randrange(1000) for _ in range(5)],
                "at": start,
                "note": "".join(rng.choice("abcdefghij ") for _ in range(60)),
            }
        )
        docs.append(doc)
        size += len(doc)
        i += 1
    return b"".join(docs)


def write(chain: Transforms, data: bytes) -> tuple[float, bytes]:
    started = time.process_time()
    writer = chain.writer("db/c.bson" + chain.suffix, None, KEYS)
    out = [writer.update(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]
    out.append(writer.finish())
    return time.process_time() - started, b"".join(out)


def read(chain: Transforms, stored: bytes) -> float:
    started = time.process_time()
    reader = chain.reader("db/c.bson" + chain.suffix, "bench", KEYS)
    for i in range(0, len(stored), READ_CHUNK):
        reader.update(stored[i : i + READ_CHUNK])
    reader.finish()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=200, help="MB of BSON to push through each chain")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = bson_stream(args.mb)
    gb = len(data) / 1e9
    print(f"{len(data) / 1e6:.0f} MB of BSON, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"{'chain':28} {'write cpu s/GB':>15} {'read cpu s/GB':>14} {'stored':>8}")
    for codec in ("zstd", "gzip", "none"):
        for encrypted in (False, True):
            chain = Transforms(CODECS[codec], encrypted)
            writes, reads = [], []
            stored = b""
            for _ in range(args.repeat):
                seconds, stored = write(chain, data)
                writes.append(seconds / gb)
                reads.append(read(chain, stored) / gb)
            name = " -> ".join(chain.steps) or "(none)"
            print(
                f"{name:28} {statistics.median(writes):15.2f} {statistics.median(reads):14.2f} "
                f"{len(stored) / len(data):7.1%}"
            )


if __name__ == "__main__":
    main()
