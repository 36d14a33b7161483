"""Parts shared by the MongoBackup and MongoRestore custom resources: Secret references,
storage backends, namespace filters, conditions and the status fields of a run.

Every field's description becomes the OpenAPI description in the generated CRDs, and every
rule that spans fields is written twice on purpose: as a pydantic validator (the operator
checks it, and the emulator used in tests has no server-side validation) and as a CEL rule in
`x-kubernetes-validations` (a real API server rejects the object before the operator sees it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "mongobackup.io"
API_VERSION = "v1alpha1"
#: the `apiVersion` of every object of this API
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

# Keys the storage backends read from a storage credentials Secret.
GCS_CREDENTIALS_KEY = "service-account.json"
S3_ACCESS_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
S3_SECRET_ACCESS_KEY_KEY = "AWS_SECRET_ACCESS_KEY"
S3_SESSION_TOKEN_KEY = "AWS_SESSION_TOKEN"
AZURE_CONNECTION_STRING_KEY = "AZURE_STORAGE_CONNECTION_STRING"
AZURE_ACCOUNT_KEY_KEY = "AZURE_STORAGE_ACCOUNT_KEY"
AZURE_SAS_TOKEN_KEY = "AZURE_STORAGE_SAS_TOKEN"

# Bounds keep the CEL cost estimate of the API server low (it assumes the worst case for
# unbounded strings and lists) and catch obvious mistakes early.
NAME_MAX = 253
PATH_MAX = 1024
PATTERNS_MAX = 100
#: mongodump namespace pattern: a database part without dots, a dot, a collection part
NAMESPACE_PATTERN = r"^[^.\s/\\$\"]+\.\S+$"


#: a Kubernetes object kept as written (a volume source, a toleration: the API server checks
#: it when the run's Job is created; its full schema would only bloat the CRDs)
KubeObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


class SpecModel(BaseModel):
    """Base of spec models: camelCase in YAML, snake_case in Python, unknown fields refused
    (a real API server prunes them; the error names a typo before it silently does nothing)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class StatusModel(BaseModel):
    """Base of status models: camelCase, unknown fields ignored (a newer operator may have
    written fields this version does not know)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SecretKeyRef(SpecModel):
    """One key of a Secret in the object's own namespace."""

    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="Name of a Secret in the same namespace."
    )
    key: str = Field(min_length=1, max_length=NAME_MAX, description="Key within the Secret's data.")


class SecretRef(SpecModel):
    """A whole Secret in the object's own namespace."""

    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="Name of a Secret in the same namespace."
    )


class MongoDBConnection(SpecModel):
    uri_secret_ref: SecretKeyRef = Field(
        description=(
            "Secret key holding the MongoDB connection string (mongodb:// or mongodb+srv://, "
            "credentials and options included). The URI is never written in the spec itself."
        )
    )


class AwsKmsKeySpec(SpecModel):
    key_id: str = Field(
        min_length=1,
        max_length=2048,
        description="AWS KMS key id, key ARN, alias/NAME or alias ARN of a symmetric encryption key.",
    )
    region: str | None = Field(
        default=None, max_length=64, description="AWS region of the key (default: the environment's)."
    )
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description=(
            "A KMS-compatible endpoint URL (default: AWS). Credentials: the AWS default chain "
            "(IRSA, instance role)."
        ),
    )


ONE_KEY = "set exactly one of keySecretRef, awsKms, gcpKms or azureKeyVault"


class GcpKmsKeySpec(SpecModel):
    key_name: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$",
        description=(
            "Resource name of a Cloud KMS symmetric key: projects/P/locations/L/keyRings/R/cryptoKeys/K "
            "(its primary version encrypts; decrypt finds the version itself). Credentials: the "
            "application default credentials (Workload Identity); the role "
            "roles/cloudkms.cryptoKeyEncrypterDecrypter on the key."
        ),
    )
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="A Cloud KMS-compatible REST endpoint URL (default: Google's).",
    )


class AzureKeyVaultKeySpec(SpecModel):
    key_url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^https://[^/\s]+/keys/[^/\s]+(/[^/\s]*)?/?$",
        description=(
            "URL of an RSA key in Azure Key Vault: https://VAULT.vault.azure.net/keys/NAME[/VERSION] "
            "(without a version: the current one wraps; a backup records the version it used). "
            "Credentials: DefaultAzureCredential (Workload Identity); the role Key Vault Crypto User."
        ),
    )


