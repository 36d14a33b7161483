"""manifest.json: the table of contents of a backup, written last. docs/FORMAT.md section 3 is
its spec.

Read back from storage, the manifest is input, validated like input from users: one strict
pydantic model (types, bounds, names, one metadata object per entry, totals that add up),
shared by verify, restore, ls, the runner and the deletion of a backup. A manifest that does
not fit is `ManifestInvalid`, one line naming the field: "manifest invalid:
collections[3].objects[0].size: must be >= 0". Fields it does not know are ignored
(FORMAT.md section 7).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AliasPath,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails

from .compression import CODECS
from .digest import BLAKE2B, XXH3, digest_algorithm
from .encryption import SCHEME, SEGMENT_SIZE, BackupKeys
from .errors import ManifestInvalid, ManifestTampered
from .names import namespace_problem, object_name_problem, shown
from .signing import Signer
from .transforms import ENCRYPTED_SUFFIX, Transforms

MANIFEST_NAME = "manifest.json"
#: the backup name's lock, the first object a backup writes (docs/FORMAT.md section 3a)
LOCK_NAME = "lock.json"
FORMAT_NAME = "mongo-backup"
#: the version this tool writes, and the newest it reads (docs/FORMAT.md section 8): 1 for a
#: plain backup, 2 for an encrypted one (both with BLAKE2b digests), 3 for either with XXH3
#: digests
FORMAT_VERSION = 3
#: the first version whose content digests are XXH3's
XXH3_FORMAT_VERSION = 3
#: the manifest fields that authenticate the rest: left out of its canonical bytes
AUTHENTICATION_FIELDS = ("authentication", "signature")

#: the largest integer every JSON reader holds exactly (I-JSON, RFC 7493): the bound of every
#: size and count, far above any real backup
MAX_COUNT = 2**53 - 1
#: more entries than any deployment has collections: a bound on what one manifest may make us hold
MAX_COLLECTIONS = 1_000_000
_MAX_TEXT = 256
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z")
_DATA_SUFFIXES = tuple(".bson" + c.suffix + e for c in CODECS.values() for e in ("", ENCRYPTED_SUFFIX))
_METADATA_SUFFIXES = tuple(
    ".metadata.json" + c.suffix + e for c in CODECS.values() for e in ("", ENCRYPTED_SUFFIX)
)
_BASE_SUFFIX = {"data": ".bson", "metadata": ".metadata.json"}


def _text(value: str) -> str:
    if any(not c.isprintable() for c in value):
        raise ValueError("must not contain control characters")
    return value


def _hex(digits: int, *prefixes: str) -> Any:
    """Exactly `digits` lower-case hex digits, after one of `prefixes` when there are any."""
    prefix = "(" + "|".join(map(re.escape, prefixes)) + ")" if prefixes else ""
    pattern = re.compile(prefix + f"[0-9a-f]{{{digits}}}\\Z")

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(
                f"must be {' or '.join(prefixes) + ' followed by ' if prefixes else ''}{digits} lower-case hex digits"
            )
        return value

    return AfterValidator(check)


def _rfc3339(value: Any, info: ValidationInfo) -> Any:
    """From JSON, exactly an RFC 3339 string with a time zone (the datetime parser alone also
    takes numbers and other layouts); in Python, a datetime."""
    if info.mode == "json":
        if not isinstance(value, str) or not _RFC3339.match(value):
            raise ValueError("must be an RFC 3339 timestamp, e.g. 2026-01-31T23:59:59Z")
    elif not isinstance(value, datetime):
        raise ValueError("must be a datetime")
    return value


def _object_name(value: str) -> str:
    problem = object_name_problem(value)
    if problem:
        raise ValueError(f"{shown(value)}: {problem}")
    return value


Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Text = Annotated[str, Field(max_length=_MAX_TEXT), AfterValidator(_text)]
Sha256 = Annotated[str, _hex(64)]
ContentDigestHex = Annotated[str, _hex(32, XXH3, BLAKE2B)]
# the string is checked first; then parsed (a validator's output is no longer JSON: not strict)
Timestamp = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339)]
ObjectName = Annotated[str, AfterValidator(_object_name)]


def _one_of(*allowed: str) -> Any:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(repr(a) for a in allowed)}")
        return value

    return AfterValidator(check)


# str rather than Literal: the backup builds entries from what the server reports
CollectionType = Annotated[str, _one_of("collection", "view", "timeseries")]
CompressionName = Annotated[str, _one_of(*CODECS)]
Role = Literal["data", "metadata"]


class _Strict(BaseModel):
    # strict: no coercion ("12" is not 12, 1.0 is not 1); names and camelCase aliases both
    # build a model in Python, only the aliases are read from JSON (see BackupManifest.from_json)
    model_config = ConfigDict(
        strict=True, frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )


class StoredObject(_Strict):
    name: ObjectName  # relative to the backup's root
    role: Role
    size: Count
    sha256: Sha256
    #: the transform steps in write order (engine/transforms.py); None (version 1 manifests):
    #: what the name's suffix says
    transforms: Annotated[list[str], Field(max_length=2)] | None = None

    _FIELDS: ClassVar[tuple[str, ...]] = ("name", "role", "size", "sha256")

    def __init__(self, *args: Any, **data: Any) -> None:
        """Also `StoredObject(name, role, size, sha256)`, as the backup builds them."""
        if len(args) > len(self._FIELDS):
            raise TypeError(f"StoredObject takes at most {len(self._FIELDS)} positional arguments")
        data.update(zip(self._FIELDS, args, strict=False))
        super().__init__(**data)

    @property
    def chain(self) -> Transforms:
        if self.transforms is None:
            return Transforms.from_name(self.name)
        return Transforms.from_steps(self.transforms)

    @model_validator(mode="after")
    def _suffix_fits_role(self) -> StoredObject:
        suffixes = _DATA_SUFFIXES if self.role == "data" else _METADATA_SUFFIXES
        if not self.name.endswith(suffixes):
            raise ValueError(f"a {self.role} object's name ends with {' or '.join(sorted(suffixes))}")
        if self.transforms is not None:
            chain = Transforms.from_steps(self.transforms)
            expected = _BASE_SUFFIX[self.role] + chain.suffix
            if not self.name.endswith(expected):
                raise ValueError(
                    f"{shown(self.name)}: transforms {list(self.transforms)} make names end with {expected}"
                )
        return self


class CollectionEntry(_Strict):
    db: str
    name: str
    type: CollectionType
    documents: Count
    data_bytes: Count = Field(alias="dataBytes")
    digest: ContentDigestHex | None
    objects: list[StoredObject] = Field(min_length=1, max_length=2)

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.name}"

    def object(self, role: str) -> StoredObject | None:
        return next((o for o in self.objects if o.role == role), None)

    @property
    def stored_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @model_validator(mode="after")
    def _consistent(self) -> CollectionEntry:
        problem = namespace_problem(self.db, self.name)
        if problem:
            raise ValueError(f"namespace {shown(self.namespace)}: {problem}")
        roles = [o.role for o in self.objects]
        if roles.count("metadata") != 1:
            raise ValueError("an entry has exactly one metadata object")
        if self.type == "view":
            if "data" in roles or self.digest is not None or self.documents or self.data_bytes:
                raise ValueError("a view has no data object, no digest, 0 documents and 0 dataBytes")
        elif "data" not in roles or self.digest is None:
            raise ValueError(f"a {self.type} entry has one data object and a digest")
        return self


Hex32 = Annotated[str, _hex(32)]
Fingerprint = Annotated[str, _hex(16)]


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64") from None
    return value


class KeyInfo(_Strict):
    """Which key-encryption key wrapped the data key: never the key itself."""

    kind: Annotated[str, _one_of("local", "aws-kms", "gcp-kms", "azure-keyvault")]
    fingerprint: Fingerprint
    #: where it came from: `secret:NAME`, `file:NAME`, a KMS key id or ARN
    source: Text


class EncryptionInfo(_Strict):
    scheme: Annotated[str, _one_of(SCHEME)]
    segment_size: Annotated[int, Field(ge=SEGMENT_SIZE, le=SEGMENT_SIZE)] = Field(alias="segmentSize")
    #: bound into every object's associated data: an object of another backup does not open
    backup_id: Hex32 = Field(alias="backupId")
    key: KeyInfo
    #: the data key, wrapped by the key-encryption key (base64)
    wrapped_key: Annotated[str, Field(max_length=4096), AfterValidator(_base64)] = Field(alias="wrappedKey")

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "segmentSize": self.segment_size,
            "backupId": self.backup_id,
            "key": {"kind": self.key.kind, "fingerprint": self.key.fingerprint, "source": self.key.source},
            "wrappedKey": self.wrapped_key,
        }


class Authentication(_Strict):
    """The manifest's MAC under the backup's data key (encrypted backups)."""

    type: Annotated[str, _one_of("hmac-sha256")]
    value: Sha256


class Signature(_Strict):
    """An Ed25519 signature of the manifest's canonical bytes (engine/signing.py)."""

    type: Annotated[str, _one_of("ed25519")]
    public_key_fingerprint: Fingerprint = Field(alias="publicKeyFingerprint")
    value: Annotated[str, Field(max_length=200), AfterValidator(_base64)]

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "publicKeyFingerprint": self.public_key_fingerprint, "value": self.value}


