"""The restore journal: what makes a restore all-or-nothing across collections, and lets the
next run finish or undo what a killed one left.

A restore stages every collection into a temporary collection, then swaps them all in. The
journal, in the server's database `__mongo_backup` (never backed up, never a restore target),
records for each run:

- `restore_runs`: one document per live run: who (host, pid, attempt), a heartbeat in the
  server's clock, the state (`staging` → `swapping` → `committed`) and, from `swapping` on,
  every swap planned: target, temporary, and the name the replaced target is kept under
  until the commit;
- `restore_claims`: one document per target namespace a live run writes (`_id` = the
  namespace): a second restore into the same target stops at once (`RestoreInProgress`).

The run document is written before any temporary collection is created, and deleted only
after the run's last temporary is gone. So a restore that finds a temporary collection
(`__mbtmp_<run>_...`) can tell whose it is and whether that run is alive: a run is dead when
it is an earlier attempt of the same run id (the operator runs one attempt at a time), when
its process is gone from this very host, or when its heartbeat is older than the lease.
A dead run is settled by whoever finds it: `staging` or `swapping` → rolled back (each
replaced target renamed back, every temporary dropped); `committed` → rolled forward (the
kept targets dropped). Which step a swap had reached is read from which collections exist,
so a kill between any two renames is settled the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, OperationFailure

from .errors import RestoreConflict, RestoreInProgress
from .failpoints import failpoint
from .namespaces import JOURNAL_DATABASE
from .source import mongo_errors

log = logging.getLogger(__name__)

#: every collection a restore creates in a target database starts with this; never backed up
TEMP_PREFIX = "__mbtmp_"
#: a replaced target, kept under `<temporary>_old` until every swap of the run has succeeded
KEPT_SUFFIX = "_old"
RUNS = "restore_runs"
CLAIMS = "restore_claims"
#: a live run refreshes its heartbeat this often; one silent for LEASE_SECONDS is dead
HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 120.0
_NAMESPACE_NOT_FOUND = 26
_NAMESPACE_EXISTS = 48

#: `rolledback`: every swap is undone; only temporaries are left to drop. Recorded before the
#: first temporary is dropped: once the new data is gone, a rolled-back target looks like a
#: swapped-in one, so a rollback must never run twice.
State = Literal["staging", "swapping", "committed", "rolledback"]


def temp_name(run_id: str, attempt: str, target: str) -> str:
    """Per run and per attempt: a lost attempt's last inserts, still in flight when it died,
    land in its own temporary collection, never in the one a new attempt fills."""
    return f"{TEMP_PREFIX}{run_id}_{attempt}_{hashlib.sha1(target.encode()).hexdigest()[:12]}"


def run_of(collection: str) -> str | None:
    """The run id in a temporary collection's name, None for any other name."""
    if not collection.startswith(TEMP_PREFIX):
        return None
    run, sep, _ = collection[len(TEMP_PREFIX) :].partition("_")
    return run if sep and run.isalnum() else None


@dataclass(frozen=True)
class Swap:
    """One target of a run's swap phase; all three collections live in `db`."""

    db: str
    target: str
    temp: str
    #: where the target is kept until the commit; None: there was no target to keep
    kept: str | None

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.target}"

    def to_doc(self) -> dict[str, Any]:
        return {"db": self.db, "target": self.target, "temp": self.temp, "kept": self.kept}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Swap:
        kept = doc.get("kept")
        return cls(str(doc["db"]), str(doc["target"]), str(doc["temp"]), None if kept is None else str(kept))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid we can ask about: assume alive
    return True


async def server_time(client: AsyncMongoClient[Any]) -> datetime:
    """The server's clock (heartbeats are in it, so clients' clocks never matter)."""
    with mongo_errors("reading the server's clock"):
        hello = await client.admin.command("hello")
    now = hello.get("localTime")
    if not isinstance(now, datetime):
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


async def rename(client: AsyncMongoClient[Any], db: str, source: str, target: str) -> None:
    """Rename within `db`, never over an existing collection."""
    await client.admin.command(
        {"renameCollection": f"{db}.{source}", "to": f"{db}.{target}", "dropTarget": False}
    )


