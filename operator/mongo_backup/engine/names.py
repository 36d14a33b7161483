"""Names read from a backup (the manifest, a mongodump directory's file names) are input: each
check returns what is wrong with one, or None. The rules are MongoDB's own (docs: "Naming
Restrictions") plus the format's: object names stay inside the backup's root.

The checks return text instead of raising, so that the manifest model (pydantic) and the
mongodump scan (catalog) can each report the error their own way, naming where it was found.
"""

from __future__ import annotations

from .namespaces import is_system_namespace

#: MongoDB: database names have fewer than 64 bytes; a namespace `db.coll` at most 255
MAX_DATABASE_BYTES = 63
MAX_NAMESPACE_BYTES = 255
#: the longest object key every backend takes (S3 and GCS: 1024 bytes)
MAX_OBJECT_NAME_BYTES = 1024
#: characters MongoDB refuses in a database name (the Unix set plus the Windows set)
_DATABASE_FORBIDDEN = '/\\. "$*<>:|?'
#: a name quoted in a message: at most this many characters
_SHOWN = 80


def shown(name: str) -> str:
    """`name` for a message: quoted, control characters escaped (a message stays one line),
    cut short when long."""
    text = name if len(name) <= _SHOWN else name[:_SHOWN] + "..."
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return f"'{escaped}'"


def _utf8_bytes(name: str) -> int | None:
    try:
        return len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, e.g. from %-unescaping
        return None


def database_name_problem(db: str) -> str | None:
    if not db:
        return "a database name cannot be empty"
    if "\x00" in db:
        return "a database name cannot contain NUL"
    bad = sorted({c for c in db if c in _DATABASE_FORBIDDEN})
    if bad:
        return f"a database name cannot contain {' '.join(repr(c) for c in bad)}"
    size = _utf8_bytes(db)
    if size is None:
        return "a database name must be valid UTF-8"
    if size > MAX_DATABASE_BYTES:
        return f"a database name has at most {MAX_DATABASE_BYTES} bytes ({size} here)"
    return None


def collection_name_problem(name: str) -> str | None:
    if not name:
        return "a collection name cannot be empty"
    if "\x00" in name:
        return "a collection name cannot contain NUL"
    if "$" in name:
        return "a collection name cannot contain '$'"
    if _utf8_bytes(name) is None:
        return "a collection name must be valid UTF-8"
    return None


def namespace_problem(db: str, name: str) -> str | None:
    """Both names, the namespace's length, and no server internals (`system.*` other than the
    collections a backup holds: docs/FORMAT.md section 1)."""
    problem = database_name_problem(db) or collection_name_problem(name)
    if problem:
        return problem
    size = len(f"{db}.{name}".encode())
    if size > MAX_NAMESPACE_BYTES:
        return f"a namespace has at most {MAX_NAMESPACE_BYTES} bytes ({size} here)"
    if is_system_namespace(db, name):
        return "a backup holds no server-internal namespace (local, config, system.*)"
    return None


def object_name_problem(name: str) -> str | None:
    """An object name relative to the backup's root that cannot point outside it."""
    if not name:
        return "an object name cannot be empty"
    if any(not c.isprintable() for c in name):
        return "an object name cannot contain control characters"
    if "\\" in name:
        return "an object name cannot contain a backslash"
    if name.startswith("/"):
        return "an object name must be relative to the backup's root"
    size = _utf8_bytes(name)
    if size is None:
        return "an object name must be valid UTF-8"
    if size > MAX_OBJECT_NAME_BYTES:
        return f"an object name has at most {MAX_OBJECT_NAME_BYTES} bytes ({size} here)"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "an object name cannot have empty, '.' or '..' parts"
    return None
