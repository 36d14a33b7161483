"""Compressors: one small interface, one implementation per codec.

Every codec streams: `compress` may hold data back, `flush` returns the rest. File suffixes
are part of the format: `.zst`, `.gz` (exactly mongodump --gzip's), or none.
"""

from __future__ import annotations

import abc
import os
import threading
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import zstandard

from .errors import IntegrityError, InvalidInput


class StreamCompressor(abc.ABC):
    @abc.abstractmethod
    def compress(self, data: bytes) -> bytes: ...

    @abc.abstractmethod
    def flush(self) -> bytes: ...


class StreamDecompressor(abc.ABC):
    @abc.abstractmethod
    def decompress(self, data: bytes) -> bytes: ...

    @abc.abstractmethod
    def finish(self) -> None:
        """Raise IntegrityError if the compressed stream was cut short."""


@dataclass(frozen=True)
class Codec:
    name: str
    suffix: str
    default_level: int | None
    levels: tuple[int, int] | None

    def compressor(self, level: int | None = None, *, small: bool = False) -> StreamCompressor:
        """`small`: the whole stream is known to be small, so it is compressed on the calling
        thread (the output is the same format either way)."""
        level = self.default_level if level is None else level
        if self.levels and level is not None and not self.levels[0] <= level <= self.levels[1]:
            lo, hi = self.levels
            raise InvalidInput(f"compression level {level} is out of range for {self.name} ({lo}..{hi})")
        if self.name == "zstd":
            return _ZstdCompressor(level or 3, threads=0 if small else min(2, os.cpu_count() or 1))
        if self.name == "gzip":
            # the same bytes on every machine: the member layout does not depend on its cores
            return _GzipCompressor(level or 6) if small else _ParallelGzipCompressor(level or 6)
        return _Identity()

    def decompressor(self, where: str) -> StreamDecompressor:
        if self.name == "zstd":
            return _ZstdDecompressor(where)
        if self.name == "gzip":
            return _GzipDecompressor(where)
        return _IdentityDecompressor()


CODECS: dict[str, Codec] = {
    "zstd": Codec("zstd", ".zst", 3, (1, 22)),
    "gzip": Codec("gzip", ".gz", 6, (1, 9)),
    "none": Codec("none", "", None, None),
}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise InvalidInput(f"unknown compression {name!r}: use one of {', '.join(CODECS)}") from None


def codec_for_suffix(filename: str) -> Codec:
    for codec in CODECS.values():
        if codec.suffix and filename.endswith(codec.suffix):
            return codec
    return CODECS["none"]


