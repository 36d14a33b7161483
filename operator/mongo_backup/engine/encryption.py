"""Encryption at rest: AES-256-GCM in fixed-size segments (the STREAM construction, as age and
Tink use it), one fresh data key per backup, wrapped by a key-encryption key (KEK).
docs/FORMAT.md section 8 is the spec.

An encrypted object is a header (`MAGIC` + a random 7-byte nonce prefix) and segments; each
segment is at most SEGMENT_SIZE bytes of plaintext sealed with the nonce
`prefix || counter (4 bytes, big-endian) || final flag (1 byte)` and the associated data
`backup id || NUL || object name`. So a flipped byte, a cut at any point (the last segment
read must carry the final flag), segments reordered or spliced from another object, and an
object moved to another name or another backup all fail to open.

Keys: the object key and the manifest MAC key are derived (HKDF-SHA256) from the backup's
data key; the data key is stored only wrapped by the KEK (AES-256-GCM under a local key, or
a cloud KMS). Nothing here ever puts a key into a message.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hashlib
import hmac
import os
import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import IntegrityError, InvalidInput, WrongKey

SCHEME = "aes-256-gcm-stream"
#: plaintext bytes per segment (age's size): large enough that per-call overhead vanishes,
#: small enough that a reader holds two segments at most
SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16
MAGIC = b"MBENC\x02"
NONCE_PREFIX_SIZE = 7
HEADER_SIZE = len(MAGIC) + NONCE_PREFIX_SIZE
KEY_SIZE = 32
_COUNTER = struct.Struct(">I")
_MAX_SEGMENTS = 2**32 - 1
_OBJECT_KEY_INFO = b"mongo-backup v2 object key"
_MANIFEST_KEY_INFO = b"mongo-backup v2 manifest key"
_FINGERPRINT_PREFIX = b"mongo-backup key fingerprint\x00"


def key_fingerprint(key: bytes) -> str:
    """Who a key is, shown to users: 16 hex digits of a SHA-256 that reveals nothing of it."""
    return hashlib.sha256(_FINGERPRINT_PREFIX + key).hexdigest()[:16]


def parse_key(text: str | bytes, where: str) -> bytes:
    """A 32-byte key written in base64 (a key file, a Secret's value); InvalidInput naming
    `where` otherwise, never showing the text."""
    raw = text.strip() if isinstance(text, bytes) else text.strip().encode()
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: not base64 (expected 32 random bytes, base64-encoded)") from None
    if len(key) != KEY_SIZE:
        raise InvalidInput(f"{where}: the key is {len(key)} bytes, expected {KEY_SIZE} (base64 of 32 bytes)")
    return key


def wrap_context(backup_id: str) -> bytes:
    """The associated data of a wrapped data key: a wrapped key copied into another backup's
    manifest does not unwrap there."""
    return b"mongo-backup data key\x00" + backup_id.encode()


def _derive(data_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(data_key)


class KeyEncryptionKey(abc.ABC):
    """What wraps a backup's data key: a local key (a Secret, a file) or a cloud KMS key."""

    #: how the manifest names the kind of key: `local`, `aws-kms`, `gcp-kms`, `azure-keyvault`
    kind: str

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Stable, public identity of the key (never the key)."""

    @property
    @abc.abstractmethod
    def source(self) -> str:
        """Where the key comes from, for the manifest and messages: a Secret or file name, a
        KMS key id. Never the key."""

    @abc.abstractmethod
    def wrap(self, data_key: bytes, backup_id: str) -> bytes:
        """The data key of backup `backup_id`, wrapped so that it unwraps only as that backup's.
        Blocking (a KMS is a network call): run it in a thread."""

    @abc.abstractmethod
    def unwrap(self, wrapped: bytes, backup_id: str) -> bytes:
        """The data key; WrongKey when this KEK did not wrap it (for this backup)."""


class LocalKey(KeyEncryptionKey):
    """A 32-byte KEK held by the user (a Secret, a file): wraps with AES-256-GCM."""

    kind = "local"

    def __init__(self, key: bytes, source: str) -> None:
        if len(key) != KEY_SIZE:
            raise InvalidInput(f"{source}: the key is {len(key)} bytes, expected {KEY_SIZE}")
        self._aead = AESGCM(key)
        self._fingerprint = key_fingerprint(key)
        self._source = source

    @classmethod
    def from_file(cls, path: str) -> LocalKey:
        try:
            with open(path, "rb") as f:
                text = f.read(4096)
        except OSError as exc:
            raise InvalidInput(f"key file {path}: {exc.strerror or exc}") from None
        return cls(parse_key(text, f"key file {path}"), f"file:{os.path.basename(path)}")

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def source(self) -> str:
        return self._source

    def __repr__(self) -> str:  # never the key
        return f"LocalKey(fingerprint={self._fingerprint}, source={self._source!r})"

    def wrap(self, data_key: bytes, backup_id: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, data_key, wrap_context(backup_id))

    def unwrap(self, wrapped: bytes, backup_id: str) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], wrap_context(backup_id))
        except (InvalidTag, ValueError):
            raise WrongKey(f"key {self._fingerprint} does not open the data key") from None


@dataclass(frozen=True)
class BackupKeys:
    """The keys of one backup, derived from its data key, and its identity (bound into every
    object's associated data)."""

    backup_id: str
    object_key: bytes
    manifest_key: bytes

    @classmethod
    def from_data_key(cls, data_key: bytes, backup_id: str) -> BackupKeys:
        return cls(backup_id, _derive(data_key, _OBJECT_KEY_INFO), _derive(data_key, _MANIFEST_KEY_INFO))

    def __repr__(self) -> str:  # never the keys
        return f"BackupKeys(backup_id={self.backup_id!r})"

    def associated_data(self, name: str) -> bytes:
        return self.backup_id.encode() + b"\x00" + name.encode()

    def sealer(self, name: str) -> SegmentSealer:
        return SegmentSealer(self.object_key, self.associated_data(name))

    def opener(self, name: str, where: str) -> SegmentOpener:
        return SegmentOpener(self.object_key, self.associated_data(name), where)

    def mac(self, canonical: bytes) -> str:
        return hmac.new(self.manifest_key, canonical, hashlib.sha256).hexdigest()


def new_data_key() -> bytes:
    return secrets.token_bytes(KEY_SIZE)


def new_backup_id() -> str:
    return secrets.token_hex(16)


def _nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    return prefix + _COUNTER.pack(counter) + (b"\x01" if final else b"\x00")


class SegmentSealer:
    """Plaintext in, sealed segments out, streaming. The header comes with the first output;
    a segment is sealed only once more plaintext follows it (the last one carries the final
    flag, so it is sealed in `flush`)."""

    def __init__(self, key: bytes, associated_data: bytes) -> None:
        self._aead = AESGCM(key)
        self._ad = associated_data
        self._prefix = secrets.token_bytes(NONCE_PREFIX_SIZE)
        self._counter = 0
        self._pending = bytearray()
        self._header_sent = False

    def _header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return MAGIC + self._prefix

    def _seal(self, plain: bytes | bytearray | memoryview, final: bool) -> bytes:
        if self._counter > _MAX_SEGMENTS:
            raise IntegrityError("object too large to encrypt (2^32 segments)")
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, final), plain, self._ad)
        self._counter += 1
        return sealed

    def update(self, data: bytes) -> bytes:
        # sealed straight from the caller's buffer: only a tail shorter than a segment is
        # copied aside (copying whole chunks measured 3x slower for 4 MiB ones)
        out = [self._header()]
        view = memoryview(data)
        pos = 0
        if self._pending:
            need = SEGMENT_SIZE - len(self._pending)
            if len(data) <= need:
                self._pending += data
                return out[0]
            self._pending += view[:need]
            pos = need
            out.append(self._seal(self._pending, final=False))  # more follows: not the last
            self._pending = bytearray()
        # keep at least one byte back: the final segment is never empty unless the object is
        while len(data) - pos > SEGMENT_SIZE:
            out.append(self._seal(view[pos : pos + SEGMENT_SIZE], final=False))
            pos += SEGMENT_SIZE
        self._pending += view[pos:]
        return b"".join(out)

    def flush(self) -> bytes:
        out = self._header() + self._seal(self._pending, final=True)
        self._pending = bytearray()
        return out


