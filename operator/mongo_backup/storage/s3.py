"""Amazon S3 (and S3-compatible stores: MinIO, Ceph, R2) backend, with boto3.

Writes are multipart uploads fed as the data arrives: a few parts travel at once
(`upload_concurrency`), so memory stays at about `part_size x upload_concurrency`. Every part
carries a CRC32 the server verifies. The upload is completed on commit with
`If-None-Match: *` (unless overwriting), so a finished object is never replaced by surprise;
any failure aborts the multipart upload, leaving no parts behind. Objects smaller than one
part go up in a single PUT.

boto3's own retries are limited to one attempt: `RetryPolicy` alone decides.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

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
from .location import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, StorageSettings
from .retry import (
    PartTasks,
    error_for_status,
    in_thread,
    is_network_error,
    resumable_stream,
    retry_call,
    safe_detail,
)

DEFAULT_PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000
#: smallest ranged GET when reading; a caller asking for bigger chunks gets one range per chunk
READ_RANGE = 1024 * 1024

_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "AccountProblem",
}
_TRANSIENT = {
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "RequestTimeTooSkewed",
}


def translate(exc: BaseException, what: str) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        detail = f"{code}: {error.get('Message', '')}".strip(": ")
        if code == "NoSuchBucket":
            return BucketNotFound(f"{what} failed: the bucket does not exist ({detail})")
        if code in _DENIED:
            return StorageAccessDenied(f"{what} failed: access denied ({detail})")
        if code in _TRANSIENT:
            return TransientStorageError(f"{what} failed: {detail}")
        if code in ("NoSuchKey", "NoSuchUpload", "404", "NotFound"):
            return ObjectNotFound(f"{what} failed: not found ({detail})")
        return error_for_status(status, what, detail)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageAccessDenied(f"{what} failed: no usable AWS credentials ({type(exc).__name__})")
    if is_network_error(exc) or (isinstance(exc, BotoCoreError) and "Timeout" in type(exc).__name__):
        return TransientStorageError(f"{what} failed: {safe_detail(exc)}")
    return StorageError(f"{what} failed: {safe_detail(exc)}")


def _make_client(settings: StorageSettings) -> Any:
    creds = settings.credentials
    key_id, secret = creds.get(AWS_ACCESS_KEY_ID), creds.get(AWS_SECRET_ACCESS_KEY)
    if bool(key_id) != bool(secret):
        missing = AWS_SECRET_ACCESS_KEY if key_id else AWS_ACCESS_KEY_ID
        raise StorageAccessDenied(f"S3 credentials are incomplete: {missing} is missing")
    region = (
        settings.s3_region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    session = boto3.session.Session(
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        aws_session_token=creds.get(AWS_SESSION_TOKEN) or None,
        region_name=region,
    )
    config = Config(
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=settings.retry.connect_timeout,
        read_timeout=settings.retry.read_timeout,
        max_pool_connections=max(10, settings.upload_concurrency * 4),
        s3={"addressing_style": "path" if settings.s3_force_path_style else "auto"},
    )
    endpoint = settings.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
    return session.client("s3", endpoint_url=endpoint, config=config)


class S3Writer(ObjectWriter):
    def __init__(self, storage: S3Storage, name: str, overwrite: bool, size_hint: int | None) -> None:
        self.name = name
        self._storage = storage
        self._key = storage.key(name)
        self._overwrite = overwrite
        self._what = f"upload of {storage.url}/{name}"
        part = max(MIN_PART_SIZE, storage.settings.part_size or DEFAULT_PART_SIZE)
        if size_hint:
            part = max(part, -(-size_hint // (MAX_PARTS - 1000)))
        self._base_part = part
        self._buffer = bytearray()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: dict[int, dict[str, Any]] = {}
        self._next_part = 1
        self._tasks = PartTasks(storage.settings.upload_concurrency)

    def _part_size(self) -> int:
        # Grow parts for very long streams so that 10,000 parts are never exceeded.
        return self._base_part << ((self._next_part - 1) // 2000)

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._part_size():
            size = self._part_size()
            part = bytes(memoryview(self._buffer)[:size])
            del self._buffer[:size]
            await self._queue_part(part)

    async def _queue_part(self, part: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = await self._start()
        number = self._next_part
        self._next_part += 1
        await self._tasks.add(self._upload_part(number, part))

    async def _start(self) -> str:
        storage = self._storage
        if not self._overwrite and await storage.exists(self.name):
            raise ObjectExists(f"{storage.url}/{self.name} already exists")

        def create() -> str:
            response = storage.client.create_multipart_upload(
                Bucket=storage.bucket, Key=self._key, ChecksumAlgorithm="CRC32", **storage.put_options
            )
            return str(response["UploadId"])

        return str(await storage.call(self._what, create))

    async def _upload_part(self, number: int, part: bytes) -> None:
        storage = self._storage

        def upload() -> None:
            response = storage.client.upload_part(
                Bucket=storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
                ChecksumAlgorithm="CRC32",
            )
            self._parts[number] = {
                "PartNumber": number,
                "ETag": response["ETag"],
                **({"ChecksumCRC32": response["ChecksumCRC32"]} if response.get("ChecksumCRC32") else {}),
            }

        await storage.call(f"{self._what} (part {number})", upload)

    async def commit(self) -> ObjectInfo:
        try:
            return await self._commit()
        except BaseException:
            # The context manager aborts only on errors in its body: a failed commit cleans up here.
            await self.abort()
            raise

    async def _commit(self) -> ObjectInfo:
        storage = self._storage
        data, self._buffer = bytes(self._buffer), bytearray()
        if self._upload_id is None:
            conditions = {} if self._overwrite else {"IfNoneMatch": "*"}

            def put() -> None:
                storage.client.put_object(
                    Bucket=storage.bucket, Key=self._key, Body=data, **conditions, **storage.put_options
                )

            await storage.call(self._what, put)
        else:
            if data:
                await self._queue_part(data)
            await self._tasks.join()
            parts = [self._parts[n] for n in sorted(self._parts)]
            conditions = {} if self._overwrite else {"IfNoneMatch": "*"}

            def complete() -> None:
                storage.client.complete_multipart_upload(
                    Bucket=storage.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                    **conditions,
                )

            await storage.call(self._what, complete)
            self._upload_id = None
        info = await storage.stat(self.name)
        if info.size != self._size:
            raise StorageError(f"{self._what}: stored {info.size} bytes, sent {self._size}")
        return info

    async def abort(self) -> None:
        self._buffer = bytearray()
        await self._tasks.cancel()
        if self._upload_id is not None:
            storage = self._storage
            upload_id, self._upload_id = self._upload_id, None

            def abort() -> None:
                try:
                    storage.client.abort_multipart_upload(
                        Bucket=storage.bucket, Key=self._key, UploadId=upload_id
                    )
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                        raise

            await storage.call(f"abort of {self._what}", abort)


class _Body:
    """One streaming GET's body, read in chunks. (boto3's download_fileobj instead sends a
    ranged GET per 8 MiB; moto, and some S3-compatible stores, assemble the whole object for
    each of them.)"""

    def __init__(self, body: Any, chunk_size: int) -> None:
        self._body = body
        self._chunk_size = chunk_size

    def read(self) -> bytes:
        return bytes(self._body.read(self._chunk_size))

    def close(self) -> None:
        self._body.close()


class S3Storage(Storage):
    def __init__(self, bucket: str, prefix: str, settings: StorageSettings) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.settings = settings
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = _make_client(settings)
        options: dict[str, str] = {}
        if settings.s3_server_side_encryption:
            options["ServerSideEncryption"] = settings.s3_server_side_encryption
        if settings.s3_kms_key_id:
            options["SSEKMSKeyId"] = settings.s3_kms_key_id
            options.setdefault("ServerSideEncryption", "aws:kms")
        if settings.s3_storage_class:
            options["StorageClass"] = settings.s3_storage_class
        #: applied to every new object
        self.put_options = options

    def key(self, name: str) -> str:
        return object_key(self.prefix, name)

    async def call(self, what: str, func: Any) -> Any:
        """Run a blocking client call in a thread under the retry policy."""
        try:
            return await retry_call(self.settings.retry, what, translate, func)
        except StorageError as exc:
            if isinstance(exc, BucketNotFound | StorageAccessDenied):
                # Name the bucket: the object URL in `what` may be a child's.
                raise type(exc)(f"{exc} (bucket {self.bucket!r})") from exc
            raise

    def open_write(self, name: str, *, overwrite: bool = False, size_hint: int | None = None) -> ObjectWriter:
        return S3Writer(self, name, overwrite, size_hint)

    async def _head(self, name: str) -> dict[str, Any]:
        key = self.key(name)

        def head() -> dict[str, Any]:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))

        try:
            return dict(await self.call(f"stat of {self.url}/{name}", head))
        except ObjectNotFound:
            raise ObjectNotFound(f"{self.url}/{name} does not exist") from None

    async def stat(self, name: str) -> ObjectInfo:
        head = await self._head(name)
        etag = str(head.get("ETag", "")).strip('"')
        return ObjectInfo(
            name, int(head["ContentLength"]), head.get("LastModified"), f"etag:{etag}" if etag else None
        )

    async def read(self, name: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        head = await self._head(name)
        size = int(head["ContentLength"])
        etag = head.get("ETag")
        key = self.key(name)
        what = f"download of {self.url}/{name}"
        chunk = max(chunk_size, READ_RANGE)

        def open_at(offset: int) -> _Body:
            # If-Match: a resumed GET reads the same object version.
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={offset}-", IfMatch=etag
            )
            return _Body(response["Body"], chunk)

        try:
            async for data in resumable_stream(self.settings.retry, what, translate, size, open_at):
                yield data
        except ObjectNotFound as exc:
            raise ObjectNotFound(f"{self.url}/{name} disappeared while being read") from exc

    async def list(self, prefix: str = "", *, partial: bool = False) -> AsyncIterator[ObjectInfo]:
        key_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0

        def list_all() -> list[ObjectInfo]:
            found = []
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=key_prefix
            ):
                for item in page.get("Contents", []):
                    etag = str(item.get("ETag", "")).strip('"')
                    found.append(
                        ObjectInfo(
                            item["Key"][strip:], int(item["Size"]), item.get("LastModified"), f"etag:{etag}"
                        )
                    )
            return found

        for info in sorted(await self.call(f"list of {self.url}/{prefix}", list_all), key=lambda i: i.name):
            yield info

    async def delete(self, name: str) -> None:
        key = self.key(name)
        await self.call(
            f"delete of {self.url}/{name}", lambda: self.client.delete_object(Bucket=self.bucket, Key=key)
        )

    async def close(self) -> None:
        await in_thread(self.client.close)
