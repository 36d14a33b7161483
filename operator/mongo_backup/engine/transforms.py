"""The one transform chain every stored object goes through: compress -> encrypt on write,
decrypt -> decompress on read. Backup, restore, verify and `decrypt` all build their object
writers and readers here, and the manifest records each object's steps (`transforms`).

Steps, in write order (docs/FORMAT.md section 1 and 8): an optional compression (`zstd`,
`gzip`), then an optional `aes-256-gcm-stream`. The object name's suffix follows the steps:
`.bson` + `.zst`/`.gz` + `.enc`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .compression import CODECS, Codec, StreamCompressor, StreamDecompressor, codec_for_suffix
from .encryption import SCHEME, BackupKeys, SegmentOpener, SegmentSealer
from .errors import IntegrityError, KeyRequired

ENCRYPTED_SUFFIX = ".enc"
#: every step a chain may hold, in the only order they may come
STEPS = (*(name for name, codec in CODECS.items() if codec.suffix), SCHEME)


@dataclass(frozen=True)
class Transforms:
    codec: Codec
    encrypted: bool = False

    @property
    def steps(self) -> tuple[str, ...]:
        return ((self.codec.name,) if self.codec.suffix else ()) + ((SCHEME,) if self.encrypted else ())

    @property
    def suffix(self) -> str:
        return self.codec.suffix + (ENCRYPTED_SUFFIX if self.encrypted else "")

    @classmethod
    def from_steps(cls, steps: tuple[str, ...] | list[str]) -> Transforms:
        """The chain of the manifest's `transforms`; ValueError naming what does not fit."""
        codec = CODECS["none"]
        encrypted = False
        for i, step in enumerate(steps):
            if step not in STEPS:
                raise ValueError(f"unknown transform {step!r}: one of {', '.join(STEPS)}")
            if step == SCHEME:
                if encrypted:
                    raise ValueError(f"{SCHEME} is listed twice")
                encrypted = True
            elif encrypted or i > 0:
                raise ValueError("at most one compression, before the encryption")
            else:
                codec = CODECS[step]
        return cls(codec, encrypted)

    @classmethod
    def from_name(cls, name: str) -> Transforms:
        """What a stored name's suffix says (a version-1 manifest, a mongodump directory)."""
        encrypted = name.endswith(ENCRYPTED_SUFFIX)
        base = name.removesuffix(ENCRYPTED_SUFFIX) if encrypted else name
        return cls(codec_for_suffix(base), encrypted)

    def writer(
        self, name: str, level: int | None, keys: BackupKeys | None, *, small: bool = False
    ) -> ObjectWriter:
        """`small`: the whole object is known to be small (compression.Codec.compressor)."""
        if self.encrypted and keys is None:
            raise KeyRequired(f"{name}: an encrypted object needs the backup's keys")
        sealer = keys.sealer(name) if self.encrypted and keys is not None else None
        return ObjectWriter(self.codec.compressor(level, small=small), sealer)

    def reader(self, name: str, where: str, keys: BackupKeys | None) -> ObjectReader:
        if self.encrypted and keys is None:
            raise KeyRequired(f"{where}: encrypted: a key is needed to read it")
        opener = keys.opener(name, where) if self.encrypted and keys is not None else None
        return ObjectReader(opener, self.codec.decompressor(where))


class ObjectWriter:
    """Plain bytes in, stored bytes out; the size and sha256 of what is stored on the way.
    CPU-bound (compression, encryption, hashing release the GIL): call it in a thread."""

    def __init__(self, compressor: StreamCompressor, sealer: SegmentSealer | None) -> None:
        self._compressor = compressor
        self._sealer = sealer
        self._sha = hashlib.sha256()
        self.size = 0

    def _out(self, data: bytes) -> bytes:
        self._sha.update(data)
        self.size += len(data)
        return data

    def update(self, data: bytes) -> bytes:
        out = self._compressor.compress(data)
        if self._sealer is not None:
            out = self._sealer.update(out)
        return self._out(out)

    def finish(self) -> bytes:
        out = self._compressor.flush()
        if self._sealer is not None:
            out = self._sealer.update(out) + self._sealer.flush()
        return self._out(out)

    def whole(self, data: bytes) -> bytes:
        """A small object (metadata) in one call."""
        return self.update(data) + self.finish()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class ObjectReader:
    """Stored bytes in, plain bytes out; the size and sha256 of the stored bytes on the way.
    `finish` raises IntegrityError if any step's stream was cut short."""

    def __init__(self, opener: SegmentOpener | None, decompressor: StreamDecompressor) -> None:
        self._opener = opener
        self._decompressor = decompressor
        self._sha = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> bytes:
        self._sha.update(chunk)
        self.size += len(chunk)
        if self._opener is not None:
            chunk = self._opener.update(chunk)
            if not chunk:
                return b""
        return self._decompressor.decompress(chunk)

    def finish(self) -> bytes:
        tail = b""
        if self._opener is not None:
            last = self._opener.finish()
            if last:
                tail = self._decompressor.decompress(last)
        self._decompressor.finish()
        return tail

    def whole(self, data: bytes) -> bytes:
        return self.update(data) + self.finish()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def check_whole(where: str, reader: ObjectReader, expected_size: int, expected_sha256: str | None) -> None:
    """Size and sha256 of what a reader was fed against the manifest (None: not known)."""
    if expected_sha256 is None:
        return
    if reader.size != expected_size:
        raise IntegrityError(f"{where}: {reader.size} bytes stored, the manifest says {expected_size}")
    if reader.sha256 != expected_sha256:
        raise IntegrityError(f"{where}: sha256 does not match the manifest (corrupt object)")