class Totals(_Strict):
    collections: Count
    documents: Count
    data_bytes: Count = Field(alias="dataBytes")
    stored_bytes: Count = Field(alias="storedBytes")


class BackupManifest(_Strict):
    format: Annotated[str, _one_of(FORMAT_NAME)] = FORMAT_NAME
    format_version: int = Field(default=FORMAT_VERSION, ge=1, le=FORMAT_VERSION, alias="formatVersion")
    engine_version: Text = Field(alias="engineVersion")
    server_version: Text = Field(alias="serverVersion")
    started_at: Timestamp = Field(alias="startedAt")
    completed_at: Timestamp = Field(alias="completedAt")
    compression: CompressionName = Field(validation_alias=AliasPath("compression", "type"))
    compression_level: Annotated[int, Field(ge=-1000, le=1000)] | None = Field(
        validation_alias=AliasPath("compression", "level")
    )
    options: dict[str, Any]
    #: read from a stored manifest (where it is required); computed when None
    totals: Totals | None = None
    collections: list[CollectionEntry] = Field(max_length=MAX_COLLECTIONS)
    encryption: EncryptionInfo | None = None
    authentication: Authentication | None = None
    signature: Signature | None = None

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    @property
    def documents(self) -> int:
        return sum(c.documents for c in self.collections)

    @property
    def data_bytes(self) -> int:
        return sum(c.data_bytes for c in self.collections)

    @property
    def stored_bytes(self) -> int:
        return sum(c.stored_bytes for c in self.collections)

    def computed_totals(self) -> Totals:
        return Totals(
            collections=len(self.collections),
            documents=self.documents,
            data_bytes=self.data_bytes,
            stored_bytes=self.stored_bytes,
        )

    @model_validator(mode="after")
    def _encrypted_throughout(self) -> BackupManifest:
        """An encrypted backup is version 2 or 3, authenticated, and every object is encrypted;
        a plain one (version 1 or 3) has no encrypted object."""
        if self.encryption is None:
            if self.format_version == 2:
                raise ValueError("encryption: missing (a version 2 manifest is of an encrypted backup)")
            if self.authentication is not None:
                raise ValueError("authentication: only an encrypted backup's manifest has one")
        elif self.format_version < 2:
            raise ValueError("formatVersion: an encrypted backup's manifest is version 2 or later")
        for i, entry in enumerate(self.collections):
            for j, o in enumerate(entry.objects):
                if o.chain.encrypted != self.encrypted:
                    state = "encrypted" if o.chain.encrypted else "not encrypted"
                    raise ValueError(
                        f"collections[{i}].objects[{j}]: {shown(o.name)} is {state}, unlike the backup"
                    )
        return self

    @model_validator(mode="after")
    def _digests_of_the_version(self) -> BackupManifest:
        """Digests are BLAKE2b's before version 3 and XXH3's from it."""
        algorithm = XXH3 if self.format_version >= XXH3_FORMAT_VERSION else BLAKE2B
        for i, entry in enumerate(self.collections):
            if entry.digest is not None and digest_algorithm(entry.digest) != algorithm:
                raise ValueError(
                    f"collections[{i}].digest: a version {self.format_version} manifest's digests "
                    f"are {algorithm}..."
                )
        return self

    @model_validator(mode="after")
    def _adds_up(self, info: ValidationInfo) -> BackupManifest:
        namespaces: set[str] = set()
        objects: set[str] = set()
        for i, entry in enumerate(self.collections):
            if entry.namespace in namespaces:
                raise ValueError(f"collections[{i}]: {shown(entry.namespace)} is listed twice")
            namespaces.add(entry.namespace)
            for o in entry.objects:
                if o.name in objects or o.name in (MANIFEST_NAME, LOCK_NAME):
                    raise ValueError(f"collections[{i}]: object {shown(o.name)} is listed twice")
                objects.add(o.name)
        if self.totals is None:
            if info.mode == "json":
                raise ValueError("totals: missing")
            return self
        computed = self.computed_totals()
        for field, alias in (
            ("collections", "collections"),
            ("documents", "documents"),
            ("data_bytes", "dataBytes"),
            ("stored_bytes", "storedBytes"),
        ):
            stated, found = getattr(self.totals, field), getattr(computed, field)
            if stated != found:
                raise ValueError(f"totals.{alias}: {stated}, but the entries add up to {found}")
        return self

    def to_json(self, keys: BackupKeys | None = None, signer: Signer | None = None) -> bytes:
        """The manifest's bytes; an encrypted backup's carry their MAC under `keys`, a signed
        one the `signer`'s signature (both over the same canonical bytes)."""
        doc = self.to_document()
        canonical = canonical_bytes(doc)
        if self.encryption is not None:
            if keys is None:
                raise ValueError("an encrypted backup's manifest is authenticated: keys needed")
            doc["authentication"] = {"type": "hmac-sha256", "value": keys.mac(canonical)}
        if signer is not None:
            doc["signature"] = signer.sign(canonical)
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()

    def to_document(self) -> dict[str, Any]:
        """The manifest as JSON values, without its authentication."""
        totals = self.computed_totals()
        doc: dict[str, Any] = {
            "format": FORMAT_NAME,
            "formatVersion": self.format_version,
            "engineVersion": self.engine_version,
            "serverVersion": self.server_version,
            "startedAt": _iso(self.started_at),
            "completedAt": _iso(self.completed_at),
            "compression": {"type": self.compression, "level": self.compression_level},
            "options": self.options,
            "totals": {
                "collections": totals.collections,
                "documents": totals.documents,
                "dataBytes": totals.data_bytes,
                "storedBytes": totals.stored_bytes,
            },
            "collections": [
                {
                    "db": c.db,
                    "name": c.name,
                    "type": c.type,
                    "documents": c.documents,
                    "dataBytes": c.data_bytes,
                    "digest": c.digest,
                    "objects": [_object_json(o) for o in c.objects],
                }
                for c in self.collections
            ],
        }
        if self.encryption is not None:
            doc["encryption"] = self.encryption.to_json()
        return doc

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> BackupManifest:
        """The manifest in `raw` (read from `where`), or ManifestInvalid naming the first field
        that does not fit."""
        _check_header(raw, where)
        try:
            return cls.model_validate_json(raw, by_alias=True, by_name=False)
        except ValidationError as exc:
            raise _invalid(where, exc) from None


