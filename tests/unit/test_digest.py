import random

import bson
import pytest

from mongo_backup.engine.digest import BsonFramer, ContentDigest
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
    with pytest.raises(IntegrityError, match="where: malformed"):
        ContentDigest().update_batch(b"\xff\x00\x00\x00\x00", "where")


def test_framer_reassembles_documents_across_any_chunking() -> None:
    stream = b"".join(_docs(200))
    for size in (1, 3, 7, 64, 1000, len(stream)):
        framer = BsonFramer("obj")
        out = b"".join(framer.feed(stream[i : i + size]) for i in range(0, len(stream), size))
        framer.finish()
        assert out == stream
    cut: list[bytes] = []
    ContentDigest().documents_of(stream, "obj", cut)
    assert cut == _docs(200)


def test_framer_reports_truncation_with_the_object_name() -> None:
    stream = b"".join(_docs(3))
    framer = BsonFramer("db/coll.bson.zst")
    framer.feed(stream[:-2])
    with pytest.raises(IntegrityError, match=r"db/coll.bson.zst: truncated"):
        framer.finish()


def test_framer_reports_garbage_with_the_offset() -> None:
    framer = BsonFramer("obj")
    with pytest.raises(IntegrityError, match="malformed BSON stream at byte 0"):
        framer.feed(b"\x02\x00\x00\x00garbage")
