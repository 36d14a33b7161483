"""A clock a test moves by hand: the operator's schedules read it (`Runtime.clock`) from the
operator's thread while the test advances it from its own."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class ManualClock:
    def __init__(self, start: datetime | None = None) -> None:
        # by default the current hour: objects the emulator stamps now are not in the future
        self._now = start or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, **delta: float) -> datetime:
        """Move on by `timedelta(**delta)`; returns the new time."""
        with self._lock:
            self._now += timedelta(**delta)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when
