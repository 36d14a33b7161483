import random
from hashlib import blake2b

import bson
import pytest
import xxhash

from mongo_backup.engine import digest
from mongo_backup.engine.digest import BLAKE2B, XXH3, ContentDigest, DocumentStream, digest_algorithm
from mongo_backup.engine.errors import IntegrityError


def _docs(n: int) -> list[bytes]:
    return [bson.encode({"_id": i, "v": "x" * (i % 17)}) for i in range(n)]


def test_digest_ignores_order_but_not_content_or_duplicates() -> None:
    docs = _docs(50)
    a, b, c, d = ContentDigest(), ContentDigest(), ContentDigest(), ContentDigest()
    a.update_batch(b"".join(docs), "t")
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    b.update_batch(b"".join(shuffled[:20]), "t")
    b.update_batch(b"".join(shuffled[20:]), "t")
    assert a.hexdigest() == b.hexdigest() and a.documents == b.documents == 50
    c.update_batch(b"".join([*docs[:-1], bson.encode({"_id": 49, "v": "changed"})]), "t")
    assert c.hexdigest() != a.hexdigest()
    d.update_batch(b"".join([*docs, docs[0], docs[0]]), "t")  # XOR would cancel these two
    assert d.hexdigest() != a.hexdigest()


def test_digest_rejects_bad_framing() -> None:
    with pytest.raises(IntegrityError, match=r"where: malformed BSON document at byte 0 \(document size 2\)"):
        ContentDigest().update_batch(b"\x02\x00\x00\x00\x00", "where")
    with pytest.raises(IntegrityError, match="where: truncated BSON document at byte 0"):
        ContentDigest().update_batch(b"\xff\x00\x00\x00\x00", "where")


def test_stream_reassembles_documents_across_any_chunking() -> None:
    docs = _docs(200)
    stream = b"".join(docs)
    whole = ContentDigest()
    whole.update_batch(stream, "obj")
    for size in (1, 3, 7, 64, 1000, len(stream)):
        reassembled = DocumentStream("obj", ContentDigest())
        out: list[bytes] = []
        fed = sum(reassembled.feed(stream[i : i + size], out) for i in range(0, len(stream), size))
        reassembled.finish()
        assert out == docs and fed == len(stream)
        assert reassembled.digest.hexdigest() == whole.hexdigest() and reassembled.digest.documents == 200


def test_stream_reports_truncation_with_the_object_name() -> None:
    stream = b"".join(_docs(3))
    documents = DocumentStream("db/coll.bson.zst", ContentDigest())
    documents.feed(stream[:-2])
    with pytest.raises(
        IntegrityError, match=r"db/coll.bson.zst: truncated: the stream ends inside a document at byte"
    ):
        documents.finish()


def test_stream_reports_garbage_with_the_offset() -> None:
    first = _docs(1)[0]
    for garbage in (b"\x02\x00\x00\x00garbage", (2**30).to_bytes(4, "little") + b"rest"):
        documents = DocumentStream("obj", ContentDigest())
        with pytest.raises(
            IntegrityError, match=f"obj: malformed BSON document at byte {len(first)} .document size"
        ):
            documents.feed(first + garbage[:3])  # not yet known to be garbage: kept as the tail
            documents.feed(garbage[3:])


def _by_the_format(docs: list[bytes]) -> str:
    """FORMAT.md section 4, version 3, from its text alone."""
    return "xxh3sum128:" + format(sum(map(xxhash.xxh3_128_intdigest, docs)) % (1 << 128), "032x")


def _random_documents(rng: random.Random, n: int) -> list[bytes]:
    return [
        bson.encode({"_id": i, "s": "é" * rng.randint(0, 300), "b": rng.randbytes(rng.randint(0, 64))})
        for i in range(n)
    ]


def test_the_c_walk_is_built() -> None:
    # CI must measure and test what users run; a wheel built without a C compiler falls back
    assert digest.NATIVE, "engine/_bson_walk.c was not built: pip install needs a C compiler"


