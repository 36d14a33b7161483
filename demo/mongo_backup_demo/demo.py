"""`make demo` (`python -m mongo_backup_demo`): the operator's main job end to end, on embedded local servers.

An embedded MongoDB-compatible server (SecantusDB) with a sample `shop` database, the local
Kubernetes API emulator with the CRDs generated from the API models, the operator running
in-process, then examples/secret.yaml, examples/backup.yaml and examples/restore.yaml applied
as a user would apply them to a cluster, and examples/schedule.yaml: its immediate backup, then
the clock jumps to its next run and retention prunes. It prints the objects as `kubectl get` and
`kubectl describe` show them (with the real kubectl when it is installed), and compares the
restored data with the original. Everything lives under `.demo/` in the repository (or a
temporary folder when run from an installed package)."""

from __future__ import annotations

import copy
import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from mongo_backup.runner import RunnerSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GROUP_VERSION = "mongobackup.io/v1alpha1"
DEMO_SETTINGS = RunnerSettings(
    max_concurrent_runs=2, progress_interval=0.5, wait_interval=0.5, schedule_interval=0.2
)
SAMPLE = {"customers": 1_000, "orders": 3_000, "products": 200}


def say(text: str = "") -> None:
    print(text, flush=True)


def workdir(root: Path | None) -> Path:
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        return root
    if EXAMPLES.is_dir() and (REPO / "pyproject.toml").is_file():
        root = REPO / ".demo"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        return root
    return Path(tempfile.mkdtemp(prefix="mongo-backup-demo-"))


@contextmanager
def embedded_mongodb(path: Path) -> Iterator[str]:
    from secantus import SecantusDBServer

    with SecantusDBServer(storage_path=str(path), port=0, oplog_max_entries=1_000_000) as server:
        yield str(server.uri)


def seed(uri: str) -> None:
    from pymongo import ASCENDING, MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        shop = client["shop"]
        shop.drop_collection("customers")
        shop["customers"].insert_many(
            [
                {"_id": i, "name": f"Customer {i}", "email": f"c{i}@example.com", "vip": i % 17 == 0}
                for i in range(SAMPLE["customers"])
            ]
        )
        shop["customers"].create_index([("email", ASCENDING)], unique=True)
        shop["orders"].insert_many(
            [
                {
                    "_id": i,
                    "customer": i % SAMPLE["customers"],
                    "lines": [{"sku": f"P{(i * 7) % 200}", "qty": 1 + i % 3, "price": 9.99 + i % 50}],
                    "status": ("new", "paid", "shipped")[i % 3],
                }
                for i in range(SAMPLE["orders"])
            ]
        )
        shop["orders"].create_index([("customer", ASCENDING), ("status", ASCENDING)])
        shop["products"].insert_many(
            [{"_id": f"P{i}", "title": f"Product {i}", "stock": i * 3} for i in range(SAMPLE["products"])]
        )
    finally:
        client.close()


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return loaded


