"""A key-encryption key held by Azure Key Vault (docs/FORMAT.md section 8.1): an RSA key that
wraps the data key with RSA-OAEP-256 (wrapkey/unwrapkey), through the official client with
DefaultAzureCredential (Workload Identity, managed identity, the environment), as the Azure
storage backend.

RSA key wrapping has no associated data, so the backup id is bound inside the wrapped bytes:
what is wrapped is `data key || SHA-256(wrap context of the backup id)`, checked on unwrap.
We bind rather than record-and-compare because the check then travels with the ciphertext:
a wrapped key copied into another backup's manifest unwraps, but fails the check there, and
nobody can re-bind it without the Key Vault unwrap permission.

The stored wrapped key starts with the key version that wrapped it (one length byte, then the
version in ASCII) so a backup still unwraps after the key is rotated: unwrap asks that version."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .encryption import KEY_SIZE, KeyEncryptionKey, key_fingerprint, wrap_context
from .errors import InvalidInput, KmsError, KmsUnavailable, WrongKey

#: https://VAULT.vault.azure.net/keys/NAME[/VERSION] (any https host: sovereign clouds, Managed HSM)
KEY_URL = re.compile(r"^(?P<vault>https://[^/\s]+)/keys/(?P<name>[^/\s]+)(?:/(?P<version>[^/\s]*))?/?$")
ALGORITHM = "RSA-OAEP-256"
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def _check(backup_id: str) -> bytes:
    return hashlib.sha256(wrap_context(backup_id)).digest()


class AzureKeyVaultKey(KeyEncryptionKey):
    kind = "azure-keyvault"

    def __init__(self, key_url: str, *, credential: Any = None) -> None:
        match = KEY_URL.match(key_url)
        if not match:
            raise InvalidInput(
                f"Azure Key Vault key {key_url!r}: expected https://VAULT.vault.azure.net/keys/NAME"
            )
        self.key_url = key_url.rstrip("/")
        self._vault, self._name = match["vault"], match["name"]
        self._version = match["version"] or None
        self._credential = credential
        #: the full key id (with its version) of the last wrap, for the manifest's `source`
        self._used: str | None = None

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key_url.encode())

    @property
    def source(self) -> str:
        return f"azure-keyvault:{self._used or self.key_url}"

    def __repr__(self) -> str:
        return f"AzureKeyVaultKey({self.key_url!r})"

    def _crypto(self, version: str | None) -> Any:
        from azure.keyvault.keys.crypto import CryptographyClient

        credential = self._credential
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = self._credential = DefaultAzureCredential()
        url = f"{self._vault}/keys/{self._name}" + (f"/{version}" if version else "")
        return CryptographyClient(url, credential)

    def wrap(self, data_key: bytes, backup_id: str) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        with _kv_errors(f"Azure Key Vault key {self.key_url}: wrapping the data key"):
            answer = self._crypto(self._version).wrap_key(
                KeyWrapAlgorithm(ALGORITHM), data_key + _check(backup_id)
            )
        # the client learns the current version by reading the key (keys/get, which Key Vault
        # Crypto User grants); without it the backup could not be opened after a rotation
        used = KEY_URL.match(str(answer.key_id or ""))
        version = (used["version"] or "").encode() if used else b""
        if not 0 < len(version) < 256:
            raise KmsError(
                f"Azure Key Vault key {self.key_url}: could not tell which key version wrapped the "
                "data key (grant keys/get, e.g. the role Key Vault Crypto User, or give the version)"
            )
        self._used = f"{self._vault}/keys/{self._name}/{version.decode()}"
        return bytes([len(version)]) + version + bytes(answer.encrypted_key)

    def unwrap(self, wrapped: bytes, backup_id: str) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        what = f"Azure Key Vault key {self.key_url}: unwrapping the data key"
        size = wrapped[0] if wrapped else 0
        if not size or len(wrapped) <= 1 + size:
            raise WrongKey(f"{what}: not a data key wrapped by Azure Key Vault")
        version = wrapped[1 : 1 + size].decode("ascii", "replace")
        with _kv_errors(f"{what} (version {version})", wrong_key=True):
            answer = self._crypto(version).unwrap_key(KeyWrapAlgorithm(ALGORITHM), wrapped[1 + size :])
        plain = bytes(answer.key)
        data_key, check = plain[:KEY_SIZE], plain[KEY_SIZE:]
        if len(data_key) != KEY_SIZE or not hmac.compare_digest(check, _check(backup_id)):
            raise WrongKey(f"{what}: it was wrapped for another backup")
        return data_key


@contextmanager
def _kv_errors(what: str, *, wrong_key: bool = False) -> Iterator[None]:
    """azure-core's errors as typed engine errors, naming the key and the HTTP status. Key
    Vault answers an unwrap of another key's ciphertext with 400 (BadParameter)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except ClientAuthenticationError as exc:  # also azure-identity's CredentialUnavailableError
        raise KmsError(f"{what}: {type(exc).__name__} (status {exc.status_code})") from None
    except HttpResponseError as exc:
        status = exc.status_code
        if wrong_key and status == 400:
            raise WrongKey(f"{what}: status 400: not the key that wrapped it") from None
        if status in _RETRYABLE_STATUS:
            raise KmsUnavailable(f"{what}: status {status}") from None
        raise KmsError(f"{what}: {type(exc).__name__} (status {status})") from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise KmsUnavailable(f"{what}: {type(exc).__name__}") from None
    except ValueError as exc:  # the client's own checks (a challenge from another domain, key dates)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KmsError(f"{what}: {detail}") from None
