"""What callers give the engine and what it gives back: options, progress, results.

These plain dataclasses are the engine's whole public contract with the CLI and the runner.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .encryption import KeyEncryptionKey
from .errors import InvalidInput
from .namespaces import NamespaceFilter, NamespaceRenamer
from .signing import SignatureChecker, Signer

Compression = Literal["zstd", "gzip", "none"]
ConflictPolicy = Literal["fail", "drop"]
#: what the restore reads: our format (manifest, verified), or, only when the user says so, a
#: plain mongodump directory (no manifest: cannot be verified)
SourceFormat = Literal["mongo-backup", "mongodump"]


@dataclass(frozen=True)
class BackupOptions:
    compression: Compression = "zstd"
    #: zstd 1-22 (default 3), gzip 1-9 (default 6); None = the codec's default
    level: int | None = None
    #: mongodump-style patterns: `db.*`, `db.coll`, `*.coll`
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    #: collections streamed at once
    parallel: int = 4
    #: who this run is, in the backup name's lock: the operator passes the MongoBackup's uid,
    #: so that a later attempt of the same object recognises its lost predecessor's lock;
    #: None: a random run id (the CLI)
    owner: str | None = None
    #: an earlier attempt of this run (same `owner`) was lost: take over its lock and delete
    #: what it left, instead of failing with BackupNameInUse
    replace_partial: bool = False
    #: encrypt every object under a fresh data key wrapped by this key (None: plain backup)
    encryption_key: KeyEncryptionKey | None = None
    #: sign the manifest with this Ed25519 key (None: not signed)
    signer: Signer | None = None

    def __post_init__(self) -> None:
        _at_least_one(parallel=self.parallel)
        NamespaceFilter(self.include, self.exclude)


@dataclass(frozen=True)
class RestoreOptions:
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    #: mongorestore's --nsFrom/--nsTo, pairwise: `db.*` -> `db2.*`
    ns_from: Sequence[str] = ()
    ns_to: Sequence[str] = ()
    on_conflict: ConflictPolicy = "fail"
    #: collections restored at once; each has `insert_workers` writers
    parallel: int = 4
    insert_workers: int = 2
    #: compare each restored collection with the manifest after the swap
    verify: bool = True
    #: identifies this restore; temporary collections carry it, so a restart with the same
    #: run_id can drop what the lost attempt left behind
    run_id: str | None = None
    #: target namespaces ("db.coll") already restored by an earlier attempt of this run: skipped
    already_restored: Sequence[str] = ()
    #: this run was started before and is taken up again: a target that already holds exactly
    #: the backup's data was swapped in by the lost attempt and counts as restored
    resume: bool = False
    #: "mongodump": the source is a plain `mongodump --out` directory (CLI --from-mongodump)
    source_format: SourceFormat = "mongo-backup"
    #: the key-encryption key of an encrypted backup; given for a plain one, the restore refuses it
    key: KeyEncryptionKey | None = None
    #: the manifest must be signed by this Ed25519 public key (None: signatures not checked)
    public_key: SignatureChecker | None = None

    def __post_init__(self) -> None:
        _at_least_one(parallel=self.parallel, insert_workers=self.insert_workers)
        # patterns are checked before anything is read: a typo is exit 2 whatever the source
        NamespaceFilter(self.include, self.exclude)
        NamespaceRenamer(self.ns_from, self.ns_to)


def _at_least_one(**counts: int) -> None:
    """Options are input: a count below 1 is InvalidInput (exit 2), whoever passed it."""
    for name, value in counts.items():
        if value < 1:
            raise InvalidInput(f"{name} must be at least 1 (got {value})")


@dataclass
class CollectionProgress:
    namespace: str
    documents_done: int = 0
    documents_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    finished: bool = False


@dataclass
class Progress:
    """A snapshot passed to the progress callback; the engine calls it often (every batch),
    callers throttle."""

    phase: Literal["backup", "restore", "verify"]
    documents_done: int = 0
    documents_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    started: float = 0.0  # time.monotonic() at start
    elapsed: float = 0.0
    collections: dict[str, CollectionProgress] = field(default_factory=dict)
    #: target namespaces fully restored (swapped in) so far
    restored: list[str] = field(default_factory=list)
    #: False while a collection's size is still unknown (a backup counts in the background
    #: while it streams): the totals then cover only part of the run, so there is no percent
    #: and no ETA yet
    totals_known: bool = True

    @property
    def percent(self) -> float | None:
        if not self.totals_known:
            return None
        if self.bytes_total > 0:
            return min(100.0, 100.0 * self.bytes_done / self.bytes_total)
        if self.documents_total > 0:
            return min(100.0, 100.0 * self.documents_done / self.documents_total)
        return 0.0

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.bytes_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left, when it can be estimated."""
        if not self.totals_known or self.rate <= 0 or self.bytes_total <= 0:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)

    @property
    def current(self) -> list[str]:
        return [c.namespace for c in self.collections.values() if not c.finished and c.documents_done]


