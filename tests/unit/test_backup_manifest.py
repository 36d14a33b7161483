"""The manifest and the metadata files are input: the strict manifest model (docs/FORMAT.md
section 3), the names MongoDB refuses, and the allow-lists of collection options and index keys."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from mongo_backup.engine.errors import IntegrityError, ManifestInvalid
from mongo_backup.engine.manifest import BackupManifest, CollectionEntry, StoredObject
from mongo_backup.engine.metadata import (
    collection_options,
    index_specs,
    metadata_notes,
    parse_metadata,
)
from mongo_backup.engine.names import object_name_problem

Doc = dict[str, Any]
WHERE = "file:///b/nightly/manifest.json"


def manifest() -> BackupManifest:
    orders = CollectionEntry(
        db="shop",
        name="orders",
        type="collection",
        documents=3,
        data_bytes=120,
        digest="xxh3sum128:" + "1" * 32,
        objects=[
            StoredObject("shop/orders.bson.zst", "data", 80, "a" * 64),
            StoredObject("shop/orders.metadata.json", "metadata", 40, "b" * 64),
        ],
    )
    view = CollectionEntry(
        db="shop",
        name="recent",
        type="view",
        documents=0,
        data_bytes=0,
        digest=None,
        objects=[StoredObject("shop/recent.metadata.json", "metadata", 30, "c" * 64)],
    )
    return BackupManifest(
        engine_version="0.1.0",
        server_version="7.0.12",
        started_at=datetime(2026, 11, 26, 1, 0, tzinfo=UTC),
        completed_at=datetime(2026, 11, 26, 1, 5, tzinfo=UTC),
        compression="zstd",
        compression_level=3,
        collections=[orders, view],
        options={"include": [], "exclude": [], "parallel": 4},
    )


GOOD: Doc = json.loads(manifest().to_json())


def test_a_manifest_reads_back_as_written() -> None:
    written = manifest()
    read = BackupManifest.from_json(written.to_json(), WHERE)
    assert read.to_json() == written.to_json()
    assert (read.documents, read.data_bytes, read.stored_bytes) == (3, 120, 150)
    assert read.totals is not None and read.totals == written.computed_totals()
    assert read.started_at == written.started_at and read.completed_at.tzinfo is not None


def test_unknown_fields_are_ignored() -> None:
    doc = copy.deepcopy(GOOD)
    doc["replication"] = {"future": True}  # "encryption" is a field of version 2
    doc["collections"][0]["shardKey"] = {"_id": "hashed"}
    doc["collections"][0]["objects"][0]["crc32c"] = "abc"
    assert BackupManifest.from_json(json.dumps(doc).encode(), WHERE).documents == 3


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _drop(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


INVALID = [
    (
        "negative size",
        _set("collections.0.objects.0.size", -1),
        "collections[0].objects[0].size: must be >= 0",
    ),
    (
        "huge count",
        _set("collections.0.documents", 2**70),
        "collections[0].documents: must be <= 9007199254740991",
    ),
    ("float count", _set("collections.0.documents", 3.0), "collections[0].documents: must be an integer"),
    ("string count", _set("collections.0.documents", "3"), "collections[0].documents: must be an integer"),
    ("bool count", _set("collections.0.documents", True), "collections[0].documents: must be an integer"),
    ("list for object", _set("compression", ["zstd"]), "compression.type: missing"),
    ("object for list", _set("collections", {}), "collections: must be an array"),
    ("null collections", _set("collections", None), "collections: must be an array"),
    ("missing field", _drop("collections.0.digest"), "collections[0].digest: missing"),
    ("missing totals", _drop("totals"), "totals: missing"),
    ("missing level", _drop("compression.level"), "compression.level: missing"),
    ("missing version", _drop("formatVersion"), "formatVersion: missing"),
    ("newer version", _set("formatVersion", 4), "formatVersion 4 is newer than this tool reads (3)"),
    ("version 2 unencrypted", _set("formatVersion", 2), "encryption: missing"),
    (
        "version 1 with an XXH3 digest",
        _set("formatVersion", 1),
        "collections[0].digest: a version 1 manifest's",
    ),
    (
        "version 3 with a BLAKE2b digest",
        _set("collections.0.digest", "b2sum128:" + "1" * 32),
        "collections[0].digest: a version 3 manifest's digests are xxh3sum128:",
    ),
    ("version 0", _set("formatVersion", 0), "formatVersion: must be >= 1"),
    ("other format", _set("format", "restic"), "format: must be 'mongo-backup'"),
    ("bad sha256", _set("collections.0.objects.0.sha256", "A" * 64), "sha256: must be 64 lower-case hex"),
    (
        "bad digest",
        _set("collections.0.digest", "md5:00"),
        "digest: must be xxh3sum128: or b2sum128: followed by 32",
    ),
    ("bad type", _set("collections.0.type", "table"), "collections[0].type: must be one of"),
    (
        "bad role",
        _set("collections.0.objects.0.role", "index"),
        "collections[0].objects[0].role: must be one of",
    ),
    ("bad compression", _set("compression.type", "lz4"), "compression.type: must be one of"),
    ("date only", _set("startedAt", "2026-11-26"), "startedAt: must be an RFC 3339 timestamp"),
    ("no time zone", _set("startedAt", "2026-11-26T01:00:00"), "startedAt: must be an RFC 3339 timestamp"),
    ("a number", _set("completedAt", 1764118800), "completedAt: must be an RFC 3339 timestamp"),
    ("control character", _set("serverVersion", "7.0\n12"), "serverVersion: must not contain control"),
    ("totals", _set("totals.storedBytes", 151), "totals.storedBytes: 151, but the entries add up to 150"),
    (
        "two metadata",
        _set(
            "collections.0.objects.0",
            {"name": "shop/o.metadata.json", "role": "metadata", "size": 80, "sha256": "a" * 64},
        ),
        "exactly one metadata object",
    ),
    ("view with data", _set("collections.1.documents", 1), "collections[1]: a view has no data object"),
    ("no digest", _set("collections.0.digest", None), "collections[0]: a collection entry has one data"),
    ("no objects", _set("collections.0.objects", []), "collections[0].objects: must have at least 1"),
    ("wrong suffix", _set("collections.0.objects.0.name", "shop/orders.txt"), "a data object's name ends"),
    ("dot-dot", _set("collections.0.objects.0.name", "../x/orders.bson"), "'..' parts"),
    ("absolute", _set("collections.0.objects.0.name", "/etc/orders.bson"), "relative to the backup's root"),
    ("backslash", _set("collections.0.objects.0.name", "shop\\orders.bson"), "backslash"),
    ("NUL in a name", _set("collections.0.name", "or\x00ders"), "cannot contain NUL"),
    ("$ in a name", _set("collections.0.name", "or$ders"), "cannot contain '$'"),
    ("empty name", _set("collections.0.name", ""), "cannot be empty"),
    ("dot in db", _set("collections.0.db", "a.b"), "a database name cannot contain '.'"),
    ("long db", _set("collections.0.db", "d" * 64), "at most 63 bytes (64 here)"),
    ("long namespace", _set("collections.0.name", "é" * 126), "at most 255 bytes (257 here)"),
    ("system", _set("collections.0.name", "system.profile"), "server-internal"),
    ("twice", _set("collections.1.name", "orders"), "'shop.orders' is listed twice"),
]


@pytest.mark.parametrize(("mutate", "message"), [pytest.param(m, e, id=i) for i, m, e in INVALID])
def test_an_invalid_manifest_names_the_field(mutate: Callable[[Doc], None], message: str) -> None:
    doc = copy.deepcopy(GOOD)
    mutate(doc)
    with pytest.raises(ManifestInvalid) as raised:
        BackupManifest.from_json(json.dumps(doc).encode(), WHERE)
    text = str(raised.value)
    assert text.startswith(f"{WHERE}: manifest invalid: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not JSON"),
        (b"{nope", "not JSON"),
        (b"[]", "manifest invalid: must be an object"),
        (b'"manifest"', "manifest invalid: must be an object"),
        (b"[" * 100_000, "not JSON (recursion limit exceeded"),
        (json.dumps(GOOD).replace('"size": 80', '"size": 1e400').encode(), "size: must be an integer"),
        (
            json.dumps(GOOD).replace('"size": 80', '"size": ' + "9" * 5000).encode(),
            "not JSON (number out of range",
        ),
        (json.dumps(GOOD).replace("orders", "\\ud800").encode(), "not JSON"),
    ],
)
def test_what_is_not_a_manifest_at_all(raw: bytes, message: str) -> None:
    with pytest.raises(ManifestInvalid, match="manifest invalid") as raised:
        BackupManifest.from_json(raw, WHERE)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "stamp", ["2026-11-26T01:00:00Z", "2026-11-26T01:00:00.123456+02:00", "2026-11-26t01:00:00z"]
)
def test_rfc3339_timestamps(stamp: str) -> None:
    doc = copy.deepcopy(GOOD)
    doc["startedAt"] = stamp
    assert BackupManifest.from_json(json.dumps(doc).encode(), WHERE).started_at.tzinfo is not None


def test_names_in_messages_stay_on_one_line() -> None:
    doc = copy.deepcopy(GOOD)
    doc["collections"][0]["name"] = "a$\nb" + "x" * 500
    with pytest.raises(ManifestInvalid) as raised:
        BackupManifest.from_json(json.dumps(doc).encode(), WHERE)
    assert "\n" not in str(raised.value) and "\\n" in str(raised.value)
    assert len(str(raised.value)) < 300


@pytest.mark.parametrize("name", ["a/b.bson", "db/c.metadata.json.gz", "db/%2E..c.bson.zst"])
def test_object_names_inside_the_root(name: str) -> None:
    assert object_name_problem(name) is None


# -- metadata files -------------------------------------------------------------------------


def _metadata(**fields: Any) -> bytes:
    doc = {"options": {}, "indexes": [], "uuid": "", "collectionName": "c", "type": "collection", **fields}
    return json.dumps(doc).encode()


def test_only_collection_options_reach_create() -> None:
    metadata = parse_metadata(
        _metadata(
            options={
                "create": "victim",
                "capped": True,
                "size": 4096,
                "validator": {"a": {"$exists": True}},
                "storageEngine": {"wiredTiger": {"configString": "x"}},
                "uuid": "00",
            }
        ),
        "m",
    )
    assert collection_options(metadata) == {
        "capped": True,
        "size": 4096,
        "validator": {"a": {"$exists": True}},
    }
    (note,) = metadata_notes(metadata, "db.c")
    assert "'create'" in note and "'storageEngine'" in note and "uuid" not in note


def test_only_createindexes_keys_reach_createindexes() -> None:
    spec = {"v": 2, "key": {"a": 1}, "name": "a_1", "unique": True, "ns": "other.victim", "background": True}
    metadata = parse_metadata(_metadata(indexes=[spec]), "m")
    assert index_specs(metadata) == [{"v": 2, "key": {"a": 1}, "name": "a_1", "unique": True}]
    (note,) = metadata_notes(metadata, "db.c")
    assert "'background'" in note and "ns" not in note.replace("options", "")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "metadata is not a JSON object"),
        (b"{", "unreadable metadata JSON"),
        (b'{"options": {"$numberInt": "x"}}', "unreadable metadata JSON"),
        (_metadata(options=[1]), "metadata options: must be an object"),
        (_metadata(indexes={"key": 1}), "metadata indexes: must be an array"),
        (_metadata(indexes=[1]), "metadata indexes[0]: must be an object"),
        (_metadata(indexes=[{"name": "a"}]), "metadata indexes[0].key: must be a non-empty object"),
        (_metadata(indexes=[{"key": {"a": 1}, "name": 5}]), "metadata indexes[0].name"),
        (_metadata(type="table"), "metadata type: must be one of"),
        (_metadata(collectionName=["c"]), "metadata collectionName: must be a string"),
        (b"[" * 100_000 + b"]" * 100_000, "unreadable metadata JSON"),
    ],
)
def test_a_broken_metadata_file_names_the_file(raw: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=r"^file:///b/db/c\.metadata\.json: ") as raised:
        parse_metadata(raw, "file:///b/db/c.metadata.json")
    assert message in str(raised.value)
