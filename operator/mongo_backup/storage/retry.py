"""One retry policy for every cloud backend, and the helpers that apply it.

The SDKs' own retries are switched off (or bounded to one attempt) by each backend, so the only
retries are the ones here: exponential backoff with full jitter, within a total time budget.
Each backend supplies a `translate` function that turns an SDK exception into one of our
`StorageError`s; a `TransientStorageError` is retried, every other error fails at once.
An operation therefore gives up after at most `total_timeout` plus one request's timeouts.

Every blocking SDK or file call runs through `in_thread`: cancelling a task cannot stop a
thread, so a cancelled call waits for its thread to end before it lets the cancellation go
on. An abort or a cleanup that follows therefore never races a write still in flight (a
block landing after its blob was dropped, a temporary file created after it was removed).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .base import (
    ObjectExists,
    ObjectNotFound,
    StorageAccessDenied,
    StorageError,
    TransientStorageError,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

#: turns an SDK exception into our error for one operation ("upload part 3 of s3://b/k")
Translate = Callable[[BaseException, str], StorageError]


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried. Tests shorten the delays; defaults suit a cluster."""

    #: delay before the first retry; doubles (x `multiplier`) up to `max_delay`
    initial_delay: float = 0.5
    max_delay: float = 15.0
    multiplier: float = 2.0
    #: no new attempt starts after this many seconds since the first one
    total_timeout: float = 120.0
    #: per-request socket timeouts handed to the SDKs (connect, read)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def delays(self) -> Iterator[float]:
        delay = self.initial_delay
        while True:
            # Full jitter: many writers retrying at once do not hammer the store in step.
            yield random.uniform(0, delay)
            delay = min(self.max_delay, delay * self.multiplier)


