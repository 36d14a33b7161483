from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from mongo_backup.testing.kube import KubeEmulator
from tests.integration.operator.harness import OperatorThread, secret


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