def test_a_backup_digest_is_the_formats_xxh3_sum() -> None:
    docs = _random_documents(random.Random(7), 500)
    found = ContentDigest()
    found.update_batch(b"".join(docs[:123]), "t")
    found.update_batch(memoryview(b"".join(docs[123:])), "t")
    assert found.algorithm == XXH3
    assert found.hexdigest() == _by_the_format(docs)
    assert ContentDigest().hexdigest() == "xxh3sum128:" + "0" * 32


def test_the_blake2b_digest_of_versions_1_and_2_is_still_computed() -> None:
    docs = _random_documents(random.Random(8), 200)
    found = ContentDigest(BLAKE2B)
    found.update_batch(bytearray(b"".join(docs)), "t")
    total = sum(int.from_bytes(blake2b(d, digest_size=16).digest(), "little") for d in docs)
    assert found.hexdigest() == "b2sum128:" + format(total % (1 << 128), "032x")
    assert digest_algorithm(found.hexdigest()) == BLAKE2B
    assert digest_algorithm("xxh3sum128:" + "0" * 32) == digest_algorithm(None) == XXH3


def _mangled(rng: random.Random) -> bytes:
    docs = _random_documents(rng, rng.randint(0, 6))
    buf = bytearray(b"".join(docs))
    how = rng.randrange(5)
    if how == 0 and buf:  # cut anywhere
        del buf[rng.randrange(len(buf)) :]
    elif how == 1 and buf:  # a length that runs past the end, or is negative, or too small
        at = rng.choice([0, len(docs[0])]) if len(docs) > 1 else 0
        buf[at : at + 4] = rng.choice([2**31 - 1, -1, 0, 4, len(buf) + 1]).to_bytes(4, "little", signed=True)
    elif how == 2 and buf:  # a missing terminator
        buf[len(docs[0]) - 1] = 1
    elif how == 3:  # trailing garbage shorter than a document
        buf += rng.randbytes(rng.randint(1, 4))
    return bytes(buf)


def test_the_c_walk_and_the_python_walk_agree_on_any_input() -> None:
    """The Python walk is what a build without a compiler runs: same digests, same stops."""
    in_python = digest._walk_in_python(xxhash.xxh3_128_intdigest)

    def walked(walk: digest.Walk, buf: bytes, out: list[bytes] | None) -> tuple[int, int, int]:
        total, count, end = walk(buf, out)
        return total % (1 << 128), count, end

    rng = random.Random(10)
    for _ in range(2000):
        buf = _mangled(rng)
        c_docs: list[bytes] = []
        py_docs: list[bytes] = []
        in_c = walked(digest._walk_xxh3_in_c, buf, c_docs)
        assert in_c == walked(in_python, buf, py_docs) == walked(digest._walk_xxh3_in_c, buf, None)
        assert c_docs == py_docs
    big = bson.encode({"b": b"x" * (16 * 1024 * 1024)})
    assert walked(digest._walk_xxh3_in_c, big, None) == walked(in_python, big, None)


def test_a_malformed_document_is_named_with_its_offset_in_both_walks() -> None:
    docs = _docs(3)
    stream = b"".join(docs)
    for algorithm in (XXH3, BLAKE2B):
        found = ContentDigest(algorithm)
        found.update_batch(stream, "t")
        with pytest.raises(
            IntegrityError, match=f"coll: truncated BSON document at byte {len(stream) + len(docs[0])}"
        ):
            found.update_batch(docs[0] + b"\x10\x00", "coll")
        bad = bytearray(stream)
        bad[len(docs[0]) - 1] = 7  # the first document's terminator
        with pytest.raises(IntegrityError, match=f"coll: malformed BSON document at byte {len(stream)}"):
            found.update_batch(bytes(bad), "coll")
        assert found.documents == 3  # a refused batch adds nothing