class _Header(BaseModel):
    """What must be known before the rest can be read: a newer version may differ anywhere."""

    model_config = ConfigDict(extra="ignore")
    format: Any = None
    formatVersion: Any = None


def _check_header(raw: bytes, where: str) -> None:
    try:
        header = _Header.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(where, exc) from None
    if header.format != FORMAT_NAME:
        raise ManifestInvalid(f"{where}: manifest invalid: format: must be {FORMAT_NAME!r}")
    version = header.formatVersion
    if version is None:
        raise ManifestInvalid(f"{where}: manifest invalid: formatVersion: missing")
    if type(version) is int and version > FORMAT_VERSION:
        shown_version = str(version) if version < 10**6 else "far"
        raise ManifestInvalid(
            f"{where}: manifest invalid: formatVersion {shown_version} is newer than this tool reads "
            f"({FORMAT_VERSION}): upgrade mongo-backup"
        )


#: pydantic's words for the common errors, shortened to the format's (ctx fills the braces)
_MESSAGES = {
    "missing": "missing",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be an array",
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "string_too_long": "must have at most {max_length} characters",
    "literal_error": "must be one of {expected}",
    "timezone_aware": "must have a time zone",
}


def _invalid(where: str, exc: ValidationError) -> ManifestInvalid:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ManifestInvalid(f"{where}: manifest invalid: {_describe(first)}{more}")


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "json_invalid":
        return f"not JSON ({error.get('ctx', {}).get('error', 'unreadable')})"
    if kind in ("value_error", "assertion_error"):
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    else:
        template = _MESSAGES.get(kind)
        ctx = error.get("ctx") or {}
        message = template.format(**ctx) if template else error["msg"]
    path = _path(error["loc"])
    if not path or message.startswith(("totals", "collections[")):
        return message
    return f"{path}: {message}"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _object_json(o: StoredObject) -> dict[str, Any]:
    out: dict[str, Any] = {"name": o.name, "role": o.role, "size": o.size, "sha256": o.sha256}
    if o.transforms is not None:
        out["transforms"] = list(o.transforms)
    return out


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key is repeated in one object")
    return dict(pairs)


