"""Tampered backups: a backup is input, read back from storage that someone else may have
written to. Each case damages a copy of a real backup in one way (flipped byte, truncation,
missing object, edited counts, digests, sizes, sha256 and totals, absurd values, hostile names,
a removed or broken manifest) and checks what a user would: `verify` and `restore` both fail
with the integrity exit code and one line that names the object or field, the engine raises
the typed error, and the restore target is byte for byte what it was, with no new collection.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bson import json_util
from pymongo import AsyncMongoClient

from mongo_backup.engine import (
    BackupOptions,
    EngineError,
    IncompleteBackup,
    IntegrityError,
    ManifestInvalid,
    RestoreOptions,
    kind_of,
    list_backups,
    run_backup,
    run_restore,
    verify_backup,
)
from mongo_backup.engine.errors import EXIT_INTEGRITY, EXIT_OK
from mongo_backup.storage import open_storage
from tests.integration.engine.conftest import raw_documents
from tests.support.cli_run import CliResult, run_cli
from tests.support.mongodump import write_mongodump_dir

Client = AsyncMongoClient[Any]
Doc = dict[str, Any]
COMPRESSIONS = ("zstd", "gzip", "none")
DATA_EXT = {"zstd": ".bson.zst", "gzip": ".bson.gz", "none": ".bson"}
META_EXT = {"zstd": ".metadata.json", "gzip": ".metadata.json.gz", "none": ".metadata.json"}
#: the source database of the module's backups
SOURCE = "tamper_" + uuid.uuid4().hex[:8]


# -- the backups, made once per module ------------------------------------------------------


async def _make_backups(uri: str, root: Path) -> None:
    client: Client = AsyncMongoClient(uri)
    try:
        db = client[SOURCE]
        # orders is the largest: restored first with parallel=1, so its damage stops the run
        # before any other collection is written (one collection at a time is today's restore;
        # an all-or-nothing restore keeps the promise at any parallelism)
        await db.orders.insert_many([{"_id": i, "sku": f"s{i}", "pad": "p" * 120} for i in range(300)])
        await db.orders.create_index("sku", unique=True)
        await db.items.insert_many([{"_id": i, "n": i} for i in range(120)])
        await db.create_collection("cheap", viewOn="items", pipeline=[{"$match": {"n": {"$lt": 10}}}])
        for compression in COMPRESSIONS:
            storage = open_storage(f"file://{root}/{compression}")
            await run_backup(client, storage, BackupOptions(compression=compression, include=[f"{SOURCE}.*"]))
        await client.drop_database(SOURCE)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    asyncio.run(_make_backups(mongo_uri, root))
    return root


@pytest.fixture
def copy_of(pristine: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A fresh copy of the module's backup made with one compression."""

    def copy(compression: str) -> Path:
        target = tmp_path / "backups" / "b"
        shutil.copytree(pristine / compression, target)
        return target

    return copy


# -- editing a backup -----------------------------------------------------------------------


def load(root: Path) -> Doc:
    doc: Doc = json.loads((root / "manifest.json").read_bytes())
    return doc


def save(root: Path, doc: Any, **raw: str) -> None:
    """Write `doc` as the manifest; each string value `"@NAME"` becomes `raw[NAME]` verbatim
    (JSON that json.dumps cannot write, such as 1e400)."""
    text = json.dumps(doc, indent=2)
    for name, value in raw.items():
        text = text.replace(f'"@{name}"', value)
    (root / "manifest.json").write_text(text)


def entry(doc: Doc, name: str = "orders") -> tuple[int, Doc]:
    index = next(i for i, c in enumerate(doc["collections"]) if c["name"] == name)
    found: Doc = doc["collections"][index]
    return index, found


def obj(doc: Doc, role: str, name: str = "orders") -> tuple[int, int, Doc]:
    i, e = entry(doc, name)
    j = next(j for j, o in enumerate(e["objects"]) if o["role"] == role)
    found: Doc = e["objects"][j]
    return i, j, found