ProgressCallback = Callable[[Progress], Awaitable[None] | None]


@dataclass(frozen=True)
class CollectionResult:
    namespace: str
    type: str  # "collection" | "view" | "timeseries"
    documents: int
    data_bytes: int  # uncompressed BSON
    stored_bytes: int
    digest: str | None


@dataclass(frozen=True)
class BackupResult:
    location: str
    checksum: str  # sha256 of manifest.json, hex
    started_at: datetime
    completed_at: datetime
    server_version: str
    documents: int
    data_bytes: int
    stored_bytes: int
    collections: list[CollectionResult]
    #: the fingerprint of the key-encryption key of an encrypted backup; None: plain
    key_fingerprint: str | None = None
    #: where that key came from (`secret:NAME`, `file:NAME`, a KMS key id)
    key_source: str | None = None
    #: fingerprint of the Ed25519 key that signed the manifest; None: not signed
    signer_fingerprint: str | None = None

    @property
    def duration(self) -> float:
        return (self.completed_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class RestoredCollection:
    source: str  # namespace in the backup
    target: str  # namespace written
    type: str
    documents: int
    #: "swapped" (temp collection renamed over target), "direct" (time-series/view,
    #: restored in place), "skipped" (already restored by an earlier attempt)
    method: str
    verified: bool | None  # None when not verified


RestorePhase = Literal[
    "plan", "create", "insert", "indexes", "verify", "swap", "drop_replaced", "direct", "cleanup"
]


@dataclass
class RestoreTimings:
    """Seconds a restore spent in each phase. `plan`: reading the manifest and metadata,
    settling dead runs, claiming the targets; `create`, `insert`, `indexes`, `verify`: the
    staging of each collection (summed over collections: restored in parallel, their sum can
    exceed the wall time); `swap`: the renames of the swap phase and the commit;
    `drop_replaced`: dropping the targets kept aside; `direct`: time-series collections and
    views; `cleanup`: temporaries and the journal entry."""

    plan: float = 0.0
    create: float = 0.0
    insert: float = 0.0
    indexes: float = 0.0
    verify: float = 0.0
    swap: float = 0.0
    drop_replaced: float = 0.0
    direct: float = 0.0
    cleanup: float = 0.0

    @contextmanager
    def measure(self, phase: RestorePhase) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            setattr(self, phase, getattr(self, phase) + time.monotonic() - started)


@dataclass(frozen=True)
class RestoreResult:
    source: str
    backup_checksum: str | None  # None for a plain mongodump directory
    started_at: datetime
    completed_at: datetime
    documents: int
    data_bytes: int
    collections: list[RestoredCollection]
    #: collections whose content matched the manifest after the restore / that were checked
    verified: int = 0
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: RestoreTimings = field(default_factory=RestoreTimings)
    #: the fingerprint of the key that opened an encrypted backup; None: plain
    key_fingerprint: str | None = None
    #: fingerprint of the public key the manifest's signature was checked with
    signer_fingerprint: str | None = None

    @property
    def duration(self) -> float:
        return (self.completed_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class VerifyResult:
    location: str
    checksum: str
    objects: int
    documents: int
    data_bytes: int
    stored_bytes: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class BackupListing:
    name: str
    complete: bool
    stored_bytes: int
    objects: int
    created: datetime | None
    checksum: str | None
    documents: int | None
    #: why the manifest does not fit the format (then `complete` is False): "manifest invalid: ..."
    invalid: str | None = None
    #: unfinished writes (a killed run's hidden leftovers), counted in `objects` and `stored_bytes`
    partial_objects: int = 0
    #: an encrypted backup: the fingerprint of its key-encryption key (read from the manifest)
    key_fingerprint: str | None = None
    #: a signed backup: the fingerprint of the key that signed it (not checked by a listing)
    signer_fingerprint: str | None = None

    @property
    def state(self) -> Literal["complete", "incomplete", "invalid"]:
        if self.invalid is not None:
            return "invalid"
        return "complete" if self.complete else "incomplete"
