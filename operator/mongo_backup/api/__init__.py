"""The MongoBackup and MongoRestore custom resources as pydantic models: the single source of
truth of the API; `crds/*.yaml` is generated from them (`mongo-backup crds`)."""

from .backup import MONGO_BACKUP, MongoBackupSpec, MongoBackupStatus
from .common import (
    API_GROUP,
    API_VERSION,
    CANCEL_ANNOTATION,
    GROUP_VERSION,
    TERMINAL_PHASES,
    AzureStorage,
    CompressionSpec,
    Condition,
    CustomResource,
    FilesystemStorage,
    GcsStorage,
    MongoDBConnection,
    NamespaceFilter,
    Phase,
    Progress,
    RunStatus,
    S3Storage,
    SecretKeyRef,
    SecretRef,
    StorageSpec,
    status_patch,
)
from .parse import SpecError, parse_spec, parse_status
from .restore import (
    MONGO_RESTORE,
    BackupRef,
    MongoRestoreSpec,
    MongoRestoreStatus,
    NamespaceRename,
    RestoreSource,
    Verification,
)
from .runner import RUN_MODES, ResourceRequirements, RunMode, RunnerSpec

#: every custom resource of the API
RESOURCES: tuple[CustomResource, ...] = (MONGO_BACKUP, MONGO_RESTORE)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "CANCEL_ANNOTATION",
    "GROUP_VERSION",
    "MONGO_BACKUP",
    "MONGO_RESTORE",
    "RESOURCES",
    "RUN_MODES",
    "TERMINAL_PHASES",
    "AzureStorage",
    "BackupRef",
    "CompressionSpec",
    "Condition",
    "CustomResource",
    "FilesystemStorage",
    "GcsStorage",
    "MongoBackupSpec",
    "MongoBackupStatus",
    "MongoDBConnection",
    "MongoRestoreSpec",
    "MongoRestoreStatus",
    "NamespaceFilter",
    "NamespaceRename",
    "Phase",
    "Progress",
    "ResourceRequirements",
    "RestoreSource",
    "RunMode",
    "RunStatus",
    "RunnerSpec",
    "S3Storage",
    "SecretKeyRef",
    "SecretRef",
    "SpecError",
    "StorageSpec",
    "Verification",
    "parse_spec",
    "parse_status",
    "status_patch",
]
