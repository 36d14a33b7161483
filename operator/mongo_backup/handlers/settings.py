"""Kopf settings chosen on purpose (applied at startup):

- our own finalizer name, so it is clear which operator blocks a deletion;
- Kopf's bookkeeping in annotations under our prefix, never in `status`: the status schema is
  strict (generated from the API models) and only the runner writes it;
- peering for more than one replica: each process gets a random priority, so the highest one
  works and the others stand by (same priorities would pause them all); without the peering
  resource in the cluster the operator runs standalone;
- Events for Warning and above from Kopf's own logs, plus the runner's explicit events;
- our login: in-cluster/kubeconfig as Kopf does, or an explicit server (emulator)."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import kopf

from .runtime import Runtime

FINALIZER = "mongobackup.io/finalizer"
ANNOTATIONS_PREFIX = "mongobackup.io"
PEERING_NAME = "mongo-backup-operator"


def runtime_of(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):  # started by `kopf run` without our main()
        runtime = Runtime()
        memo.runtime = runtime
    return runtime


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATIONS_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATIONS_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "mongo-backup-operator"
    settings.posting.reporting_instance = os.environ.get("HOSTNAME", "mongo-backup-operator")
    settings.peering.name = PEERING_NAME
    if not settings.peering.priority:
        settings.peering.priority = random.randint(1, 2**15)
    # A stopped run cleans up (partial objects, temporary collections) before it exits: wait
    # for that, or Kopf looks again only after the cancellation timeout (deletion held longer).
    settings.background.instant_exit_timeout = 10.0
    settings.background.cancellation_polling = 5
    runtime_of(memo).start()


@kopf.on.cleanup()
def release(memo: kopf.Memo, **_: Any) -> None:
    runtime_of(memo).stop()


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    server = runtime_of(memo).server
    if server:
        return kopf.ConnectionInfo(server=server, insecure=True)
    return kopf.login_via_client(memo=memo, **kwargs)
