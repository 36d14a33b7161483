"""`mongo-backup`: backup, restore, verify, decrypt, drill, ls, prune; crds; run (the operator); run-one.

Exit codes (stable, for scripts):
  0 success · 1 failed · 2 bad usage or input · 3 restore conflict · 4 integrity problem
  (corrupt or incomplete backup, verification failed) · 5 backup not found · 6 MongoDB
  unreachable or refused access · 7 storage error · 130 interrupted

Everything the command prints goes through `redact` (`_emit`), every error is one line, and
an error we did not foresee is one line too ("internal error: ..."), its traceback only in
the DEBUG log.

Failpoints (mongo_backup.engine.failpoints): `backup.connect`, `restore.connect`: before the
MongoDB client and the storage are opened.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, NoReturn

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from . import __version__
from .engine import (
    BackupListing,
    BackupOptions,
    Decision,
    Deletion,
    IntegrityError,
    InvalidInput,
    RestoreOptions,
    RetentionItem,
    RetentionPolicy,
    UsageError,
    apply_retention,
    delete_backup,
    delete_incomplete,
    kind_of,
    list_backups,
    open_client,
    run_backup,
    run_restore,
    time_zone,
    verify_backup,
)
from .engine.azure_keyvault import AzureKeyVaultKey
from .engine.catalog import RootContents
from .engine.decrypt import decrypt_backup
from .engine.drill import DrillOptions, run_drill
from .engine.encryption import KeyEncryptionKey, LocalKey
from .engine.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UNEXPECTED
from .engine.failpoints import failpoint
from .engine.gcp_kms import GcpKmsKey
from .engine.kms import AwsKmsKey
from .engine.lock import LockInfo, new_run_id, read_lock
from .engine.manifest import LOCK_NAME
from .engine.retention import RULE_HELP
from .engine.signing import SignatureChecker, Signer
from .engine.source import translate
from .redact import install_log_redaction, redact, register_uri
from .storage import (
    Storage,
    StorageAccessDenied,
    StorageLocation,
    StorageSettings,
    open_storage,
)
from .terminal import ProgressDisplay, human_bytes, human_seconds

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: `mongo-backup run --metrics-port` (the chart's `metrics.port`)
DEFAULT_METRICS_PORT = 9090

log = logging.getLogger("mongo_backup.cli")


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (naming the flag), masked like every output."""

    def error(self, message: str) -> NoReturn:
        _emit(sys.stderr, f"{self.prog}: {message} (see {self.prog} --help)")
        sys.exit(EXIT_USAGE)


