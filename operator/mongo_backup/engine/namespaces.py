"""Which namespaces a run touches, and what they are called on the other side.

Patterns follow mongodump/mongorestore: `db.coll`, `db.*`, `*.coll`; `*` matches any run of
characters (never a dot in the database part). Renames follow mongorestore's --nsFrom/--nsTo:
each `*` in the source pattern captures, and the captures fill the `*`s of the target pattern
in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidInput

#: where restores keep their journal (engine/journal.py): never backed up, never a target
JOURNAL_DATABASE = "__mongo_backup"
#: databases mongodump leaves out of a full dump, and our own
SKIPPED_DATABASES = frozenset({"local", "config", JOURNAL_DATABASE})
#: collections that are server internals; views are recorded from list_collections instead of
#: system.views, time-series data is read through the time-series collection, not its buckets
_SYSTEM_PREFIX = "system."
_KEPT_SYSTEM_COLLECTIONS = frozenset({"system.js"})


def is_system_namespace(db: str, coll: str) -> bool:
    if db in SKIPPED_DATABASES:
        return True
    return coll.startswith(_SYSTEM_PREFIX) and coll not in _KEPT_SYSTEM_COLLECTIONS


def split_namespace(ns: str) -> tuple[str, str]:
    db, dot, coll = ns.partition(".")
    if not dot or not db or not coll:
        raise InvalidInput(f"namespace {ns!r} must be DATABASE.COLLECTION")
    return db, coll


def _compile(pattern: str, *, capture: bool) -> re.Pattern[str]:
    if "." not in pattern:
        raise InvalidInput(f"namespace pattern {pattern!r} must look like 'db.*' or 'db.coll'")
    db_part, _, coll_part = pattern.partition(".")
    star_db = "([^.]*)" if capture else "[^.]*"
    star_coll = "(.*)" if capture else ".*"
    regex = star_db.join(re.escape(p) for p in db_part.split("*"))
    regex += r"\." + star_coll.join(re.escape(p) for p in coll_part.split("*"))
    return re.compile(regex + r"\Z", re.DOTALL)


@dataclass(frozen=True)
class NamespaceFilter:
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inc", [_compile(p, capture=False) for p in self.include])
        object.__setattr__(self, "_exc", [_compile(p, capture=False) for p in self.exclude])

    def matches(self, ns: str) -> bool:
        inc: list[re.Pattern[str]] = self._inc  # type: ignore[attr-defined]
        exc: list[re.Pattern[str]] = self._exc  # type: ignore[attr-defined]
        if inc and not any(p.match(ns) for p in inc):
            return False
        return not any(p.match(ns) for p in exc)

    def may_match_database(self, db: str) -> bool:
        """False when no namespace of `db` can match: lets a backup skip listing it."""
        if not self.include:
            return True
        return any(_db_part_matches(p, db) for p in self.include)


def _db_part_matches(pattern: str, db: str) -> bool:
    db_pattern = pattern.partition(".")[0]
    regex = "[^.]*".join(re.escape(p) for p in db_pattern.split("*"))
    return re.fullmatch(regex, db) is not None


class NamespaceRenamer:
    """Applies --nsFrom/--nsTo pairs; the first matching pair wins."""

    def __init__(self, sources: Sequence[str], targets: Sequence[str]) -> None:
        if len(sources) != len(targets):
            raise InvalidInput(
                f"renames need as many --ns-to as --ns-from patterns (got {len(sources)} and {len(targets)})"
            )
        self._pairs: list[tuple[re.Pattern[str], str]] = []
        for src, dst in zip(sources, targets, strict=True):
            if src.count("*") != dst.count("*"):
                raise InvalidInput(f"rename {src!r} -> {dst!r}: both patterns need the same number of '*'")
            self._pairs.append((_compile(src, capture=True), dst))

    def rename(self, ns: str) -> str:
        for regex, target in self._pairs:
            found = regex.match(ns)
            if found:
                pieces = target.split("*")
                out = pieces[0]
                for captured, piece in zip(found.groups(), pieces[1:], strict=True):
                    out += captured + piece
                split_namespace(out)
                return out
        return ns
