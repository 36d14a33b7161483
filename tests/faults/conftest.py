"""The fault-injection suite: each test states one promise of the README and checks it
against the real local servers under kill -9, cut connections, concurrent runs and tampered
input. Runs are paused at exact steps with failpoints (mongo_backup.engine.failpoints),
never raced with sleeps.

MongoDB: the session's server (SecantusDB, or a real mongod when MONGODB_URI is set), and
a `mongo:7` replica set through testcontainers where Docker runs (`mongo7_uri`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mongo import SecantusProcess
from tests.support.tcp_proxy import TcpProxy, tcp_proxy


@pytest.fixture
def proxy(mongo_uri: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the session's MongoDB; connect through `proxy.uri()`."""
    with tcp_proxy(mongo_uri) as started:
        yield started


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[SecantusProcess]:
    """A MongoDB server of this test's own, which the test may stop or kill mid-run."""
    server = SecantusProcess(tmp_path / "own-secantus").start()
    try:
        yield server
    finally:
        server.stop()


def _docker_reason() -> str | None:
    try:
        import docker
    except ImportError:
        return "testcontainers/docker are not installed"
    try:
        docker.from_env().ping()
    except Exception as exc:
        return f"no Docker engine here ({type(exc).__name__}): the mongo:7 run of the fault suite needs one"
    return None


@pytest.fixture(scope="session")
def mongo7_uri() -> Iterator[str]:
    """A one-node `mongo:7` replica set in Docker (testcontainers); skipped without Docker."""
    reason = _docker_reason()
    if reason:
        pytest.skip(reason)
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = (
        DockerContainer("mongo:7").with_command("--replSet rs0 --bind_ip_all").with_exposed_ports(27017)
    )
    with container as started:
        wait_for_logs(started, "Waiting for connections", timeout=120)
        initiate = "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'localhost:27017'}]})"
        started.exec(["mongosh", "--quiet", "--eval", initiate])
        host, port = started.get_container_host_ip(), started.get_exposed_port(27017)
        yield f"mongodb://{host}:{port}/?directConnection=true"


@pytest.fixture(scope="session", params=["local", "mongo:7"])
def mongo_uri(request: pytest.FixtureRequest, mongo_uri: str) -> str:
    """Every fault test runs against the session's MongoDB (SecantusDB, or MONGODB_URI), and
    again against mongo:7 in Docker where Docker runs."""
    if request.param == "local":
        return mongo_uri
    return str(request.getfixturevalue("mongo7_uri"))
