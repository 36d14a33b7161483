"""A run that was cancelled must stop, even when a library dropped the cancellation.

On Python 3.11, `asyncio.wait_for` returns normally when the awaited operation completes in
the same loop iteration as the task's cancellation (CPython gh-86296, fixed in 3.12). PyMongo
awaits `wait_for` to open connections and to send every command, so a MongoBackup deleted
while its run was connecting went on to write a complete backup after the object was gone
(observed: the cancel landed in `pool_shared._async_create_connection`). The task still
counts the request (`Task.cancelling()`), so a run calls `checkpoint()` after driver calls
and before it commits anything: a dropped cancellation is raised there after all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from ..storage.retry import settle

log = logging.getLogger(__name__)


def checkpoint() -> None:
    """Raise CancelledError if this task was asked to stop and is still running."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


async def clean_up(cleanup: Coroutine[Any, Any, None], what: str, limit: float) -> bool:
    """Run a failed or cancelled run's `cleanup` to its end (at most `limit` seconds), even
    if the run is cancelled again meanwhile; a failure of the cleanup is logged, not raised:
    the result says whether it succeeded."""
    task = asyncio.ensure_future(asyncio.wait_for(cleanup, limit))
    try:
        await settle([task])
    finally:
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            log.warning("could not remove %s: %s", what, error)
    return task.done() and not task.cancelled() and task.exception() is None


def cancelled_with(exc: BaseException, outcome: str) -> BaseException:
    """`exc`, or, when it is a cancellation, one that says what the stopped run left: a user who
    cancels a run reads it in the run's status (`str(exc)`), and the type stays CancelledError."""
    if isinstance(exc, asyncio.CancelledError) and not exc.args:
        return asyncio.CancelledError(outcome)
    return exc
