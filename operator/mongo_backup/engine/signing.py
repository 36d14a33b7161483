"""Optional Ed25519 signatures of manifests (docs/FORMAT.md section 8.5): a backup signed with
the user's private key is accepted by a reader holding the public key only if nobody changed
its manifest since, and the manifest pins every stored byte (sizes and SHA-256).

Keys are read as PEM (`openssl genpkey -algorithm ed25519`, `openssl pkey -pubout`) or as the
raw 32 bytes in base64. A private key also serves where a public one is asked for."""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import InvalidInput, ManifestTampered

ALGORITHM = "ed25519"
_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw


def public_fingerprint(public: Ed25519PublicKey) -> str:
    """16 hex digits of the SHA-256 of the raw public key: who signed."""
    return hashlib.sha256(public.public_bytes(_RAW, _RAW_PUBLIC)).hexdigest()[:16]


def _load(text: bytes, where: str) -> Ed25519PrivateKey | Ed25519PublicKey:
    text = text.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            if b"PRIVATE KEY" in text.split(b"\n", 1)[0]:
                key: object = serialization.load_pem_private_key(text, password=None)
            else:
                key = serialization.load_pem_public_key(text)
        except (ValueError, TypeError):
            raise InvalidInput(f"{where}: not a readable PEM key (unencrypted Ed25519 expected)") from None
        if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
            raise InvalidInput(f"{where}: not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: neither PEM nor base64 (an Ed25519 key expected)") from None
    if len(raw) != 32:
        raise InvalidInput(f"{where}: {len(raw)} bytes, expected a 32-byte Ed25519 key (base64) or PEM")
    # 32 raw bytes: a private seed in a signing key's place, a public key in a verifying one's
    return Ed25519PrivateKey.from_private_bytes(raw)


class Signer:
    """Signs manifests with an Ed25519 private key; never shows the key."""

    def __init__(self, key: Ed25519PrivateKey, source: str) -> None:
        self._key = key
        self.source = source
        self.fingerprint = public_fingerprint(key.public_key())

    @classmethod
    def from_text(cls, text: str | bytes, where: str, source: str) -> Signer:
        key = _load(text.encode() if isinstance(text, str) else text, where)
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput(f"{where}: a public key cannot sign: give the private key")
        return cls(key, source)

    @classmethod
    def from_file(cls, path: str) -> Signer:
        return cls.from_text(_read(path), f"signing key file {path}", f"file:{path.rsplit('/', 1)[-1]}")

    def __repr__(self) -> str:
        return f"Signer(fingerprint={self.fingerprint})"

    def sign(self, canonical: bytes) -> dict[str, str]:
        value = base64.b64encode(self._key.sign(canonical)).decode()
        return {"type": ALGORITHM, "publicKeyFingerprint": self.fingerprint, "value": value}


class SignatureChecker:
    """Checks manifest signatures against one Ed25519 public key."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.fingerprint = public_fingerprint(key)

    @classmethod
    def from_text(cls, text: str | bytes, where: str, *, raw_is_public: bool = True) -> SignatureChecker:
        data = text.encode() if isinstance(text, str) else text
        if not data.strip().startswith(b"-----BEGIN") and raw_is_public:
            try:
                raw = base64.b64decode(data.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(f"{where}: neither PEM nor base64 (an Ed25519 key expected)") from None
            if len(raw) != 32:
                raise InvalidInput(f"{where}: {len(raw)} bytes, expected a 32-byte Ed25519 public key")
            return cls(Ed25519PublicKey.from_public_bytes(raw))
        key = _load(data, where)
        return cls(key.public_key() if isinstance(key, Ed25519PrivateKey) else key)

    @classmethod
    def from_file(cls, path: str) -> SignatureChecker:
        return cls.from_text(_read(path), f"public key file {path}")

    def check(self, signature: dict[str, str] | None, canonical: bytes, where: str) -> None:
        """ManifestTampered unless `signature` is this key's valid signature of `canonical`."""
        if signature is None:
            raise ManifestTampered(
                f"{where}: the manifest is not signed, but a public key ({self.fingerprint}) was given"
            )
        signer = signature.get("publicKeyFingerprint")
        if signer != self.fingerprint:
            raise ManifestTampered(
                f"{where}: the manifest is signed by key {signer}, not by the expected key {self.fingerprint}"
            )
        try:
            self._key.verify(base64.b64decode(signature.get("value", "")), canonical)
        except (InvalidSignature, binascii.Error, ValueError):
            raise ManifestTampered(
                f"{where}: the manifest's signature by key {self.fingerprint} does not match its content: "
                "it was edited after it was signed"
            ) from None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(16384)
    except OSError as exc:
        raise InvalidInput(f"key file {path}: {exc.strerror or exc}") from None
