"""`mongo-backup decrypt`: an encrypted (or compressed) backup written out as a plain
mongodump directory (`<db>/<collection>.bson`, `.metadata.json`) that `mongorestore --dir`
restores. Every object is checked on the way as `verify` checks it (the manifest's
authentication, sizes, sha256, counts, digests); an object that fails leaves no file."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..storage import Storage
from .catalog import SourceCollection, load_catalog
from .digest import ContentDigest
from .encryption import BackupKeys, KeyEncryptionKey
from .errors import InvalidInput
from .integrity import DataObjectReader, read_metadata_object
from .metadata import DATA_SUFFIX, METADATA_SUFFIX, collection_file_stem
from .signing import SignatureChecker


@dataclass(frozen=True)
class DecryptResult:
    location: str
    checksum: str
    directory: str
    collections: int
    documents: int
    data_bytes: int


async def decrypt_backup(
    storage: Storage,
    directory: Path,
    key: KeyEncryptionKey | None,
    public_key: SignatureChecker | None = None,
) -> DecryptResult:
    catalog = await load_catalog(storage, key=key, public_key=public_key)
    assert catalog.checksum is not None
    await asyncio.to_thread(_new_directory, directory)
    documents = data_bytes = 0
    for source in catalog.collections:
        stem = collection_file_stem(source.db, source.name)
        if source.metadata is not None:
            _, plain = await read_metadata_object(storage, source.metadata, catalog.keys)
            await asyncio.to_thread(_write_file, directory / (stem + METADATA_SUFFIX), [plain])
        if source.data is not None:
            found = await _write_data(storage, source, directory / (stem + DATA_SUFFIX), catalog.keys)
            documents += found[0]
            data_bytes += found[1]
    return DecryptResult(
        storage.url, catalog.checksum, str(directory), len(catalog.collections), documents, data_bytes
    )


async def _write_data(
    storage: Storage, source: SourceCollection, path: Path, keys: BackupKeys | None
) -> tuple[int, int]:
    assert source.data is not None
    reader = DataObjectReader(storage.url, source, keys)
    partial = path.with_name(f".{path.name}.partial")

    def open_partial() -> BinaryIO:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(partial, "wb")

    def write(chunk: bytes) -> None:  # in a worker thread: decrypting, checking, writing
        docs: list[bytes] = []
        reader.feed(chunk, docs)
        out.writelines(docs)

    def finish() -> ContentDigest:
        last: list[bytes] = []
        digest = reader.finish(last)
        out.writelines(last)
        out.close()
        os.replace(partial, path)
        return digest

    out = await asyncio.to_thread(open_partial)
    try:
        async for chunk in storage.read(source.data.name):
            await asyncio.to_thread(write, chunk)
        digest = await asyncio.to_thread(finish)
    except BaseException:
        out.close()
        partial.unlink(missing_ok=True)
        raise
    return digest.documents, digest.bytes


def _new_directory(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise InvalidInput(f"--to {directory}: not empty (the plain mongodump directory goes into a new one)")
    directory.mkdir(parents=True, exist_ok=True)


def _write_file(path: Path, parts: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.writelines(parts)