def object_name(compression: str, role: str, name: str = "orders") -> str:
    return f"{SOURCE}/{name}{DATA_EXT[compression] if role == 'data' else META_EXT[compression]}"


def resign(root: Path, doc: Doc, name: str) -> None:
    """Make the manifest agree with the object as it now is: its size, sha256 and the totals."""
    data = (root / name).read_bytes()
    for e in doc["collections"]:
        for o in e["objects"]:
            if o["name"] == name:
                doc["totals"]["storedBytes"] += len(data) - o["size"]
                o["size"], o["sha256"] = len(data), hashlib.sha256(data).hexdigest()


def edit(mutate: Callable[[Doc], str | None], **raw: str) -> Callable[[Path, str], str]:
    """A manifest edit; `mutate` changes the document and returns what the error must name."""

    def tamper(root: Path, compression: str) -> str:
        doc = load(root)
        named = mutate(doc)
        save(root, doc, **raw)
        return named or ""

    return tamper


def flip(role: str) -> Callable[[Path, str], str]:
    def tamper(root: Path, compression: str) -> str:
        name = object_name(compression, role)
        data = bytearray((root / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (root / name).write_bytes(bytes(data))
        return name

    return tamper


def truncate(root: Path, compression: str) -> str:
    name = object_name(compression, "data")
    data = (root / name).read_bytes()
    (root / name).write_bytes(data[:-7])
    return name


def remove(role: str) -> Callable[[Path, str], str]:
    def tamper(root: Path, compression: str) -> str:
        name = object_name(compression, role)
        (root / name).unlink()
        return name

    return tamper


def counts_edited(doc: Doc) -> str:
    _, e = entry(doc)
    e["documents"] += 1
    doc["totals"]["documents"] += 1  # consistent: only the data itself can tell
    return object_name(doc["compression"]["type"], "data")


def data_bytes_edited(doc: Doc) -> str:
    _, e = entry(doc)
    e["dataBytes"] -= 1
    doc["totals"]["dataBytes"] -= 1
    return object_name(doc["compression"]["type"], "data")


def digest_edited(doc: Doc) -> str:
    _, e = entry(doc)
    e["digest"] = "xxh3sum128:" + "0" * 32
    return object_name(doc["compression"]["type"], "data")


def size_edited(doc: Doc) -> str:
    _, _, o = obj(doc, "data")
    o["size"] += 1
    doc["totals"]["storedBytes"] += 1
    return str(o["name"])


def sha256_edited(role: str) -> Callable[[Doc], str]:
    def mutate(doc: Doc) -> str:
        _, _, o = obj(doc, role)
        o["sha256"] = "0" * 64
        return str(o["name"])

    return mutate


def totals_edited(doc: Doc) -> str:
    doc["totals"]["documents"] += 1
    return "totals.documents"


def entry_field(field: str, value: Any, name: str = "orders") -> Callable[[Doc], str]:
    def mutate(doc: Doc) -> str:
        i, e = entry(doc, name)
        e[field] = value
        return f"collections[{i}]"

    return mutate


def object_field(field: str, value: Any, role: str = "data") -> Callable[[Doc], str]:
    def mutate(doc: Doc) -> str:
        i, j, o = obj(doc, role)
        o[field] = value
        return f"collections[{i}].objects[{j}].{field}"

    return mutate


def top_field(field: str, value: Any) -> Callable[[Doc], str]:
    def mutate(doc: Doc) -> str:
        doc[field] = value
        return field

    return mutate


def manifest_bytes(content: bytes) -> Callable[[Path, str], str]:
    def tamper(root: Path, compression: str) -> str:
        (root / "manifest.json").write_bytes(content)
        return "manifest invalid"

    return tamper


def manifest_removed(root: Path, compression: str) -> str:
    (root / "manifest.json").unlink()
    return "manifest.json"


def killed_leftovers(root: Path, compression: str) -> str:
    """What a backup killed mid-way leaves: no manifest, a hidden unfinished write."""
    (root / "manifest.json").unlink()
    name = object_name(compression, "data", "items")
    partial = (root / name).with_name(f".{Path(name).name}.tmp-4242")
    (root / name).rename(partial)
    return "unfinished write"


@dataclass(frozen=True)
class Case:
    id: str
    tamper: Callable[[Path, str], str]
    error: type[EngineError]
    compressions: tuple[str, ...] = ("zstd",)


ALL = COMPRESSIONS
CASES = [
    # damaged objects
    Case("flipped-byte-in-data", flip("data"), IntegrityError, ALL),
    Case("flipped-byte-in-metadata", flip("metadata"), IntegrityError, ALL),
    Case("truncated-data", truncate, IntegrityError, ALL),
    Case("missing-data-object", remove("data"), IntegrityError, ALL),
    Case("missing-metadata-object", remove("metadata"), IntegrityError, ALL),
    # edited manifest values, consistent with the totals: only the objects can tell
    Case("edited-document-count", edit(counts_edited), IntegrityError, ALL),
    Case("edited-data-bytes", edit(data_bytes_edited), IntegrityError),
    Case("edited-digest", edit(digest_edited), IntegrityError, ALL),
    Case("edited-size", edit(size_edited), IntegrityError),
    Case("edited-data-sha256", edit(sha256_edited("data")), IntegrityError),
    Case("edited-metadata-sha256", edit(sha256_edited("metadata")), IntegrityError),
    Case("edited-totals", edit(totals_edited), ManifestInvalid),
    # absurd values
    Case("size-1e400", edit(object_field("size", "@X"), X="1e400"), ManifestInvalid),
    Case("size-negative", edit(object_field("size", -1)), ManifestInvalid),
    Case("documents-2**70", edit(entry_field("documents", 2**70)), ManifestInvalid),
    Case("documents-a-string", edit(entry_field("documents", "300")), ManifestInvalid),
    Case("documents-a-float", edit(entry_field("documents", "@X"), X="300.0"), ManifestInvalid),
    Case("compression-a-list", edit(top_field("compression", ["zstd"])), ManifestInvalid),
    Case("collections-null", edit(top_field("collections", None)), ManifestInvalid),
    Case("objects-an-object", edit(entry_field("objects", {"name": "x"})), ManifestInvalid),
    Case("sha256-not-hex", edit(object_field("sha256", "z" * 64)), ManifestInvalid),
    Case("timestamp-not-rfc3339", edit(top_field("completedAt", "yesterday")), ManifestInvalid),
    Case("format-version-a-string", edit(top_field("formatVersion", "1")), ManifestInvalid),
    Case("format-version-newer", edit(top_field("formatVersion", 99)), ManifestInvalid),
    Case("type-unknown", edit(entry_field("type", "table")), ManifestInvalid),
    # hostile names
    Case("name-with-nul", edit(entry_field("name", "ord\x00ers")), ManifestInvalid),
    Case("name-with-dollar", edit(entry_field("name", "ord$ers")), ManifestInvalid),
    Case("name-system", edit(entry_field("name", "system.users")), ManifestInvalid),
    Case("name-over-long", edit(entry_field("name", "c" * 300)), ManifestInvalid),
    Case("db-dotdot", edit(entry_field("db", "..")), ManifestInvalid),
    Case("db-with-slash", edit(entry_field("db", "a/b")), ManifestInvalid),
    Case("db-over-long", edit(entry_field("db", "d" * 100)), ManifestInvalid),
    Case("db-local", edit(entry_field("db", "local")), ManifestInvalid),
    Case(
        "object-dotdot", edit(object_field("name", f"../outside/{SOURCE}/orders.bson.zst")), ManifestInvalid
    ),
    Case("object-absolute", edit(object_field("name", "/etc/orders.bson.zst")), ManifestInvalid),
    Case("object-backslash", edit(object_field("name", f"{SOURCE}\\..\\orders.bson.zst")), ManifestInvalid),
    Case("object-nul", edit(object_field("name", f"{SOURCE}/ord\x00ers.bson.zst")), ManifestInvalid),
    # the manifest itself
    Case("manifest-removed", manifest_removed, IncompleteBackup, ALL),
    Case("killed-backup-leftovers", killed_leftovers, IncompleteBackup, ALL),
    Case("manifest-not-json", manifest_bytes(b"{not json"), ManifestInvalid),
    Case("manifest-empty", manifest_bytes(b""), ManifestInvalid),
    Case("manifest-a-json-array", manifest_bytes(b"[]"), ManifestInvalid),
]
PARAMS = [pytest.param(case, c, id=f"{case.id}-{c}") for case in CASES for c in case.compressions]


# -- the checks -----------------------------------------------------------------------------


@pytest.fixture
async def target(mongo: Client) -> str:
    """A database that already holds other data under the backup's collection names, so that
    a restore with on-conflict drop would replace it."""
    name = "t_" + uuid.uuid4().hex[:10]
    await mongo[name].orders.insert_many([{"_id": i, "old": True} for i in range(7)])
    await mongo[name].items.insert_many([{"_id": i, "old": "items"} for i in range(5)])
    return name


async def snapshot(mongo: Client, db: str) -> dict[str, list[bytes]]:
    """Every collection of `db` and its documents as the server's exact bytes."""
    return {
        name: await raw_documents(mongo, f"{db}.{name}")
        for name in sorted(await mongo[db].list_collection_names())
    }


def restore_args(uri: str, root: Path, target: str) -> list[str]:
    return [
        "--quiet", "restore", "--uri", uri, "--from", f"file://{root}",
        "--ns-from", f"{SOURCE}.*", "--ns-to", f"{target}.*", "--on-conflict", "drop", "--parallel", "1",
    ]  # fmt: skip


def assert_one_line_failure(done: CliResult, code: int, named: str) -> None:
    assert done.returncode == code, done.output
    assert "Traceback" not in done.output, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0], (named, lines[0])


@pytest.mark.parametrize(("case", "compression"), PARAMS)
async def test_a_tampered_backup_is_refused_and_the_target_is_untouched(
    mongo: Client, mongo_uri: str, copy_of: Callable[[str], Path], target: str, case: Case, compression: str
) -> None:
    """Promise: a damaged, edited or incomplete backup is never restored, not even in part:
    verify and restore fail with exit code 4 and one line naming the object or field, and the
    target is exactly as it was."""
    root = copy_of(compression)
    named = case.tamper(root, compression)
    storage = open_storage(f"file://{root}")
    before = await snapshot(mongo, target)

    try:
        result = await verify_backup(storage)
    except EngineError as exc:
        assert isinstance(exc, case.error), repr(exc)
        assert named in str(exc)
    else:
        assert not result.ok and any(named in p for p in result.problems), result.problems
    with pytest.raises(case.error) as raised:
        await run_restore(
            mongo,
            storage,
            RestoreOptions(ns_from=[f"{SOURCE}.*"], ns_to=[f"{target}.*"], on_conflict="drop", parallel=1),
        )
    assert kind_of(raised.value).exit_code == EXIT_INTEGRITY
    assert named in str(raised.value)
    assert await snapshot(mongo, target) == before

    verify = await asyncio.to_thread(run_cli, ["--quiet", "verify", "--from", f"file://{root}"])
    assert_one_line_failure(verify, EXIT_INTEGRITY, named)
    restore = await asyncio.to_thread(run_cli, restore_args(mongo_uri, root, target))
    assert_one_line_failure(restore, EXIT_INTEGRITY, named)
    assert await snapshot(mongo, target) == before


# -- options from a backup ------------------------------------------------------------------


def _edit_metadata(root: Path, mutate: Callable[[Doc], None]) -> None:
    """Change the orders metadata object and re-sign it in the manifest, as someone with write
    access to the storage could: sha256 and size then prove nothing."""
    name = object_name("zstd", "metadata")
    meta = json_util.loads((root / name).read_text())
    mutate(meta)
    (root / name).write_text(json_util.dumps(meta, json_options=json_util.CANONICAL_JSON_OPTIONS))
    doc = load(root)
    resign(root, doc, name)
    save(root, doc)


async def test_options_from_a_backup_only_shape_its_own_collection(
    mongo: Client, copy_of: Callable[[str], Path], target: str
) -> None:
    """Promise: a metadata file can only describe its own collection: options that are not
    collection options (`create`, unknown keys) and index keys createIndexes does not take
    (`ns`) are left out and named in the result; no other collection is created."""
    root = copy_of("zstd")

    def hostile(meta: Doc) -> None:
        meta["options"].update(
            {"create": "victim", "flavour": "strange", "storageEngine": {"wiredTiger": {}}}
        )
        for spec in meta["indexes"]:
            spec["ns"] = f"{target}.victim2"
            if spec["name"] == "sku_1":
                spec["bogus"] = True

    _edit_metadata(root, hostile)
    storage = open_storage(f"file://{root}")
    assert (await verify_backup(storage)).ok  # consistent and well-formed: only the restore can refuse it
    result = await run_restore(
        mongo, storage, RestoreOptions(ns_from=[f"{SOURCE}.*"], ns_to=[f"{target}.*"], on_conflict="drop")
    )
    assert sorted(await mongo[target].list_collection_names()) == ["cheap", "items", "orders"]
    assert [n for n in await mongo.list_database_names() if n == "victim"] == []
    notes = " ".join(result.notes)
    assert "'create'" in notes and "'flavour'" in notes and "'storageEngine'" in notes and "'bogus'" in notes
    indexes = {ix["name"] async for ix in await mongo[target].orders.list_indexes()}
    assert indexes == {"_id_", "sku_1"}
    assert result.verified == result.checked == 2


async def test_a_metadata_object_that_is_not_an_object_is_refused(
    mongo: Client, copy_of: Callable[[str], Path], target: str
) -> None:
    """Promise: a metadata object with the wrong shape (indexes not an array) fails the restore
    before anything is written, naming the object."""
    root = copy_of("zstd")
    _edit_metadata(root, lambda meta: meta.update({"indexes": {"key": 1}}))
    before = await snapshot(mongo, target)
    storage = open_storage(f"file://{root}")
    result = await verify_backup(storage)
    assert any(object_name("zstd", "metadata") in p and "indexes" in p for p in result.problems)
    with pytest.raises(IntegrityError, match="metadata indexes: must be an array"):
        await run_restore(mongo, storage, RestoreOptions(ns_from=[f"{SOURCE}.*"], ns_to=[f"{target}.*"]))
    assert await snapshot(mongo, target) == before


# -- ls -------------------------------------------------------------------------------------


async def test_ls_lists_the_good_backups_next_to_the_bad_ones(pristine: Path, tmp_path: Path) -> None:
    """Promise: one bad backup never hides the others: `ls` lists every backup of the folder,
    marks the invalid one INVALID with the reason, and counts a killed run's unfinished writes."""
    folder = tmp_path / "folder"
    for name in ("a-good", "b-invalid", "c-killed", "d-good"):
        shutil.copytree(pristine / "zstd", folder / name)
    edit(object_field("size", -1))(folder / "b-invalid", "zstd")
    killed_leftovers(folder / "c-killed", "zstd")

    listings = await list_backups(open_storage(f"file://{folder}"))
    assert [(b.name, b.state) for b in listings] == [
        ("a-good", "complete"),
        ("b-invalid", "invalid"),
        ("c-killed", "incomplete"),
        ("d-good", "complete"),
    ]
    assert listings[2].partial_objects == 1
    assert listings[2].stored_bytes == sum(
        p.stat().st_size for p in (folder / "c-killed").rglob("*") if p.is_file()
    )

    done = await asyncio.to_thread(run_cli, ["ls", f"file://{folder}"])
    assert done.returncode == EXIT_OK, done.output
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines if not line.startswith(" ")][1:] == [
        ["a-good", "complete"],
        ["b-invalid", "INVALID"],
        ["c-killed", "INCOMPLETE"],
        ["d-good", "complete"],
    ]
    assert any(
        "manifest invalid" in line and ".objects[" in line and "must be >= 0" in line for line in lines
    )
    assert any("unfinished writes" in line and "1 of " in line for line in lines)