class EncryptionSpec(SpecModel):
    """Client-side encryption at rest (docs/FORMAT.md section 8): every stored object is
    encrypted with AES-256-GCM under a fresh data key per backup, wrapped by one key: from a
    Secret, or held by AWS KMS, Google Cloud KMS or Azure Key Vault."""

    key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description=(
            "Secret key holding the key-encryption key: 32 random bytes, base64 (e.g. "
            "`head -c32 /dev/urandom | base64`). A restore needs the same key (the Secret's name "
            "may differ); without it the backup cannot be read."
        ),
    )
    aws_kms: AwsKmsKeySpec | None = Field(
        default=None, description="Wrap the data key with this AWS KMS key instead (envelope encryption)."
    )
    gcp_kms: GcpKmsKeySpec | None = Field(
        default=None, description="Wrap the data key with this Google Cloud KMS key instead."
    )
    azure_key_vault: AzureKeyVaultKeySpec | None = Field(
        default=None, description="Wrap the data key with this Azure Key Vault RSA key instead."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.keySecretRef), has(self.awsKms), has(self.gcpKms), "
                    "has(self.azureKeyVault)].filter(x, x).size() == 1",
                    "message": ONE_KEY,
                }
            ]
        }
    )

    @model_validator(mode="after")
    def _one_key(self) -> EncryptionSpec:
        keys = (self.key_secret_ref, self.aws_kms, self.gcp_kms, self.azure_key_vault)
        if sum(key is not None for key in keys) != 1:
            raise ValueError(ONE_KEY)
        return self


class SigningSpec(SpecModel):
    """Ed25519 signatures of the backup's manifest (docs/FORMAT.md section 8.5)."""

    key_secret_ref: SecretKeyRef = Field(
        description=(
            "Secret key holding an Ed25519 key, PEM (`openssl genpkey -algorithm ed25519`) or 32 bytes "
            "base64. A MongoBackup needs the private key (it signs); a MongoRestore takes the public "
            "key (or the private one) and refuses a backup whose manifest it did not sign."
        )
    )


class FilesystemStorage(SpecModel):
    path: str = Field(
        min_length=1,
        max_length=PATH_MAX,
        pattern=r"^/",
        description=(
            "Absolute directory in the operator's pod, usually a mounted PersistentVolumeClaim; "
            "a backup is written to <path>/<backup name>/."
        ),
    )
    volume: KubeObject | None = Field(
        default=None,
        description=(
            "In Job mode: the volume (any pod volume source, e.g. {persistentVolumeClaim: "
            "{claimName: backups}}) that the run's pod mounts at `path`. A ReadWriteMany claim "
            "lets runs go to any node."
        ),
    )


class GcsStorage(SpecModel):
    bucket: str = Field(min_length=3, max_length=222, description="Google Cloud Storage bucket name.")
    prefix: str = Field(
        default="",
        max_length=PATH_MAX,
        description="Object name prefix (a folder); a backup is stored under <prefix>/<backup name>/.",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            f"Secret with key `{GCS_CREDENTIALS_KEY}` (a service account key file). "
            "Without it, the operator's own identity is used (Workload Identity)."
        ),
    )


