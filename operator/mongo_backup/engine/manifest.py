"""manifest.json: the table of contents of a backup, written last. docs/FORMAT.md is its spec."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import IntegrityError

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "mongo-backup"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoredObject:
    name: str  # relative to the backup's root
    role: str  # "data" | "metadata"
    size: int
    sha256: str


@dataclass(frozen=True)
class CollectionEntry:
    db: str
    name: str
    type: str  # "collection" | "view" | "timeseries"
    documents: int
    data_bytes: int
    digest: str | None
    objects: list[StoredObject]

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.name}"

    def object(self, role: str) -> StoredObject | None:
        return next((o for o in self.objects if o.role == role), None)

    @property
    def stored_bytes(self) -> int:
        return sum(o.size for o in self.objects)


@dataclass(frozen=True)
class BackupManifest:
    engine_version: str
    server_version: str
    started_at: datetime
    completed_at: datetime
    compression: str
    compression_level: int | None
    collections: list[CollectionEntry]
    options: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def documents(self) -> int:
        return sum(c.documents for c in self.collections)

    @property
    def data_bytes(self) -> int:
        return sum(c.data_bytes for c in self.collections)

    @property
    def stored_bytes(self) -> int:
        return sum(c.stored_bytes for c in self.collections)

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT_NAME,
            "formatVersion": self.format_version,
            "engineVersion": self.engine_version,
            "serverVersion": self.server_version,
            "startedAt": _iso(self.started_at),
            "completedAt": _iso(self.completed_at),
            "compression": {"type": self.compression, "level": self.compression_level},
            "options": self.options,
            "totals": {
                "collections": len(self.collections),
                "documents": self.documents,
                "dataBytes": self.data_bytes,
                "storedBytes": self.stored_bytes,
            },
            "collections": [
                {
                    "db": c.db,
                    "name": c.name,
                    "type": c.type,
                    "documents": c.documents,
                    "dataBytes": c.data_bytes,
                    "digest": c.digest,
                    "objects": [
                        {"name": o.name, "role": o.role, "size": o.size, "sha256": o.sha256}
                        for o in c.objects
                    ],
                }
                for c in self.collections
            ],
        }
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> BackupManifest:
        try:
            doc = json.loads(raw)
            if doc.get("format") != FORMAT_NAME:
                raise IntegrityError(f"{where}: not a {FORMAT_NAME} manifest")
            version = int(doc["formatVersion"])
            if version > FORMAT_VERSION:
                raise IntegrityError(
                    f"{where}: format version {version} is newer than this tool reads ({FORMAT_VERSION}); "
                    "upgrade mongo-backup"
                )
            return cls(
                format_version=version,
                engine_version=str(doc["engineVersion"]),
                server_version=str(doc["serverVersion"]),
                started_at=datetime.fromisoformat(doc["startedAt"]),
                completed_at=datetime.fromisoformat(doc["completedAt"]),
                compression=str(doc["compression"]["type"]),
                compression_level=doc["compression"].get("level"),
                options=dict(doc.get("options") or {}),
                collections=[
                    CollectionEntry(
                        db=str(c["db"]),
                        name=str(c["name"]),
                        type=str(c["type"]),
                        documents=int(c["documents"]),
                        data_bytes=int(c["dataBytes"]),
                        digest=c.get("digest"),
                        objects=[
                            StoredObject(str(o["name"]), str(o["role"]), int(o["size"]), str(o["sha256"]))
                            for o in c["objects"]
                        ],
                    )
                    for c in doc["collections"]
                ],
            )
        except IntegrityError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where}: unreadable manifest ({type(exc).__name__}: {exc})") from None


def manifest_checksum(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