# -- mongodump directories ------------------------------------------------------------------


@pytest.fixture
def mongodump_dir(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "dump"
    write_mongodump_dir(root, SOURCE, [{"_id": i, "sku": i} for i in range(50)], gz=True, metadata=True)
    yield root


async def test_a_mongodump_directory_is_restored_only_when_the_user_says_so(
    mongo: Client, mongo_uri: str, mongodump_dir: Path, target: str
) -> None:
    """Promise: a folder without a manifest is never taken for a backup: a mongodump directory
    is refused, naming the flag, and restored with --from-mongodump with a warning that it
    cannot be verified."""
    before = await snapshot(mongo, target)
    args = restore_args(mongo_uri, mongodump_dir, target)
    refused = await asyncio.to_thread(run_cli, args)
    assert_one_line_failure(refused, EXIT_INTEGRITY, "--from-mongodump")
    assert await snapshot(mongo, target) == before

    done = await asyncio.to_thread(run_cli, [*args, "--from-mongodump"])
    assert done.returncode == EXIT_OK, done.output
    assert "warning" in done.stderr and "cannot be verified" in done.stderr
    assert "could not be verified" in done.stdout  # the result's note
    assert await mongo[target].items.count_documents({}) == 50


async def test_a_backup_of_ours_is_refused_as_a_mongodump_directory(
    mongo: Client, mongo_uri: str, copy_of: Callable[[str], Path], target: str
) -> None:
    """Promise: --from-mongodump never skips the checks of a backup of ours, complete or not."""
    before = await snapshot(mongo, target)
    complete = copy_of("gzip")
    done = await asyncio.to_thread(run_cli, [*restore_args(mongo_uri, complete, target), "--from-mongodump"])
    assert_one_line_failure(done, 2, "without --from-mongodump")
    killed_leftovers(complete, "gzip")
    done = await asyncio.to_thread(run_cli, [*restore_args(mongo_uri, complete, target), "--from-mongodump"])
    assert_one_line_failure(done, EXIT_INTEGRITY, "incomplete backup")
    assert await snapshot(mongo, target) == before


HOSTILE_FILES = [
    pytest.param("ord%00ers.bson", "NUL", id="nul"),
    pytest.param("ord$ers.bson", "'$'", id="dollar"),
    pytest.param("%FF.bson", "not UTF-8", id="not-utf8"),
    pytest.param("deeper/orders.bson", "not mongodump's layout", id="nested"),
]


@pytest.mark.parametrize(("file_name", "named"), HOSTILE_FILES)
async def test_hostile_names_in_a_mongodump_directory_are_refused(
    mongo: Client, mongo_uri: str, mongodump_dir: Path, file_name: str, named: str
) -> None:
    """Promise: names in a mongodump directory are input: a name MongoDB refuses, or a path
    that is not mongodump's layout, fails the restore before anything is written."""
    hostile = mongodump_dir / SOURCE / file_name
    hostile.parent.mkdir(parents=True, exist_ok=True)
    hostile.write_bytes(gzip.decompress((mongodump_dir / SOURCE / "items.bson.gz").read_bytes()))
    databases = sorted(await mongo.list_database_names())
    done = await asyncio.to_thread(
        run_cli,
        ["--quiet", "restore", "--uri", mongo_uri, "--from", f"file://{mongodump_dir}", "--from-mongodump"],
    )
    assert_one_line_failure(done, EXIT_INTEGRITY, named)
    assert sorted(await mongo.list_database_names()) == databases
