"""Filesystem backend: a folder (a local disk, or a PVC in Kubernetes).

Writes go to a hidden temporary file in the target folder, are fsynced, then linked into
place: `os.link` fails if the name exists, so a finished object is never replaced unless
the caller asked for it (then `os.replace`)."""

from __future__ import annotations

import builtins
import errno
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .base import (
    DEFAULT_CHUNK_SIZE,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectWriter,
    Storage,
    StorageAccessDenied,
    StorageError,
)
from .retry import in_thread

TEMP_MARKER = ".tmp-"
#: writes are held in memory up to this size, so that a small object is opened, written,
#: fsynced and linked in one worker-thread call at commit: a thread hop costs more CPU than
#: writing a small file does (BENCHMARKS.md, runs O and P: the many-collections set)
BUFFERED_BYTES = 1024 * 1024


def _check_name(name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid object name {name!r}")


def _cannot_write(path: Path, exc: OSError) -> StorageError:
    """Why `path` cannot be created, naming the path (and the file in the way, if any)."""
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        return StorageAccessDenied(f"cannot write {path}: {exc.strerror}")
    if isinstance(exc, NotADirectoryError | FileExistsError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return StorageError(f"cannot write {path}: {blocker} is a file, not a folder")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


def _open_for_reading(path: Path) -> BinaryIO:
    return open(path, "rb")  # closed by the reader


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemWriter(ObjectWriter):
    def __init__(self, storage: FilesystemStorage, name: str, overwrite: bool) -> None:
        self.name = name
        self._storage = storage
        self._overwrite = overwrite
        self._final = storage.path_of(name)
        self._temp = self._final.with_name(f".{self._final.name}{TEMP_MARKER}{secrets.token_hex(6)}")
        self._file: BinaryIO | None = None
        self._size = 0
        self._buffer: list[bytes] = []
        self._buffered = 0

    def _open(self) -> BinaryIO:
        if self._file is None:
            if not self._overwrite and self._final.exists():
                raise ObjectExists(f"{self._storage.url}/{self.name} already exists")
            try:
                self._final.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self._temp, "xb")  # closed in commit/abort
            except OSError as exc:
                raise _cannot_write(self._final, exc) from exc
        return self._file

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= BUFFERED_BYTES:
            await in_thread(self._write_sync, self._take_buffer())

    def _take_buffer(self) -> bytes:
        data = b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        return data

    def _write_sync(self, data: bytes) -> None:
        try:
            self._open().write(data)
        except PermissionError as exc:
            raise StorageAccessDenied(
                f"cannot write {self._storage.url}/{self.name}: {exc.strerror}"
            ) from exc
        self._size += len(data)

    async def commit(self) -> ObjectInfo:
        return await in_thread(self._commit_sync, self._take_buffer())

    def _commit_sync(self, rest: bytes) -> ObjectInfo:
        if rest:
            self._write_sync(rest)
        f = self._open()
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        try:
            if self._overwrite:
                os.replace(self._temp, self._final)
            else:
                try:
                    os.link(self._temp, self._final)
                except FileExistsError as exc:
                    raise ObjectExists(f"{self._storage.url}/{self.name} already exists") from exc
                finally:
                    self._temp.unlink(missing_ok=True)
            _fsync_dir(self._final.parent)
        except BaseException:
            self._temp.unlink(missing_ok=True)
            raise
        return ObjectInfo(self.name, self._size, datetime.now(UTC))

    async def abort(self) -> None:
        self._buffer, self._buffered = [], 0
        if self._file is not None:  # else nothing was written to disk
            await in_thread(self._abort_sync)

    def _abort_sync(self) -> None:
        if self._file is not None:  # else there is no temporary file (or no folder) to remove
            self._file.close()
            self._temp.unlink(missing_ok=True)


class FilesystemStorage(Storage):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.url = f"file://{self.root}"

    def path_of(self, name: str) -> Path:
        _check_name(name)
        return self.root / name

    def open_write(self, name: str, *, overwrite: bool = False, size_hint: int | None = None) -> ObjectWriter:
        return FilesystemWriter(self, name, overwrite)

    async def read(self, name: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        path = self.path_of(name)
        try:
            f = await in_thread(_open_for_reading, path)
        except (FileNotFoundError, NotADirectoryError) as exc:  # or a file where a folder should be
            raise ObjectNotFound(f"{self.url}/{name} does not exist") from exc
        except PermissionError as exc:
            raise StorageAccessDenied(f"cannot read {self.url}/{name}: {exc.strerror}") from exc
        try:
            while chunk := await in_thread(f.read, chunk_size):
                yield chunk
        finally:
            f.close()

    async def stat(self, name: str) -> ObjectInfo:
        try:
            st = await in_thread(self.path_of(name).stat)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"{self.url}/{name} does not exist") from exc
        return ObjectInfo(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    async def list(self, prefix: str = "", *, partial: bool = False) -> AsyncIterator[ObjectInfo]:
        for info in await in_thread(self._list_sync, prefix, partial):
            yield info

    def _list_sync(self, prefix: str, partial: bool) -> builtins.list[ObjectInfo]:
        found: builtins.list[ObjectInfo] = []
        if not self.root.is_dir():
            return found
        # Only walk the folder the prefix points into.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for filename in filenames:
                unfinished = TEMP_MARKER in filename and filename.startswith(".")
                if unfinished and not partial:
                    continue
                full = Path(dirpath) / filename
                name = full.relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    try:
                        st = full.stat()
                    except FileNotFoundError:  # a temporary file committed or aborted meanwhile
                        continue
                    modified = datetime.fromtimestamp(st.st_mtime, UTC)
                    found.append(ObjectInfo(name, st.st_size, modified, partial=unfinished))
        found.sort(key=lambda i: i.name)
        return found

    async def delete(self, name: str) -> None:
        path = self.path_of(name)
        await in_thread(path.unlink, missing_ok=True)
        # Remove folders left empty, up to the root.
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
