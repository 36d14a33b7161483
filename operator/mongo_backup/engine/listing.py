"""`ls`: the backups under a location, complete, incomplete or invalid. One bad backup never
hides the others: a manifest that does not fit the format marks its own backup invalid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..storage import ObjectNotFound, Storage
from .errors import ManifestInvalid
from .manifest import MANIFEST_NAME, BackupManifest, manifest_checksum
from .model import BackupListing


@dataclass
class _Folder:
    stored_bytes: int = 0
    objects: int = 0
    partial_objects: int = 0
    newest: datetime | None = None
    has_manifest: bool = False


async def list_backups(storage: Storage) -> list[BackupListing]:
    """Every backup folder directly under `storage`: complete when it holds a manifest that fits
    the format. Unfinished writes (a killed run's hidden leftovers) count in its size."""
    folders: dict[str, _Folder] = {}
    # the listing itself says which folders have a manifest: no extra request per backup
    async for info in storage.list(partial=True):
        name, slash, rest = info.name.partition("/")
        if not slash:
            continue
        folder = folders.setdefault(name, _Folder())
        folder.has_manifest |= rest == MANIFEST_NAME and not info.partial
        folder.stored_bytes += info.size
        folder.objects += 1
        folder.partial_objects += info.partial
        if info.modified and (folder.newest is None or info.modified > folder.newest):
            folder.newest = info.modified
    return [await _listing(storage, name, folder) for name, folder in sorted(folders.items())]


async def _listing(storage: Storage, name: str, folder: _Folder) -> BackupListing:
    manifest = checksum = problem = None
    if folder.has_manifest:
        child = storage.child(name)
        try:
            raw = await child.read_bytes(MANIFEST_NAME)
            manifest = BackupManifest.from_json(raw, f"{child.url}/{MANIFEST_NAME}")
            checksum = manifest_checksum(raw)
        except ObjectNotFound:
            pass  # deleted since the listing: incomplete now
        except ManifestInvalid as exc:
            problem = str(exc)
    return BackupListing(
        name=name,
        complete=manifest is not None,
        stored_bytes=folder.stored_bytes,
        objects=folder.objects,
        created=manifest.completed_at if manifest else folder.newest,
        checksum=checksum,
        documents=manifest.documents if manifest else None,
        invalid=problem,
        partial_objects=folder.partial_objects,
        key_fingerprint=manifest.encryption.key.fingerprint if manifest and manifest.encryption else None,
        signer_fingerprint=(
            manifest.signature.public_key_fingerprint if manifest and manifest.signature else None
        ),
    )
