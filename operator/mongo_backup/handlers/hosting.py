"""Running a run inside a Kopf daemon: the run is a task of its own, cancelled as soon as Kopf
asks the daemon to stop (object deleted, operator exiting or paused by a peer). The status
is left as it is then: the next operator process takes the run up again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import kopf

from ..runner import Failure, ObjectLink
from ..runner.conditions import now_iso, set_condition


async def host(run: Coroutine[Any, Any, None], stopped: kopf.DaemonStopped, logger: Any) -> None:
    task = asyncio.create_task(run)
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            logger.info("stopping the run: %s", stopped.reason)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fail_at_once(link: ObjectLink, status: Any, failure: Failure) -> None:
    """A spec that can never run: Failed without an attempt."""
    conditions = set_condition(
        status.get("conditions") or [], "Failed", "True", failure.reason, failure.message
    )
    link.post_event("Warning", "Failed", f"{failure.reason}: {failure.message}")
    await link.patch_status(
        {"phase": "Failed", "error": failure.message, "completedAt": now_iso(), "conditions": conditions}
    )


def runnable(status: Any, **_: Any) -> bool:
    """Completed and Failed objects are never run again."""
    return (status or {}).get("phase") not in ("Completed", "Failed")
