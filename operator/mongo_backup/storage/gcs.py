"""Google Cloud Storage backend (google-cloud-storage).

Writes are resumable uploads sent chunk by chunk as the data arrives: memory holds the chunk
being sent and the one being filled. A chunk that fails transiently is sent again; the
object only exists once the last chunk is accepted, and its crc32c, as computed by the
server, must equal ours. Small objects (one chunk or less) go up in one request.

A finished object is never replaced unless asked: `ifGenerationMatch=0` on the upload, and a
check before the first byte is sent so a clash fails fast. Reads are ranged downloads of one
object generation, one range fetched ahead; a full read is checked against the crc32c.

The SDK is synchronous: every call runs in a thread, with the SDK's own retries off
(`retry=None`) so that `RetryPolicy` alone decides.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

# not `from google.cloud import storage`: mypy would look for it in the typed google.cloud.kms
import google.cloud.storage as gcs
import google_crc32c
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError, TransportError

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
from .location import GCS_SERVICE_ACCOUNT_JSON, StorageSettings
from .retry import (
    error_for_status,
    in_thread,
    is_network_error,
    resumable_stream,
    retry_async,
    retry_call,
    safe_detail,
    settle,
)

log = logging.getLogger(__name__)

#: bigger chunks mean fewer round trips; memory holds two (one travelling, one filling)
DEFAULT_PART_SIZE = 32 * 1024 * 1024
#: resumable chunks must be multiples of 256 KiB (except the last)
CHUNK_QUANTUM = 256 * 1024
#: one ranged GET per this many bytes when reading
#: smallest ranged GET when reading; a caller asking for bigger chunks gets one range per chunk
READ_RANGE = 1024 * 1024


def translate(exc: BaseException, what: str) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, gexc.GoogleAPICallError) and exc.code is not None:
        return error_for_status(int(exc.code), what, safe_detail(exc))
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return error_for_status(exc.response.status_code, what, safe_detail(exc))
    if isinstance(exc, TransportError) or is_network_error(exc):
        return TransientStorageError(f"{what} failed: {safe_detail(exc)}")
    if isinstance(exc, GoogleAuthError):
        return StorageAccessDenied(f"{what} failed: credentials rejected ({type(exc).__name__})")
    return StorageError(f"{what} failed: {safe_detail(exc)}")


def crc32c_b64(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _make_client(settings: StorageSettings) -> tuple[gcs.Client, str]:
    """The client and the API endpoint it talks to."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    endpoint = settings.gcs_endpoint or emulator or "https://storage.googleapis.com"
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    options = {"api_endpoint": endpoint}
    info = settings.credentials.get(GCS_SERVICE_ACCOUNT_JSON)
    if info:
        from google.oauth2 import service_account

        try:
            parsed = json.loads(info)
            creds = service_account.Credentials.from_service_account_info(parsed)  # type: ignore[no-untyped-call]
        except (ValueError, KeyError) as exc:
            # Never echo the content: it is a private key.
            raise StorageAccessDenied(
                f"credential {GCS_SERVICE_ACCOUNT_JSON!r} is not a valid service-account key file"
            ) from exc
        return gcs.Client(
            project=parsed.get("project_id"), credentials=creds, client_options=options
        ), endpoint
    if emulator or endpoint.startswith("http://"):
        # An emulator: tokens are never sent over plain HTTP.
        return gcs.Client(
            project="emulator",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=options,
        ), endpoint
    try:
        return gcs.Client(client_options=options), endpoint
    except GoogleAuthError as exc:  # no application default credentials on this machine
        raise StorageAccessDenied(
            "gs:// storage needs credentials: none found (GOOGLE_APPLICATION_CREDENTIALS, Workload "
            f"Identity, gcloud's application default credentials) ({type(exc).__name__})"
        ) from None


