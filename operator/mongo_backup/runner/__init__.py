"""Hosts runs of the engine for custom resources (in-process asyncio tasks for now) and turns
their progress and results into status patches, conditions and events. No Kopf in here: the
handlers hand it an `ObjectLink` to the cluster."""

from .backup import BackupJob
from .cluster import EventType, ObjectLink, SecretUnavailable
from .failures import Failure, classify, one_line
from .lifecycle import TERMINAL_PHASES, Job, Outcome, Slots, Waiting, drive
from .restore import RESTORED_FIELD, RestoreJob, run_id_of
from .settings import RunnerSettings

__all__ = [
    "RESTORED_FIELD",
    "TERMINAL_PHASES",
    "BackupJob",
    "EventType",
    "Failure",
    "Job",
    "ObjectLink",
    "Outcome",
    "RestoreJob",
    "RunnerSettings",
    "SecretUnavailable",
    "Slots",
    "Waiting",
    "classify",
    "drive",
    "one_line",
    "run_id_of",
]
