"""Azure Blob Storage backend (azure-storage-blob): `azure://container/prefix`.

Writes stage blocks of a block blob as the data arrives (a few at once, each with a
transactional MD5 the service verifies) and commit the block list on commit(), with
`If-None-Match: *` unless overwriting: a finished blob is never replaced by surprise. Until
the commit nothing is visible; staged blocks of an abandoned write are discarded by the
service (after a week, or at the next commit to that name). Small blobs go up in one request.

The SDK's own retries are off (`retry_total=0`): `RetryPolicy` alone decides.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from .base import (
    DEFAULT_CHUNK_SIZE,
    BucketNotFound,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectWriter,
    Storage,
    StorageAccessDenied,
    StorageError,
    TransientStorageError,
    object_key,
)
from .location import (
    AZURE_STORAGE_ACCOUNT_KEY,
    AZURE_STORAGE_CONNECTION_STRING,
    AZURE_STORAGE_SAS_TOKEN,
    StorageSettings,
)
from .retry import (
    PartTasks,
    error_for_status,
    in_thread,
    is_network_error,
    prefetch,
    retry_call,
    safe_detail,
)

DEFAULT_PART_SIZE = 8 * 1024 * 1024
#: smallest ranged GET when reading; a caller asking for bigger chunks gets one range per chunk
READ_RANGE = 1024 * 1024


def translate(exc: BaseException, what: str) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    code = getattr(exc, "error_code", None)
    detail = f"{code}" if code else safe_detail(exc)
    if isinstance(exc, ResourceNotFoundError):
        if code == "ContainerNotFound":
            return BucketNotFound(f"{what} failed: the container does not exist ({code})")
        return ObjectNotFound(f"{what} failed: not found ({detail})")
    if isinstance(exc, ClientAuthenticationError):
        return StorageAccessDenied(f"{what} failed: access denied ({detail})")
    if isinstance(exc, (ResourceExistsError, ResourceModifiedError)):
        return ObjectExists(f"{what} failed: the blob already exists ({detail})")
    if isinstance(exc, HttpResponseError) and exc.status_code:
        return error_for_status(int(exc.status_code), what, detail)
    if is_network_error(exc):
        return TransientStorageError(f"{what} failed: {safe_detail(exc)}")
    if type(exc).__name__ == "CredentialUnavailableError":
        return StorageAccessDenied(f"{what} failed: no usable Azure credentials ({type(exc).__name__})")
    if isinstance(exc, AzureError):
        return StorageError(f"{what} failed: {safe_detail(exc)}")
    return StorageError(f"{what} failed: {safe_detail(exc)}")


def _make_client(settings: StorageSettings) -> BlobServiceClient:
    options: dict[str, Any] = {
        "retry_total": 0,
        "connection_timeout": settings.retry.connect_timeout,
        "read_timeout": settings.retry.read_timeout,
    }
    creds = settings.credentials
    conn = creds.get(AZURE_STORAGE_CONNECTION_STRING)
    url = settings.azure_account_url
    try:
        if conn:
            return BlobServiceClient.from_connection_string(conn, **options)
        if creds.get(AZURE_STORAGE_ACCOUNT_KEY) or creds.get(AZURE_STORAGE_SAS_TOKEN):
            if not url:
                raise StorageError(
                    "an Azure account key or SAS token needs the account URL (azure_account_url)"
                )
            if creds.get(AZURE_STORAGE_ACCOUNT_KEY):
                # A plain string credential is the account key; the SDK takes the account name from the URL.
                return BlobServiceClient(url, credential=creds[AZURE_STORAGE_ACCOUNT_KEY], **options)
            from azure.core.credentials import AzureSasCredential

            sas = creds[AZURE_STORAGE_SAS_TOKEN].lstrip("?")
            return BlobServiceClient(url, credential=AzureSasCredential(sas), **options)
        if url:
            from azure.identity import DefaultAzureCredential

            return BlobServiceClient(url, credential=DefaultAzureCredential(), **options)
        env_conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if env_conn:
            return BlobServiceClient.from_connection_string(env_conn, **options)
    except ValueError as exc:
        # The SDK's message may quote the malformed value: keep it out.
        raise StorageAccessDenied(f"Azure credentials are malformed ({type(exc).__name__})") from exc
    raise StorageError(
        "azure:// storage needs the account URL (azure_account_url) or a connection string "
        f"({AZURE_STORAGE_CONNECTION_STRING})"
    )


class AzureWriter(ObjectWriter):
    def __init__(self, storage: AzureStorage, name: str, overwrite: bool) -> None:
        self.name = name
        self._storage = storage
        self._blob = storage.container.get_blob_client(storage.key(name))
        self._overwrite = overwrite
        self._what = f"upload of {storage.url}/{name}"
        self._part = storage.settings.part_size or DEFAULT_PART_SIZE
        self._buffer = bytearray()
        self._size = 0
        # Block ids are unique to this writer: two writers of one name never mix blocks.
        self._token = secrets.token_hex(8)
        self._blocks: list[str] = []
        self._tasks = PartTasks(storage.settings.upload_concurrency)

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._part:
            block = bytes(memoryview(self._buffer)[: self._part])
            del self._buffer[: self._part]
            await self._stage(block)

    async def _stage(self, block: bytes) -> None:
        if not self._blocks and not self._overwrite and await self._storage.exists(self.name):
            raise ObjectExists(f"{self._storage.url}/{self.name} already exists")
        number = len(self._blocks)
        block_id = base64.b64encode(f"{self._token}-{number:06d}".encode()).decode()
        self._blocks.append(block_id)

        def stage() -> None:
            self._blob.stage_block(block_id, block, length=len(block), validate_content=True)

        await self._tasks.add(self._storage.call(f"{self._what} (block {number})", stage))

    async def commit(self) -> ObjectInfo:
        try:
            return await self._commit()
        except BaseException:
            # The context manager aborts only on errors in its body: a failed commit cleans up here.
            await self.abort()
            raise

    async def _commit(self) -> ObjectInfo:
        data, self._buffer = bytes(self._buffer), bytearray()
        conditions: dict[str, Any] = {} if self._overwrite else {"match_condition": MatchConditions.IfMissing}
        if not self._blocks:

            def upload() -> None:
                self._blob.upload_blob(
                    data, length=len(data), overwrite=self._overwrite, validate_content=True
                )

            await self._storage.call(self._what, upload)
        else:
            if data:
                await self._stage(data)
            await self._tasks.join()
            blocks = [BlobBlock(block_id=b) for b in self._blocks]
            await self._storage.call(self._what, lambda: self._blob.commit_block_list(blocks, **conditions))
        info = await self._storage.stat(self.name)
        if info.size != self._size:
            raise StorageError(f"{self._what}: stored {info.size} bytes, sent {self._size}")
        return info

    async def abort(self) -> None:
        self._buffer = bytearray()
        await self._tasks.cancel()
        if self._blocks and not self._overwrite:
            await self._storage.call(f"abort of {self._what}", self._drop_staged_blocks)

    def _drop_staged_blocks(self) -> None:
        """Drop our staged blocks when no committed blob has the name: the name then holds only
        uncommitted blocks, and deleting it removes them. `If-None-Match: *` makes the service
        refuse if a blob was committed meanwhile (Azurite ignores it, hence the check first).
        Under an existing blob (overwrite, or a lost race) they stay, invisible, until the
        service discards them (at the next commit of that name, or after a week)."""
        try:
            self._blob.get_blob_properties()
            return
        except ResourceNotFoundError:
            pass
        try:
            self._blob.delete_blob(match_condition=MatchConditions.IfMissing)
        except (ResourceNotFoundError, ResourceModifiedError, ResourceExistsError):
            pass


class AzureStorage(Storage):
    def __init__(self, container: str, prefix: str, settings: StorageSettings) -> None:
        self.container_name = container
        self.prefix = prefix.strip("/")
        self.settings = settings
        self.url = f"azure://{container}/{self.prefix}".rstrip("/")
        self.service = _make_client(settings)
        self.container: ContainerClient = self.service.get_container_client(container)

    def key(self, name: str) -> str:
        return object_key(self.prefix, name)

    async def call(self, what: str, func: Any) -> Any:
        """Run a blocking client call in a thread under the retry policy."""
        try:
            return await retry_call(self.settings.retry, what, translate, func)
        except StorageError as exc:
            if isinstance(exc, BucketNotFound | StorageAccessDenied):
                raise type(exc)(f"{exc} (container {self.container_name!r})") from exc
            raise

    def open_write(self, name: str, *, overwrite: bool = False, size_hint: int | None = None) -> ObjectWriter:
        return AzureWriter(self, name, overwrite)

    async def _properties(self, name: str) -> Any:
        blob = self.container.get_blob_client(self.key(name))
        try:
            return await self.call(f"stat of {self.url}/{name}", blob.get_blob_properties)
        except ObjectNotFound:
            raise ObjectNotFound(f"{self.url}/{name} does not exist") from None

    async def stat(self, name: str) -> ObjectInfo:
        props = await self._properties(name)
        return _info(name, props)

    async def read(self, name: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        props = await self._properties(name)
        size = int(props.size)
        blob = self.container.get_blob_client(self.key(name))
        # One range per yielded chunk: no re-slicing copies (ranges at least READ_RANGE)
        step = max(chunk_size, READ_RANGE)
        what = f"download of {self.url}/{name}"

        async def ranges() -> AsyncIterator[bytes]:
            for start in range(0, size, step):
                length = min(size - start, step)

                def get(start: int = start, length: int = length) -> bytes:
                    # Pinned to the etag: every range comes from the same blob.
                    downloader = blob.download_blob(
                        offset=start,
                        length=length,
                        etag=props.etag,
                        match_condition=MatchConditions.IfNotModified,
                        max_concurrency=1,
                    )
                    return bytes(downloader.readall())

                yield await self.call(what, get)

        async for data in prefetch(ranges()):
            for i in range(0, len(data), chunk_size):
                yield data[i : i + chunk_size] if len(data) > chunk_size else data

    async def list(self, prefix: str = "", *, partial: bool = False) -> AsyncIterator[ObjectInfo]:
        key_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0

        def list_all() -> list[ObjectInfo]:
            return [_info(b.name[strip:], b) for b in self.container.list_blobs(name_starts_with=key_prefix)]

        for info in sorted(await self.call(f"list of {self.url}/{prefix}", list_all), key=lambda i: i.name):
            yield info

    async def delete(self, name: str) -> None:
        blob = self.container.get_blob_client(self.key(name))

        def delete() -> None:
            try:
                blob.delete_blob(delete_snapshots="include")
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise

        await self.call(f"delete of {self.url}/{name}", delete)

    async def close(self) -> None:
        await in_thread(self.service.close)


def _info(name: str, props: Any) -> ObjectInfo:
    md5 = getattr(getattr(props, "content_settings", None), "content_md5", None)
    checksum = f"md5:{base64.b64encode(bytes(md5)).decode()}" if md5 else None
    return ObjectInfo(name, int(props.size), props.last_modified, checksum)
