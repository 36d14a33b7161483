"""mongodump's `<coll>.metadata.json`: options, indexes, uuid, type, in canonical Extended JSON.

Only metadata goes through JSON; documents never do."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote
from uuid import UUID

from bson import json_util
from bson.errors import BSONError
from bson.json_util import CANONICAL_JSON_OPTIONS

from .errors import IntegrityError
from .names import shown

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
    """`db/coll` of a file name, unescaped; UnicodeDecodeError when %XX is not UTF-8."""
    db, _, coll = stem.partition("/")
    return unquote(db, errors="strict"), unquote(coll, errors="strict")


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


#: what a broken or hostile Extended JSON text can raise while it is read
_UNREADABLE = (ValueError, TypeError, KeyError, OverflowError, RecursionError, UnicodeDecodeError, BSONError)
COLLECTION_TYPES = ("collection", "view", "timeseries")


def parse_metadata(raw: bytes, where: str) -> dict[str, Any]:
    """The metadata file in `raw`: an object whose `options` is an object and whose `indexes`
    are index specs (objects with a `key` object and a `name`). It is input: anything else is
    an IntegrityError naming the file and the field."""
    try:
        doc = json_util.loads(raw.decode())
    except _UNREADABLE as exc:
        raise IntegrityError(f"{where}: unreadable metadata JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{where}: metadata is not a JSON object")
    doc.setdefault("options", {})
    doc.setdefault("indexes", [])
    if not isinstance(doc["options"], dict):
        raise IntegrityError(f"{where}: metadata options: must be an object")
    if not isinstance(doc["indexes"], list):
        raise IntegrityError(f"{where}: metadata indexes: must be an array")
    for i, spec in enumerate(doc["indexes"]):
        if not isinstance(spec, dict):
            raise IntegrityError(f"{where}: metadata indexes[{i}]: must be an object")
        if not isinstance(spec.get("key"), dict) or not spec["key"]:
            raise IntegrityError(f"{where}: metadata indexes[{i}].key: must be a non-empty object")
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise IntegrityError(f"{where}: metadata indexes[{i}].name: must be a non-empty string")
    for field in ("collectionName", "type", "uuid"):
        if field in doc and not isinstance(doc[field], str):
            raise IntegrityError(f"{where}: metadata {field}: must be a string")
    if doc.get("type", "collection") not in COLLECTION_TYPES:
        raise IntegrityError(f"{where}: metadata type: must be one of {', '.join(COLLECTION_TYPES)}")
    return doc


#: The options a restore passes to `create`, each decided on its own: a metadata file is input,
#: and `create` takes more than options (`{"create": "victim"}` would name another collection).
CREATE_OPTIONS = frozenset(
    {
        "capped",  # capped collections: capped, size, max make their shape
        "size",
        "max",
        "validator",  # schema validation (documents are restored with it bypassed)
        "validationLevel",
        "validationAction",
        "collation",  # the default collation changes how queries and indexes compare
        "timeseries",  # a time-series collection cannot be created without it
        "expireAfterSeconds",  # TTL of time-series and clustered collections
        "clusteredIndex",  # clustered collections: the layout cannot be changed later
        "viewOn",  # views: what they read, and how
        "pipeline",
        "changeStreamPreAndPostImages",  # a per-collection setting, harmless
    }
)
# Not passed (dropped with a note): `storageEngine` and `indexOptionDefaults` carry storage
# engine configuration strings (WiredTiger's configString): specific to one server build, not
# portable to another engine, and not something to apply because a file says so. Everything
# else listCollections may report (`encryptedFields`, `autoIndexId`, ...) needs a decision
# before it is added here; `uuid` is the collection's identity, never an option to copy.
_SILENTLY_DROPPED_OPTIONS = frozenset({"uuid"})

#: the keys of an index spec that createIndexes takes (MongoDB "createIndexes": options for all
#: index types, then those of text, 2d, 2dsphere and wildcard indexes); `clustered` marks the
#: clustered index, which the restore skips. `ns` is dropped without a note: mongodump and
#: older servers write it, and it would name another collection.
INDEX_KEYS = frozenset(
    {
        "v",
        "key",
        "name",
        "unique",
        "sparse",
        "partialFilterExpression",
        "expireAfterSeconds",
        "hidden",
        "collation",
        "wildcardProjection",
        "weights",
        "default_language",
        "language_override",
        "textIndexVersion",
        "2dsphereIndexVersion",
        "bits",
        "min",
        "max",
        "clustered",
    }
)
_SILENTLY_DROPPED_INDEX_KEYS = frozenset({"ns"})


def collection_options(metadata: dict[str, Any]) -> dict[str, Any]:
    """The options to pass to `create`: only those on the allow-list (`dropped_options` names
    the others)."""
    options = metadata.get("options") or {}
    return {k: v for k, v in options.items() if k in CREATE_OPTIONS}


def dropped_options(metadata: dict[str, Any]) -> list[str]:
    options = metadata.get("options") or {}
    return sorted(k for k in options if k not in CREATE_OPTIONS and k not in _SILENTLY_DROPPED_OPTIONS)


def index_specs(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The index specs to pass to createIndexes: only the keys it takes."""
    return [{k: v for k, v in spec.items() if k in INDEX_KEYS} for spec in metadata.get("indexes") or []]


def dropped_index_keys(metadata: dict[str, Any]) -> dict[str, list[str]]:
    """Per index name, the keys of its spec that createIndexes would not be given."""
    dropped: dict[str, list[str]] = {}
    for spec in metadata.get("indexes") or []:
        keys = sorted(k for k in spec if k not in INDEX_KEYS and k not in _SILENTLY_DROPPED_INDEX_KEYS)
        if keys:
            dropped[str(spec.get("name"))] = keys
    return dropped


def metadata_notes(metadata: dict[str, Any], namespace: str) -> list[str]:
    """What of a collection's metadata a restore leaves out, for the result's notes."""
    notes = []
    options = dropped_options(metadata)
    if options:
        notes.append(
            f"{shown(namespace)}: collection options {', '.join(shown(o) for o in options)} were not "
            "applied (not on the list of options a restore passes to create)"
        )
    for index, keys in sorted(dropped_index_keys(metadata).items()):
        notes.append(
            f"{shown(namespace)}: index {shown(index)}: {', '.join(shown(k) for k in keys)} "
            "left out (not an index option createIndexes takes)"
        )
    return notes
