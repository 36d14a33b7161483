"""A key-encryption key held by Google Cloud KMS (docs/FORMAT.md section 8.1): the data key
is wrapped by KMS `encrypt` with the backup id as additional authenticated data, so a wrapped
key copied into another backup's manifest does not decrypt there.

The official client over its REST transport, with the application default credentials (Workload
Identity, GOOGLE_APPLICATION_CREDENTIALS, gcloud's), as the gs:// backend; `endpoint` points it
at another KMS-compatible endpoint (a plain-http one gets no credentials, as the gs:// backend's
emulators do: tokens are never sent over plain HTTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .encryption import KeyEncryptionKey, key_fingerprint, wrap_context
from .errors import InvalidInput, KmsError, KmsUnavailable, WrongKey

KEY_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")


class GcpKmsKey(KeyEncryptionKey):
    kind = "gcp-kms"

    def __init__(self, key_name: str, *, endpoint: str | None = None) -> None:
        if not KEY_NAME.match(key_name):
            raise InvalidInput(
                f"GCP KMS key {key_name!r}: expected projects/P/locations/L/keyRings/R/cryptoKeys/K"
            )
        self.key_name = key_name
        self._endpoint = endpoint
        self._client: Any = None

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key_name.encode())

    @property
    def source(self) -> str:
        return f"gcp-kms:{self.key_name}"

    def __repr__(self) -> str:
        return f"GcpKmsKey({self.key_name!r})"

    def _kms(self) -> Any:
        if self._client is None:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import kms

            options = {"api_endpoint": self._endpoint} if self._endpoint else None
            plain_http = bool(self._endpoint and self._endpoint.startswith("http://"))
            credentials = AnonymousCredentials() if plain_http else None  # type: ignore[no-untyped-call]
            with _kms_errors(f"GCP KMS key {self.key_name}: connecting"):
                self._client = kms.KeyManagementServiceClient(
                    transport="rest", credentials=credentials, client_options=options
                )
        return self._client

    def wrap(self, data_key: bytes, backup_id: str) -> bytes:
        with _kms_errors(f"GCP KMS key {self.key_name}: encrypting the data key"):
            answer = self._kms().encrypt(
                request={
                    "name": self.key_name,
                    "plaintext": data_key,
                    "additional_authenticated_data": wrap_context(backup_id),
                }
            )
        return bytes(answer.ciphertext)

    def unwrap(self, wrapped: bytes, backup_id: str) -> bytes:
        with _kms_errors(f"GCP KMS key {self.key_name}: decrypting the data key", wrong_key=True):
            answer = self._kms().decrypt(
                request={
                    "name": self.key_name,
                    "ciphertext": wrapped,
                    "additional_authenticated_data": wrap_context(backup_id),
                }
            )
        return bytes(answer.plaintext)


@contextmanager
def _kms_errors(what: str, *, wrong_key: bool = False) -> Iterator[None]:
    """google-api-core's errors as typed engine errors, naming the key and the error's type.
    Cloud KMS answers a ciphertext of another key (or another backup id) with INVALID_ARGUMENT."""
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError, TransportError
    from requests.exceptions import RequestException

    try:
        yield
    except gexc.BadRequest as exc:  # INVALID_ARGUMENT (400; gRPC: InvalidArgument, a subclass)
        if wrong_key:
            raise WrongKey(f"{what}: {type(exc).__name__}: not the key that wrapped it") from None
        raise KmsError(f"{what}: {type(exc).__name__}") from None
    except (
        gexc.ServiceUnavailable,
        gexc.TooManyRequests,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.GatewayTimeout,
        gexc.RetryError,
    ) as exc:
        raise KmsUnavailable(f"{what}: {type(exc).__name__}") from None
    except gexc.GoogleAPIError as exc:  # NotFound, PermissionDenied, FailedPrecondition (disabled)...
        raise KmsError(f"{what}: {type(exc).__name__}") from None
    except DefaultCredentialsError:
        raise KmsError(
            f"{what}: no credentials found (GOOGLE_APPLICATION_CREDENTIALS, Workload Identity, "
            "gcloud's application default credentials)"
        ) from None
    except (TransportError, RequestException) as exc:
        raise KmsUnavailable(f"{what}: {type(exc).__name__}") from None
    except GoogleAuthError as exc:
        raise KmsError(f"{what}: {type(exc).__name__}") from None
