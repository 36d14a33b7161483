"""`ls`: the backups under a location, complete or not."""

from __future__ import annotations

from datetime import datetime

from ..storage import Storage
from .errors import IntegrityError
from .manifest import MANIFEST_NAME, BackupManifest, manifest_checksum
from .model import BackupListing


async def list_backups(storage: Storage) -> list[BackupListing]:
    """Every backup folder directly under `storage`: complete when it holds a readable manifest."""
    groups: dict[str, tuple[int, int, datetime | None]] = {}
    with_manifest: set[str] = set()  # known from the listing itself: no extra request per backup
    async for info in storage.list():
        name, slash, rest = info.name.partition("/")
        if not slash:
            continue
        if rest == MANIFEST_NAME:
            with_manifest.add(name)
        size, count, newest = groups.get(name, (0, 0, None))
        if info.modified and (newest is None or info.modified > newest):
            newest = info.modified
        groups[name] = (size + info.size, count + 1, newest)
    listings = []
    for name, (size, count, newest) in sorted(groups.items()):
        child = storage.child(name)
        manifest = None
        checksum = None
        if name in with_manifest:
            raw = await child.read_bytes(MANIFEST_NAME)
            try:
                manifest = BackupManifest.from_json(raw, f"{child.url}/{MANIFEST_NAME}")
                checksum = manifest_checksum(raw)
            except IntegrityError:
                manifest = None
        listings.append(
            BackupListing(
                name=name,
                complete=manifest is not None,
                stored_bytes=size,
                objects=count,
                created=manifest.completed_at if manifest else newest,
                checksum=checksum,
                documents=manifest.documents if manifest else None,
            )
        )
    return listings
