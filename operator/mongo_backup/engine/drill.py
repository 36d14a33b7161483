"""A restore drill: the proof that a backup restores. The backup is restored into scratch
databases (every database `db` of it as `<prefix>db`), each collection is read back and
checked against the manifest (count and digest, the restore's own verification), and the
scratch collections are dropped again.

A drill never touches other data: it is a restore with the restore's own safety (a scratch
collection that exists and is not empty is refused before anything is written, and a failed
restore leaves every target as it was), and afterwards it drops exactly the collections it
restored, never a database by name."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient

from ..storage import Storage
from .cancellation import clean_up
from .encryption import KeyEncryptionKey
from .errors import InvalidInput, VerificationFailed
from .model import ProgressCallback, RestoreOptions
from .namespaces import split_namespace
from .restore import run_restore
from .signing import SignatureChecker
from .source import mongo_errors

log = logging.getLogger(__name__)

#: scratch database prefixes are plain words: a prefix is part of every scratch database name
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
DROP_SECONDS = 120.0


@dataclass(frozen=True)
class DrillOptions:
    #: scratch databases are `<prefix><database of the backup>`
    prefix: str = "drill_"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    parallel: int = 4
    run_id: str | None = None
    #: the key of an encrypted backup, and the signer the manifest must be signed by (as a restore)
    key: KeyEncryptionKey | None = None
    public_key: SignatureChecker | None = None

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.match(self.prefix):
            raise InvalidInput(
                f"drill prefix {self.prefix!r} must be 1 to 32 letters, digits, '_' or '-': "
                "it starts the name of every scratch database"
            )


@dataclass(frozen=True)
class DrillResult:
    """A drill that passed: every collection restored and verified, then dropped."""

    location: str
    checksum: str | None
    started_at: datetime
    duration: float
    collections: int
    documents: int
    verified: int
    #: the scratch namespaces written (and dropped unless listed in `left`)
    scratch: list[str]
    #: scratch namespaces that could not be dropped (said, never silently left)
    left: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def run_drill(
    client: AsyncMongoClient[Any],
    storage: Storage,
    options: DrillOptions | None = None,
    progress: ProgressCallback | None = None,
) -> DrillResult:
    """Restore the backup at `storage` into scratch databases, verify it, drop what was
    restored. A backup that does not restore exactly raises what the restore raises
    (IntegrityError for damaged objects or differing data, RestoreConflict when a scratch
    collection is in use): the drill failed, and no target was changed."""
    options = options or DrillOptions()
    started = time.monotonic()
    restore = RestoreOptions(
        include=options.include,
        exclude=options.exclude,
        ns_from=("*.*",),
        ns_to=(f"{options.prefix}*.*",),
        on_conflict="fail",
        parallel=options.parallel,
        verify=True,
        run_id=options.run_id,
        key=options.key,
        public_key=options.public_key,
    )
    result = await run_restore(client, storage, restore, progress)
    scratch = [c.target for c in result.collections]
    left = await _drop(client, scratch)
    if result.mismatches:  # the restore checks before its swap; this is a second line of defence
        raise VerificationFailed(
            f"drill of {result.source}: restored data differs from the backup in {', '.join(result.mismatches)}"
        )
    return DrillResult(
        location=result.source,
        checksum=result.backup_checksum,
        started_at=result.started_at.astimezone(UTC),
        duration=time.monotonic() - started,
        collections=len(result.collections),
        documents=result.documents,
        verified=result.verified,
        scratch=scratch,
        left=left,
        notes=result.notes,
    )


async def _drop(client: AsyncMongoClient[Any], namespaces: list[str]) -> list[str]:
    """Drop the scratch collections, each by its own name. What cannot be dropped is
    returned, never raised: the drill's verdict stands, and the caller says what is left."""
    left = list(namespaces)

    async def drop_all() -> None:
        for namespace in namespaces:
            db, coll = split_namespace(namespace)
            with mongo_errors(f"dropping the scratch collection {namespace}"):
                await client[db].drop_collection(coll)
            left.remove(namespace)

    if not await clean_up(drop_all(), "the drill's scratch collections", DROP_SECONDS):
        log.warning("scratch collections left after the drill: %s", ", ".join(left))
    return left