async def _exists(client: AsyncMongoClient[Any], db: str, names: Iterable[str]) -> set[str]:
    wanted = list(names)
    found = await client[db].list_collection_names(filter={"name": {"$in": wanted}})
    return set(found)


@dataclass(frozen=True)
class Settled:
    """What settling a dead run did: `committed` runs were finished (their targets stay
    restored), the others rolled back; `what` says it in words."""

    committed: bool
    what: str


class RestoreJournal:
    """The journal entries of one restore run (one attempt)."""

    def __init__(self, client: AsyncMongoClient[Any], run_id: str, attempt: str) -> None:
        self.client = client
        self.run_id = run_id
        self.attempt = attempt
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._db = client[JOURNAL_DATABASE]
        self.state: State | None = None
        self.swaps: list[Swap] = []
        #: what settling dead runs did, for the result's notes
        self.notes: list[str] = []

    # ---- finding and settling what dead runs left ---------------------------------------

    def _is_dead(self, doc: dict[str, Any], now: datetime) -> bool:
        if doc.get("_id") == self.run_id:
            return doc.get("attempt") != self.attempt  # a lost attempt of this very run
        if doc.get("host") == self.host and isinstance(doc.get("pid"), int) and not _pid_alive(doc["pid"]):
            return True
        beat = doc.get("heartbeat")
        if not isinstance(beat, datetime):
            return True
        beat = beat if beat.tzinfo else beat.replace(tzinfo=UTC)
        return now - beat > timedelta(seconds=LEASE_SECONDS)

    async def settle_dead_runs(self, databases: Iterable[str]) -> None:
        """Settle every dead run in the journal, then drop temporaries in `databases` that no
        run owns (an older version's). A live run's collections are never touched."""
        # Temporaries are listed BEFORE the runs: a run writes its journal entry before its
        # first temporary, so a temporary listed here whose run is not listed below is orphaned.
        temps: dict[str, list[str]] = {}
        for db in sorted(set(databases)):
            with mongo_errors(f"listing the collections of database {db!r}"):
                temps[db] = await self.client[db].list_collection_names(
                    filter={"name": {"$regex": f"^{TEMP_PREFIX}"}}
                )
        now = await server_time(self.client)
        with mongo_errors("reading the restore journal"):
            runs = await self._db[RUNS].find({}).to_list()
        known = set()
        for doc in runs:
            known.add(str(doc.get("_id")))
            if self._is_dead(doc, now):
                await self._settle(doc)
        for db, names in temps.items():
            for name in names:
                run = run_of(name)
                if run is None or run in known:
                    continue
                if name.endswith(KEPT_SUFFIX):
                    # a replaced target of a run whose journal is gone: user data, never dropped
                    self.notes.append(
                        f"{db}.{name} holds a collection that an earlier restore replaced and whose "
                        "journal is gone: it was left in place; rename it back or drop it"
                    )
                    log.warning("left %s.%s in place: a kept target without a journal", db, name)
                    continue
                log.info("dropping %s.%s, a temporary collection of a restore that no longer runs", db, name)
                with mongo_errors(f"dropping the stale temporary collection {db}.{name}"):
                    await self.client[db].drop_collection(name)

    async def settle_lost_attempt(self) -> Settled | None:
        """Settle what a lost attempt of this run left (a run cancelled after its operator
        died), or None when no attempt of it is in the journal."""
        with mongo_errors("reading the restore journal"):
            doc = await self._db[RUNS].find_one({"_id": self.run_id})
        if doc is None or doc.get("attempt") == self.attempt:
            return None
        return Settled(committed=doc.get("state") == "committed", what=await self._settle(doc))

    async def _settle(self, doc: dict[str, Any]) -> str:
        run = str(doc["_id"])
        state = doc.get("state")
        swaps = [Swap.from_doc(s) for s in doc.get("swaps") or []]
        databases = sorted({str(d) for d in doc.get("databases") or []} | {s.db for s in swaps})
        with mongo_errors(f"settling restore run {run} that died"):
            if state == "committed":
                await roll_forward(self.client, swaps)
                what = "completed (its swaps were committed)"
            else:
                if state != "rolledback":
                    await roll_back(self.client, swaps)
                    await self._db[RUNS].update_one(
                        {"_id": run, "attempt": doc.get("attempt")}, {"$set": {"state": "rolledback"}}
                    )
                what = "rolled back" if swaps else "cleaned up (it had not swapped anything)"
            await self._drop_run_temporaries(run, databases)
            await self._db[CLAIMS].delete_many({"run": run})
            await self._db[RUNS].delete_one({"_id": run, "attempt": doc.get("attempt")})
        if run != self.run_id or swaps:
            self.notes.append(f"an earlier restore (run {run}) that died was {what}")
        log.info("restore run %s, dead, was %s", run, what)
        return what

    async def _drop_run_temporaries(self, run: str, databases: Iterable[str]) -> None:
        for db in databases:
            names = await self.client[db].list_collection_names(
                filter={"name": {"$regex": f"^{TEMP_PREFIX}{run}_"}}
            )
            for name in names:
                if name.endswith(KEPT_SUFFIX):
                    log.warning("left %s.%s in place: the target it was kept for is occupied", db, name)
                    continue
                await self.client[db].drop_collection(name)

    # ---- this run's entries ----------------------------------------------------------------

    async def begin(self, databases: Iterable[str]) -> None:
        """Enter this run in the journal, before it creates anything."""
        doc = {
            "_id": self.run_id,
            "attempt": self.attempt,
            "host": self.host,
            "pid": self.pid,
            "state": "staging",
            "databases": sorted(set(databases)),
            "swaps": [],
            "startedAt": await server_time(self.client),
        }
        with mongo_errors("writing the restore journal"):
            await self._db[RUNS].replace_one({"_id": self.run_id}, doc, upsert=True)
            await self._db[RUNS].update_one({"_id": self.run_id}, {"$currentDate": {"heartbeat": True}})
        self.state = "staging"

    async def claim(self, namespaces: Iterable[str]) -> None:
        """Take each target for this run; RestoreInProgress when a live run has one."""
        with mongo_errors("writing the restore journal"):
            for namespace in sorted(set(namespaces)):
                await self._claim(namespace)

    async def _claim(self, namespace: str) -> None:
        for _ in range(3):
            try:
                await self._db[CLAIMS].insert_one(
                    {"_id": namespace, "run": self.run_id, "attempt": self.attempt}
                )
                return
            except DuplicateKeyError:
                pass
            holder = await self._db[CLAIMS].find_one({"_id": namespace})
            if holder is None:
                continue  # released meanwhile
            if holder.get("run") == self.run_id and holder.get("attempt") == self.attempt:
                return
            run = await self._db[RUNS].find_one({"_id": holder.get("run")})
            if run is not None and not self._is_dead(run, await server_time(self.client)):
                raise RestoreInProgress(
                    f"{namespace} is being restored by another run ({_describe(run)}); "
                    "nothing was written: wait for it to finish, or restore into another name"
                )
            if run is not None:
                await self._settle(run)
            else:  # a claim whose run is gone: nobody writes that target
                await self._db[CLAIMS].delete_one({"_id": namespace, "run": holder.get("run")})
        raise RestoreInProgress(f"{namespace}: its claim kept changing hands; nothing was written")

    @asynccontextmanager
    async def alive(self) -> AsyncIterator[None]:
        """Keep this run's heartbeat fresh for the duration of the block."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(HEARTBEAT_SECONDS)
                try:
                    await self._db[RUNS].update_one(
                        {"_id": self.run_id, "attempt": self.attempt}, {"$currentDate": {"heartbeat": True}}
                    )
                except Exception as exc:  # the run's own calls will report a lost server
                    log.debug("heartbeat of restore run %s failed: %s", self.run_id, exc)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _set(self, fields: dict[str, Any]) -> None:
        with mongo_errors("writing the restore journal"):
            result = await self._db[RUNS].update_one(
                {"_id": self.run_id, "attempt": self.attempt},
                {"$set": fields, "$currentDate": {"heartbeat": True}},
            )
        if result.matched_count != 1:
            # another run found this one dead and settled it: nothing here is ours any more
            raise RestoreInProgress(
                f"restore run {self.run_id} lost its journal entry (another restore took it for dead); "
                "stopping before swapping anything"
            )

    async def swap_all(self, swaps: list[Swap]) -> None:
        """Swap every staged collection in, in order; a failure is raised as it is (the caller's
        `undo` rolls back whatever was swapped)."""
        self.swaps = swaps
        await self._set({"state": "swapping", "swaps": [s.to_doc() for s in swaps]})
        self.state = "swapping"
        for swap in swaps:
            with mongo_errors(f"swapping the restored data into {swap.namespace}"):
                await self._swap(swap)

    async def _swap(self, swap: Swap) -> None:
        if swap.kept is not None:
            try:
                await rename(self.client, swap.db, swap.target, swap.kept)
            except OperationFailure as exc:
                if exc.code == _NAMESPACE_NOT_FOUND:
                    raise RestoreConflict(f"{swap.namespace} was dropped while the restore ran") from None
                raise
        await failpoint("restore.swap", ns=swap.namespace)
        try:
            await rename(self.client, swap.db, swap.temp, swap.target)
        except OperationFailure as exc:
            if exc.code == _NAMESPACE_EXISTS:
                raise RestoreConflict(
                    f"{swap.namespace} was created while the restore ran; it was left as it is"
                ) from None
            raise

    async def commit(self) -> None:
        """Every swap succeeded: from here on, the restore is done even if this process dies."""
        await self._set({"state": "committed"})
        self.state = "committed"

    async def drop_kept(self) -> None:
        await roll_forward(self.client, self.swaps)

    async def undo(self) -> None:
        """Roll back this run's swaps (none before the swap phase), or finish them once
        committed; its temporaries are dropped after (`drop_temporaries`)."""
        with mongo_errors(f"undoing restore run {self.run_id}"):
            if self.state == "committed":
                await roll_forward(self.client, self.swaps)
                return
            if self.state != "rolledback":
                await roll_back(self.client, self.swaps)
                await self._db[RUNS].update_one(
                    {"_id": self.run_id, "attempt": self.attempt}, {"$set": {"state": "rolledback"}}
                )
                self.state = "rolledback"

    async def drop_temporaries(self, databases: Iterable[str]) -> None:
        with mongo_errors(f"dropping the temporary collections of restore run {self.run_id}"):
            await self._drop_run_temporaries(self.run_id, databases)

    async def finish(self) -> None:
        """Leave the journal: claims first, the run's entry last."""
        with mongo_errors("writing the restore journal"):
            await self._db[CLAIMS].delete_many({"run": self.run_id, "attempt": self.attempt})
            await self._db[RUNS].delete_one({"_id": self.run_id, "attempt": self.attempt})


