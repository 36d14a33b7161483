"""The one storage interface every backend implements.

A `Storage` is rooted at a location (a folder, or a bucket plus prefix). Object names are
relative to that root and use `/` as separator. Writes are streamed in chunks through an
`ObjectWriter` and only become visible when committed: a failed or aborted write leaves
nothing behind, and a finished object is never overwritten unless the caller asks.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024


class StorageError(Exception):
    """A storage operation failed. Messages name the location and operation, never credentials."""


class ObjectNotFound(StorageError):
    pass


class BucketNotFound(StorageError):
    """The bucket or container itself does not exist."""


class InvalidStorageURL(StorageError):
    """A storage URL or object name that cannot be used as given: fix the input."""


class ObjectExists(StorageError):
    """A write would replace a finished object and the caller did not allow it."""


class StorageAccessDenied(StorageError):
    """Credentials are missing, wrong, or lack a permission: retrying will not help."""


class TransientStorageError(StorageError):
    """A failure that may pass (5xx, 429, reset connection) and that retries did not overcome."""


def object_key(prefix: str, name: str) -> str:
    """A bucket key: the storage's prefix joined to a relative object name."""
    if not name or name.startswith("/"):
        raise StorageError(f"invalid object name {name!r}")
    return f"{prefix}/{name}" if prefix else name


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    modified: datetime | None = None
    # Backend-reported checksum, when there is one (e.g. "md5:...", "crc32c:...").
    checksum: str | None = None
    #: an unfinished write (a killed writer's temporary file), listed only on request
    partial: bool = False


class ObjectWriter(abc.ABC):
    """A streamed write of one object. Use as an async context manager:
    a clean exit commits, an exception aborts (nothing becomes visible)."""

    name: str
    #: set by a clean exit of the context manager
    info: ObjectInfo | None = None

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> ObjectInfo: ...

    @abc.abstractmethod
    async def abort(self) -> None: ...

    async def __aenter__(self) -> ObjectWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.info = await self.commit()
        else:
            await self.abort()


class Storage(abc.ABC):
    """An object store rooted at one location."""

    #: where this storage points, for messages and status (never contains credentials)
    url: str

    @abc.abstractmethod
    def open_write(self, name: str, *, overwrite: bool = False, size_hint: int | None = None) -> ObjectWriter:
        """Start a streamed write. `size_hint` lets backends pick part sizes."""

    @abc.abstractmethod
    def read(self, name: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Stream an object's bytes. Raises ObjectNotFound."""

    @abc.abstractmethod
    async def stat(self, name: str) -> ObjectInfo:
        """Raises ObjectNotFound."""

    @abc.abstractmethod
    def list(self, prefix: str = "", *, partial: bool = False) -> AsyncIterator[ObjectInfo]:
        """Every finished object whose name starts with `prefix`, in name order. With
        `partial`, also the visible leftovers of unfinished writes (`ObjectInfo.partial`),
        which `delete` removes like any object; backends whose unfinished writes are
        invisible (cloud uploads) list none."""

    @abc.abstractmethod
    async def delete(self, name: str) -> None:
        """Delete one object; deleting a missing object is not an error."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections."""

    def child(self, prefix: str) -> Storage:
        """A view of this storage rooted at `prefix` below the current root."""
        return PrefixedStorage(self, prefix)

    # Conveniences built on the primitives above: backends need not override them.

    async def write_bytes(self, name: str, data: bytes, *, overwrite: bool = False) -> ObjectInfo:
        async with self.open_write(name, overwrite=overwrite, size_hint=len(data)) as writer:
            await writer.write(data)
        assert writer.info is not None
        return writer.info

    async def read_bytes(self, name: str) -> bytes:
        parts = [chunk async for chunk in self.read(name)]
        return b"".join(parts)

    async def exists(self, name: str) -> bool:
        try:
            await self.stat(name)
        except ObjectNotFound:
            return False
        return True

    async def delete_prefix(self, prefix: str) -> int:
        names = [info.name async for info in self.list(prefix)]
        for name in names:
            await self.delete(name)
        return len(names)

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class PrefixedStorage(Storage):
    """A storage seen through a sub-folder: names are joined to `prefix`."""

    def __init__(self, parent: Storage, prefix: str) -> None:
        self._parent = parent
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = parent.url.rstrip("/") + "/" + self._prefix.rstrip("/")

    def _full(self, name: str) -> str:
        return self._prefix + name

    def open_write(self, name: str, *, overwrite: bool = False, size_hint: int | None = None) -> ObjectWriter:
        return self._parent.open_write(self._full(name), overwrite=overwrite, size_hint=size_hint)

    def read(self, name: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        return self._parent.read(self._full(name), chunk_size=chunk_size)

    async def stat(self, name: str) -> ObjectInfo:
        info = await self._parent.stat(self._full(name))
        return dataclasses.replace(info, name=name)

    async def list(self, prefix: str = "", *, partial: bool = False) -> AsyncIterator[ObjectInfo]:
        async for info in self._parent.list(self._full(prefix), partial=partial):
            yield dataclasses.replace(info, name=info.name[len(self._prefix) :])

    async def delete(self, name: str) -> None:
        await self._parent.delete(self._full(name))

    async def close(self) -> None:
        await self._parent.close()
