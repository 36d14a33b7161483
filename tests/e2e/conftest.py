"""A real cluster for the end-to-end tests: kind, the operator image built and loaded, the chart
installed. Every test here is marked e2e and skips, saying why, where Docker or kind is missing.

Environment knobs:
  E2E_KIND_CLUSTER=NAME   use this existing kind cluster (kept afterwards) instead of a new one
  E2E_KEEP_CLUSTER=1      keep the cluster this run created (to look around after a failure)
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.kind import (
    BACKUP_MOUNT,
    BACKUP_PVC,
    CHART,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    OPERATOR_NAMESPACE,
    RELEASE,
    ROOT,
    Cluster,
    missing_prerequisite,
    run,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    if not e2e:
        return
    reason = missing_prerequisite()
    if reason:
        for item in e2e:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    existing = os.environ.get("E2E_KIND_CLUSTER")
    if existing:
        kubeconfig.write_text(run("kind", "get", "kubeconfig", "--name", existing))
        yield Cluster(existing, kubeconfig)
        return
    name = f"mbo-e2e-{uuid.uuid4().hex[:6]}"
    run("kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig), "--wait", "180s")
    try:
        yield Cluster(name, kubeconfig)
    finally:
        if not os.environ.get("E2E_KEEP_CLUSTER"):
            subprocess.run(["kind", "delete", "cluster", "--name", name], capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def operator_image(cluster: Cluster) -> str:
    """The image built from the repository's Dockerfile, loaded into the kind nodes."""
    image = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}  # the Dockerfile bind-mounts the build stage's wheels
    run(
        "docker",
        "build",
        "--tag",
        image,
        "--build-arg",
        f"VERSION={IMAGE_TAG}",
        str(ROOT),
        timeout=1800,
        env=env,
    )
    run("kind", "load", "docker-image", image, "--name", cluster.name)
    return image


@pytest.fixture(scope="session")
def operator(cluster: Cluster, operator_image: str) -> Iterator[str]:
    """The chart installed as a user would, plus a PVC for filesystem backups; yields the release."""
    import helm_python as helm

    # The namespace enforces the "restricted" Pod Security Standard: the operator pod must meet it.
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": OPERATOR_NAMESPACE,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": BACKUP_PVC, "namespace": OPERATOR_NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    values = {
        "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
        "logFormat": "plain",
        # the PVC below is in the operator's namespace: only in-process runs can mount it (the
        # Job-mode test brings a PVC of its own, in the objects' namespace)
        "runMode": "InProcess",
        "extraVolumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": BACKUP_PVC}}],
        "extraVolumeMounts": [{"name": "backups", "mountPath": BACKUP_MOUNT}],
    }
    with helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=OPERATOR_NAMESPACE) as config:
        try:
            config.install(CHART, RELEASE, values, namespace=OPERATOR_NAMESPACE, wait="watcher", timeout=300)
        except helm.HelmError as e:
            pytest.fail(f"helm install failed: {e}\n{cluster.operator_logs()}")
        yield RELEASE
        config.uninstall(RELEASE, wait="watcher", timeout=300, ignore_not_found=True)
