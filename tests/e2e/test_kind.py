"""End to end on a real cluster (kind): the image, the chart, a real mongod (mongo:7), a backup to
a PVC, a restore into another database, verification, and cleanup. Run with `make e2e`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.kind import (
    BACKUP_MOUNT,
    OPERATOR_NAMESPACE,
    Cluster,
    operator_deployment,
    wait_for,
)

pytestmark = pytest.mark.e2e

DATA_NAMESPACE = "databases"
MONGO_USER = "root"
MONGO_PASSWORD = "e2e-not-secret"
BACKUP = "e2e-backup"
RESTORE = "e2e-restore"
ORDERS = 5000

SEED = f"""
const shop = db.getSiblingDB("shop");
const orders = [];
for (let i = 0; i < {ORDERS}; i++) {{
  orders.push({{
    _id: i,
    sku: "sku-" + (i % 97),
    qty: NumberInt(i % 13),
    total: NumberLong(i * 7),
    price: NumberDecimal((i * 1.25).toFixed(2)),
    at: new Date(1700000000000 + i * 1000),
    tags: ["t" + (i % 5), "all"],
    raw: BinData(0, "AAECAwQ="),
    nested: {{ ok: i % 2 === 0, ratio: i / 7 }},
  }});
}}
shop.orders.insertMany(orders);
shop.orders.createIndex({{ sku: 1, at: -1 }}, {{ name: "sku_at" }});
shop.orders.createIndex({{ at: 1 }}, {{ name: "at_ttl", expireAfterSeconds: 315360000 }});
shop.customers.insertMany([
  {{ _id: ObjectId("64b7f0000000000000000001"), name: "Ada", email: "ada@example.com" }},
  {{ _id: ObjectId("64b7f0000000000000000002"), name: "Grace", email: "grace@example.com" }},
]);
shop.customers.createIndex({{ email: 1 }}, {{ unique: true, name: "email_unique" }});
print("seeded");
"""

# Every collection of a database: documents in _id order as canonical Extended JSON, and indexes.
SNAPSHOT = """
const d = db.getSiblingDB(DBNAME);
const out = {};
for (const name of d.getCollectionNames().sort()) {
  const docs = d.getCollection(name).find().sort({ _id: 1 }).toArray();
  const indexes = d.getCollection(name).getIndexes()
    .map(ix => { delete ix.ns; delete ix.v; return ix; })
    .sort((a, b) => a.name.localeCompare(b.name));
  out[name] = { count: docs.length, docs: EJSON.stringify(docs, null, 0, { relaxed: false }),
                indexes: EJSON.stringify(indexes, null, 0, { relaxed: false }) };
}
print(JSON.stringify(out));
"""


def mongosh(cluster: Cluster, script: str) -> str:
    return cluster.kubectl(
        "exec",
        "-n",
        DATA_NAMESPACE,
        "mongo-0",
        "--",
        "mongosh",
        "--quiet",
        "--username",
        MONGO_USER,
        "--password",
        MONGO_PASSWORD,
        "--authenticationDatabase",
        "admin",
        "--eval",
        script,
        timeout=300,
    )


def snapshot(cluster: Cluster, database: str) -> dict[str, Any]:
    output = mongosh(cluster, f"const DBNAME = {json.dumps(database)};\n{SNAPSHOT}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def mongodb(cluster: Cluster) -> Iterator[str]:
    """mongo:7 as a one-member StatefulSet with its root credentials in a Secret; yields the
    name of the Secret holding the URI the operator uses."""
    labels = {"app": "mongo"}
    cluster.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DATA_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mongo-root", "namespace": DATA_NAMESPACE},
            "stringData": {"username": MONGO_USER, "password": MONGO_PASSWORD},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mongodb-uri", "namespace": DATA_NAMESPACE},
            "stringData": {
                "uri": f"mongodb://{MONGO_USER}:{MONGO_PASSWORD}@mongo-0.mongo.{DATA_NAMESPACE}.svc:27017/"
                "?authSource=admin&directConnection=true"
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "mongo", "namespace": DATA_NAMESPACE},
            "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "mongo", "port": 27017}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "mongo", "namespace": DATA_NAMESPACE},
            "spec": {
                "serviceName": "mongo",
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "mongo",
                                "image": "mongo:7",
                                "ports": [{"containerPort": 27017, "name": "mongo"}],
                                "env": [
                                    {
                                        "name": "MONGO_INITDB_ROOT_USERNAME",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": "mongo-root", "key": "username"}
                                        },
                                    },
                                    {
                                        "name": "MONGO_INITDB_ROOT_PASSWORD",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": "mongo-root", "key": "password"}
                                        },
                                    },
                                ],
                                "readinessProbe": {
                                    "exec": {
                                        "command": [
                                            "mongosh",
                                            "--quiet",
                                            "--eval",
                                            "db.adminCommand('ping').ok",
                                        ]
                                    },
                                    "periodSeconds": 5,
                                },
                                "volumeMounts": [{"name": "data", "mountPath": "/data/db"}],
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
    )
    cluster.kubectl(
        "rollout", "status", "-n", DATA_NAMESPACE, "statefulset/mongo", "--timeout=600s", timeout=660
    )
    assert "seeded" in mongosh(cluster, SEED)
    yield "mongodb-uri"
    cluster.kubectl("delete", "namespace", DATA_NAMESPACE, "--wait=false")


def wait_for_phase(
    cluster: Cluster, kind: str, name: str, phase: str, timeout: float = 600
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = cluster.get(kind, name, DATA_NAMESPACE)
        status = (obj or {}).get("status") or {}
        if status.get("phase") == "Failed" and phase != "Failed":
            pytest.fail(f"{kind}/{name} failed: {json.dumps(status, indent=2)}\n{cluster.operator_logs()}")
        return obj if status.get("phase") == phase else None

    def explain() -> str:
        obj = cluster.get(kind, name, DATA_NAMESPACE)
        return f"{kind}/{name}: {json.dumps((obj or {}).get('status'), indent=2)}\n{cluster.operator_logs()}"

    return wait_for(f"{kind}/{name} to be {phase}", check, timeout, explain)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in obj["status"].get("conditions", []):
        if cond["type"] == kind:
            found: dict[str, Any] = cond
            return found
    raise AssertionError(f"no {kind} condition in {json.dumps(obj['status'], indent=2)}")


def stored_backup_exists(cluster: Cluster, name: str) -> bool:
    """Looks into the operator's PVC from inside its pod (the image has Python, not ls)."""
    script = f"import os, sys; sys.exit(0 if os.path.exists('{BACKUP_MOUNT}/{name}/manifest.json') else 3)"
    try:
        cluster.kubectl(
            "exec",
            "-n",
            OPERATOR_NAMESPACE,
            f"deployment/{operator_deployment()}",
            "--",
            "python",
            "-c",
            script,
        )
    except AssertionError as e:
        if "exit code 3" in str(e):
            return False
        raise
    return True


