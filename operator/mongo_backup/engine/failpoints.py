"""Named points in a run where the fault-injection tests stop it on purpose.

A test pauses a run at an exact step (after the lock is taken, in the middle of a
collection's data, between two swaps of a restore) instead of sleeping and hoping, then
kills it, cuts its connection or starts a rival run. The same idea as etcd's gofail or
TiKV's fail-rs, kept tiny: when nothing is armed, `failpoint()` is one dict lookup.

Arming:
- in-process: `with armed("restore.swap", hook): ...` where `hook(context)` is a coroutine
  function (it may wait on an event, raise, or do nothing);
- in a child process: the environment variable `MONGO_BACKUP_FAILPOINTS`, e.g.
  `restore.swap=pause` or `backup.data@3=kill;restore.staged=fail`. Actions: `pause` writes
  the file `$MONGO_BACKUP_FAILPOINT_DIR/<name>` and then waits until the test removes that
  file (the run goes on) or kills or interrupts the process, `kill` is SIGKILL of the process
  itself, `fail` raises `FailpointError`. `@N` fires on the Nth time the point is reached
  (default: the first).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV = "MONGO_BACKUP_FAILPOINTS"
DIR_ENV = "MONGO_BACKUP_FAILPOINT_DIR"

Hook = Callable[[dict[str, Any]], Awaitable[None]]


class FailpointError(Exception):
    """Raised by a failpoint armed with `fail`: an unexpected error at that exact step."""


_hooks: dict[str, Hook] = {}
_hits: dict[str, int] = {}


def _parse(spec: str) -> dict[str, tuple[str, int]]:
    armed: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        point, _, action = item.partition("=")
        name, _, nth = point.partition("@")
        armed[name.strip()] = (action.strip() or "pause", int(nth) if nth else 1)
    return armed


_from_env = _parse(os.environ.get(ENV, ""))


async def failpoint(name: str, **context: Any) -> None:
    """Reached step `name` of a run; `context` tells hooks where (namespace, object...)."""
    if not _hooks and not _from_env:
        return
    hook = _hooks.get(name)
    if hook is not None:
        await hook({"name": name, **context})
    if name in _from_env:
        action, nth = _from_env[name]
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] == nth:
            await _act(name, action)


async def _act(name: str, action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "fail":
        raise FailpointError(f"failpoint {name} fired")
    folder = os.environ.get(DIR_ENV)
    if not folder:
        await asyncio.Event().wait()  # paused until the test kills or interrupts the process
        return
    marker = Path(folder, name)
    marker.write_text(str(os.getpid()))  # noqa: ASYNC240 - a few bytes, once, in a test run
    while marker.exists():  # noqa: ASYNC110, ASYNC240 - the test resumes the run by removing it
        await asyncio.sleep(0.05)


@contextmanager
def armed(name: str, hook: Hook) -> Iterator[None]:
    """Run `hook` each time step `name` is reached, for the duration of the block."""
    _hooks[name] = hook
    try:
        yield
    finally:
        _hooks.pop(name, None)