def _describe(doc: dict[str, Any]) -> str:
    started = doc.get("startedAt")
    when = started.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(started, datetime) else "?"
    return f"run {doc.get('_id')} on host {doc.get('host')} (pid {doc.get('pid')}), started {when}"


async def roll_back(client: AsyncMongoClient[Any], swaps: list[Swap]) -> None:
    """Put every target back as it was, whichever step each swap had reached (read from which
    collections exist). The new data goes back to its temporary, to be dropped with it. Only
    valid while the temporaries have not been dropped (states `swapping`, `staging`)."""
    for swap in reversed(swaps):
        names = [swap.target, swap.temp] + ([swap.kept] if swap.kept else [])
        present = await _exists(client, swap.db, names)
        if swap.kept is not None and swap.kept not in present:
            continue  # the target was never moved aside: this swap had not started
        if swap.target in present and swap.temp not in present:  # the new data is in place
            await rename(client, swap.db, swap.target, swap.temp)
            present.discard(swap.target)
        if swap.kept is None:
            continue
        if swap.target in present:
            log.warning("cannot put %s back: a collection of that name appeared meanwhile", swap.namespace)
            continue
        await rename(client, swap.db, swap.kept, swap.target)


async def roll_forward(client: AsyncMongoClient[Any], swaps: list[Swap]) -> None:
    """After the commit: drop the kept copies of the replaced targets."""
    for swap in swaps:
        if swap.kept is not None:
            await client[swap.db].drop_collection(swap.kept)
