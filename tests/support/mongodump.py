"""Directories laid out exactly as `mongodump --out DIR` (and `--gzip`) writes them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import bson


def write_mongodump_dir(root: Path, db: str, docs: list[dict[str, Any]], *, gz: bool, metadata: bool) -> None:
    folder = root / db
    folder.mkdir(parents=True)
    data = b"".join(bson.encode(d) for d in docs)
    meta = json.dumps(
        {
            "options": {},
            "indexes": [
                {"v": {"$numberInt": "2"}, "key": {"_id": {"$numberInt": "1"}}, "name": "_id_"},
                {
                    "v": {"$numberInt": "2"},
                    "key": {"sku": {"$numberInt": "1"}},
                    "name": "sku_1",
                    "unique": True,
                },
            ],
            "uuid": "4b2ef3b2b6b34c5f9c1e55a4b1d2c3e4",
            "collectionName": "items",
            "type": "collection",
        }
    ).encode()
    view_meta = json.dumps(
        {"options": {"viewOn": "items", "pipeline": [{"$match": {"sku": {"$gt": 5}}}]}, "indexes": [],
         "collectionName": "big_items", "type": "view"}
    ).encode()  # fmt: skip
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else (lambda b: b)
    (folder / f"items.bson{suffix}").write_bytes(pack(data))
    if metadata:
        (folder / f"items.metadata.json{suffix}").write_bytes(pack(meta))
        (folder / f"big_items.metadata.json{suffix}").write_bytes(pack(view_meta))
    (root / "oplog.bson").write_bytes(b"")  # written by --oplog; not a collection
    (root / "prelude.json").write_bytes(b"{}")
