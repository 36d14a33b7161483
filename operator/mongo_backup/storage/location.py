"""Storage URLs (`file:///path`, `gs://bucket/prefix`, `s3://bucket/prefix`,
`azure://container/prefix`) and `open_storage`, which picks the backend for one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .base import Storage, StorageError

SCHEMES = ("file", "gs", "s3", "azure")


@dataclass(frozen=True)
class StorageLocation:
    scheme: str
    #: bucket or container; empty for `file`
    bucket: str
    #: folder path for `file`; key prefix (no leading or trailing slash) otherwise
    path: str

    @classmethod
    def parse(cls, url: str) -> StorageLocation:
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme == "":
            # A bare path is a folder: the CLI accepts `./backups` as well as `file://...`.
            return cls("file", "", url.rstrip("/") or "/")
        if scheme not in SCHEMES:
            raise StorageError(
                f"unsupported storage URL {url!r}: scheme must be one of "
                + ", ".join(f"{s}://" for s in SCHEMES)
            )
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise StorageError(f"file URL {url!r} must be file:///absolute/path")
            return cls("file", "", parts.path.rstrip("/") or "/")
        if not parts.netloc:
            raise StorageError(f"storage URL {url!r} names no bucket or container")
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
            raise StorageError(f"backup URL {self.url!r} must end with the backup's name")
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
    credentials: Mapping[str, str] = field(default_factory=dict)


def open_storage(url: str | StorageLocation, settings: StorageSettings | None = None) -> Storage:
    loc = url if isinstance(url, StorageLocation) else StorageLocation.parse(url)
    settings = settings or StorageSettings()
    if loc.scheme == "file":
        from .filesystem import FilesystemStorage

        return FilesystemStorage(loc.path)
    raise StorageError(f"storage backend {loc.scheme}:// is not available in this build")