def _whole_number(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {rule} (got {value})")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def count_arg(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def port_number(text: str) -> int:
    value = _whole_number(text, 0, "0 (off) or a TCP port")
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or a TCP port up to 65535 (got {value})")
    return value


def time_zone_arg(text: str) -> tzinfo:
    try:
        return time_zone(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def http_url(text: str) -> str:
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def object_ref(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return namespace, name


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    return value


def log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"unknown log level {text!r}: choose one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mongo-backup",
        description="Back up and restore MongoDB as streamed raw BSON; run the Kubernetes operator.",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage, 3 restore conflict, 4 integrity, 5 backup not found, "
        "6 MongoDB unreachable, 7 storage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"mongo-backup {__version__}")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    parser.add_argument(
        "--log-level", default="WARNING", type=log_level, help="DEBUG, INFO, WARNING (default), ERROR"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def storage_flags(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("storage")
        g.add_argument("--s3-endpoint", type=http_url, help="S3-compatible endpoint URL (MinIO, Ceph, R2...)")
        g.add_argument("--s3-region", help="S3 region")
        g.add_argument("--s3-path-style", action="store_true", help="path-style S3 addressing")
        g.add_argument("--s3-sse", choices=["AES256", "aws:kms"], help="S3 server-side encryption")
        g.add_argument("--s3-kms-key-id", help="KMS key id for --s3-sse aws:kms")
        g.add_argument("--s3-storage-class", help="S3 storage class, e.g. STANDARD_IA")
        g.add_argument("--azure-account-url", type=http_url, help="https://ACCOUNT.blob.core.windows.net")

    def uri_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--uri",
            default=os.environ.get("MONGODB_URI"),
            help="MongoDB connection string (default: $MONGODB_URI; prefer the variable, "
            "command lines are visible to other users)",
        )

    p = sub.add_parser("backup", help="back up MongoDB to a storage location")
    uri_flag(p)
    p.add_argument("--to", required=True, metavar="URL", help="file:///path/NAME, gs://, s3://, azure://...")
    p.add_argument("--compression", choices=["zstd", "gzip", "none"], default="zstd")
    p.add_argument("--level", type=int, help="compression level (zstd 1-22, default 3; gzip 1-9, default 6)")
    p.add_argument("--ns-include", action="append", default=[], metavar="PATTERN", help="e.g. 'db.*'")
    p.add_argument("--ns-exclude", action="append", default=[], metavar="PATTERN")
    p.add_argument("--parallel", type=positive_int, default=4, help="collections at once (default 4)")
    p.add_argument(
        "--encrypt-key-file",
        metavar="PATH",
        help="encrypt the backup (AES-256-GCM) under a fresh data key wrapped by this key: a file "
        "holding 32 random bytes, base64 (e.g. `head -c32 /dev/urandom | base64`)",
    )
    p.add_argument(
        "--kms-key",
        metavar="KEY",
        help="encrypt the backup under a fresh data key wrapped by this KMS key: an AWS KMS key (id, "
        "ARN or alias/NAME; the AWS default credentials; AWS_ENDPOINT_URL_KMS for a KMS-compatible "
        "service), gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K (application default "
        "credentials) or azure-kv://VAULT.vault.azure.net/keys/NAME (DefaultAzureCredential)",
    )
    p.add_argument(
        "--sign-key-file",
        metavar="PATH",
        help="sign the manifest with this Ed25519 private key (PEM, e.g. `openssl genpkey -algorithm "
        "ed25519`, or the 32-byte seed in base64)",
    )
    storage_flags(p)

    def key_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--key-file",
            metavar="PATH",
            help="the key (32 bytes, base64) of an encrypted backup; a plain backup is refused with one",
        )
        p.add_argument(
            "--kms-key",
            metavar="KEY",
            help="the KMS key of a backup encrypted with --kms-key (AWS key id, gcp-kms://..., azure-kv://...)",
        )
        p.add_argument(
            "--public-key",
            metavar="PATH",
            help="require the manifest to be signed by this Ed25519 public key (PEM or 32 bytes base64)",
        )

    p = sub.add_parser("restore", help="restore a backup (or a mongodump directory) into MongoDB")
    uri_flag(p)
    p.add_argument("--from", dest="source", required=True, metavar="URL")
    p.add_argument("--ns-include", action="append", default=[], metavar="PATTERN")
    p.add_argument("--ns-exclude", action="append", default=[], metavar="PATTERN")
    p.add_argument("--ns-from", action="append", default=[], metavar="PATTERN", help="e.g. 'db.*'")
    p.add_argument("--ns-to", action="append", default=[], metavar="PATTERN", help="e.g. 'db2.*'")
    p.add_argument("--on-conflict", choices=["fail", "drop"], default="fail")
    p.add_argument("--parallel", type=positive_int, default=4, help="collections at once (default 4)")
    p.add_argument("--insert-workers", type=positive_int, default=2, help="insert workers per collection")
    p.add_argument("--no-verify", action="store_true", help="skip reading back restored collections")
    p.add_argument(
        "--from-mongodump",
        action="store_true",
        help="the source is a plain `mongodump --out` directory (no manifest: it cannot be verified)",
    )
    key_flags(p)
    storage_flags(p)

    p = sub.add_parser(
        "drill",
        help="prove a backup restores: restore it into scratch databases, verify, drop them",
        description="Restore the backup into scratch databases (each database DB of the backup as "
        "PREFIX + DB), check every collection against the manifest (count and digest), then drop "
        "exactly the collections it restored. A scratch collection that exists and is not empty "
        "is refused before anything is written (exit 3); a damaged backup fails (exit 4) and "
        "leaves nothing behind.",
    )
    uri_flag(p)
    p.add_argument("--from", dest="source", required=True, metavar="URL")
    p.add_argument("--prefix", default="drill_", help="scratch database prefix (default drill_)")
    p.add_argument("--ns-include", action="append", default=[], metavar="PATTERN")
    p.add_argument("--ns-exclude", action="append", default=[], metavar="PATTERN")
    p.add_argument("--parallel", type=positive_int, default=4, help="collections at once (default 4)")
    key_flags(p)
    storage_flags(p)

    p = sub.add_parser("verify", help="check a stored backup against its manifest (no database needed)")
    p.add_argument("--from", dest="source", required=True, metavar="URL")
    key_flags(p)
    storage_flags(p)

    p = sub.add_parser(
        "decrypt",
        help="write an encrypted (or compressed) backup out as a plain mongodump directory",
        description="Decrypt and decompress every object of a backup into DIR as mongodump's "
        "<db>/<collection>.bson and .metadata.json, checking each against the manifest on the way; "
        "`mongorestore --dir DIR` restores the result. The files written are NOT encrypted.",
    )
    p.add_argument("--from", dest="source", required=True, metavar="URL")
    p.add_argument(
        "--to", dest="directory", required=True, type=Path, metavar="DIR", help="a new local folder"
    )
    key_flags(p)
    storage_flags(p)

    p = sub.add_parser("ls", help="list the backups under a location")
    p.add_argument("location", metavar="URL")
    storage_flags(p)

    p = sub.add_parser(
        "prune",
        help="delete the backups under a location that a retention policy (GFS) no longer keeps",
        description="Apply a retention policy to the backups under a location and delete those it "
        "does not keep, each under its backup name's lock. Only complete backups count for "
        "--keep-last and the periods; the newest complete backup is never deleted; a backup a "
        "run holds (lock.json without manifest.json) and anything that is not a backup of ours "
        "are never deleted. Set at least one of --keep-last, --hourly ... --yearly.",
    )
    p.add_argument("location", metavar="URL", help="the folder or prefix holding the backups")
    g = p.add_argument_group("retention (GFS, as restic forget --keep-*)")
    for flags, dest in (
        (("--keep-last",), "keep_last"),
        (("--hourly", "--keep-hourly"), "hourly"),
        (("--daily", "--keep-daily"), "daily"),
        (("--weekly", "--keep-weekly"), "weekly"),
        (("--monthly", "--keep-monthly"), "monthly"),
        (("--yearly", "--keep-yearly"), "yearly"),
        (("--keep-failed",), "keep_failed"),
    ):
        g.add_argument(*flags, dest=dest, type=count_arg, metavar="N", help=RULE_HELP[dest])
    p.add_argument(
        "--time-zone",
        type=time_zone_arg,
        default=time_zone("UTC"),
        metavar="ZONE",
        help="the periods' time zone, an IANA name (default UTC); weeks are ISO weeks",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    storage_flags(p)

    p = sub.add_parser("crds", help="print (or write) the CustomResourceDefinitions")
    p.add_argument("--out", type=Path, help="write one file per CRD into this folder")

    p = sub.add_parser("run", help="run the Kubernetes operator")
    p.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    p.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    p.add_argument(
        "--log-format", choices=["plain", "json"], default=os.environ.get("MONGO_BACKUP_LOG_FORMAT", "plain")
    )
    p.add_argument(
        "--max-concurrent-runs",
        type=positive_int,
        default=int(os.environ.get("MONGO_BACKUP_MAX_CONCURRENT_RUNS", "2")),
    )
    p.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="health endpoint URL ('' to disable)"
    )
    p.add_argument(
        "--metrics-port",
        type=port_number,
        # a string default goes through `type` too: a bad variable is reported like a bad option
        default=os.environ.get("MONGO_BACKUP_METRICS_PORT", str(DEFAULT_METRICS_PORT)),
        help=f"serve Prometheus metrics on GET :PORT/metrics (default {DEFAULT_METRICS_PORT}; 0 = off)",
    )
    p.add_argument(
        "--run-mode",
        choices=["Job", "InProcess"],
        default=os.environ.get("MONGO_BACKUP_RUN_MODE", "InProcess"),
        help="where runs execute unless their object says (spec.runMode): a Job each, or in this process",
    )
    p.add_argument(
        "--runner-image",
        default=os.environ.get("MONGO_BACKUP_RUNNER_IMAGE", ""),
        help="image of runs' Jobs (the operator's own image)",
    )
    p.add_argument(
        "--runner-image-pull-policy",
        choices=["Always", "IfNotPresent", "Never"],
        default=os.environ.get("MONGO_BACKUP_RUNNER_PULL_POLICY") or None,
    )
    p.add_argument(
        "--runner-resources",
        type=json_object,
        default=os.environ.get("MONGO_BACKUP_RUNNER_RESOURCES") or "{}",
        metavar="JSON",
        help='default resources of runs\' containers, e.g. {"limits": {"memory": "2Gi"}}',
    )

    p = sub.add_parser("run-one", help="one attempt of a MongoBackup/MongoRestore (in a run's Job pod)")
    p.add_argument("kind", choices=["backup", "restore"])
    p.add_argument("object", type=object_ref, metavar="NAMESPACE/NAME")
    p.add_argument("--attempt", type=positive_int, required=True, help="the attempt's number (1, 2, ...)")
    p.add_argument("--retry-in", type=float, help="seconds before the next attempt (none: the last one)")
    p.add_argument("--progress-interval", type=float, default=5.0, help="seconds between progress patches")
    p.add_argument("--mongo-timeout-ms", type=positive_int, default=20_000)

    return parser


def storage_settings(args: argparse.Namespace) -> StorageSettings:
    return StorageSettings(
        s3_endpoint=getattr(args, "s3_endpoint", None),
        s3_region=getattr(args, "s3_region", None),
        s3_force_path_style=bool(getattr(args, "s3_path_style", False)),
        s3_server_side_encryption=getattr(args, "s3_sse", None),
        s3_kms_key_id=getattr(args, "s3_kms_key_id", None),
        s3_storage_class=getattr(args, "s3_storage_class", None),
        azure_account_url=getattr(args, "azure_account_url", None),
    )


def _backup_storage(url: str, args: argparse.Namespace) -> Storage:
    parent, name = StorageLocation.parse(url).split_name()
    return open_storage(parent, storage_settings(args)).child(name)


@asynccontextmanager
async def _connected(
    args: argparse.Namespace, url: str
) -> AsyncIterator[tuple[AsyncMongoClient[Any], Storage]]:
    """The MongoDB client and the backup's storage of a backup or restore, closed after it."""
    uri = _require_uri(args)
    await failpoint(f"{args.command}.connect")
    async with AsyncExitStack() as stack:
        client = open_client(uri)
        stack.push_async_callback(client.close)
        storage = _backup_storage(url, args)
        stack.push_async_callback(storage.close)
        yield client, storage


def _require_uri(args: argparse.Namespace) -> str:
    if not args.uri:
        raise UsageError("no MongoDB URI: pass --uri or set MONGODB_URI")
    return str(args.uri)


async def cmd_backup(args: argparse.Namespace, display: ProgressDisplay) -> dict[str, Any]:
    async with _connected(args, args.to) as (client, storage):
        options = BackupOptions(
            compression=args.compression,
            level=args.level,
            include=args.ns_include,
            exclude=args.ns_exclude,
            parallel=args.parallel,
            encryption_key=_key(args, "encrypt_key_file"),
            signer=Signer.from_file(args.sign_key_file) if args.sign_key_file else None,
        )
        result = await run_backup(client, storage, options, display)
    display.close()
    ratio = result.data_bytes / result.stored_bytes if result.stored_bytes else 0.0
    _say(
        args,
        f"backup complete: {result.location}\n"
        f"  {len(result.collections)} collections, {result.documents:,} documents, "
        f"{human_bytes(result.data_bytes)} of BSON stored as {human_bytes(result.stored_bytes)} "
        f"({ratio:.1f}x), {human_seconds(result.duration)}\n"
        f"  checksum sha256:{result.checksum}"
        + (f"\n  encrypted, key fingerprint {result.key_fingerprint}" if result.key_fingerprint else "")
        + (
            f"\n  signed, signer fingerprint {result.signer_fingerprint}" if result.signer_fingerprint else ""
        ),
    )
    return dict(_jsonable(result))


async def cmd_restore(args: argparse.Namespace, display: ProgressDisplay) -> dict[str, Any]:
    async with _connected(args, args.source) as (client, storage):
        options = RestoreOptions(
            include=args.ns_include,
            exclude=args.ns_exclude,
            ns_from=args.ns_from,
            ns_to=args.ns_to,
            on_conflict=args.on_conflict,
            parallel=args.parallel,
            insert_workers=args.insert_workers,
            verify=not args.no_verify,
            source_format="mongodump" if args.from_mongodump else "mongo-backup",
            key=_key(args, "key_file"),
            public_key=_public_key(args),
        )
        result = await run_restore(client, storage, options, display)
    display.close()
    if args.from_mongodump:  # said once it is known to be one, not before
        _warn(
            args,
            f"{result.source} was restored as a plain mongodump directory: it has no manifest, "
            "so what was restored cannot be verified against a backup",
        )
    lines = [
        f"restore complete from {result.source}",
        f"  {len(result.collections)} collections, {result.documents:,} documents, {human_seconds(result.duration)}",
    ]
    if result.checked:
        lines.append(f"  verified {result.verified}/{result.checked} collections against the backup")
    spent = [
        (phase, seconds) for phase, seconds in dataclasses.asdict(result.timings).items() if seconds >= 0.05
    ]
    if spent:
        lines.append("  time by phase: " + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in spent))
    lines += [
        f"  {c.source} -> {c.target} ({c.method}, {c.documents:,} documents)" for c in result.collections
    ]
    lines += [f"  note: {note}" for note in result.notes]
    _say(args, "\n".join(lines))
    return dict(_jsonable(result))


async def cmd_drill(args: argparse.Namespace, display: ProgressDisplay) -> dict[str, Any]:
    options = DrillOptions(
        prefix=args.prefix,
        include=tuple(args.ns_include),
        exclude=tuple(args.ns_exclude),
        parallel=args.parallel,
        key=_key(args, "key_file"),
        public_key=_public_key(args),
    )
    async with _connected(args, args.source) as (client, storage):
        result = await run_drill(client, storage, options, display)
    display.close()
    lines = [
        f"drill passed: {result.location}",
        f"  {result.verified}/{result.collections} collections, {result.documents:,} documents restored "
        f"into {options.prefix}* and verified against the backup, {human_seconds(result.duration)}",
    ]
    if result.left:
        lines.append("  scratch collections that could not be dropped: " + ", ".join(result.left))
    lines += [f"  note: {note}" for note in result.notes]
    _say(args, "\n".join(lines))
    return dict(_jsonable(result))


async def cmd_verify(args: argparse.Namespace, display: ProgressDisplay) -> dict[str, Any]:
    key, public_key = _key(args, "key_file"), _public_key(args)
    storage = _backup_storage(args.source, args)
    try:
        result = await verify_backup(storage, display, key=key, public_key=public_key)
    finally:
        await storage.close()
    display.close()
    if not result.ok:
        _say(args, "\n".join(f"  {p}" for p in result.problems))
        count = len(result.problems)
        raise IntegrityError(
            f"verify failed: {count} {'problem' if count == 1 else 'problems'} in {result.location}, "
            f"first: {result.problems[0]}"
        )
    _say(
        args,
        f"backup OK: {result.location}\n  {result.objects} objects, {result.documents:,} documents, "
        f"{human_bytes(result.stored_bytes)} stored; checksum sha256:{result.checksum}"
        + (f"\n  signature checked: signed by key {public_key.fingerprint}" if public_key else ""),
    )
    return dict(_jsonable(result))


async def cmd_decrypt(args: argparse.Namespace, display: ProgressDisplay) -> dict[str, Any]:
    key, public_key = _key(args, "key_file"), _public_key(args)
    storage = _backup_storage(args.source, args)
    try:
        result = await decrypt_backup(storage, args.directory, key, public_key)
    finally:
        await storage.close()
    _say(
        args,
        f"decrypted {result.location} into {result.directory} (plain, NOT encrypted)\n"
        f"  {result.collections} collections, {result.documents:,} documents, checked against the manifest; "
        f"restore with: mongorestore --dir {result.directory}",
    )
    return dict(_jsonable(result))


def _key(args: argparse.Namespace, flag: str) -> KeyEncryptionKey | None:
    """The key-encryption key the command line names (read before any connection is made):
    a key file, or a KMS key; not both."""
    path, kms = getattr(args, flag, None), getattr(args, "kms_key", None)
    if path and kms:
        raise UsageError(f"--{flag.replace('_', '-')} and --kms-key: give one key, not both")
    if kms:
        return kms_key(kms)
    return LocalKey.from_file(path) if path else None


GCP_KMS_PREFIX = "gcp-kms://"
AZURE_KV_PREFIX = "azure-kv://"


def kms_key(text: str) -> KeyEncryptionKey:
    """--kms-key: `gcp-kms://KEY_NAME`, `azure-kv://VAULT_HOST/keys/NAME[/VERSION]`, else an AWS
    KMS key id, ARN or alias (which never contain `://`)."""
    if text.startswith(GCP_KMS_PREFIX):
        return GcpKmsKey(text.removeprefix(GCP_KMS_PREFIX))
    if text.startswith(AZURE_KV_PREFIX):
        return AzureKeyVaultKey("https://" + text.removeprefix(AZURE_KV_PREFIX))
    if "://" in text:
        raise UsageError(
            f"--kms-key {text!r}: an AWS KMS key id, gcp-kms://projects/... or "
            "azure-kv://VAULT.vault.azure.net/keys/NAME"
        )
    return AwsKmsKey(text)


def _public_key(args: argparse.Namespace) -> SignatureChecker | None:
    path = getattr(args, "public_key", None)
    return SignatureChecker.from_file(path) if path else None


async def cmd_ls(args: argparse.Namespace, display: ProgressDisplay) -> dict[str, Any]:
    storage = open_storage(args.location, storage_settings(args))
    try:
        listings = await list_backups(storage)
    finally:
        await storage.close()
    rows = [f"{'NAME':30} {'STATUS':10} {'SIZE':>10} {'DOCUMENTS':>12}  CREATED"]
    for b in listings:
        created = b.created.strftime("%Y-%m-%d %H:%M:%S") if b.created else "-"
        docs = f"{b.documents:,}" if b.documents is not None else "-"
        status = "complete" if b.state == "complete" else b.state.upper()
        rows.append(f"{b.name:30} {status:10} {human_bytes(b.stored_bytes):>10} {docs:>12}  {created}")
        if b.invalid:
            rows.append(f"  {redact(b.invalid)}")
        if b.key_fingerprint:
            rows.append(f"  encrypted with key {b.key_fingerprint}")
        if b.signer_fingerprint:
            rows.append(f"  signed by key {b.signer_fingerprint} (verify --public-key checks it)")
        if b.partial_objects:
            rows.append(
                f"  unfinished writes (a killed run's leftovers): {b.partial_objects} of {b.objects} objects"
            )
    _say(args, "\n".join(rows) if listings else f"no backups under {storage.url}")
    return {"location": storage.url, "backups": [_jsonable(b) for b in listings]}


async def cmd_prune(args: argparse.Namespace, display: ProgressDisplay) -> dict[str, Any]:
    policy = RetentionPolicy(
        keep_last=args.keep_last,
        hourly=args.hourly,
        daily=args.daily,
        weekly=args.weekly,
        monthly=args.monthly,
        yearly=args.yearly,
        keep_failed=args.keep_failed,
    )
    try:
        policy.validate()  # before any request to the storage
    except InvalidInput:
        raise UsageError(
            "no retention rule for complete backups: pass at least one of --keep-last, --hourly, "
            "--daily, --weekly, --monthly, --yearly (--keep-failed alone says nothing of them)"
        ) from None
    tz: tzinfo = args.time_zone
    storage = open_storage(args.location, storage_settings(args))
    try:
        listings = {b.name: b for b in await list_backups(storage)}
        items = [await _retention_item(storage, b) for b in listings.values()]
        decisions = apply_retention(items, policy, tz)
        if not decisions:
            _say(args, f"no backups under {storage.url}: nothing to prune")
        else:
            dry = " (dry run: nothing is deleted)" if args.dry_run else ""
            _say(args, f"prune {storage.url}: {policy.describe()}; times in {tz}{dry}")
        owner = new_run_id()  # who this prune is in the locks it takes
        rows = []
        for decision in decisions:
            row = await _prune_one(storage, listings[decision.name], decision, owner, args.dry_run)
            when = (
                decision.item.time.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if decision.item.time else "-"
            )
            _say(args, f"{row['outcome']:12} {decision.name:30} {when:19}  {row['why']}")
            rows.append(row)
    finally:
        await storage.close()
    counts = {o: sum(1 for r in rows if r["outcome"] == o) for o in _OUTCOMES}
    if rows:
        _say(args, "  " + ", ".join(f"{n} {o}" for o, n in counts.items() if n))
    missed = [r for r in rows if r["outcome"] == "not deleted"]
    if missed:
        _warn(
            args,
            f"{len(missed)} {'backup' if len(missed) == 1 else 'backups'} to delete left in place (the "
            "next prune tries again): " + "; ".join(f"{r['name']}: {r['problem']}" for r in missed),
        )
    return {
        "location": storage.url,
        "policy": dataclasses.asdict(policy),
        "time_zone": str(tz),
        "dry_run": args.dry_run,
        "backups": rows,
        **{o.replace(" ", "_"): n for o, n in counts.items()},
    }


_OUTCOMES = ("kept", "deleted", "would delete", "not deleted", "already gone")


async def _retention_item(storage: Storage, listing: BackupListing) -> RetentionItem:
    """What retention makes of one listed backup. A root without a manifest is `in_progress`
    when it holds a lock (a run may be live: never pruned), `incomplete` when it holds other
    objects only mongo-backup writes, `unknown` otherwise (a mongodump directory, someone's
    files: never pruned); an unreadable manifest is `unknown` too."""
    if listing.state == "complete":
        return RetentionItem(listing.name, listing.created, "complete")
    if listing.state == "invalid":
        return RetentionItem(listing.name, listing.created, "unknown", hold=listing.invalid)
    root = storage.child(listing.name)
    contents = await RootContents.scan(root)
    if any(o.name == LOCK_NAME for o in contents.ours):
        held = await read_lock(root)
        who = held.describe() if isinstance(held, LockInfo) else "a run whose lock is unreadable"
        return RetentionItem(listing.name, listing.created, "in_progress", hold=f"{LOCK_NAME} held by {who}")
    if contents.ours:
        return RetentionItem(listing.name, listing.created, "incomplete")
    return RetentionItem(
        listing.name,
        listing.created,
        "unknown",
        hold="no manifest and no object only mongo-backup writes (a mongodump directory?): never pruned",
    )


async def _prune_one(
    storage: Storage, listing: BackupListing, decision: Decision, owner: str, dry_run: bool
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": decision.name,
        "state": decision.item.state,
        "time": decision.item.time.isoformat() if decision.item.time else None,
        "action": decision.action,
        "reasons": [str(r) for r in decision.reasons],
        "why": decision.why,
        "removed_objects": 0,
        "problem": None,
    }
    if decision.keep:
        row["outcome"] = "kept"
        return row
    if dry_run:
        row["outcome"] = "would delete"
        return row
    root = storage.child(decision.name)
    deletion: Deletion
    if decision.item.state == "complete":
        # only the backup the listing saw: one written under that name since then stays
        deletion = await delete_backup(root, owner, checksum=listing.checksum)
    else:
        deletion = await delete_incomplete(root, owner)
    row["removed_objects"] = deletion.removed
    if deletion.held_by is not None:
        row["outcome"], row["problem"] = "not deleted", f"in use by {deletion.held_by}"
        if decision.item.state == "complete":
            row["problem"] += f" (if that run is dead, delete {root.url}/{LOCK_NAME})"
    elif deletion.skipped is not None:
        row["outcome"], row["problem"] = "not deleted", deletion.skipped[1]
    else:
        row["outcome"] = "deleted" if deletion.removed else "already gone"
    if row["problem"]:
        row["why"] += f"; {row['problem']}"
    elif deletion.removed:
        row["why"] += f"; {deletion.removed} objects deleted"
    return row


def cmd_crds(args: argparse.Namespace) -> int:
    from .api.crdgen import render_crds, write_crds

    if args.out:
        try:
            written = write_crds(args.out)
        except OSError as exc:
            raise UsageError(f"cannot write the CRDs into --out {args.out}: {exc.strerror or exc}") from None
        for path in written:
            print(path)
    else:
        print("---\n".join(render_crds().values()), end="")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .handlers.main import run_operator
    from .metrics import MetricsUnavailable

    namespaces = list(args.namespace)
    if not namespaces and not args.all_namespaces:
        namespaces = [
            n.strip() for n in os.environ.get("MONGO_BACKUP_NAMESPACES", "").split(",") if n.strip()
        ]
    try:
        run_operator(
            namespaces=namespaces or None,
            log_format=args.log_format,
            max_concurrent_runs=args.max_concurrent_runs,
            liveness_endpoint=args.liveness or None,
            metrics_port=args.metrics_port or None,
            run_mode=args.run_mode,
            runner_image=args.runner_image or None,
            runner_image_pull_policy=args.runner_image_pull_policy,
            runner_resources=args.runner_resources,
        )
    except MetricsUnavailable as exc:
        raise UsageError(f"--metrics-port: {exc} (choose another port, or 0 to serve no metrics)") from None
    return EXIT_OK


def cmd_run_one(args: argparse.Namespace) -> int:
    from .handlers.pod import run_one
    from .runner import RunnerSettings

    namespace, name = args.object
    settings = RunnerSettings(
        progress_interval=args.progress_interval, mongo_timeout_ms=args.mongo_timeout_ms
    )
    return asyncio.run(run_one(args.kind, namespace, name, args.attempt, args.retry_in, settings))


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        _emit(sys.stdout, text)


def _emit(stream: Any, text: str) -> None:
    """Every line the command prints, masked."""
    print(redact(text), file=stream, flush=True)


def _warn(args: argparse.Namespace, text: str) -> None:
    print(f"mongo-backup {args.command}: warning: {redact(text)}", file=sys.stderr)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for prop in ("duration", "ok", "state"):
            if hasattr(value, prop):
                out[prop] = getattr(value, prop)
        return out
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


_ASYNC_COMMANDS: dict[
    str, Callable[[argparse.Namespace, ProgressDisplay], Coroutine[Any, Any, dict[str, Any]]]
] = {
    "backup": cmd_backup,
    "restore": cmd_restore,
    "verify": cmd_verify,
    "drill": cmd_drill,
    "decrypt": cmd_decrypt,
    "ls": cmd_ls,
    "prune": cmd_prune,
}
_SYNC_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "crds": cmd_crds,
    "run": cmd_run,
    "run-one": cmd_run_one,
}


