"""What to report when a task group fails."""

from __future__ import annotations

import asyncio


def first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real failure of a task group, not a sibling's cancellation."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return first_cause(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
