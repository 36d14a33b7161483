"""What a backup location holds: read from our manifest, or, only when the caller says the
location is a plain `mongodump --out` directory, from its file names.

A root without a manifest is never taken for a backup (docs/FORMAT.md section 3):
- holding any object only we write (`lock.json`, a `.zst` object, a storage's hidden leftover
  of an unfinished write), it is a backup that never finished: `IncompleteBackup`;
- holding mongodump's layout, it is restored only on request (`source_format="mongodump"`,
  CLI `--from-mongodump`, MongoRestore `spec.source.format: mongodump`), with a note that it
  cannot be verified; a root of ours is refused in that mode too: it is not mongodump's;
- holding neither: `BackupNotFound`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..storage import ObjectInfo, ObjectNotFound, Storage
from .compression import codec_for_suffix
from .encryption import BackupKeys, KeyEncryptionKey
from .envelope import open_backup
from .errors import (
    BackupNotFound,
    EncryptionExpected,
    IncompleteBackup,
    IntegrityError,
    InvalidInput,
    ManifestTampered,
)
from .manifest import LOCK_NAME, MANIFEST_NAME, BackupManifest, canonical_bytes_of, manifest_checksum
from .metadata import DATA_SUFFIX, METADATA_SUFFIX, parse_file_stem
from .model import SourceFormat
from .names import namespace_problem, object_name_problem, shown
from .namespaces import is_system_namespace
from .signing import SignatureChecker
from .transforms import Transforms

#: the words that tell a user how to restore a mongodump directory, from the CLI or the operator
MONGODUMP_FLAG = "--from-mongodump (MongoRestore: spec.source.format: mongodump)"
#: objects named in a message: at most this many
_NAMED = 3


@dataclass(frozen=True)
class SourceObject:
    name: str
    size: int
    sha256: str | None  # None: not known (mongodump directory)
    #: the steps it went through when stored (from the manifest, else from its name)
    transforms: Transforms

    @classmethod
    def named(cls, name: str, size: int, sha256: str | None = None) -> SourceObject:
        return cls(name, size, sha256, Transforms.from_name(name))


@dataclass(frozen=True)
class SourceCollection:
    db: str
    name: str
    type: str
    #: from the manifest; None for a mongodump directory
    documents: int | None
    data_bytes: int | None
    digest: str | None
    data: SourceObject | None
    metadata: SourceObject | None
    #: mongodump writes a time-series collection's buckets, not its measurements
    buckets: bool = False

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.name}"


@dataclass(frozen=True)
class Catalog:
    location: str
    manifest: BackupManifest | None
    checksum: str | None
    collections: list[SourceCollection]
    format: SourceFormat = "mongo-backup"
    #: what a caller must tell the user about this source (e.g. that it cannot be verified)
    notes: list[str] = field(default_factory=list)
    #: an encrypted backup's keys (its manifest authenticated with them); None: plain
    keys: BackupKeys | None = None


async def read_manifest(storage: Storage) -> tuple[BackupManifest, bytes] | None:
    """The backup's manifest and its exact bytes, None when there is none; ManifestInvalid
    when there is one that does not fit the format."""
    try:
        raw = await storage.read_bytes(MANIFEST_NAME)
    except ObjectNotFound:
        return None
    return BackupManifest.from_json(raw, f"{storage.url}/{MANIFEST_NAME}"), raw


async def load_catalog(
    storage: Storage,
    source_format: SourceFormat = "mongo-backup",
    *,
    check_objects: bool = True,
    key: KeyEncryptionKey | None = None,
    public_key: SignatureChecker | None = None,
) -> Catalog:
    """What `storage` holds. `check_objects`: every object the manifest lists must be stored,
    with its size (one listing, before anything is read or written); verify checks them one
    by one instead, to report every problem. `key`: the key-encryption key of an encrypted
    backup; its data key is unwrapped and its manifest authenticated here, before anything
    else is read (engine/envelope.py)."""
    found = await read_manifest(storage)
    if found is not None:
        if source_format == "mongodump":
            raise InvalidInput(
                f"{storage.url} holds a mongo-backup backup ({MANIFEST_NAME}), not a mongodump directory: "
                "restore it without --from-mongodump (MongoRestore: without spec.source.format), "
                "so that it is verified"
            )
        manifest, raw = found
        where = f"{storage.url}/{MANIFEST_NAME}"
        # first the key (unwrapping may be a KMS call: in a thread) and the manifest's
        # authentication, then its signature: before any object is read
        keys = await asyncio.to_thread(open_backup, manifest, raw, key, where)
        if public_key is not None:
            signature = manifest.signature.to_json() if manifest.signature is not None else None
            public_key.check(signature, canonical_bytes_of(raw, where), where)
        if check_objects:
            await _check_stored_objects(storage, manifest)
        return Catalog(storage.url, manifest, manifest_checksum(raw), _from_manifest(manifest), keys=keys)
    root = await RootContents.scan(storage)
    if root.ours:
        raise root.incomplete()
    if not root.mongodump:
        raise root.not_found()
    if public_key is not None:
        raise ManifestTampered(f"{storage.url} has no {MANIFEST_NAME} to check a signature of")
    if key is not None:
        raise EncryptionExpected(
            f"{storage.url} has no {MANIFEST_NAME}, so nothing in it is encrypted, but a key was given"
        )
    if source_format != "mongodump":
        raise IncompleteBackup(
            f"{storage.url} has no {MANIFEST_NAME}: it holds a plain mongodump directory "
            f"({len(root.mongodump)} files, e.g. {shown(root.mongodump[0].name)}), not a complete "
            f"mongo-backup backup; it cannot be verified, and is restored only when you say it is "
            f"one: {MONGODUMP_FLAG}"
        )
    note = (
        f"{storage.url} is a plain mongodump directory: it has no manifest, so it could not be "
        "verified (no checksums, document counts or digests to check it against)"
    )
    return Catalog(storage.url, None, None, _from_mongodump(storage.url, root.mongodump), "mongodump", [note])


async def _check_stored_objects(storage: Storage, manifest: BackupManifest) -> None:
    stored = {info.name: info.size async for info in storage.list()}
    for entry in manifest.collections:
        for listed in entry.objects:
            size = stored.get(listed.name)
            where = f"{storage.url}/{listed.name}"
            if size is None:
                raise IntegrityError(f"{where}: missing (the manifest lists it)")
            if size != listed.size:
                raise IntegrityError(f"{where}: {size} bytes stored, the manifest says {listed.size}")


def _from_manifest(manifest: BackupManifest) -> list[SourceCollection]:
    collections = []
    for entry in manifest.collections:
        data = entry.object("data")
        meta = entry.object("metadata")
        collections.append(
            SourceCollection(
                db=entry.db,
                name=entry.name,
                type=entry.type,
                documents=entry.documents,
                data_bytes=entry.data_bytes,
                digest=entry.digest,
                data=SourceObject(data.name, data.size, data.sha256, data.chain) if data else None,
                metadata=SourceObject(meta.name, meta.size, meta.sha256, meta.chain) if meta else None,
            )
        )
    return collections


@dataclass
class RootContents:
    """A root without a manifest, sorted by who writes what is there."""

    location: str
    #: objects only mongo-backup writes (lock, .zst objects, unfinished writes)
    ours: list[ObjectInfo] = field(default_factory=list)
    #: mongodump's `<db>/<collection>.bson[.gz]` and `.metadata.json[.gz]` files
    mongodump: list[ObjectInfo] = field(default_factory=list)
    others: list[ObjectInfo] = field(default_factory=list)

    @classmethod
    async def scan(cls, storage: Storage) -> RootContents:
        root = cls(storage.url)
        async for info in storage.list(partial=True):
            if info.partial or info.name == LOCK_NAME or info.name.endswith((".zst", ".enc")):
                root.ours.append(info)  # mongodump never writes these
            elif _is_mongodump_file(info.name):
                root.mongodump.append(info)
            else:
                root.others.append(info)
        return root

    def incomplete(self) -> IncompleteBackup:
        partial = sum(1 for o in self.ours if o.partial)
        named = [o.name for o in self.ours if not o.partial][:_NAMED]
        what = ", ".join(shown(n) for n in named)
        if partial:
            what += f"{', ' if what else ''}{partial} unfinished {'write' if partial == 1 else 'writes'}"
        total = len(self.ours) + len(self.mongodump) + len(self.others)
        return IncompleteBackup(
            f"{self.location} is an incomplete backup: {total} {'object' if total == 1 else 'objects'} "
            f"written by mongo-backup ({what}) "
            f"but no {MANIFEST_NAME}: the backup never finished and must not be restored"
        )

    def not_found(self) -> BackupNotFound:
        if not self.others:
            return BackupNotFound(f"no backup at {self.location}: nothing is stored there")
        return BackupNotFound(
            f"no backup at {self.location}: {len(self.others)} objects, but neither a {MANIFEST_NAME} "
            "nor mongodump's <db>/<collection>.bson files"
        )


def _is_mongodump_file(name: str) -> bool:
    """A collection's file; not one at the root (`oplog.bson`, `prelude.json`)."""
    base = name.removesuffix(".gz")
    return "/" in name and base.endswith((DATA_SUFFIX, METADATA_SUFFIX))


