"""What the CLI shows a person: a live progress display on a terminal, and result summaries."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .engine import Progress
from .redact import redact

_REDRAW_SECONDS = 0.5
_SHOWN_COLLECTIONS = 4


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float | None) -> str:
    if s is None:
        return "--"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class ProgressDisplay:
    """Redraws a few lines on a terminal at most twice a second; silent elsewhere."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool | None = None) -> None:
        self._stream = stream
        self._enabled = stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._lines = 0

    def __call__(self, progress: Progress) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last < _REDRAW_SECONDS:
            return
        self._last = now
        self._draw(progress)

    def _draw(self, p: Progress) -> None:
        docs_rate = p.documents_done / p.elapsed if p.elapsed else 0.0
        # while the backup still counts, its totals are partial: no percent, and a "+" on them
        percent = f"{p.percent:5.1f}%" if p.percent is not None else "  ...%"
        more = "" if p.totals_known else "+"
        lines = [
            f"{p.phase}: {percent}  {p.documents_done:,}/{p.documents_total:,}{more} docs  "
            f"{human_bytes(p.bytes_done)}/{human_bytes(p.bytes_total)}{more}  "
            f"{docs_rate:,.0f} docs/s  {human_bytes(p.rate)}/s  ETA {human_seconds(p.eta)}"
        ]
        active = [c for c in p.collections.values() if not c.finished and c.documents_done]
        for c in active[:_SHOWN_COLLECTIONS]:
            pct = 100.0 * c.bytes_done / c.bytes_total if c.bytes_total else 0.0
            lines.append(
                f"  {c.namespace}: {min(pct, 100.0):5.1f}%  {c.documents_done:,}/{c.documents_total:,} docs"
            )
        if len(active) > _SHOWN_COLLECTIONS:
            lines.append(f"  ... and {len(active) - _SHOWN_COLLECTIONS} more")
        self._erase()
        self._stream.write(redact("\n".join(lines)) + "\n")  # names come from the server and the backup
        self._stream.flush()
        self._lines = len(lines)

    def _erase(self) -> None:
        if self._lines:
            self._stream.write(f"\x1b[{self._lines}F\x1b[J")

    def close(self) -> None:
        if self._enabled:
            self._erase()
            self._stream.flush()
            self._lines = 0
