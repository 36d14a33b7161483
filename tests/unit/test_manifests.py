"""The kustomize base (manifests/): it renders, every object is valid Kubernetes, the operator
runs locked down, the CRDs are the generated ones, and the examples fit the CRD schemas."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRDS = ROOT / "crds"
KUBE_VERSION = "1.37"
KUBECTL = Path(sys.executable).parent / "kubectl"

Obj = dict[str, Any]


def generated_crd_files() -> list[Path]:
    files = sorted(CRDS.glob("*.yaml"))
    if not files:
        pytest.fail(f"no generated CRDs in {CRDS}: run `make crds`")
    return files


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize manifests/ failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_every_rendered_object_is_valid_kubernetes(rendered: list[Obj]) -> None:
    assert Counter(o["kind"] for o in rendered) == {
        "Namespace": 1,
        "CustomResourceDefinition": 3,
        "ServiceAccount": 1,
        "ClusterRole": 2,
        "ClusterRoleBinding": 2,
        "Deployment": 1,
        "Service": 1,
    }
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")


def test_crd_copies_equal_the_generated_crds() -> None:
    generated = {p.name: p.read_text() for p in generated_crd_files()}
    copies = {p.name: p.read_text() for p in (MANIFESTS / "crds").glob("*.yaml")}
    assert sorted(copies) == sorted(generated), "manifests/crds/ must hold exactly the files of crds/"
    for name, text in generated.items():
        assert copies[name] == text, (
            f"manifests/crds/{name} differs from crds/{name}: cp crds/*.yaml manifests/crds/"
        )
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert {f"crds/{name}" for name in generated} <= set(kustomization["resources"])


def test_everything_lands_in_the_operator_namespace(rendered: list[Obj]) -> None:
    namespace = one(rendered, "Namespace")["metadata"]["name"]
    for obj in rendered:
        if obj["kind"] in {"ServiceAccount", "Deployment", "Service"}:
            assert obj["metadata"]["namespace"] == namespace
    deployment = one(rendered, "Deployment")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    one(rendered, "ServiceAccount", account)
    for binding in (o for o in rendered if o["kind"] == "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
        one(rendered, "ClusterRole", binding["roleRef"]["name"])


def test_the_operator_runs_locked_down(rendered: list[Obj]) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    uid = dockerfile_user()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == pod["securityContext"]["runAsUser"] == uid
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # The read-only root needs a writable /tmp (HOME=/tmp in the image).
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_probes_hit_the_health_endpoint(rendered: list[Obj]) -> None:
    (container,) = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    # `mongo-backup run --liveness URL` serves Kopf's health endpoint where the probes look.
    assert container["args"][:3] == ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
    for probe in ("livenessProbe", "readinessProbe"):
        http = container[probe]["httpGet"]
        assert f"http://0.0.0.0:{ports[http['port']]}{http['path']}" == container["args"][2]
    assert env["MONGO_BACKUP_NAMESPACES"] == ""  # the base watches every namespace
    assert env["MONGO_BACKUP_LOG_FORMAT"] in {"json", "plain"}


def test_the_metrics_service_reaches_the_operators_metrics_port(rendered: list[Obj]) -> None:
    deployment = one(rendered, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["args"][3:] == ["--metrics-port", str(ports["metrics"])]
    service = one(rendered, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": ports["metrics"], "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_rbac_grants_nothing_broad(rendered: list[Obj]) -> None:
    for role in (o for o in rendered if o["kind"] == "ClusterRole"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['metadata']['name']}: wildcard in {field}"
            if "secrets" in rule["resources"]:
                # Listing or watching Secrets would expose every Secret of the cluster.
                assert rule["verbs"] == ["get"]


def dockerfile_user() -> int:
    users = re.findall(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert users, "the Dockerfile sets no numeric USER"
    return int(users[-1])


# ---- examples -----------------------------------------------------------------------------------


def load_examples() -> list[Obj]:
    objects: list[Obj] = []
    for path in sorted((MANIFESTS / "examples").glob("*.yaml")):
        objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return objects


def crd_schema(kind: str) -> tuple[str, dict[str, Any]]:
    for path in generated_crd_files():
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
            return f"{crd['spec']['group']}/{version['name']}", version["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD in crds/ for kind {kind}")


def refuse_unknown_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as `kubectl apply` enforces it (strict field validation): a field the schema
    does not declare is an error, not silently pruned."""
    strict = dict(schema)
    if "properties" in strict and not strict.get("x-kubernetes-preserve-unknown-fields"):
        strict.setdefault("additionalProperties", False)
        strict["properties"] = {
            name: refuse_unknown_fields(sub) for name, sub in strict["properties"].items()
        }
    if isinstance(strict.get("items"), dict):
        strict["items"] = refuse_unknown_fields(strict["items"])
    return strict


