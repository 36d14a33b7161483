"""Key-encryption keys held by a cloud KMS: the data key of each backup is wrapped by a KMS
call, and the key itself never leaves the KMS (docs/FORMAT.md section 8.1).

AWS KMS through boto3, with the AWS default credential chain (IRSA, instance roles, the
environment); `AWS_ENDPOINT_URL_KMS` or `endpoint` points it at a KMS-compatible service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .encryption import KeyEncryptionKey, key_fingerprint
from .errors import KmsError, KmsUnavailable, WrongKey

#: the encryption context a wrapped data key is bound to (a wrapped key copied into another
#: backup's manifest does not unwrap there)
CONTEXT_KEY = "mongo-backup-backup-id"
_WRONG_KEY_CODES = {"IncorrectKeyException", "InvalidCiphertextException"}
_RETRYABLE_CODES = {"ThrottlingException", "KMSInternalException", "DependencyTimeoutException"}


class AwsKmsKey(KeyEncryptionKey):
    kind = "aws-kms"

    def __init__(self, key_id: str, *, region: str | None = None, endpoint: str | None = None) -> None:
        self.key_id = key_id
        self._region = region
        self._endpoint = endpoint
        self._client: Any = None

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key_id.encode())

    @property
    def source(self) -> str:
        return f"aws-kms:{self.key_id}"

    def __repr__(self) -> str:
        return f"AwsKmsKey({self.key_id!r})"

    def _kms(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.session.Session().client(
                "kms", region_name=self._region, endpoint_url=self._endpoint
            )
        return self._client

    def wrap(self, data_key: bytes, backup_id: str) -> bytes:
        with _kms_errors(f"AWS KMS key {self.key_id}: encrypting the data key"):
            answer = self._kms().encrypt(
                KeyId=self.key_id, Plaintext=data_key, EncryptionContext={CONTEXT_KEY: backup_id}
            )
        return bytes(answer["CiphertextBlob"])

    def unwrap(self, wrapped: bytes, backup_id: str) -> bytes:
        with _kms_errors(f"AWS KMS key {self.key_id}: decrypting the data key"):
            answer = self._kms().decrypt(
                CiphertextBlob=wrapped, KeyId=self.key_id, EncryptionContext={CONTEXT_KEY: backup_id}
            )
        return bytes(answer["Plaintext"])


@contextmanager
def _kms_errors(what: str) -> Iterator[None]:
    """botocore's errors as typed engine errors, naming the key and the KMS's error code."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        if code in _WRONG_KEY_CODES:
            raise WrongKey(f"{what}: {code}: not the key that wrapped it") from None
        if code in _RETRYABLE_CODES:
            raise KmsUnavailable(f"{what}: {code}") from None
        raise KmsError(f"{what}: {code}") from None
    except BotoCoreError as exc:
        raise KmsUnavailable(f"{what}: {type(exc).__name__}") from None