class SegmentOpener:
    """Sealed bytes in, plaintext out, streaming: one segment is held back until the next
    byte arrives (only the end of the stream says which segment is the last)."""

    _SEALED = SEGMENT_SIZE + TAG_SIZE

    def __init__(self, key: bytes, associated_data: bytes, where: str) -> None:
        self._aead = AESGCM(key)
        self._ad = associated_data
        self._where = where
        self._prefix: bytes | None = None
        self._counter = 0
        self._pending = bytearray()

    def _open(self, sealed: bytes | bytearray | memoryview, final: bool) -> bytes:
        assert self._prefix is not None
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, self._counter, final), sealed, self._ad)
        except InvalidTag:
            what = "the last segment" if final else f"segment {self._counter}"
            raise IntegrityError(
                f"{self._where}: {what} fails authentication (altered, truncated, reordered, or "
                "not this object of this backup)"
            ) from None
        self._counter += 1
        return plain

    def update(self, data: bytes) -> bytes:
        view = memoryview(data)
        pos = 0
        if self._prefix is None:
            take = min(len(data), HEADER_SIZE - len(self._pending))
            self._pending += view[:take]
            pos = take
            if len(self._pending) < HEADER_SIZE:
                return b""
            if bytes(self._pending[: len(MAGIC)]) != MAGIC:
                raise IntegrityError(f"{self._where}: not an encrypted object of this format (bad header)")
            self._prefix = bytes(self._pending[len(MAGIC) :])
            self._pending = bytearray()
        out = []
        if self._pending:
            need = self._SEALED - len(self._pending)
            if len(data) - pos <= need:
                self._pending += view[pos:]
                return b""
            self._pending += view[pos : pos + need]
            pos += need
            out.append(self._open(self._pending, final=False))  # more follows: not the last
            self._pending = bytearray()
        while len(data) - pos > self._SEALED:
            out.append(self._open(view[pos : pos + self._SEALED], final=False))
            pos += self._SEALED
        self._pending += view[pos:]
        return b"".join(out)

    def finish(self) -> bytes:
        """The last segment's plaintext; IntegrityError if the stream was cut short."""
        if self._prefix is None or len(self._pending) < TAG_SIZE:
            raise IntegrityError(f"{self._where}: truncated: the encrypted stream ends early")
        out = self._open(self._pending, final=True)
        self._pending = bytearray()
        return out