class S3Storage(SpecModel):
    bucket: str = Field(min_length=3, max_length=NAME_MAX, description="S3 bucket name.")
    prefix: str = Field(
        default="",
        max_length=PATH_MAX,
        description="Key prefix (a folder); a backup is stored under <prefix>/<backup name>/.",
    )
    endpoint: str | None = Field(
        default=None,
        max_length=PATH_MAX,
        pattern=r"^https?://",
        description="Endpoint URL of an S3-compatible service (MinIO, Ceph, ...); AWS when unset.",
    )
    region: str | None = Field(default=None, max_length=64, description="Bucket region, e.g. eu-west-1.")
    force_path_style: bool = Field(
        default=False,
        description="Address buckets as <endpoint>/<bucket> instead of <bucket>.<endpoint> (MinIO).",
    )
    server_side_encryption: Literal["AES256", "aws:kms"] | None = Field(
        default=None, description="Server-side encryption of stored objects."
    )
    kms_key_id: str | None = Field(
        default=None,
        max_length=PATH_MAX,
        description="KMS key (id or ARN) for serverSideEncryption aws:kms; the bucket default when unset.",
    )
    storage_class: str | None = Field(
        default=None,
        max_length=64,
        description="Storage class of stored objects, e.g. STANDARD_IA; the bucket default when unset.",
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            f"Secret with keys `{S3_ACCESS_KEY_ID_KEY}`, `{S3_SECRET_ACCESS_KEY_KEY}` and optionally "
            f"`{S3_SESSION_TOKEN_KEY}`. Without it, the operator's own identity is used (IRSA, "
            "instance profile)."
        ),
    )

    @model_validator(mode="after")
    def _kms_needs_kms_encryption(self) -> S3Storage:
        if self.kms_key_id is not None and self.server_side_encryption != "aws:kms":
            raise ValueError("kmsKeyId needs serverSideEncryption: aws:kms")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.kmsKeyId) || (has(self.serverSideEncryption) "
                    "&& self.serverSideEncryption == 'aws:kms')",
                    "message": "kmsKeyId needs serverSideEncryption: aws:kms",
                }
            ]
        }
    )


class AzureStorage(SpecModel):
    container: str = Field(min_length=3, max_length=63, description="Azure Blob Storage container name.")
    prefix: str = Field(
        default="",
        max_length=PATH_MAX,
        description="Blob name prefix (a folder); a backup is stored under <prefix>/<backup name>/.",
    )
    account_url: str | None = Field(
        default=None,
        max_length=PATH_MAX,
        pattern=r"^https?://",
        description=(
            "Blob service URL, e.g. https://<account>.blob.core.windows.net; needed unless the "
            "credentials are a connection string."
        ),
    )
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            f"Secret with one of the keys `{AZURE_CONNECTION_STRING_KEY}`, `{AZURE_ACCOUNT_KEY_KEY}` "
            f"or `{AZURE_SAS_TOKEN_KEY}`. Without it, the operator's own identity is used "
            "(Workload Identity, managed identity)."
        ),
    )


_STORAGE_BACKENDS = ("filesystem", "gcs", "s3", "azure")
_ONE_BACKEND = "exactly one storage backend must be set: filesystem, gcs, s3 or azure"


class StorageSpec(SpecModel):
    """Where backups are stored: exactly one backend."""

    filesystem: FilesystemStorage | None = Field(
        default=None, description="A directory, usually on a PersistentVolumeClaim mounted in the operator."
    )
    gcs: GcsStorage | None = Field(default=None, description="A Google Cloud Storage bucket.")
    s3: S3Storage | None = Field(default=None, description="An S3 or S3-compatible bucket.")
    azure: AzureStorage | None = Field(default=None, description="An Azure Blob Storage container.")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.filesystem), has(self.gcs), has(self.s3), has(self.azure)]"
                    ".filter(x, x).size() == 1",
                    "message": _ONE_BACKEND,
                }
            ]
        }
    )

    @model_validator(mode="after")
    def _exactly_one_backend(self) -> StorageSpec:
        if sum(getattr(self, name) is not None for name in _STORAGE_BACKENDS) != 1:
            raise ValueError(_ONE_BACKEND)
        return self

    @property
    def backend(self) -> Literal["filesystem", "gcs", "s3", "azure"]:
        for name in _STORAGE_BACKENDS:
            if getattr(self, name) is not None:
                return name  # type: ignore[return-value]
        raise AssertionError("validated: one backend is set")

    @property
    def credentials_secret_ref(self) -> SecretRef | None:
        if self.filesystem is not None:
            return None
        backend: GcsStorage | S3Storage | AzureStorage = getattr(self, self.backend)
        return backend.credentials_secret_ref

    def url(self) -> str:
        """The storage URL of the folder holding backups (`file:///path`, `gs://bucket/prefix`,
        `s3://bucket/prefix`, `azure://container/prefix`), as the CLI and storage layer take it."""
        if self.filesystem is not None:
            return "file://" + (self.filesystem.path.rstrip("/") or "/")
        if self.gcs is not None:
            scheme, bucket, prefix = "gs", self.gcs.bucket, self.gcs.prefix
        elif self.s3 is not None:
            scheme, bucket, prefix = "s3", self.s3.bucket, self.s3.prefix
        else:
            assert self.azure is not None
            scheme, bucket, prefix = "azure", self.azure.container, self.azure.prefix
        return f"{scheme}://{bucket}/{prefix.strip('/')}".rstrip("/")