def test_examples_validate_against_kubernetes_and_the_crds() -> None:
    examples = load_examples()
    kinds = sorted(o["kind"] for o in examples)
    assert kinds == ["MongoBackup", "MongoBackupSchedule", "MongoRestore", "Secret"]
    for obj in examples:
        if obj["kind"] == "Secret":
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            continue
        api_version, schema = crd_schema(obj["kind"])
        assert obj["apiVersion"] == api_version
        # OpenAPI v3 schemas of CRDs are JSON Schema draft 4 plus x-kubernetes-* keywords
        # (ignored here; CEL rules only a real API server checks: the kind e2e test applies them).
        try:
            jsonschema.Draft4Validator(refuse_unknown_fields(schema)).validate(obj)
        except jsonschema.ValidationError as e:
            pytest.fail(f"manifests/examples {obj['kind']}: {e.message} at {list(e.path)}")


def test_every_example_parses_with_the_operator_models() -> None:
    """What the operator itself checks (cron expressions, time zones, cross-field rules) on
    both sets of examples: manifests/examples/ and the demo's examples/."""
    from mongo_backup.api import RESOURCES, parse_spec

    models = {r.kind: r.spec_model for r in RESOURCES}
    for folder in (MANIFESTS / "examples", ROOT / "examples"):
        for path in sorted(folder.glob("*.yaml")):
            for obj in yaml.safe_load_all(path.read_text()):
                if obj and obj["kind"] in models:
                    parse_spec(models[obj["kind"]], obj)
                    if obj["kind"] == "MongoBackupSchedule":
                        _, schema = crd_schema(obj["kind"])
                        jsonschema.Draft4Validator(refuse_unknown_fields(schema)).validate(obj)


def documented_resources() -> Iterator[tuple[str, Obj]]:
    """Our custom resources in the ```yaml blocks of README.md and docs/*.md."""
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if not doc.exists():
            continue
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(), flags=re.DOTALL):
            for obj in yaml.safe_load_all(block):
                if isinstance(obj, dict) and str(obj.get("apiVersion", "")).startswith("mongobackup.io/"):
                    yield doc.name, obj


def test_yaml_in_the_docs_validates_against_the_crds() -> None:
    """The backup and restore YAML that README.md and docs/ show users is what the CRDs accept."""
    checked = 0
    for doc, obj in documented_resources():
        api_version, schema = crd_schema(obj["kind"])
        assert obj["apiVersion"] == api_version, f"{doc}: {obj['kind']} apiVersion"
        try:
            jsonschema.Draft4Validator(refuse_unknown_fields(schema)).validate(obj)
        except jsonschema.ValidationError as e:
            pytest.fail(f"{doc} {obj['kind']} {obj['metadata']['name']}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked >= 2, "no MongoBackup/MongoRestore YAML found in README.md or docs/"


def test_examples_reference_each_other() -> None:
    """A user applies the three examples as they are: the names must line up."""
    examples = {o["kind"]: o for o in load_examples()}
    secret = examples["Secret"]
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    examples["Template"] = examples["MongoBackupSchedule"]["spec"]["backupTemplate"]
    for kind in ("MongoBackup", "MongoRestore", "Template"):
        spec = examples[kind] if kind == "Template" else examples[kind]["spec"]
        ref = spec["mongodb"]["uriSecretRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in keys
    assert (
        examples["MongoRestore"]["spec"]["backupRef"]["name"] == examples["MongoBackup"]["metadata"]["name"]
    )
