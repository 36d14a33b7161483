from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from tests.support.mongo import external_uri, secantus_server


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    uri = external_uri()
    if uri:
        yield uri
        return
    with secantus_server(tmp_path_factory.mktemp("secantus")) as started:
        yield started


@pytest.fixture
async def mongo(mongo_uri: str) -> AsyncIterator[AsyncMongoClient]:  # type: ignore[type-arg]
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri)  # type: ignore[type-arg]
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def dbname() -> str:
    """A database name of this test's own, so tests never see each other's data."""
    return "t_" + uuid.uuid4().hex[:10]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if external_uri():
        return
    skip = pytest.mark.skip(reason="needs a real mongod: set MONGODB_URI to run it")
    for item in items:
        if "requires_mongod" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def backup_root(tmp_path: Path) -> Path:
    root = tmp_path / "backups"
    root.mkdir()
    return root
