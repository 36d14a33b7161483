"""Human-readable sizes, rates and durations for status fields and events."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(count: float) -> str:
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(bytes_per_second: float) -> str:
    return human_bytes(bytes_per_second) + "/s"


def human_duration(seconds: float) -> str:
    """`0.4s`, `12s`, `2m10s`, `1h02m03s`: short, sortable by eye, like kubectl's ages."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def count(number: int, noun: str) -> str:
    """`1 collection`, `3 collections`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