async def settle(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Wait until every one of `futures` is done, also when the caller is cancelled meanwhile:
    the cancellation is raised only after the last one has ended. Their results and errors
    are left to whoever owns them."""
    pending = {f for f in futures if not f.done()}
    cancelled: asyncio.CancelledError | None = None
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as exc:
            cancelled = exc
        pending = {f for f in pending if not f.done()}
    if cancelled is not None:
        raise cancelled


async def in_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`asyncio.to_thread`, except that a cancelled call first waits for its thread to end:
    when this returns or raises, the blocking call is over, whatever happened to the task."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, func, *args, **kwargs)
    # never cancelled itself: a thread that has started cannot be stopped, only waited for
    future = loop.run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await settle([future])
        if not future.cancelled():
            future.exception()  # consumed: the caller is being cancelled
        raise


async def retry_call(
    policy: RetryPolicy,
    what: str,
    translate: Translate,
    func: Callable[[], T],
) -> T:
    """Run the blocking `func` in a thread, retrying transient failures under `policy`.

    `what` names the operation and object for messages, e.g. "upload of gs://b/x".
    """

    async def attempt() -> T:
        return await in_thread(func)

    return await retry_async(policy, what, translate, attempt)


async def retry_async(
    policy: RetryPolicy,
    what: str,
    translate: Translate,
    attempt: Callable[[], Awaitable[T]],
) -> T:
    """Await `attempt()` until it succeeds, fails permanently, or the time budget is spent."""
    started = time.monotonic()
    delays = policy.delays()
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except StorageError as exc:
            error = exc
        except Exception as exc:
            error = translate(exc, what)
            error.__cause__ = exc
        if not isinstance(error, TransientStorageError):
            raise error
        delay = next(delays)
        elapsed = time.monotonic() - started
        if elapsed + delay > policy.total_timeout:
            raise TransientStorageError(
                f"{what} failed {tries} times in {elapsed:.1f}s, giving up: {error}"
            ) from (error.__cause__ or error)
        log.warning("%s failed (attempt %d), retrying in %.2fs: %s", what, tries, delay, error)
        await asyncio.sleep(delay)


async def prefetch(chunks: AsyncIterator[T]) -> AsyncIterator[T]:
    """Yield from `chunks` while the next one is already being fetched: one item ahead, so
    the network keeps busy while the consumer works, and memory stays at two items."""
    iterator = aiter(chunks)
    pending: asyncio.Task[T] | None = asyncio.ensure_future(anext(iterator))
    try:
        while pending is not None:
            try:
                item = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(iterator))
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await settle([pending])
        if pending is not None and pending.done() and not pending.cancelled():
            pending.exception()  # consumed: the consumer stopped early or failed
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class PartTasks:
    """Uploads of parts (S3) or blocks (Azure) running at once, at most `limit` of them, so a
    writer overlaps network round trips while its memory stays at `limit` parts."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, coro: Awaitable[None]) -> None:
        while len(self._tasks) >= self._limit:
            await self._wait(asyncio.FIRST_COMPLETED)
        self._tasks.add(asyncio.ensure_future(coro))

    async def join(self) -> None:
        while self._tasks:
            await self._wait(asyncio.FIRST_COMPLETED)

    async def _wait(self, when: str) -> None:
        done, self._tasks = await asyncio.wait(self._tasks, return_when=when)
        for task in done:
            task.result()  # re-raise the first failure

    async def cancel(self) -> None:
        """Stop every upload and wait until each has ended, its thread included (`in_thread`):
        after this, no part of ours can still reach the store."""
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        try:
            await settle(tasks)
        finally:
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # consumed: the caller is already handling a failure


_URL_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")
_SECRET_PARAM = re.compile(
    r"(?i)\b(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|accountkey|"
    r"sharedaccesssignature|access_token|token|upload_?id|password)=[^&;\s'\"]+"
)


def safe_detail(exc: BaseException, limit: int = 300) -> str:
    """A short description of an SDK exception that is safe to show: URLs lose their query
    strings (SAS signatures, resumable-session ids), key=value secrets are masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _URL_QUERY.sub(r"\1?...", text)
    text = _SECRET_PARAM.sub(r"\1=***", text)
    if len(text) > limit:
        text = text[:limit] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def error_for_status(status: int, what: str, detail: str) -> StorageError:
    """Our error for an HTTP status from any backend (404 is left to the caller's context)."""
    message = f"{what} failed (HTTP {status}): {detail}"
    if status in (401, 403):
        return StorageAccessDenied(message)
    if status == 404:
        return ObjectNotFound(message)
    if status in (409, 412):
        return ObjectExists(message)
    if status in (408, 429) or status >= 500:
        return TransientStorageError(message)
    return StorageError(message)


def is_network_error(exc: BaseException) -> bool:
    """Connection resets, refused connections and timeouts, however the HTTP stack wraps them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError, socket.timeout)):
            return True
        module = type(current).__module__
        name = type(current).__name__
        if module.startswith(("requests", "urllib3", "http.client")) and name not in (
            "HTTPError",
            "InvalidURL",
            "MissingSchema",
        ):
            return True
        if name in (
            "EndpointConnectionError",
            "ConnectionClosedError",
            "ReadTimeoutError",
            "ConnectTimeoutError",
            "ServiceRequestError",
            "ServiceResponseError",
            "IncompleteRead",
            "IncompleteReadError",
            "ResponseStreamingError",
            "RemoteDisconnected",
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


class ChunkReader(Protocol):
    """One GET's body, read chunk by chunk from a worker thread."""

    def read(self) -> bytes:
        """The next chunk; b"" at the end of this GET's body."""
        ...

    def close(self) -> None: ...


async def resumable_stream(
    policy: RetryPolicy,
    what: str,
    translate: Translate,
    size: int,
    open_at: Callable[[int], ChunkReader],
) -> AsyncIterator[bytes]:
    """The bytes of an object of `size` bytes as one streaming GET (`open_at(0)`, blocking,
    run in a thread); after a transient failure, a new GET resumes at the first byte not yet
    delivered (`open_at(offset)`). One chunk is read ahead while the caller works. The retry
    budget restarts whenever data came through since the last failure."""
    offset = 0
    failures = 0
    first_failure = 0.0
    delays = policy.delays()
    while offset < size:
        start = offset
        reader: ChunkReader | None = None
        pending: asyncio.Future[bytes] | None = None
        try:
            reader = await in_thread(open_at, offset)
            pending = asyncio.ensure_future(in_thread(reader.read))
            while True:
                data = await pending
                pending = None
                if not data:
                    break
                pending = asyncio.ensure_future(in_thread(reader.read))
                offset += len(data)
                yield data
            if offset < size:
                raise TransientStorageError(f"{what}: the body ended at byte {offset} of {size}")
        except Exception as exc:
            error = translate(exc, what)
            if not isinstance(error, TransientStorageError):
                raise error from exc
            now = time.monotonic()
            if offset > start or failures == 0:
                failures, delays, first_failure = 0, policy.delays(), now
            failures += 1
            delay = next(delays)
            if now - first_failure + delay > policy.total_timeout:
                raise TransientStorageError(
                    f"{what} failed {failures} times in {now - first_failure:.1f}s, giving up: {error}"
                ) from exc
            log.warning("%s failed at byte %d, resuming in %.2fs: %s", what, offset, delay, error)
            await asyncio.sleep(delay)
        finally:
            if reader is not None:
                reader.close()
            if pending is not None:
                # Let the read in flight finish (closing the body ends it) before moving on.
                await settle([pending])
                if not pending.cancelled():
                    pending.exception()