def wait_until(
    read: Callable[[], dict[str, Any] | None], done: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj = read()
        if obj is not None and done(obj):
            return obj
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out; last seen: {obj}")
        time.sleep(0.1)


def finished(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") in ("Completed", "Failed")


class JumpingClock:
    """The real time, plus however far the demo has jumped (to show a schedule's next run
    without waiting for it)."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def jump_to(self, when: datetime) -> None:
        with self._lock:
            self._offset = when - datetime.now(UTC)


def kubectl_binary() -> str | None:
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


def kubectl(binary: str, kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (done.stdout + (done.stderr if done.returncode else "")).rstrip()


def table(objects: list[dict[str, Any]]) -> str:
    """`kubectl get mbk,mrs` by hand, when no kubectl is at hand."""
    rows = [("NAME", "PHASE", "BACKUP", "SIZE", "DOCUMENTS", "DURATION")]
    for obj in objects:
        status = obj.get("status") or {}
        kind = "mongobackup" if obj["kind"] == "MongoBackup" else "mongorestore"
        rows.append(
            (
                f"{kind}.mongobackup.io/{obj['metadata']['name']}",
                str(status.get("phase", "")),
                str(status.get("backup", "")),
                str(status.get("size", "")),
                str(status.get("documents", "")),
                str(status.get("duration", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def describe(obj: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """`kubectl describe` by hand: the status and the object's events."""
    status = dict(obj.get("status") or {})
    lines = [f"Name:         {obj['metadata']['name']}", f"Kind:         {obj['kind']}", "Status:"]
    lines += ["  " + line for line in yaml.safe_dump(status, sort_keys=False).splitlines()]
    lines.append("Events:")
    for event in events:
        lines.append(f"  {event.get('type', ''):8} {event.get('reason', ''):10} {event.get('message', '')}")
    return "\n".join(lines)


def compare(uri: str, source: str, target: str) -> tuple[int, int, bool]:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        identical = True
        documents = 0
        names = sorted(client[source].list_collection_names())
        for name in names:
            digests = []
            for db in (source, target):
                digest = hashlib.sha256()
                for batch in client[db][name].find_raw_batches(sort=[("_id", 1)]):
                    digest.update(bytes(batch))  # type: ignore[arg-type]  # raw BSON bytes
                digests.append(digest.hexdigest())
            identical = identical and digests[0] == digests[1]
            documents += client[target][name].count_documents({})
        return len(names), documents, identical
    finally:
        client.close()


def run_demo(root: Path | None = None) -> int:
    """Exit code 0 when the backup and the restore completed and the data is identical."""
    try:
        import secantus  # noqa: F401

        from .kube import KubeEmulator
    except ImportError as exc:
        say(f"the demo needs the test extras (SecantusDB, kmock): pip install -e '.[test]' ({exc})")
        return 2
    from .operator_thread import OperatorThread

    started = time.monotonic()
    # the demo tells its own story: Kopf's and the drivers' logs only when something is wrong
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    for name in ("kopf", "mongo_backup", "pymongo", "aiohttp"):
        logging.getLogger(name).setLevel(logging.ERROR)
    root = workdir(root)
    say(f"make demo: everything lives in {root}")
    (root / "kube").mkdir(parents=True, exist_ok=True)
    with embedded_mongodb(root / "mongodb") as uri, KubeEmulator(root / "kube") as kube:
        seed(uri)
        say(f"- embedded MongoDB-compatible server (SecantusDB) at {uri}: database shop, {SAMPLE}")
        crds = kube.load_crds()
        say(f"- Kubernetes API emulator at {kube.url}; CRDs {', '.join(crds)}; kubeconfig {kube.kubeconfig}")
        clock = JumpingClock()
        with OperatorThread(kube.url, DEMO_SETTINGS, clock=clock, metrics_port=0) as operator:
            say("- operator running in-process")
            secret = example("secret.yaml")
            secret["stringData"] = {"uri": uri}
            kube.apply(secret)
            say("- applied examples/secret.yaml (uri: the embedded server)")
            backup = copy.deepcopy(example("backup.yaml"))
            backup["spec"]["storage"] = {"filesystem": {"path": str(root / "backups")}}
            kube.apply(backup)
            say(f"- applied examples/backup.yaml (storage path: {root / 'backups'} instead of /backups)")
            kube.apply(example("restore.yaml"))
            say("- applied examples/restore.yaml")

            def read(plural: str, name: str) -> Callable[[], dict[str, Any] | None]:
                path = f"/apis/{GROUP_VERSION}/namespaces/default/{plural}/{name}"
                return lambda: dict(kube.api("GET", path))

            backup_name = backup["metadata"]["name"]
            restore_name = example("restore.yaml")["metadata"]["name"]
            done_backup = wait_until(read("mongobackups", backup_name), finished)
            done_restore = wait_until(read("mongorestores", restore_name), finished)
            schedule_ok = demo_schedule(kube, root, clock, read)
            metrics_url = operator.metrics_url
            scraped = scrape(metrics_url)
            time.sleep(0.3)  # let the last events land

        binary = kubectl_binary()
        say()
        if binary:
            say("$ kubectl get mbk,mrs -o wide")
            say(kubectl(binary, kube.kubeconfig, "get", "mbk,mrs", "-o", "wide"))
            say()
            say("$ kubectl get mbs")
            say(kubectl(binary, kube.kubeconfig, "get", "mbs"))
        else:
            say("$ kubectl get mbk,mrs  (formatted by the demo: no kubectl found)")
            say(table([done_backup, done_restore]))
        events = kube.api("GET", "/api/v1/namespaces/default/events")["items"]
        for obj in (done_backup, done_restore):
            name = obj["metadata"]["name"]
            kind = "mbk" if obj["kind"] == "MongoBackup" else "mrs"
            say()
            say(f"$ kubectl describe {kind} {name}")
            if binary:
                say(kubectl(binary, kube.kubeconfig, "describe", kind, name))
            else:
                own = [e for e in events if (e.get("involvedObject") or {}).get("name") == name]
                say(describe(obj, own))
        say()
        say(f"$ curl -s {metrics_url} | grep -E '^mongobackup_(schedule|drill|runs_total)'")
        say("\n".join(scraped))
        collections, documents, identical = compare(uri, "shop", "shop_restored")
        say()
        verdict = "identical" if identical else "DIFFERENT"
        say(f"data: shop -> shop_restored: {collections} collections, {documents} documents, {verdict}")
        ok = (
            done_backup["status"]["phase"] == "Completed"
            and done_restore["status"]["phase"] == "Completed"
            and identical
            and schedule_ok
        )
        say(f"demo {'succeeded' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
        say("On a cluster: install the operator (README), then kubectl apply -f examples/ as above.")
        return 0 if ok else 1


def demo_schedule(
    kube: Any,
    root: Path,
    clock: JumpingClock,
    read: Callable[[str, str], Callable[[], dict[str, Any] | None]],
) -> bool:
    """examples/schedule.yaml: its immediate backup, then the clock jumps to the next run; with
    keepLast 1 for the demo, retention then deletes the first backup (and its stored objects)."""
    schedule = copy.deepcopy(example("schedule.yaml"))
    name = schedule["metadata"]["name"]
    schedule["spec"]["backupTemplate"]["storage"] = {"filesystem": {"path": str(root / "backups")}}
    schedule["spec"]["retention"] = {"keepLast": 1}
    # the drill restores into the embedded server, as drill_shop, after each backup
    schedule["spec"]["drill"] = {"mongodb": {"uriSecretRef": {"name": "mongodb-uri", "key": "uri"}}}
    kube.apply(schedule)
    say(
        f"- applied examples/schedule.yaml ({schedule['spec']['schedule']} {schedule['spec']['timeZone']}, "
        "immediate; for the demo: retention keepLast 1, a drill after each backup into the embedded server)"
    )
    first = wait_until(
        read("mongobackupschedules", name), lambda o: bool(_status(o).get("lastSuccessfulBackup"))
    )
    first_backup = _status(first)["lastSuccessfulBackup"]["name"]
    say(f"  - immediate backup {first_backup} completed")
    drilled = wait_until(
        read("mongobackupschedules", name),
        lambda o: (_status(o).get("lastDrill") or {}).get("backup") == first_backup,
    )
    report = _status(drilled)["lastDrill"]
    say(f"  - restore drill {'passed' if report['passed'] else 'FAILED'}: {report['message']}")
    upcoming = datetime.fromisoformat(_status(first)["nextScheduleTime"].replace("Z", "+00:00"))
    clock.jump_to(upcoming + timedelta(seconds=1))
    say(f"  - the clock jumps to the next run, {_status(first)['nextScheduleTime']}")
    pruned = wait_until(
        read("mongobackupschedules", name),
        lambda o: first_backup in ((_status(o).get("retention") or {}).get("deleted") or []),
    )
    status = _status(pruned)
    say(f"  - backup {status['lastSuccessfulBackup']['name']} completed; retention deleted {first_backup}")
    return bool(status["lastSuccessfulBackup"]["name"] != first_backup and report["passed"])


def scrape(url: str) -> list[str]:
    """The schedule's series, the drills and the run counts, as `curl | grep` shows them."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    wanted = ("mongobackup_schedule_", "mongobackup_drill", "mongobackup_runs_total")
    return [line for line in text.splitlines() if line.startswith(wanted)]


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})
