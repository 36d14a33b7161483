"""Reading a collection as raw BSON batches of a bounded size."""

from __future__ import annotations

from typing import Any

from .digest import ContentDigest, DigestAlgorithm
from .source import mongo_errors

#: the size asked of each cursor batch (the server's own cap is 16 MiB, which the driver holds
#: several times over while it unpacks one): small enough to keep memory flat, large enough
#: that round trips do not show
BATCH_BYTES = 4 * 1024 * 1024


def batch_documents(documents: int, data_bytes: int) -> int:
    """Documents per cursor batch for about BATCH_BYTES; 0 (the server's default) when the
    collection's size is not known."""
    if not documents or not data_bytes:
        return 0
    return max(100, BATCH_BYTES // max(1, data_bytes // documents))


async def read_digest(
    collection: Any, where: str, batch_size: int, algorithm: DigestAlgorithm
) -> ContentDigest:
    """Count and digest what a collection holds now (with the hash of the digest it is
    compared with)."""
    found = ContentDigest(algorithm)
    with mongo_errors(f"reading {where}"):
        async for batch in collection.find_raw_batches(batch_size=batch_size):
            found.update_batch(batch, where)
    return found
