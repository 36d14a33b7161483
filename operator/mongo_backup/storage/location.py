"""Storage URLs (`file:///path`, `gs://bucket/prefix`, `s3://bucket/prefix`,
`azure://container/prefix`) and `open_storage`, which picks the backend for one.

Credentials come from `StorageSettings.credentials`, a mapping filled from a Kubernetes
Secret's keys. The key names (constants below) are:

- GCS: `service-account.json` (a service-account key file's JSON).
- S3: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`.
- Azure: one of `AZURE_STORAGE_CONNECTION_STRING`, `AZURE_STORAGE_ACCOUNT_KEY` (with
  `azure_account_url`), `AZURE_STORAGE_SAS_TOKEN` (with `azure_account_url`).

Without them each backend uses the environment's ambient credentials:
- GCS: application default credentials (GKE Workload Identity, `GOOGLE_APPLICATION_CREDENTIALS`);
  anonymous when `STORAGE_EMULATOR_HOST` is set or `gcs_endpoint` is plain `http://` (an emulator:
  tokens are never sent over plain HTTP).
- S3: boto3's default chain (env vars, IRSA web identity, instance roles, profiles); endpoint from
  `s3_endpoint`, else `AWS_ENDPOINT_URL`.
- Azure: `DefaultAzureCredential` (workload identity, managed identity, az login) against
  `azure_account_url` (`https://ACCOUNT.blob.core.windows.net`: the URL names only the container,
  so the account URL is required), else `AZURE_STORAGE_CONNECTION_STRING` from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .base import InvalidStorageURL, Storage
from .retry import RetryPolicy

SCHEMES = ("file", "gs", "s3", "azure")

# Keys of a credentials Secret, one set per backend (see the module docstring).
GCS_SERVICE_ACCOUNT_JSON = "service-account.json"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"
AZURE_STORAGE_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
AZURE_STORAGE_ACCOUNT_KEY = "AZURE_STORAGE_ACCOUNT_KEY"
AZURE_STORAGE_SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"
CREDENTIAL_KEYS = {
    "gs": (GCS_SERVICE_ACCOUNT_JSON,),
    "s3": (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
    "azure": (AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN),
}


@dataclass(frozen=True)
class StorageLocation:
    scheme: str
    #: bucket or container; empty for `file`
    bucket: str
    #: folder path for `file`; key prefix (no leading or trailing slash) otherwise
    path: str

    @classmethod
    def parse(cls, url: str) -> StorageLocation:
        if not url.strip():  # else the working directory: never what anyone meant
            raise InvalidStorageURL(
                "empty storage URL: give a folder, file:///path, gs://, s3:// or azure://bucket/prefix"
            )
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme == "":
            # A bare path is a folder: the CLI accepts `./backups` as well as `file://...`;
            # a relative one is relative to the working directory.
            return cls("file", "", os.path.abspath(url).rstrip("/") or "/")
        if scheme not in SCHEMES:
            raise InvalidStorageURL(
                f"unsupported storage URL {url!r}: scheme must be one of "
                + ", ".join(f"{s}://" for s in SCHEMES)
            )
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise InvalidStorageURL(f"file URL {url!r} must be file:///absolute/path")
            return cls("file", "", parts.path.rstrip("/") or "/")
        if not parts.netloc:
            raise InvalidStorageURL(f"storage URL {url!r} names no bucket or container")
        return cls(scheme, parts.netloc, parts.path.strip("/"))

    @property
    def url(self) -> str:
        if self.scheme == "file":
            return f"file://{self.path}"
        return f"{self.scheme}://{self.bucket}/{self.path}".rstrip("/")

    def split_name(self) -> tuple[StorageLocation, str]:
        """A backup URL's parent location and the backup's name (its last segment)."""
        head, _, name = self.path.rstrip("/").rpartition("/")
        if not name or (self.scheme == "file" and not head and not self.path.startswith("/")):
            raise InvalidStorageURL(f"backup URL {self.url!r} must end with the backup's name")
        if self.scheme == "file":
            head = head or "/"
        return StorageLocation(self.scheme, self.bucket, head), name


@dataclass(frozen=True)
class StorageSettings:
    """Backend options that do not fit in a URL. Credentials come from a Kubernetes Secret's
    keys or the environment; they are never part of `StorageLocation.url`."""

    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_force_path_style: bool = False
    s3_server_side_encryption: str | None = None
    s3_kms_key_id: str | None = None
    s3_storage_class: str | None = None
    azure_account_url: str | None = None
    #: GCS API endpoint (an emulator, a private endpoint); default: STORAGE_EMULATOR_HOST or Google's
    gcs_endpoint: str | None = None
    #: bytes per uploaded part/chunk/block; None: the backend's default (8 MiB, 16 MiB for GCS)
    part_size: int | None = None
    #: parts uploaded at once by one writer (S3, Azure); memory is about part_size x this
    upload_concurrency: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Secret keys -> values; never printed (repr=False), never put in URLs or messages
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)


def open_storage(url: str | StorageLocation, settings: StorageSettings | None = None) -> Storage:
    loc = url if isinstance(url, StorageLocation) else StorageLocation.parse(url)
    settings = settings or StorageSettings()
    if loc.scheme == "file":
        from .filesystem import FilesystemStorage

        return FilesystemStorage(loc.path)
    if loc.scheme == "gs":
        from .gcs import GcsStorage

        return GcsStorage(loc.bucket, loc.path, settings)
    if loc.scheme == "s3":
        from .s3 import S3Storage

        return S3Storage(loc.bucket, loc.path, settings)
    if loc.scheme == "azure":
        from .azure import AzureStorage

        return AzureStorage(loc.bucket, loc.path, settings)
    raise InvalidStorageURL(f"storage backend {loc.scheme}:// is not available in this build")