def test_backup_restore_verify_and_cleanup_on_kind(cluster: Cluster, operator: str, mongodb: str) -> None:
    source = snapshot(cluster, "shop")
    assert source["orders"]["count"] == ORDERS

    uri_ref = {"name": mongodb, "key": "uri"}
    cluster.apply(
        {
            "apiVersion": "mongobackup.io/v1alpha1",
            "kind": "MongoBackup",
            "metadata": {"name": BACKUP, "namespace": DATA_NAMESPACE},
            "spec": {
                "mongodb": {"uriSecretRef": uri_ref},
                "storage": {"filesystem": {"path": BACKUP_MOUNT}},
                "namespaces": {"include": ["shop.*"]},
                "compression": {"type": "zstd"},
                "deletionPolicy": "Delete",
            },
        }
    )
    backup = wait_for_phase(cluster, "mongobackup", BACKUP, "Completed")
    status = backup["status"]
    assert status["documents"] == ORDERS + 2
    assert status["collections"] == 2
    assert len(status["checksum"]) == 64
    assert status["storedBytes"] > 0
    assert stored_backup_exists(cluster, BACKUP)

    cluster.apply(
        {
            "apiVersion": "mongobackup.io/v1alpha1",
            "kind": "MongoRestore",
            "metadata": {"name": RESTORE, "namespace": DATA_NAMESPACE},
            "spec": {
                "backupRef": {"name": BACKUP},
                "mongodb": {"uriSecretRef": uri_ref},
                "rename": [{"from": "shop.*", "to": "shop_restored.*"}],
                "verify": True,
            },
        }
    )
    restore = wait_for_phase(cluster, "mongorestore", RESTORE, "Completed")
    assert condition(restore, "Verified")["status"] == "True"
    assert restore["status"]["verification"] == {"checked": 2, "verified": 2, "mismatches": []}
    assert restore["status"]["documents"] == ORDERS + 2
    assert restore["status"]["checksum"] == status["checksum"]  # exactly the backup made above

    # What a DBA would compare: every document byte for byte (canonical Extended JSON), every index.
    assert snapshot(cluster, "shop_restored") == source

    # The operator never restarted (read-only root filesystem, probes, memory limit all held).
    pods = json.loads(
        cluster.kubectl(
            "get",
            "pods",
            "-n",
            OPERATOR_NAMESPACE,
            "-l",
            "app.kubernetes.io/component=operator",
            "-o",
            "json",
        )
    )["items"]
    assert [p["status"]["containerStatuses"][0]["restartCount"] for p in pods] == [0]

    # Cleanup: the finalizers let go, and deletionPolicy Delete removes the stored backup.
    cluster.kubectl("delete", "mongorestore", RESTORE, "-n", DATA_NAMESPACE, "--timeout=120s", timeout=180)
    cluster.kubectl("delete", "mongobackup", BACKUP, "-n", DATA_NAMESPACE, "--timeout=120s", timeout=180)
    assert cluster.get("mongorestore", RESTORE, DATA_NAMESPACE) is None
    assert cluster.get("mongobackup", BACKUP, DATA_NAMESPACE) is None
    assert not stored_backup_exists(cluster, BACKUP)
    # The restored data belongs to the user: deleting the MongoRestore leaves it in place.
    assert snapshot(cluster, "shop_restored")["orders"]["count"] == ORDERS


