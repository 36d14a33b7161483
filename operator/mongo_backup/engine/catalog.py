"""What a backup location holds, read either from our manifest or, for a plain
`mongodump --out` directory, from its file names."""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import ObjectNotFound, Storage
from .compression import Codec, codec_for_suffix
from .errors import BackupNotFound
from .manifest import MANIFEST_NAME, BackupManifest, manifest_checksum
from .metadata import DATA_SUFFIX, METADATA_SUFFIX, parse_file_stem


@dataclass(frozen=True)
class SourceObject:
    name: str
    size: int
    sha256: str | None  # None: not known (mongodump directory)

    @property
    def codec(self) -> Codec:
        return codec_for_suffix(self.name)


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


async def load_catalog(storage: Storage) -> Catalog:
    try:
        raw = await storage.read_bytes(MANIFEST_NAME)
    except ObjectNotFound:
        return await _scan_mongodump(storage)
    manifest = BackupManifest.from_json(raw, f"{storage.url}/{MANIFEST_NAME}")
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
                data=SourceObject(data.name, data.size, data.sha256) if data else None,
                metadata=SourceObject(meta.name, meta.size, meta.sha256) if meta else None,
            )
        )
    return Catalog(storage.url, manifest, manifest_checksum(raw), collections)


async def _scan_mongodump(storage: Storage) -> Catalog:
    data: dict[str, SourceObject] = {}
    meta: dict[str, SourceObject] = {}
    async for info in storage.list():
        if "/" not in info.name:  # oplog.bson, prelude.json: not collections
            continue
        base = info.name.removesuffix(codec_for_suffix(info.name).suffix)
        if base.endswith(METADATA_SUFFIX):
            meta[base.removesuffix(METADATA_SUFFIX)] = SourceObject(info.name, info.size, None)
        elif base.endswith(DATA_SUFFIX):
            data[base.removesuffix(DATA_SUFFIX)] = SourceObject(info.name, info.size, None)
    if not data and not meta:
        raise BackupNotFound(
            f"no backup at {storage.url}: neither a manifest.json nor mongodump's <db>/<collection>.bson files"
        )
    collections = []
    for stem in sorted(set(data) | set(meta)):
        db, name = parse_file_stem(stem)
        if name.startswith("system.") and name != "system.js":
            continue  # server internals; time-series buckets are taken with their collection below
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
                data_bytes=data_object.size if data_object and not data_object.codec.suffix else None,
                digest=None,
                data=data_object,
                metadata=meta.get(stem),
                buckets=buckets,
            )
        )
    return Catalog(storage.url, None, None, collections)