class _ZstdCompressor(StreamCompressor):
    def __init__(self, level: int, threads: int) -> None:
        # Two workers keep pace with a raw BSON stream on a small node. 1 MiB jobs instead of
        # zstd's default (several MiB per worker, buffered twice) keep each compressor's memory
        # at a few MB instead of ~50 MB, and measured faster on 2 cores. Workers cost CPU to
        # start and to feed: a small stream is compressed without them (threads=0).
        params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads, job_size=1 << 20)
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._obj.compress(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._obj.flush()
        return out


class _ZstdDecompressor(StreamDecompressor):
    def __init__(self, where: str) -> None:
        self._where = where
        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._seen = False

    def decompress(self, data: bytes) -> bytes:
        self._seen = True
        try:
            out: bytes = self._obj.decompress(data)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{self._where}: corrupt zstd data ({exc})") from None
        return out

    def finish(self) -> None:
        # decompressobj reports eof once a whole frame has been read
        if self._seen and not self._obj.eof:
            raise IntegrityError(f"{self._where}: truncated: the zstd stream ends early")


class _GzipCompressor(StreamCompressor):
    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


#: the input of one gzip member of _ParallelGzipCompressor: large enough that starting each
#: member without the previous one's history costs <0.1% of size, small enough to spread
DEFLATE_BLOCK = 1 << 20
#: the most input handed to zlib at once when inflating
INFLATE_SLICE = 256 * 1024
_deflate_pool: ThreadPoolExecutor | None = None
_deflate_pool_lock = threading.Lock()


def _deflate_threads() -> int:
    return min(4, os.cpu_count() or 1)


def _deflate_executor() -> ThreadPoolExecutor:
    """One pool for every gzip stream of the process: deflate is CPU-bound, so more threads
    than cores would only queue, whatever the number of collections compressed at once."""
    global _deflate_pool
    with _deflate_pool_lock:
        if _deflate_pool is None:
            _deflate_pool = ThreadPoolExecutor(_deflate_threads(), thread_name_prefix="deflate")
        return _deflate_pool


def _gzip_member(block: bytes, level: int) -> bytes:
    member = _GzipCompressor(level)  # zlib releases the GIL while it deflates
    return member.compress(block) + member.flush()


class _ParallelGzipCompressor(StreamCompressor):
    """pigz's idea, simplified: the stream is cut into DEFLATE_BLOCK pieces, each deflated into
    a gzip member of its own on the shared pool's threads. Concatenated members are one gzip
    file (RFC 1952, 2.2): gunzip, Go's reader (mongorestore) and ours read it whole. Deflate
    runs at ~30 MB/s per core here, a third of what SecantusDB serves on one collection
    (BENCHMARKS.md run V); mongodump --gzip deflates each collection on one thread. The output
    depends on the input alone, never on the threads' timing. `compress` waits for the oldest
    member once `_window` are in flight (the memory bound): the engine calls it in a worker
    thread for batches over backup.INLINE_BYTES, so the event loop waits at most for one
    member of a small batch, and only when the pool is that far behind."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._pool = _deflate_executor()
        self._buffer = bytearray()
        self._pending: deque[Future[bytes]] = deque()
        #: blocks in flight before compress() waits for the oldest: the memory bound
        self._window = _deflate_threads() + 1
        self._members = 0

    def _submit(self, block: bytes) -> None:
        self._pending.append(self._pool.submit(_gzip_member, block, self._level))
        self._members += 1

    def _collect(self, wait_beyond: int) -> bytes:
        out: list[bytes] = []
        while self._pending and (self._pending[0].done() or len(self._pending) > wait_beyond):
            out.append(self._pending.popleft().result())
        return b"".join(out)

    def compress(self, data: bytes) -> bytes:
        self._buffer += data
        while len(self._buffer) >= DEFLATE_BLOCK:
            self._submit(bytes(self._buffer[:DEFLATE_BLOCK]))
            del self._buffer[:DEFLATE_BLOCK]
        return self._collect(wait_beyond=self._window)

    def flush(self) -> bytes:
        if self._buffer or not self._members:  # an empty stream is still one (empty) member
            self._submit(bytes(self._buffer))
            self._buffer = bytearray()
        return self._collect(wait_beyond=0)


class _GzipDecompressor(StreamDecompressor):
    def __init__(self, where: str) -> None:
        self._where = where
        self._obj = zlib.decompressobj(31)
        self._seen = False

    def decompress(self, data: bytes) -> bytes:
        self._seen = True
        out: list[bytes] = []
        view = memoryview(data)
        try:
            # in slices: at each member's end zlib copies the rest of its input (unused_data),
            # which over a whole object of 1 MiB members would be quadratic
            for start in range(0, len(view), INFLATE_SLICE):
                out.append(self._obj.decompress(view[start : start + INFLATE_SLICE]))
                while self._obj.eof and self._obj.unused_data:
                    # concatenated gzip members are valid gzip
                    rest = self._obj.unused_data
                    self._obj = zlib.decompressobj(31)
                    out.append(self._obj.decompress(rest))
        except zlib.error as exc:
            raise IntegrityError(f"{self._where}: corrupt gzip data ({exc})") from None
        return b"".join(out)

    def finish(self) -> None:
        if self._seen and not self._obj.eof:
            raise IntegrityError(f"{self._where}: truncated: the gzip stream ends early")


class _Identity(StreamCompressor):
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _IdentityDecompressor(StreamDecompressor):
    def decompress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> None:
        return None
