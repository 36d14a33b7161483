"""Checking a MongoDB connection string before the driver sees it, so that a mistake is one
line naming the option: the driver only warns about an unknown option (and then ignores it:
a typo in `tls=true` would silently connect in clear text) and reports an unreadable
`tlsCAFile` as a bare FileNotFoundError."""

from __future__ import annotations

import os

from pymongo import common, uri_parser
from pymongo.errors import ConfigurationError

from ..redact import mask_uri
from .errors import InvalidInput

SCHEMES = ("mongodb://", "mongodb+srv://")


def check_uri(uri: str) -> None:
    """Raise InvalidInput (the URI masked) for a wrong scheme, an unknown option, an invalid
    option value or an unreadable certificate file."""
    if not uri.lower().startswith(SCHEMES):
        raise InvalidInput(
            f"invalid MongoDB URI {mask_uri(uri)!r}: it must start with mongodb:// or mongodb+srv://"
        )
    query = options_part(uri)
    if not query:
        return
    try:
        options = uri_parser.split_options(query, validate=False, warn=False, normalize=False)
    except (ConfigurationError, ValueError) as exc:  # InvalidURI is a ConfigurationError
        raise InvalidInput(f"invalid MongoDB URI {mask_uri(uri)!r}: {exc}") from None
    cased = getattr(options, "cased_key", str)  # the option as the user wrote it
    for key, value in options.items():
        name = cased(key)
        if key not in common.URI_OPTIONS_VALIDATOR_MAP:
            raise InvalidInput(f"unknown option {name!r} in the MongoDB URI")
        try:
            common.get_validated_options({name: value}, warn=False, from_uri=True)
        except OSError as exc:  # tlsCAFile, tlsCertificateKeyFile, tlsCRLFile: read right away
            reason = os.strerror(exc.errno) if exc.errno else "not readable"
            raise InvalidInput(f"MongoDB URI option {name}: cannot read {value} ({reason})") from None
        except (ConfigurationError, ValueError, TypeError) as exc:
            raise InvalidInput(f"MongoDB URI option {name}: {exc}") from None


def options_part(uri: str) -> str:
    """The `key=value&...` part of a connection string. It follows the host list, which
    starts after the userinfo's last `@` (a password may hold `@`, `/` or `?`, a host never)."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    return rest[rest.rfind("@") + 1 :].partition("?")[2]


def hosts_part(uri: str) -> str:
    """The host list of a connection string as written (`h1:27017,h2`), without credentials."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    return rest[rest.rfind("@") + 1 :].partition("?")[0].partition("/")[0]
