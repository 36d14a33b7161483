"""The STREAM encryption of stored objects and the transform chain, without any server:
round trips at every segment boundary, and every way of altering a sealed object fails."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from mongo_backup.engine.compression import CODECS
from mongo_backup.engine.encryption import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    TAG_SIZE,
    BackupKeys,
    LocalKey,
    key_fingerprint,
)
from mongo_backup.engine.envelope import open_backup, seal_new_backup
from mongo_backup.engine.errors import IntegrityError, InvalidInput, KeyRequired, WrongKey
from mongo_backup.engine.transforms import Transforms

KEYS = BackupKeys.from_data_key(b"k" * 32, "a" * 32)
NAME = "db/c.bson.zst.enc"
SEALED = SEGMENT_SIZE + TAG_SIZE


def seal(plain: bytes, keys: BackupKeys = KEYS, name: str = NAME, piece: int = 10_000) -> bytes:
    sealer = keys.sealer(name)
    out = [sealer.update(plain[i : i + piece]) for i in range(0, len(plain), piece)]
    return b"".join(out) + sealer.flush()


def open_(data: bytes, keys: BackupKeys = KEYS, name: str = NAME, piece: int = 7_777) -> bytes:
    opener = keys.opener(name, "where")
    out = [opener.update(data[i : i + piece]) for i in range(0, len(data), piece)]
    return b"".join(out) + opener.finish()


@pytest.mark.parametrize(
    "size", [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE, 3 * SEGMENT_SIZE + 5]
)
@pytest.mark.parametrize("piece", [1, 10_000, SEGMENT_SIZE, SEGMENT_SIZE + 16, 1 << 20])
def test_round_trip_at_every_segment_boundary(size: int, piece: int) -> None:
    """Whatever the sizes of the pieces handed to the sealer and the opener."""
    plain = os.urandom(size)
    sealed = seal(plain, piece=piece if size < 100_000 or piece > 1 else 997)
    segments = max(1, -(-size // SEGMENT_SIZE))
    assert len(sealed) == HEADER_SIZE + size + segments * TAG_SIZE
    assert open_(sealed, piece=piece if size < 100_000 or piece > 1 else 1013) == plain


def test_the_same_plaintext_seals_differently_each_time() -> None:
    assert seal(b"x" * 100) != seal(b"x" * 100)  # a random nonce prefix per object


def _three_segments() -> bytes:
    return seal(os.urandom(2 * SEGMENT_SIZE + 100))


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 1
    return bytes(out)


def _segments(data: bytes) -> tuple[bytes, list[bytes]]:
    body = data[HEADER_SIZE:]
    return data[:HEADER_SIZE], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


def _reordered(data: bytes) -> bytes:
    header, segs = _segments(data)
    return header + segs[1] + segs[0] + segs[2]


def _cut_at_a_segment_boundary(data: bytes) -> bytes:
    header, segs = _segments(data)
    return header + segs[0] + segs[1]


def _last_segment_dropped_and_second_spliced(data: bytes) -> bytes:
    header, segs = _segments(data)
    return header + segs[0] + segs[0] + segs[2]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda d: _flip(d, HEADER_SIZE + 10), id="flipped-byte-first-segment"),
        pytest.param(lambda d: _flip(d, len(d) - 1), id="flipped-tag-last-segment"),
        pytest.param(lambda d: _flip(d, 7), id="flipped-nonce-prefix"),
        pytest.param(lambda d: _flip(d, 0), id="flipped-magic"),
        pytest.param(lambda d: d[:-1], id="truncated-by-one"),
        pytest.param(_cut_at_a_segment_boundary, id="truncated-at-a-segment-boundary"),
        pytest.param(lambda d: d[:HEADER_SIZE], id="header-only"),
        pytest.param(lambda d: d[:5], id="inside-the-header"),
        pytest.param(_reordered, id="segments-reordered"),
        pytest.param(_last_segment_dropped_and_second_spliced, id="segment-repeated"),
        pytest.param(lambda d: d + seal(b"more")[HEADER_SIZE:], id="segment-appended"),
    ],
)
def test_every_alteration_fails_to_open(tamper: object) -> None:
    sealed = _three_segments()
    assert callable(tamper)
    with pytest.raises(IntegrityError):
        open_(tamper(sealed))


def test_an_object_does_not_open_under_another_name_or_backup() -> None:
    sealed = seal(b"documents")
    with pytest.raises(IntegrityError):
        open_(sealed, name="db/other.bson.zst.enc")
    other_backup = BackupKeys.from_data_key(b"k" * 32, "b" * 32)
    with pytest.raises(IntegrityError):
        open_(sealed, keys=other_backup)


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("encrypted", [False, True])
def test_the_chain_round_trips_and_names_its_steps(codec: str, encrypted: bool) -> None:
    chain = Transforms(CODECS[codec], encrypted)
    assert Transforms.from_steps(chain.steps) == chain
    assert Transforms.from_name("db/c.bson" + chain.suffix) == chain
    plain = os.urandom(1000) * 300
    writer = chain.writer(NAME, None, KEYS)
    stored = (
        b"".join(writer.update(plain[i : i + 50_000]) for i in range(0, len(plain), 50_000)) + writer.finish()
    )
    assert writer.size == len(stored)
    reader = chain.reader(NAME, "where", KEYS)
    assert (
        b"".join(reader.update(stored[i : i + 4096]) for i in range(0, len(stored), 4096)) + reader.finish()
        == plain
    )
    assert reader.sha256 == writer.sha256


def test_an_encrypted_chain_needs_keys() -> None:
    with pytest.raises(KeyRequired):
        Transforms(CODECS["zstd"], True).reader(NAME, "where", None)


@pytest.mark.parametrize(
    "steps", [["aes-256-gcm-stream", "zstd"], ["zstd", "gzip"], ["rot13"], ["aes-256-gcm-stream"] * 2]
)
def test_a_chain_out_of_order_is_refused(steps: list[str]) -> None:
    with pytest.raises(ValueError):
        Transforms.from_steps(steps)


def test_a_key_file_is_32_bytes_base64(tmp_path: Path) -> None:
    path = tmp_path / "key"
    key = os.urandom(32)
    path.write_text(base64.b64encode(key).decode() + "\n")
    loaded = LocalKey.from_file(str(path))
    assert loaded.fingerprint == key_fingerprint(key)
    assert key.hex() not in repr(loaded) and base64.b64encode(key).decode() not in repr(loaded)
    path.write_text(base64.b64encode(os.urandom(16)).decode())
    with pytest.raises(InvalidInput, match="16 bytes, expected 32"):
        LocalKey.from_file(str(path))
    path.write_text("not base64 !!")
    with pytest.raises(InvalidInput, match="not base64"):
        LocalKey.from_file(str(path))


def test_the_wrapped_data_key_opens_only_with_its_key() -> None:
    kek = LocalKey(os.urandom(32), "secret:a")
    info, keys = seal_new_backup(kek)
    assert info.key.fingerprint == kek.fingerprint
    other = LocalKey(os.urandom(32), "secret:b")
    wrapped = base64.b64decode(info.wrapped_key)
    with pytest.raises(WrongKey):
        other.unwrap(wrapped, info.backup_id)
    with pytest.raises(WrongKey):  # another backup's manifest: the wrapped key is bound to its id
        kek.unwrap(wrapped, "b" * 32)
    assert BackupKeys.from_data_key(kek.unwrap(wrapped, info.backup_id), info.backup_id) == keys
    assert keys.object_key not in base64.b64decode(info.wrapped_key)


def test_open_backup_without_a_key_names_the_fingerprint() -> None:
    from datetime import UTC, datetime

    from mongo_backup.engine.manifest import BackupManifest

    kek = LocalKey(os.urandom(32), "secret:a")
    info, keys = seal_new_backup(kek)
    now = datetime.now(UTC)
    manifest = BackupManifest(
        format_version=2,
        encryption=info,
        engine_version="t",
        server_version="t",
        started_at=now,
        completed_at=now,
        compression="zstd",
        compression_level=3,
        options={},
        collections=[],
    )
    raw = manifest.to_json(keys)
    parsed = BackupManifest.from_json(raw, "w")
    with pytest.raises(KeyRequired, match=kek.fingerprint):
        open_backup(parsed, raw, None, "w")
    wrong = LocalKey(os.urandom(32), "secret:b")
    with pytest.raises(WrongKey, match=f"{kek.fingerprint}.*{wrong.fingerprint}"):
        open_backup(parsed, raw, wrong, "w")
    assert open_backup(parsed, raw, kek, "w") == keys