class CompressionSpec(SpecModel):
    type: Literal["zstd", "gzip", "none"] = Field(
        default="zstd",
        description=(
            "zstd: fast and compact (default). gzip: exactly `mongodump --gzip` output, restorable "
            "by `mongorestore --gzip`. none: raw BSON."
        ),
    )
    level: int | None = Field(
        default=None,
        ge=1,
        le=22,
        description="Compression level: zstd 1-22 (default 3), gzip 1-9 (default 6); ignored for none.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.level) || self.type != 'gzip' || self.level <= 9",
                    "message": "gzip levels are 1-9",
                }
            ]
        }
    )

    @model_validator(mode="after")
    def _gzip_level(self) -> CompressionSpec:
        if self.type == "gzip" and self.level is not None and self.level > 9:
            raise ValueError("gzip levels are 1-9")
        return self


_PATTERN_DESCRIPTION = (
    "mongodump-style namespace patterns: `db.collection`, `db.*`, `*.collection` "
    "(`*` matches any characters)."
)


def _check_namespace_pattern(pattern: str) -> str:
    if not re.match(NAMESPACE_PATTERN, pattern):
        raise ValueError(f"namespace pattern {pattern!r} must look like 'db.*' or 'db.collection'")
    return pattern


#: one mongodump namespace pattern (the OpenAPI pattern mirrors the Python check)
NamespacePattern = Annotated[
    str,
    Field(max_length=512, json_schema_extra={"pattern": NAMESPACE_PATTERN}),
    AfterValidator(_check_namespace_pattern),
]


class NamespaceFilter(SpecModel):
    include: list[NamespacePattern] = Field(
        default_factory=list,
        max_length=PATTERNS_MAX,
        description="Only these namespaces (all user databases when empty). " + _PATTERN_DESCRIPTION,
    )
    exclude: list[NamespacePattern] = Field(
        default_factory=list,
        max_length=PATTERNS_MAX,
        description="Namespaces left out, even when included. " + _PATTERN_DESCRIPTION,
    )


def parallelism_field() -> Any:
    return Field(default=4, ge=1, le=64, description="Collections processed at the same time.")


# ----- status ---------------------------------------------------------------------------------

Phase = Literal["Pending", "Running", "Completed", "Failed", "Cancelled"]
#: phases a run never leaves
TERMINAL_PHASES: tuple[Phase, ...] = ("Completed", "Failed", "Cancelled")
#: `kubectl annotate mbk NAME mongobackup.io/cancel=true` stops a run safely (the spec stays
#: immutable; an annotation is how a user asks something of a running object)
CANCEL_ANNOTATION = "mongobackup.io/cancel"


class Condition(StatusModel):
    """A Kubernetes-style condition (as in metav1.Condition)."""

    type: str = Field(max_length=316, description="Condition type, e.g. Ready, Completed, Verified.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="CamelCase reason of the last transition.")
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was set for."
    )


class Progress(StatusModel):
    """Where a running backup or restore is; refreshed every few seconds."""

    percent: float | None = Field(
        default=None, ge=0, le=100, description="Share of the bytes done; unset while totals are not known."
    )
    totals_known: bool | None = Field(
        default=None,
        description=(
            "False while a backup is still counting its collections (it streams meanwhile): the "
            "totals cover only part of the run, and percent and ETA are unset until they are known."
        ),
    )
    documents_done: int | None = Field(default=None, ge=0, description="Documents done so far.")
    documents_total: int | None = Field(default=None, ge=0, description="Documents expected in all.")
    bytes_done: int | None = Field(default=None, ge=0, description="Uncompressed BSON bytes done so far.")
    bytes_total: int | None = Field(default=None, ge=0, description="Uncompressed BSON bytes expected.")
    rate: str | None = Field(default=None, description="Throughput so far, e.g. '12.3 MiB/s'.")
    eta: str | None = Field(default=None, description="Estimated time left, e.g. '2m10s'.")
    current: list[str] = Field(
        default_factory=list, description="Namespaces (db.collection) being processed now."
    )