class GcsWriter(ObjectWriter):
    def __init__(self, storage: GcsStorage, name: str, overwrite: bool) -> None:
        self.name = name
        self._storage = storage
        self._key = storage.key(name)
        self._overwrite = overwrite
        self._what = f"upload of {storage.url}/{name}"
        # The chunk being filled: the first grows as data comes (small objects stay small);
        # later ones are allocated whole, so memory is two chunks (one travelling) and no more.
        self._buffer = bytearray()
        self._fill = 0
        self._chunk = storage.part_size
        self._session: str | None = None
        self._offset = 0  # bytes the server has accepted
        self._crc = 0
        self._size = 0
        self._sending: asyncio.Task[None] | None = None
        self._result: dict[str, Any] | None = None

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._crc = google_crc32c.extend(self._crc, data)
        self._size += len(data)
        view = memoryview(data)
        while view.nbytes:
            if self._fill == self._chunk:
                # A full chunk goes only once more data follows: the last chunk is never empty.
                full, self._buffer, self._fill = self._buffer, bytearray(), 0
                await self._send_soon(full, final=False)
                self._buffer = bytearray(self._chunk)
            n = min(view.nbytes, self._chunk - self._fill)
            end = self._fill + n
            if end > len(self._buffer):
                self._buffer += view[:n]
            else:
                self._buffer[self._fill : end] = view[:n]
            self._fill = end
            view = view[n:]

    async def _send_soon(self, chunk: bytes | bytearray | memoryview, final: bool) -> None:
        """Send `chunk` after the one in flight: one chunk travels while the next one fills."""
        if self._sending is not None:
            sending, self._sending = self._sending, None
            await sending
        if self._session is None:
            self._session = await self._start_session()
        if final:
            await self._send_chunk(chunk, final=True)
        else:
            self._sending = asyncio.ensure_future(self._send_chunk(chunk, final=False))

    async def _start_session(self) -> str:
        storage = self._storage
        if not self._overwrite and await storage.exists(self.name):
            raise ObjectExists(f"{storage.url}/{self.name} already exists")
        blob = storage.bucket.blob(self._key)

        def start() -> str:
            return str(
                blob.create_resumable_upload_session(
                    content_type="application/octet-stream",
                    if_generation_match=None if self._overwrite else 0,
                    timeout=storage.timeout,
                    checksum=None,
                    retry=None,
                )
            )

        try:
            return await retry_call(storage.settings.retry, self._what, translate, start)
        except ObjectNotFound as exc:
            raise BucketNotFound(
                f"{self._what} failed: bucket {storage.bucket_name!r} does not exist"
            ) from exc

    async def _send_chunk(self, chunk: bytes | bytearray | memoryview, final: bool) -> None:
        start = self._offset
        end = start + len(chunk)
        total = str(end) if final else "*"

        async def attempt() -> None:
            # Resend from what the server has accepted (it may have kept part of a chunk).
            sent_from = self._offset
            piece = memoryview(chunk)[sent_from - start :]
            if piece.nbytes:
                content_range = f"bytes {sent_from}-{end - 1}/{total}"
            else:
                content_range = f"bytes */{total}"
            response = await in_thread(
                self._storage.http.put,
                self._session_url,
                data=piece,
                headers={"Content-Range": content_range},
                timeout=self._storage.timeout,
            )
            if response.status_code == 308:
                accepted = response.headers.get("Range")
                self._offset = int(accepted.rsplit("-", 1)[1]) + 1 if accepted else 0
                if self._offset < end:
                    raise TransientStorageError(f"{self._what}: server kept {self._offset} of {end} bytes")
                return
            if response.status_code in (200, 201) and final:
                self._offset = end
                self._result = response.json()
                return
            if response.status_code == 412:
                raise ObjectExists(f"{self._storage.url}/{self.name} already exists")
            if response.status_code in (404, 410):
                raise StorageError(f"{self._what} failed: the upload session expired or was cancelled")
            detail = _error_reason(response)
            raise error_for_status(response.status_code, self._what, detail)

        await retry_async(self._storage.settings.retry, self._what, translate, attempt)

    @property
    def _session_url(self) -> str:
        assert self._session is not None
        return self._session

    async def commit(self) -> ObjectInfo:
        try:
            return await self._commit()
        except BaseException:
            # The context manager aborts only on errors in its body: a failed commit cleans up here.
            await self.abort()
            raise

    async def _commit(self) -> ObjectInfo:
        if self._session is None:
            result = await self._upload_small(bytes(memoryview(self._buffer)[: self._fill]))
        else:
            await self._send_soon(memoryview(self._buffer)[: self._fill], final=True)
            assert self._result is not None
            result = self._result
        self._buffer, self._fill = bytearray(), 0
        try:
            self._check(result)
        except StorageError:
            # Never leave a corrupt object behind: remove exactly the generation we wrote.
            blob = self._storage.bucket.blob(self._key)
            await in_thread(
                blob.delete,
                if_generation_match=int(result["generation"]),
                timeout=self._storage.timeout,
                retry=None,
            )
            raise
        return _info(self.name, result)

    async def _upload_small(self, data: bytes) -> dict[str, Any]:
        storage = self._storage
        blob = storage.bucket.blob(self._key)
        attempts = 0

        def upload() -> None:
            nonlocal attempts
            attempts += 1
            blob.upload_from_string(
                data,
                content_type="application/octet-stream",
                if_generation_match=None if self._overwrite else 0,
                checksum="crc32c",
                timeout=storage.timeout,
                retry=None,
            )

        try:
            await retry_call(storage.settings.retry, self._what, translate, upload)
        except ObjectExists:
            # A retry after a lost response finds our own object: that is success.
            if attempts > 1:
                existing = await storage.bucket_blob_properties(self._key)
                if existing is not None and existing.get("crc32c") == crc32c_b64(self._crc):
                    return existing
            raise ObjectExists(f"{storage.url}/{self.name} already exists") from None
        except ObjectNotFound as exc:
            raise BucketNotFound(
                f"{self._what} failed: bucket {storage.bucket_name!r} does not exist"
            ) from exc
        return dict(blob._properties)

    def _check(self, result: dict[str, Any]) -> None:
        size = int(result.get("size", -1))
        server_crc = result.get("crc32c")
        if size != self._size or (server_crc is not None and server_crc != crc32c_b64(self._crc)):
            raise StorageError(
                f"{self._what}: the stored object does not match what was sent "
                f"(size {size} vs {self._size}, crc32c {server_crc} vs {crc32c_b64(self._crc)})"
            )

    async def abort(self) -> None:
        self._buffer = bytearray()
        if self._sending is not None:
            sending, self._sending = self._sending, None
            sending.cancel()
            # until the chunk's PUT has ended (in_thread): only then is the session cancelled
            await settle([sending])
            if not sending.cancelled():
                sending.exception()  # consumed: the write is being aborted anyway
        if self._session is not None:
            session, self._session = self._session, None
            # Cancel the resumable session (GCS answers 499); unfinished sessions hold no object.
            try:
                await in_thread(self._storage.http.delete, session, timeout=self._storage.timeout)
            except requests.RequestException:
                pass