def _from_mongodump(location: str, files: list[ObjectInfo]) -> list[SourceCollection]:
    data: dict[str, SourceObject] = {}
    meta: dict[str, SourceObject] = {}
    for info in files:
        where = f"{location}/{shown(info.name)}"
        problem = object_name_problem(info.name)
        if problem:
            raise IntegrityError(f"{where}: {problem}")
        if info.name.count("/") != 1:
            raise IntegrityError(
                f"{where}: not mongodump's layout (<db>/<collection>.bson directly under the root); "
                "point at the folder mongodump wrote"
            )
        base = info.name.removesuffix(codec_for_suffix(info.name).suffix)
        if base.endswith(METADATA_SUFFIX):
            meta[base.removesuffix(METADATA_SUFFIX)] = SourceObject.named(info.name, info.size)
        else:
            data[base.removesuffix(DATA_SUFFIX)] = SourceObject.named(info.name, info.size)
    collections = []
    for stem in sorted(set(data) | set(meta)):
        where = f"{location}/{shown(stem)}"
        try:
            db, name = parse_file_stem(stem)
        except UnicodeDecodeError:
            raise IntegrityError(f"{where}: its %-escaped name is not UTF-8") from None
        if is_system_namespace(db, name):
            continue  # server internals; time-series buckets are taken with their collection below
        problem = namespace_problem(db, name)
        if problem:
            raise IntegrityError(f"{where}: {problem}")
        db_part, _, coll_part = stem.partition("/")
        data_object = data.get(stem)
        buckets = False
        if data_object is None and f"{db_part}/system.buckets.{coll_part}" in data:
            data_object, buckets = data[f"{db_part}/system.buckets.{coll_part}"], True
        collections.append(
            SourceCollection(
                db=db,
                name=name,
                type="view" if data_object is None else "collection",  # refined from metadata
                documents=None,
                data_bytes=data_object.size if data_object and not data_object.transforms.steps else None,
                digest=None,
                data=data_object,
                metadata=meta.get(stem),
                buckets=buckets,
            )
        )
    return collections