def test_the_same_flow_in_job_mode_on_kind(cluster: Cluster, operator: str, mongodb: str) -> None:
    """Each run a Job of its own in the objects' namespace, with a PVC mounted at the path."""
    source = snapshot(cluster, "shop")
    uri_ref = {"name": mongodb, "key": "uri"}
    volume = {"persistentVolumeClaim": {"claimName": "job-backups"}}
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "job-backups", "namespace": DATA_NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        {
            "apiVersion": "mongobackup.io/v1alpha1",
            "kind": "MongoBackup",
            "metadata": {"name": "job-backup", "namespace": DATA_NAMESPACE},
            "spec": {
                "runMode": "Job",
                "runner": {"resources": {"limits": {"memory": "1Gi"}}, "activeDeadlineSeconds": 600},
                "mongodb": {"uriSecretRef": uri_ref},
                "storage": {"filesystem": {"path": BACKUP_MOUNT, "volume": volume}},
                "namespaces": {"include": ["shop.*"]},
            },
        },
    )
    backup = wait_for_phase(cluster, "mongobackup", "job-backup", "Completed")["status"]
    assert backup["documents"] == ORDERS + 2 and backup["attempts"] == 1
    job = json.loads(cluster.kubectl("get", "job", "job-backup-backup-1", "-n", DATA_NAMESPACE, "-o", "json"))
    assert job["status"].get("succeeded") == 1

    cluster.apply(
        {
            "apiVersion": "mongobackup.io/v1alpha1",
            "kind": "MongoRestore",
            "metadata": {"name": "job-restore", "namespace": DATA_NAMESPACE},
            "spec": {
                "runMode": "Job",
                "backupRef": {"name": "job-backup"},
                "mongodb": {"uriSecretRef": uri_ref},
                "rename": [{"from": "shop.*", "to": "shop_jobs.*"}],
            },
        }
    )
    restore = wait_for_phase(cluster, "mongorestore", "job-restore", "Completed")
    assert condition(restore, "Verified")["status"] == "True"
    assert snapshot(cluster, "shop_jobs") == source
    # deleting the objects deletes their Jobs, ServiceAccounts, Roles and RoleBindings (owned)
    cluster.kubectl(
        "delete", "mongorestore", "job-restore", "-n", DATA_NAMESPACE, "--timeout=120s", timeout=180
    )
    cluster.kubectl(
        "delete", "mongobackup", "job-backup", "-n", DATA_NAMESPACE, "--timeout=120s", timeout=180
    )


def test_helm_uninstall_removes_the_operator_and_keeps_the_crds(cluster: Cluster, operator: str) -> None:
    import helm_python as helm

    with helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=OPERATOR_NAMESPACE) as config:
        config.uninstall(operator, wait="watcher", timeout=300)
    assert cluster.get("deployment", operator_deployment(), OPERATOR_NAMESPACE) is None
    assert cluster.get("serviceaccount", operator_deployment(), OPERATOR_NAMESPACE) is None
    roles = cluster.kubectl("get", "clusterroles", "-o", "name")
    assert operator_deployment() not in roles
    # Helm never deletes CRDs (that would delete every MongoBackup with them): they stay.
    crds = cluster.kubectl("get", "crds", "-o", "name")
    assert "mongobackups.mongobackup.io" in crds
    assert "mongorestores.mongobackup.io" in crds
