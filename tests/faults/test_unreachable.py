"""An unreachable, stopped, stalled or misnamed MongoDB: one line that says the server could not
be reached, where (host and port), for how long we tried, and the driver's reason; exit code 6."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from mongo_backup.engine import (
    BackupOptions,
    RestoreOptions,
    SourceUnavailable,
    open_client,
    run_backup,
    run_restore,
)
from mongo_backup.engine.uri import hosts_part
from mongo_backup.storage.base import DEFAULT_CHUNK_SIZE
from mongo_backup.storage.filesystem import FilesystemStorage
from tests.support.cli_run import CliResult, run_cli
from tests.support.mongo import SecantusProcess
from tests.support.tcp_proxy import TcpProxy

SOURCE = 6
SHORT = "serverSelectionTimeoutMS=500&connectTimeoutMS=300"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backup_with(uri: str, tmp_path: Path) -> CliResult:
    return run_cli(["backup", "--uri", uri, "--to", str(tmp_path / "b")], timeout=120)


def assert_unreachable(done: CliResult, host: str, reason: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.returncode == SOURCE, done.stderr
    assert f"MongoDB at {host} could not be reached within 0.5s: " in lines[0], lines[0]
    assert reason in lines[0], lines[0]
    assert "set named 'None'" not in lines[0] and "Topology Description" not in lines[0], lines[0]


@pytest.mark.parametrize("direct", [False, True], ids=["replica-set", "direct-connection"])
def test_a_closed_port_says_where_and_how_long(direct: bool, tmp_path: Path) -> None:
    """Promise: MongoDB on a closed port is reported as unreachable, naming the host, the
    port and how long we tried, with the driver's reason (not a replica set mismatch)."""
    port = closed_port()
    extra = "&directConnection=true" if direct else ""
    done = backup_with(f"mongodb://127.0.0.1:{port}/?replicaSet=secantus{extra}&{SHORT}", tmp_path)
    assert_unreachable(done, f"127.0.0.1:{port}", "Connect call failed")


@pytest.mark.parametrize("direct", [False, True], ids=["replica-set", "direct-connection"])
def test_a_stopped_server_says_where_and_how_long(
    direct: bool, own_server: SecantusProcess, tmp_path: Path
) -> None:
    """Promise: a MongoDB server that was stopped is reported as unreachable, naming its host
    and port, how long we tried and why."""
    own_server.stop()
    extra = "&directConnection=true" if direct else ""
    done = backup_with(f"{own_server.uri}{extra}&{SHORT}", tmp_path)
    assert_unreachable(done, f"127.0.0.1:{own_server.port}", "Connect call failed")


def test_a_wrong_replica_set_name_says_which_set_answered(mongo_uri: str, tmp_path: Path) -> None:
    """Promise: a server that answers for another replica set than the URI names is reported
    with both names."""
    host = hosts_part(mongo_uri).split(",")[0]
    done = backup_with(f"mongodb://{host}/?replicaSet=wrongname&{SHORT}", tmp_path)
    assert_unreachable(done, host, "not 'wrongname'")


def test_a_stalled_connection_before_the_start_is_one_line(proxy: TcpProxy, tmp_path: Path) -> None:
    """Promise: a server that accepts connections but never answers is reported as
    unreachable in one line."""
    proxy.stall()
    done = backup_with(proxy.uri(SHORT), tmp_path)
    assert_unreachable(done, f"127.0.0.1:{proxy.port}", "timed out")


class StallsOnData(FilesystemStorage):
    """A backup folder that stalls the MongoDB connection as the restore starts reading a
    collection's documents: the restore is then mid-stream, at a known step."""

    def __init__(self, root: Path, proxy: TcpProxy) -> None:
        super().__init__(root)
        self.proxy = proxy

    async def read(self, name: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        if ".bson" in name:
            self.proxy.stall()
        async for chunk in super().read(name, chunk_size=chunk_size):
            yield chunk


async def test_a_restore_stalled_mid_stream_fails_in_one_line(
    mongo_uri: str, proxy: TcpProxy, dbname: str, tmp_path: Path
) -> None:
    """Promise: a restore whose connection stalls mid-stream fails (once the socket timeout
    passes) with one line that says the connection was lost, never a topology dump."""
    with MongoClient(mongo_uri) as direct:
        direct[dbname].things.insert_many([{"n": i, "pad": "x" * 100} for i in range(2000)])
    folder = tmp_path / "stalled"
    client = open_client(mongo_uri)
    try:
        await run_backup(client, FilesystemStorage(folder), BackupOptions(include=[f"{dbname}.*"]))
    finally:
        await client.close()

    client = open_client(proxy.uri(f"socketTimeoutMS=500&{SHORT}"))
    options = RestoreOptions(ns_from=[f"{dbname}.*"], ns_to=[f"{dbname}_r.*"])
    try:
        with pytest.raises(SourceUnavailable) as failed:
            await run_restore(client, StallsOnData(folder, proxy), options)
    finally:
        proxy.heal()
        await client.close()
        with MongoClient(mongo_uri) as direct:
            direct.drop_database(f"{dbname}_r")
    message = str(failed.value)
    assert "\n" not in message and "Topology Description" not in message, message
    assert f"127.0.0.1:{proxy.port}" in message, message
