"""More than one replica: Kopf peering, with a random priority per replica, lets exactly one
of them work while the others stand by."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import (
    OperatorThread,
    backup_object,
    events_of,
    install_peering,
    phase_is,
    secret,
    wait_for,
)


def test_two_replicas_with_peering_run_each_backup_once(
    kube: KubeEmulator, mongo_uri: str, dbname: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each replica picks a random peering priority: the highest works, the other stands by."""
    install_peering(kube)
    client: MongoClient[Any] = MongoClient(mongo_uri)
    try:
        client[dbname]["items"].insert_many([{"n": i} for i in range(100)])
    finally:
        client.close()
    secret(kube, "mongo", {"uri": mongo_uri})
    with (
        caplog.at_level(logging.INFO, logger="kopf"),
        OperatorThread(kube.url, standalone=False),
        OperatorThread(kube.url, standalone=False),
    ):
        time.sleep(1)  # the replicas see each other's keep-alives
        kube.apply(backup_object("once", str(tmp_path), [f"{dbname}.*"]))
        done = wait_for(kube, "mongobackups", "once", phase_is("Completed", "Failed"))
    assert done["status"]["phase"] == "Completed", done["status"]
    assert done["status"]["attempts"] == 1
    assert [e["reason"] for e in events_of(kube, "once")].count("Started") == 1
    assert "Pausing operations in favour of" in caplog.text
