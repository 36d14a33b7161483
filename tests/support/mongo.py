"""The MongoDB the tests talk to: an embedded SecantusDB, or a real mongod via MONGODB_URI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def secantus_server(storage: Path) -> Iterator[str]:
    """Start SecantusDB on a free port (replica-set mode, so the oplog exists) and yield its URI."""
    from secantus import SecantusDBServer

    with SecantusDBServer(storage_path=str(storage), port=0, oplog_max_entries=10_000_000) as srv:
        yield str(srv.uri)


def external_uri() -> str | None:
    return os.environ.get("MONGODB_URI") or None
