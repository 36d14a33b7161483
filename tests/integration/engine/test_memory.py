"""Peak memory does not grow with collection size: a 200k-document collection (about 130 MB
of BSON, far more than the engine's buffers) backs up and restores within a fixed bound,
plain and encrypted (the encryption holds one 64 KiB segment back, whatever the size)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest
from pymongo import AsyncMongoClient

from mongo_backup.engine import BackupOptions, RestoreOptions, run_backup, run_restore
from mongo_backup.engine.encryption import LocalKey
from mongo_backup.storage import Storage

DOCUMENTS = 200_000
#: the engine holds a few 16 MiB batches per collection; 130 MB of data must not show up
MAX_GROWTH_MB = 110


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    process = psutil.Process()
    figures = {"start": process.memory_info().rss / 1e6, "peak": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            figures["peak"] = max(figures["peak"], process.memory_info().rss / 1e6)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield figures
    finally:
        stop.set()
        sampler.join()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_200k_documents_back_up_and_restore_with_flat_memory(
    mongo: AsyncMongoClient[Any], store: Storage, dbname: str, encrypted: bool
) -> None:
    key = LocalKey(os.urandom(32), "test") if encrypted else None
    batch = []
    for i in range(DOCUMENTS):
        batch.append({"_id": i, "payload": os.urandom(300).hex()[:600]})
        if len(batch) == 20_000:
            await mongo[dbname].big.insert_many(batch)
            batch = []
    backup = store.child("big")
    with peak_rss() as backup_mem:
        options = BackupOptions(include=[f"{dbname}.*"], parallel=1, encryption_key=key)
        result = await run_backup(mongo, backup, options)
    assert result.documents == DOCUMENTS and result.data_bytes > 120_000_000
    with peak_rss() as restore_mem:
        restored = await run_restore(
            mongo,
            backup,
            RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"], verify=False, key=key),
        )
    assert restored.documents == DOCUMENTS
    assert await mongo[f"{dbname}_r"].big.estimated_document_count() == DOCUMENTS
    print(f"backup RSS {backup_mem}, restore RSS {restore_mem}")
    assert backup_mem["peak"] - backup_mem["start"] < MAX_GROWTH_MB, backup_mem
    assert restore_mem["peak"] - restore_mem["start"] < MAX_GROWTH_MB, restore_mem
