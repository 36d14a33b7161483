"""The one scrubber for every message that leaves the process: CLI output, logs, the
operator's status, conditions and Events, exception texts.

Two layers, because neither alone is enough:
- every secret the process handles (a MongoDB URI's password, storage keys, tokens) is
  registered when it is read, and each registered value is masked wherever it appears,
  whatever the shape of the text around it;
- any `scheme://user:password@host` (or `user:password@host`) in a text has its password
  masked, also when the password holds an unescaped `/`, `@` or `:` (the userinfo ends at the
  last `@` of the URI) or the scheme is not mongodb.

Imports nothing of ours: the engine, the runner, the handlers and the CLI all use it.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, unquote

MASK = "***"
#: shorter registered values are masked only inside URIs: masking every "ab" of a message
#: would make it unreadable, and such a password is found by the URI rule anyway
_MIN_FREE_TEXT = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# A URI-ish token: an optional scheme, then "user:password@rest" up to whitespace or a quote.
# The userinfo runs to the LAST "@" of the token, so "@" and "/" inside a password stay masked.
_TOKEN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?(?P<body>[^\s'\"<>()\[\]{}`,]+)")


def register_secret(value: str | None) -> None:
    """Mask `value` (and its %-encoded and decoded forms) in every later message."""
    if not value:
        return
    forms = {value, unquote(value), quote(value, safe="")}
    with _lock:
        before = len(_secrets)
        _secrets.update(f for f in forms if f)
        if len(_secrets) != before:
            global _pattern
            long_ones = sorted((s for s in _secrets if len(s) >= _MIN_FREE_TEXT), key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in long_ones)) if long_ones else None


def register_uri(uri: str | None) -> None:
    """Register the password of a connection string, whatever its shape."""
    if not uri:
        return
    password = password_of(uri)
    if password:
        register_secret(password)


def password_of(uri: str) -> str | None:
    """The password of `[scheme://]user:password@hosts[/...]`, read the way a human means it:
    the userinfo ends at the last `@` (hosts never contain one), the user name at the first `:`."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    at = rest.rfind("@")
    if at < 0:
        return None
    userinfo = rest[:at]
    _user, colon, password = userinfo.partition(":")
    return password if colon and password else None


def mask_uri(uri: str) -> str:
    """`uri` with its password replaced by `***` (the user name stays: it helps debugging)."""
    return redact(uri)


def _mask_token(found: re.Match[str]) -> str:
    scheme = found.group("scheme") or ""
    body = found.group("body")
    at = body.rfind("@")
    colon = body.find(":")
    if at < 0 or colon < 0 or colon > at:
        return found.group(0)
    if not scheme and (colon == 0 or "/" in body[:colon]):
        return found.group(0)  # "a/b:c@d" without a scheme is not a userinfo
    return f"{scheme}{body[:colon]}:{MASK}{body[at:]}"


def redact(text: str) -> str:
    """`text` without any registered secret and without any URI password."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "@" in text:
        text = _TOKEN.sub(_mask_token, text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs every log record (message and arguments, exception text) before any handler
    formats it. Installed on the handlers of the CLI and the operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