_LIBRARY_LOGGERS = ("azure", "google", "botocore", "boto3", "urllib3", "pymongo")


def exit_code_for(exc: BaseException) -> int:
    return kind_of(exc).exit_code


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        _main(argv)
    except KeyboardInterrupt:  # before or after the command's own event loop ran
        _emit(sys.stderr, "mongo-backup: interrupted")
        sys.exit(EXIT_INTERRUPTED)


def _main(argv: Sequence[str] | None) -> NoReturn:
    register_uri(os.environ.get("MONGODB_URI"))  # masked even in a usage error
    args = build_parser().parse_args(argv)
    register_uri(getattr(args, "uri", None))  # masked in every message from here on
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if args.log_level not in ("DEBUG", "INFO"):
        # the libraries' own warnings (a credential chain's attempts, retries) span lines and
        # say less than our one line does
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    install_log_redaction()
    warnings.showwarning = _warning_as_log_line
    if args.command in _SYNC_COMMANDS:
        try:
            code = _SYNC_COMMANDS[args.command](args)
        except Exception as exc:
            _fail(args, exc)
        sys.exit(code)
    display = ProgressDisplay(enabled=None if not (args.quiet or args.json) else False)
    try:
        result = asyncio.run(_ASYNC_COMMANDS[args.command](args, display))
    except KeyboardInterrupt:
        display.close()
        _emit(sys.stderr, f"mongo-backup {args.command}: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except PyMongoError as exc:  # one the engine did not translate: the same words
        display.close()
        _fail(args, translate(exc, args.command))
    except Exception as exc:
        display.close()
        _fail(args, exc)
    if args.json:
        _emit(sys.stdout, json.dumps({"ok": True, "command": args.command, "result": result}, indent=2))
    sys.exit(EXIT_OK)


def _fail(args: argparse.Namespace, exc: BaseException) -> NoReturn:
    kind = kind_of(exc)
    text = redact(str(exc).strip())  # before any encoding (JSON escapes what it masks)
    message = text.splitlines()[0] if text else type(exc).__name__
    if kind is UNEXPECTED:  # a bug of ours: say so, keep the traceback for --log-level DEBUG
        log.debug("internal error", exc_info=exc)
        message = f"internal error: {type(exc).__name__}: {message}"
    elif isinstance(exc, StorageAccessDenied):
        message = f"access denied: {message}"
    if args.json:
        _emit(
            sys.stdout,
            json.dumps({"ok": False, "command": args.command, "error": message, "exitCode": kind.exit_code}),
        )
    _emit(sys.stderr, f"mongo-backup {args.command}: {message}")
    sys.exit(kind.exit_code)


def _warning_as_log_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A library's warning as one log line (the default prints the source line too)."""
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)


if __name__ == "__main__":
    main()
