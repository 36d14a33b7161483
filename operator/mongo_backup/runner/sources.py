"""Resolving what a spec points to: the MongoDB URI and the storage credentials live in
Secrets; they are read at the start of each attempt and never logged or written anywhere."""

from __future__ import annotations

from ..api.common import (
    AZURE_ACCOUNT_KEY_KEY,
    AZURE_CONNECTION_STRING_KEY,
    AZURE_SAS_TOKEN_KEY,
    GCS_CREDENTIALS_KEY,
    S3_ACCESS_KEY_ID_KEY,
    S3_SECRET_ACCESS_KEY_KEY,
    S3_SESSION_TOKEN_KEY,
    EncryptionSpec,
    SecretKeyRef,
    SigningSpec,
    StorageSpec,
)
from ..engine.azure_keyvault import AzureKeyVaultKey
from ..engine.encryption import KeyEncryptionKey, LocalKey, parse_key
from ..engine.errors import InvalidInput
from ..engine.gcp_kms import GcpKmsKey
from ..engine.kms import AwsKmsKey
from ..engine.signing import SignatureChecker, Signer
from ..redact import register_secret, register_uri
from ..storage import StorageSettings
from .cluster import ObjectLink, SecretUnavailable
from .failures import Failure

_CREDENTIAL_KEYS = {
    "gcs": (GCS_CREDENTIALS_KEY,),
    "s3": (S3_ACCESS_KEY_ID_KEY, S3_SECRET_ACCESS_KEY_KEY, S3_SESSION_TOKEN_KEY),
    "azure": (AZURE_CONNECTION_STRING_KEY, AZURE_ACCOUNT_KEY_KEY, AZURE_SAS_TOKEN_KEY),
}


async def mongo_uri(link: ObjectLink, ref: SecretKeyRef) -> str:
    uri = (await link.read_secret_key(ref.name, ref.key)).strip()
    register_uri(uri)  # masked in status, events and logs from here on
    if not uri:
        raise SecretUnavailable(
            "SecretKeyNotFound", f"key {ref.key!r} of Secret {link.namespace}/{ref.name} is empty"
        )
    return uri


async def storage_settings(link: ObjectLink, spec: StorageSpec) -> StorageSettings:
    """Backend options of the spec, with the credentials of its Secret (when it names one)."""
    credentials: dict[str, str] = {}
    ref = spec.credentials_secret_ref
    if ref is not None:
        data = await link.read_secret(ref.name)
        wanted = _CREDENTIAL_KEYS[spec.backend]
        credentials = {key: data[key] for key in wanted if data.get(key)}
        for value in credentials.values():
            register_secret(value)
        if not credentials:
            raise SecretUnavailable(
                "SecretKeyNotFound",
                f"Secret {link.namespace}/{ref.name} has none of the keys {', '.join(wanted)}",
            )
    if spec.s3 is not None:
        return StorageSettings(
            s3_endpoint=spec.s3.endpoint,
            s3_region=spec.s3.region,
            s3_force_path_style=spec.s3.force_path_style,
            s3_server_side_encryption=spec.s3.server_side_encryption,
            s3_kms_key_id=spec.s3.kms_key_id,
            s3_storage_class=spec.s3.storage_class,
            credentials=credentials,
        )
    if spec.azure is not None:
        return StorageSettings(azure_account_url=spec.azure.account_url, credentials=credentials)
    return StorageSettings(credentials=credentials)


async def encryption_key(link: ObjectLink, spec: EncryptionSpec | None) -> KeyEncryptionKey | None:
    """The key-encryption key the spec names (None: no encryption). Its text is masked from
    here on; a value that is not 32 bytes of base64 fails the run, naming the Secret's key."""
    if spec is None:
        return None
    if spec.aws_kms is not None:
        kms = spec.aws_kms
        return AwsKmsKey(kms.key_id, region=kms.region, endpoint=kms.endpoint)
    if spec.gcp_kms is not None:
        return GcpKmsKey(spec.gcp_kms.key_name, endpoint=spec.gcp_kms.endpoint)
    if spec.azure_key_vault is not None:
        return AzureKeyVaultKey(spec.azure_key_vault.key_url)
    ref = spec.key_secret_ref
    assert ref is not None  # exactly one key, by the model
    text = (await link.read_secret_key(ref.name, ref.key)).strip()
    register_secret(text)
    where = f"key {ref.key!r} of Secret {link.namespace}/{ref.name}"
    if not text:
        raise SecretUnavailable("SecretKeyNotFound", f"{where} is empty")
    try:
        return LocalKey(parse_key(text, where), f"secret:{ref.name}")
    except InvalidInput as exc:
        raise Failure("InvalidEncryptionKey", str(exc)) from None


async def _signing_text(link: ObjectLink, spec: SigningSpec) -> tuple[str, str]:
    ref = spec.key_secret_ref
    text = (await link.read_secret_key(ref.name, ref.key)).strip()
    register_secret(text)
    for line in text.splitlines():  # a PEM key's body lines, masked one by one too
        if len(line) >= 16 and not line.startswith("-----"):
            register_secret(line.strip())
    where = f"key {ref.key!r} of Secret {link.namespace}/{ref.name}"
    if not text:
        raise SecretUnavailable("SecretKeyNotFound", f"{where} is empty")
    return text, where


async def signer(link: ObjectLink, spec: SigningSpec | None) -> Signer | None:
    """The Ed25519 private key that signs a backup's manifest (None: not signed)."""
    if spec is None:
        return None
    text, where = await _signing_text(link, spec)
    try:
        return Signer.from_text(text, where, f"secret:{spec.key_secret_ref.name}")
    except InvalidInput as exc:
        raise Failure("InvalidSigningKey", str(exc)) from None


async def signature_checker(link: ObjectLink, spec: SigningSpec | None) -> SignatureChecker | None:
    """The Ed25519 public key a restore requires the manifest to be signed with."""
    if spec is None:
        return None
    text, where = await _signing_text(link, spec)
    try:
        return SignatureChecker.from_text(text, where)
    except InvalidInput as exc:
        raise Failure("InvalidSigningKey", str(exc)) from None
