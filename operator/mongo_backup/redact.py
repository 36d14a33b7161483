"""The one scrubber for every message that leaves the process: CLI output, logs, the
operator's status, conditions and Events, exception texts.

Two layers, because neither alone is enough:
- every secret the process handles (a MongoDB URI's password, storage keys, tokens) is
  registered when it is read, and each registered value is masked wherever it appears,
  whatever the shape of the text around it;
- any `scheme://user:password@host` (or `user:password@host`) in a text has its password
  masked, also when the password holds an unescaped `/`, `@` or `:` (the userinfo ends at the
  last `@` of the URI) or the scheme is not mongodb.

Logs are scrubbed where each record is born (`install_log_redaction`: a log record factory,
plus the filter on the handlers), so that no handler (a stream, Kopf's JSON formatter, Kopf's
Event poster, a test's capture) ever sees a secret.

Imports nothing of ours: the engine, the runner, the handlers and the CLI all use it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus

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


#: URI options whose values are secrets: the password of a client key file; and the
#: properties of authMechanismProperties that are (`AWS_SESSION_TOKEN:...`)
_SECRET_OPTION = "tlscertificatekeyfilepassword"
_MECHANISM_PROPERTIES = "authmechanismproperties"
_SECRET_PROPERTIES = ("AWS_SESSION_TOKEN",)


def register_secret(value: str | None) -> None:
    """Mask `value` in every later message, also %-encoded, decoded, or escaped the way
    `repr()` and JSON escape it inside a longer text."""
    if not value:
        return
    forms = {value, unquote(value), unquote_plus(value), quote(value, safe=""), quote_plus(value, safe="")}
    forms |= {repr(f)[1:-1] for f in list(forms)} | {json.dumps(f)[1:-1] for f in list(forms)}
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
    for key, value in _options_of(uri):
        if key.lower() == _SECRET_OPTION:
            register_secret(value)
        elif key.lower() == _MECHANISM_PROPERTIES:
            for prop in value.split(","):  # AWS_SESSION_TOKEN:abc,SERVICE_NAME:x
                name, _, secret = prop.partition(":")
                if name.strip().upper() in _SECRET_PROPERTIES:
                    register_secret(secret)


def _options_of(uri: str) -> list[tuple[str, str]]:
    """The `?key=value&...` options of a connection string (after its last `@`: a password
    never holds them)."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    query = rest[rest.rfind("@") + 1 :].partition("?")[2]
    return parse_qsl(query.replace(";", "&"), keep_blank_values=False)


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


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """`record` with its message (arguments merged in) and exception text redacted."""
    message = record.getMessage()
    clean = redact(message)
    if record.exc_info and record.exc_info[1] is not None:
        formatter = logging.Formatter()
        record.exc_text = redact(formatter.formatException(record.exc_info))
        record.exc_info = None  # formatters print exc_text instead
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if clean != message or record.args:
        record.msg, record.args = clean, None
    return record


class RedactingFilter(logging.Filter):
    """Scrubs every log record (message and arguments, exception text) before the handler it
    is installed on formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


_factory_lock = threading.Lock()


def install_log_redaction(*logger_names: str) -> None:
    """Scrub every log record of the process as it is created (whatever logger, adapter or
    handler it goes to), and install the filter on the handlers of the root logger and of
    `logger_names` (e.g. Kopf's `kopf.objects`, whose handler posts Kubernetes Events).
    Idempotent."""
    with _factory_lock:
        current = logging.getLogRecordFactory()
        if not getattr(current, "redacting", False):
            logging.setLogRecordFactory(_redacting_factory(current))
    install_log_filter()
    for name in logger_names:
        install_log_filter(logging.getLogger(name))


def _redacting_factory(inner: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(inner(*args, **kwargs))

    factory.redacting = True  # type: ignore[attr-defined]
    return factory
