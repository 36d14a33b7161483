"""Ed25519 manifest signatures: keys in every accepted form, and what a bad one says."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mongo_backup.engine.errors import InvalidInput, ManifestTampered
from mongo_backup.engine.signing import SignatureChecker, Signer, public_fingerprint

PRIVATE = Ed25519PrivateKey.generate()
SEED = PRIVATE.private_bytes(
    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
)
PUBLIC = PRIVATE.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
PEM_PRIVATE = PRIVATE.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
PEM_PUBLIC = PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


@pytest.mark.parametrize("text", [PEM_PRIVATE, base64.b64encode(SEED)], ids=["pem", "base64-seed"])
def test_a_signer_from_pem_or_seed(text: bytes) -> None:
    signer = Signer.from_text(text, "w", "s")
    assert signer.fingerprint == public_fingerprint(PRIVATE.public_key())
    assert base64.b64encode(SEED).decode() not in repr(signer)


@pytest.mark.parametrize(
    "text", [PEM_PUBLIC, base64.b64encode(PUBLIC), PEM_PRIVATE], ids=["pem", "base64", "private-pem"]
)
def test_a_checker_from_any_form_verifies(text: bytes) -> None:
    signature = Signer(PRIVATE, "s").sign(b"canonical")
    checker = SignatureChecker.from_text(text, "w")
    checker.check(signature, b"canonical", "w")
    with pytest.raises(ManifestTampered, match="does not match"):
        checker.check(signature, b"canonical!", "w")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"not a key", "neither PEM nor base64"),
        (base64.b64encode(b"x" * 16), "16 bytes"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "not a readable PEM key"),
    ],
)
def test_a_bad_key_is_one_clear_error(text: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Signer.from_text(text, "Secret x", "s")


def test_a_public_key_cannot_sign() -> None:
    with pytest.raises(InvalidInput, match="cannot sign"):
        Signer.from_text(PEM_PUBLIC, "w", "s")
