"""Timings and limits of runs. Defaults suit a cluster; tests and the demo shorten them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunnerSettings:
    #: runs at once in this operator process; more wait in phase Pending (condition Queued)
    max_concurrent_runs: int = 2
    #: progress reaches the status at most this often (seconds)
    progress_interval: float = 5.0
    #: how often a run waiting for a Secret or a MongoBackup looks again (seconds)
    wait_interval: float = 10.0
    #: delays between attempts when MongoDB or the storage is unreachable; then Failed
    retry_delays: tuple[float, ...] = (10.0, 30.0, 90.0)
    #: server selection timeout of the MongoDB client (milliseconds)
    mongo_timeout_ms: int = 20_000
    #: how often a MongoBackupSchedule looks at its clock and its backups, at most (seconds)
    schedule_interval: float = 10.0
