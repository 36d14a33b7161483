"""mongodump's `<coll>.metadata.json`: options, indexes, uuid, type, in canonical Extended JSON.

Only metadata goes through JSON; documents never do."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote
from uuid import UUID

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from .errors import IntegrityError

METADATA_SUFFIX = ".metadata.json"
#: characters kept as they are in file names (docs/FORMAT.md, section 1); the rest is %XX
_SAFE = "$ .-_+=@,;~!()[]{}'&^#"
DATA_SUFFIX = ".bson"


def collection_file_stem(db: str, coll: str) -> str:
    """`db/coll` as a path: characters that cannot be in a file name are %-escaped, as
    mongodump does for `/` and `%`; a leading dot (a hidden file) is escaped too."""
    safe_coll = quote(coll, safe=_SAFE)
    if safe_coll.startswith("."):
        safe_coll = "%2E" + safe_coll[1:]
    return f"{quote(db, safe=_SAFE)}/{safe_coll}"


def parse_file_stem(stem: str) -> tuple[str, str]:
    db, _, coll = stem.partition("/")
    return unquote(db), unquote(coll)


def build_metadata(info: dict[str, Any], indexes: list[dict[str, Any]]) -> bytes:
    """From a `listCollections` entry and `listIndexes` output, the metadata file mongodump writes."""
    raw_uuid = (info.get("info") or {}).get("uuid")
    if isinstance(raw_uuid, UUID):
        uuid = raw_uuid.hex
    elif isinstance(raw_uuid, bytes):  # bson.Binary is a bytes subclass
        uuid = bytes(raw_uuid).hex()
    else:
        uuid = ""
    clean_indexes = [{k: v for k, v in ix.items() if k != "ns"} for ix in indexes]
    doc = {
        "options": info.get("options") or {},
        "indexes": clean_indexes,
        "uuid": uuid,
        "collectionName": info["name"],
        "type": info.get("type", "collection"),
    }
    return json_util.dumps(doc, json_options=CANONICAL_JSON_OPTIONS).encode()


def parse_metadata(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json_util.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{where}: unreadable metadata JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where}: metadata is not a JSON object")
    doc.setdefault("options", {})
    doc.setdefault("indexes", [])
    return doc
