"""One conformance suite, run against every codec."""

import gzip
import os

import pytest

from mongo_backup.engine.compression import CODECS, DEFLATE_BLOCK, codec_for_suffix, get_codec
from mongo_backup.engine.errors import IntegrityError, InvalidInput

DATA = os.urandom(200_000) + b"abc" * 300_000


def _compress(name: str, data: bytes, pieces: int = 7, *, small: bool = False) -> bytes:
    c = get_codec(name).compressor(small=small)
    step = len(data) // pieces + 1
    return b"".join(c.compress(data[i : i + step]) for i in range(0, len(data), step)) + c.flush()


@pytest.mark.parametrize("small", [False, True], ids=["stream", "small"])
@pytest.mark.parametrize("name", sorted(CODECS))
def test_round_trip_in_any_chunking(name: str, small: bool) -> None:
    """A stream known to be small is compressed without worker threads: the same format."""
    packed = _compress(name, DATA, small=small)
    for step in (1000, 65536, len(packed) or 1):
        d = get_codec(name).decompressor("obj")
        out = b"".join(d.decompress(packed[i : i + step]) for i in range(0, len(packed), step))
        d.finish()
        assert out == DATA


@pytest.mark.parametrize("name", ["zstd", "gzip"])
def test_truncated_stream_is_detected(name: str) -> None:
    packed = _compress(name, DATA)
    d = get_codec(name).decompressor("db/c.bson")
    d.decompress(packed[: len(packed) // 2])
    with pytest.raises(IntegrityError, match=r"db/c\.bson: truncated"):
        d.finish()


@pytest.mark.parametrize("name", ["zstd", "gzip"])
def test_garbled_stream_is_detected(name: str) -> None:
    packed = bytearray(_compress(name, DATA))
    packed[4:40] = b"\x00" * 36
    d = get_codec(name).decompressor("obj")
    with pytest.raises(IntegrityError, match="obj"):
        d.decompress(bytes(packed))
        d.finish()


def test_gzip_output_is_plain_gzip_as_mongodump_writes() -> None:
    assert gzip.decompress(_compress("gzip", DATA)) == DATA
    assert get_codec("gzip").suffix == ".gz" and codec_for_suffix("db/c.bson.gz").name == "gzip"


def test_a_large_gzip_stream_is_members_that_any_gzip_reader_reads_whole() -> None:
    """A large gzip stream is deflated in parallel, one gzip member per DEFLATE_BLOCK, in input
    order: exactly the members each block alone makes, whatever the threads did and however
    the input was cut. Python's gzip module (as gunzip and mongorestore) reads them as one
    file, and the size is the one-stream size within 0.1%."""
    data = os.urandom(DEFLATE_BLOCK + 12_345) + b"abc" * DEFLATE_BLOCK + os.urandom(DEFLATE_BLOCK // 3)
    members = [
        _compress("gzip", data[i : i + DEFLATE_BLOCK], small=True) for i in range(0, len(data), DEFLATE_BLOCK)
    ]
    packed = _compress("gzip", data, pieces=11)
    assert len(members) == 5 and packed == b"".join(members)
    assert _compress("gzip", data, pieces=1) == packed
    assert gzip.decompress(packed) == data
    assert len(packed) <= len(_compress("gzip", data, small=True)) * 1.001


def test_an_empty_gzip_stream_is_still_gzip() -> None:
    assert gzip.decompress(get_codec("gzip").compressor().flush()) == b""


def test_levels_are_checked() -> None:
    with pytest.raises(InvalidInput, match="out of range for zstd"):
        get_codec("zstd").compressor(40)
    with pytest.raises(InvalidInput, match="unknown compression 'lz4'"):
        get_codec("lz4")