def canonical_bytes(doc: dict[str, Any]) -> bytes:
    """What the manifest's MAC and signature cover: the manifest without its authentication
    fields, keys sorted, no whitespace, UTF-8 (RFC 8785 for the values a manifest holds)."""
    body = {k: v for k, v in doc.items() if k not in AUTHENTICATION_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_bytes_of(raw: bytes, where: str) -> bytes:
    """`canonical_bytes` of a stored manifest. A key repeated in an object is refused: two
    parsers could take different values of it, the MAC one and the reader another."""
    try:
        doc = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:
        raise ManifestInvalid(f"{where}: manifest invalid: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid(f"{where}: manifest invalid: must be an object")
    return canonical_bytes(doc)


def check_authentication(manifest: BackupManifest, raw: bytes, keys: BackupKeys, where: str) -> None:
    """ManifestTampered unless the stored manifest's MAC is the one its data key makes."""
    auth = manifest.authentication
    if auth is None:
        raise ManifestTampered(f"{where}: an encrypted backup's manifest without its authentication")
    if not hmac.compare_digest(keys.mac(canonical_bytes_of(raw, where)), auth.value):
        raise ManifestTampered(
            f"{where}: the manifest does not match its authentication code: it was edited after the "
            "backup wrote it; the backup must not be trusted"
        )


def manifest_checksum(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