class EncryptionStatus(StatusModel):
    key_fingerprint: str | None = Field(
        default=None, description="Fingerprint (16 hex digits) of the key that wraps the backup's data key."
    )
    key_source: str | None = Field(
        default=None, description="Where that key came from when the backup was made, e.g. secret:NAME."
    )


class SigningStatus(StatusModel):
    signer_fingerprint: str | None = Field(
        default=None, description="Fingerprint (16 hex digits) of the Ed25519 key that signed the manifest."
    )


class RunStatus(StatusModel):
    """Status fields shared by backups and restores."""

    phase: Phase | None = Field(
        default=None,
        description=(
            "Pending, Running, then one of the final phases: Completed, Failed or Cancelled "
            "(annotation mongobackup.io/cancel=true)."
        ),
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Latest observations: Ready, Running, Completed, Failed, waiting reasons.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the status describes."
    )
    started_at: datetime | None = Field(default=None, description="When the current attempt started.")
    completed_at: datetime | None = Field(default=None, description="When the run completed or failed.")
    duration: str | None = Field(default=None, description="Run time, e.g. '1m23s'.")
    location: str | None = Field(
        default=None, description="Storage URL of the backup, e.g. gs://bucket/prefix/name."
    )
    stored_bytes: int | None = Field(
        default=None, ge=0, description="Bytes in storage (compressed), manifest included."
    )
    size: str | None = Field(default=None, description="storedBytes, human-readable, e.g. '12.3 MiB'.")
    data_bytes: int | None = Field(
        default=None, ge=0, description="Uncompressed BSON bytes of the documents."
    )
    documents: int | None = Field(default=None, ge=0, description="Documents in the backup or restored.")
    collections: int | None = Field(
        default=None, ge=0, description="Collections, views and time-series collections."
    )
    checksum: str | None = Field(default=None, description="sha256 (hex) of the backup's manifest.json.")
    server_version: str | None = Field(default=None, description="MongoDB server version of the run.")
    progress: Progress | None = Field(default=None, description="Progress of a running attempt.")
    error: str | None = Field(default=None, description="Why the run failed or waits, in one line.")
    attempts: int | None = Field(
        default=None, ge=0, description="Attempts started; more than 1 after an operator restart."
    )
    encryption: EncryptionStatus | None = Field(
        default=None, description="Which key encrypts the backup (never the key); unset for a plain backup."
    )
    signing: SigningStatus | None = Field(
        default=None, description="Who signed the backup's manifest (checked on restore); unset: not signed."
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def status_patch(status: BaseModel, *, clear: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """A merge-patch dict of a status model: camelCase keys; fields never set and fields set
    to None are left out, so a patch never erases what another patch wrote. `clear` names
    fields (Python names) to erase: they are sent as null, which deletes them in a merge patch.

    `status_patch(MongoBackupStatus(phase="Running", attempts=2), clear=["error"])`
    == `{"phase": "Running", "attempts": 2, "error": None}`"""
    patch: dict[str, Any] = status.model_dump(
        mode="json", by_alias=True, exclude_unset=True, exclude_none=True
    )
    fields = type(status).model_fields
    for name in clear:
        if name not in fields:
            raise KeyError(f"{type(status).__name__} has no field {name!r}")
        patch[fields[name].alias or name] = None
    return patch


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0  # 1: shown only by `kubectl get -o wide`


@dataclass(frozen=True)
class CustomResource:
    """What the CRD of one kind is generated from, and what the operator watches."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[SpecModel]
    status_model: type[StatusModel]
    printer_columns: tuple[PrinterColumn, ...]
    description: str
    #: `kubectl get mongo-backup` lists both kinds; a category must differ from every resource
    #: name, or kubectl expands `kubectl get mongobackup NAME` to both kinds
    categories: tuple[str, ...] = ("mongo-backup",)
    #: a run's spec never changes (the CRD refuses edits); a schedule's may
    immutable_spec: bool = True
    group: str = API_GROUP
    version: str = API_VERSION

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"