class _PipeClosed(Exception):
    """The reader went away: stop the download."""


class ChunkPipe:
    """A write-only file for the SDK's streaming download: gathers the body into chunks and
    hands them to the event loop through a small queue, so the download runs at most two
    chunks ahead of the reader (bounded memory), and stops when the reader closes."""

    def __init__(self, chunk_size: int, depth: int = 2) -> None:
        self._chunk_size = chunk_size
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        # Pieces as the HTTP stack hands them over, joined once per chunk (a single copy).
        self._pieces: list[bytes] = []
        self._pending = 0
        self._closed = threading.Event()
        self._error: BaseException | None = None

    def write(self, data: bytes) -> int:
        if self._closed.is_set():
            raise _PipeClosed()
        self._pieces.append(bytes(data))
        self._pending += len(data)
        if self._pending >= self._chunk_size:
            self._put(self._take())
        return len(data)

    def _take(self) -> bytes:
        data = b"".join(self._pieces)
        self._pieces, self._pending = [], 0
        return data

    def _put(self, item: bytes) -> None:
        while True:
            if self._closed.is_set():
                raise _PipeClosed()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self, download: Callable[[], None]) -> None:
        """In its own thread: run the download, pass on what remains, then the end mark."""
        try:
            download()
            if self._pieces:
                self._put(self._take())
        except BaseException as exc:
            self._error = exc
        finally:
            # Bytes received before a failure are still delivered: the resume starts after them.
            if self._pieces and not self._closed.is_set():
                try:
                    self._put(self._take())
                except _PipeClosed:
                    pass
            try:
                self._queue.put(None, timeout=5)
            except queue.Full:
                pass

    def read(self) -> bytes:
        """The next chunk, b"" at the end; the download's error once its data is delivered."""
        item = self._queue.get()
        if item is None:
            if self._error is not None and not isinstance(self._error, _PipeClosed):
                raise self._error
            return b""
        return item

    def close(self) -> None:
        self._closed.set()


def _error_reason(response: requests.Response) -> str:
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.reason or ""
    return message[:200]


def _info(name: str, props: dict[str, Any]) -> ObjectInfo:
    updated = props.get("updated")
    modified = datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None
    crc = props.get("crc32c")
    return ObjectInfo(name, int(props.get("size", 0)), modified, f"crc32c:{crc}" if crc else None)


