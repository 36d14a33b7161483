from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from mongo_backup_demo.kube import KubeEmulator
from tests.integration.operator.harness import OperatorThread, secret
from tests.support.clock import ManualClock


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeEmulator]:
    with KubeEmulator() as emulator:
        emulator.load_crds()
        yield emulator


@pytest.fixture
def operator(kube: KubeEmulator) -> Iterator[OperatorThread]:
    with OperatorThread(kube.url) as running:
        yield running


@pytest.fixture
def sync_mongo(mongo_uri: str) -> Iterator[MongoClient]:  # type: ignore[type-arg]
    client: MongoClient = MongoClient(mongo_uri)  # type: ignore[type-arg]
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def mongo_secret(kube: KubeEmulator, mongo_uri: str) -> str:
    secret(kube, "mongo", {"uri": mongo_uri})
    return "mongo"


@pytest.fixture
def clock() -> ManualClock:
    # the current hour: the schedule is first seen then, and its first run is an hour later
    return ManualClock(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))


@pytest.fixture
def scheduler(kube: KubeEmulator, clock: ManualClock) -> Iterator[OperatorThread]:
    with OperatorThread(kube.url, clock=clock, metrics_port=0) as running:
        yield running


@pytest.fixture
def small_db(sync_mongo: MongoClient[Any], dbname: str) -> str:
    sync_mongo[dbname]["items"].insert_many([{"n": i} for i in range(50)])
    return dbname
