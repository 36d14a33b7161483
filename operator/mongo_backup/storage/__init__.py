"""Object storage behind one small async interface; one module per backend."""

from .base import (
    BucketNotFound,
    InvalidStorageURL,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectWriter,
    Storage,
    StorageAccessDenied,
    StorageError,
    TransientStorageError,
)
from .location import StorageLocation, StorageSettings, open_storage
from .retry import RetryPolicy

__all__ = [
    "BucketNotFound",
    "InvalidStorageURL",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectWriter",
    "RetryPolicy",
    "Storage",
    "StorageAccessDenied",
    "StorageError",
    "StorageLocation",
    "StorageSettings",
    "TransientStorageError",
    "open_storage",
]