class GcsStorage(Storage):
    def __init__(self, bucket: str, prefix: str, settings: StorageSettings) -> None:
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings
        self.url = f"gs://{bucket}/{self.prefix}".rstrip("/")
        self.part_size = max(
            CHUNK_QUANTUM, (settings.part_size or DEFAULT_PART_SIZE) // CHUNK_QUANTUM * CHUNK_QUANTUM
        )
        self.timeout = (settings.retry.connect_timeout, settings.retry.read_timeout)
        self.client, self.endpoint = _make_client(settings)
        if getattr(self.client, "_bucket_metadata_cache", None) is not None:
            # The SDK fetches bucket metadata in background threads, only for tracing spans:
            # it needs storage.buckets.get, which a least-privilege backup account lacks.
            self.client._bucket_metadata_cache = None
        self.bucket = self.client.bucket(bucket)
        # Chunks go straight to the resumable session URL, which authorises them by itself.
        self.http = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=16, max_retries=0)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)

    def key(self, name: str) -> str:
        return object_key(self.prefix, name)

    def open_write(self, name: str, *, overwrite: bool = False, size_hint: int | None = None) -> ObjectWriter:
        return GcsWriter(self, name, overwrite)

    async def bucket_blob_properties(self, key: str) -> dict[str, Any] | None:
        what = f"stat of gs://{self.bucket_name}/{key}"

        def get() -> dict[str, Any] | None:
            blob = self.bucket.get_blob(key, timeout=self.timeout, retry=None)
            return None if blob is None else dict(blob._properties)

        return await retry_call(self.settings.retry, what, translate, get)

    async def stat(self, name: str) -> ObjectInfo:
        props = await self.bucket_blob_properties(self.key(name))
        if props is None:
            raise ObjectNotFound(f"{self.url}/{name} does not exist")
        return _info(name, props)

    async def read(self, name: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        key = self.key(name)
        props = await self.bucket_blob_properties(key)
        if props is None:
            raise ObjectNotFound(f"{self.url}/{name} does not exist")
        size = int(props.get("size", 0))
        # Pinned to one generation: a resumed download cannot mix two versions of the object.
        blob = self.bucket.blob(key, generation=int(props["generation"]))
        what = f"download of {self.url}/{name}"
        crc = 0
        async for data in self._stream(blob, size, max(chunk_size, READ_RANGE), what):
            crc = google_crc32c.extend(crc, data)
            yield data
        expected = props.get("crc32c")
        if expected is not None and crc32c_b64(crc) != expected:
            raise StorageError(f"{what}: crc32c {crc32c_b64(crc)} does not match the stored {expected}")

    def _stream(self, blob: Any, size: int, chunk_size: int, what: str) -> AsyncIterator[bytes]:
        """One streaming GET, as the SDK's own download does, resumed after a failure."""

        def open_at(offset: int) -> ChunkPipe:
            pipe = ChunkPipe(chunk_size)

            def download() -> None:
                blob.download_to_file(
                    pipe, start=offset, end=size - 1, raw_download=True, checksum=None,
                    timeout=self.timeout, retry=None,
                )  # fmt: skip

            threading.Thread(target=pipe.run, args=(download,), name="gcs-download", daemon=True).start()
            return pipe

        return resumable_stream(self.settings.retry, what, translate, size, open_at)

    async def list(self, prefix: str = "", *, partial: bool = False) -> AsyncIterator[ObjectInfo]:
        key_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        what = f"list of {self.url}/{prefix}"

        def list_all() -> list[ObjectInfo]:
            blobs = self.client.list_blobs(self.bucket, prefix=key_prefix, timeout=self.timeout, retry=None)
            return [_info(b.name[strip:], dict(b._properties)) for b in blobs]

        try:
            found = await retry_call(self.settings.retry, what, translate, list_all)
        except ObjectNotFound as exc:
            raise BucketNotFound(f"{what} failed: bucket {self.bucket_name!r} does not exist") from exc
        for info in sorted(found, key=lambda i: i.name):
            yield info

    async def delete(self, name: str) -> None:
        blob = self.bucket.blob(self.key(name))

        def delete() -> None:
            try:
                blob.delete(timeout=self.timeout, retry=None)
            except gexc.NotFound:
                pass

        await retry_call(self.settings.retry, f"delete of {self.url}/{name}", translate, delete)

    async def close(self) -> None:
        await in_thread(self.http.close)
        await in_thread(self.client.close)
