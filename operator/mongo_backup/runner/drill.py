"""A schedule's restore drill of one Completed MongoBackup: resolve the drill's MongoDB URI and
the backup's storage from their Secrets, run the engine's drill (restore into scratch
databases, verify, drop), and say what it found. A drill that fails is a result, not an error:
the schedule records it (status, event, metric, the backup's Verified condition)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api import DrillSpec, MongoBackupSpec, SpecError, parse_spec
from ..engine import EngineError, open_client
from ..engine.drill import DrillOptions, run_drill
from ..redact import redact
from ..storage import StorageError, open_storage
from . import sources
from .cluster import ObjectLink, SecretUnavailable
from .failures import Failure
from .settings import RunnerSettings
from .units import count, human_duration


@dataclass(frozen=True)
class DrillOutcome:
    backup: str
    passed: bool
    message: str
    ended: datetime
    duration: float
    verified_collections: int | None = None
    documents: int | None = None


def drill_run_id(schedule_uid: str, backup: str) -> str:
    """Letters and digits (the restore journal's rule), one per schedule and backup."""
    return "drill" + re.sub(r"[^0-9a-zA-Z]", "", f"{schedule_uid[:8]}{backup}")[-24:]


async def drill_backup(
    link: ObjectLink,
    backup: Mapping[str, Any],
    drill: DrillSpec,
    run_id: str,
    settings: RunnerSettings,
) -> DrillOutcome:
    """Drill `backup` (a Completed MongoBackup's body, of `link`'s namespace)."""
    name = str((backup.get("metadata") or {}).get("name"))
    recorded = (backup.get("status") or {}).get("checksum")
    started = time.monotonic()

    def outcome(passed: bool, message: str, **figures: int) -> DrillOutcome:
        return DrillOutcome(
            name, passed, redact(message), datetime.now(UTC), time.monotonic() - started, **figures
        )

    try:
        spec = parse_spec(MongoBackupSpec, backup)
        uri = await sources.mongo_uri(link, drill.mongodb.uri_secret_ref)
        storage_settings = await sources.storage_settings(link, spec.storage)
        key = await sources.encryption_key(link, spec.encryption)  # the backup's own key
        storage = open_storage(spec.storage.url(), storage_settings).child(name)
        client = open_client(uri, timeout_ms=settings.mongo_timeout_ms)
    except (SpecError, SecretUnavailable, Failure, StorageError, EngineError) as exc:
        return outcome(False, f"the drill of {name} could not start: {getattr(exc, 'message', None) or exc}")
    try:
        options = DrillOptions(prefix=drill.database_prefix, run_id=run_id, key=key)
        result = await run_drill(client, storage, options)
    except (EngineError, StorageError) as exc:
        return outcome(False, f"{name} did not restore: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        with contextlib.suppress(Exception):
            await storage.close()
    if recorded and result.checksum != recorded:
        return outcome(
            False,
            f"{name} restored, but its stored manifest is not the one the backup completed with "
            f"(sha256 {result.checksum} instead of {recorded}): it was replaced since",
        )
    message = (
        f"{name} restored into {drill.database_prefix}* and verified: {result.verified}/"
        f"{count(result.collections, 'collection')}, {count(result.documents, 'document')}, "
        f"{human_duration(result.duration)}"
    )
    if result.left:
        message += f"; scratch collections left (drop them): {', '.join(result.left)}"
    return outcome(True, message, verified_collections=result.verified, documents=result.documents)
