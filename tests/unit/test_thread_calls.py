"""Cancelling a storage call cannot stop its thread: the call must not end before the thread
does, or an abort cleans up while a write is still landing (storage/retry.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mongo_backup.storage import StorageError
from mongo_backup.storage.retry import PartTasks, RetryPolicy, retry_call


def _translate(exc: BaseException, what: str) -> StorageError:
    return StorageError(f"{what}: {exc}")


class BlockingCall:
    """A blocking SDK call stand-in: runs in a thread until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self) -> None:
        self.started.set()
        self.release.wait(60)
        self.finished.set()


async def _spin(turns: int = 20) -> None:
    """Let the event loop run other callbacks: a cancellation needs one or two turns."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_a_cancelled_call_ends_only_after_its_thread() -> None:
    call = BlockingCall()
    task = asyncio.create_task(retry_call(RetryPolicy(), "upload of x", _translate, call))
    assert await asyncio.to_thread(call.started.wait, 30)
    task.cancel()
    await _spin()
    assert not task.done(), "the call returned while its thread was still running"
    call.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.finished.is_set()


async def test_cancelling_part_uploads_waits_for_every_one_in_flight() -> None:
    calls = [BlockingCall() for _ in range(3)]
    parts = PartTasks(limit=3)
    for call in calls:
        await parts.add(retry_call(RetryPolicy(), "upload part", _translate, call))
    for call in calls:
        assert await asyncio.to_thread(call.started.wait, 30)
    cancelling = asyncio.create_task(parts.cancel())
    await _spin()
    assert not cancelling.done(), "cancel() returned while part uploads were still running"
    for call in calls:
        call.release.set()
    await cancelling
    assert all(call.finished.is_set() for call in calls)


async def test_a_second_cancellation_still_waits_for_the_thread() -> None:
    call = BlockingCall()
    task = asyncio.create_task(retry_call(RetryPolicy(), "upload of x", _translate, call))
    assert await asyncio.to_thread(call.started.wait, 30)
    task.cancel()
    await _spin()
    task.cancel()
    await _spin()
    assert not task.done()
    call.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.finished.is_set()
