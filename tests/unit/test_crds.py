"""The committed CRDs are what the models generate, and they are valid, structural CRDs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mongo_backup.api.crdgen import HEADER, generate_crds, render_crds, write_crds

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
CRDS = generate_crds()
FILES = [
    "mongobackup.io_mongobackups.yaml",
    "mongobackup.io_mongorestores.yaml",
    "mongobackup.io_mongobackupschedules.yaml",
]


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    version = crd["spec"]["versions"][0]
    return dict(version["schema"]["openAPIV3Schema"])


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or ".", schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def test_the_committed_crds_are_what_the_models_generate() -> None:
    assert sorted(p.name for p in CRDS_DIR.glob("*.yaml")) == sorted(FILES)
    for name, text in render_crds().items():
        committed = (CRDS_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"crds/{name} differs from the models in mongo_backup.api: run `make crds`"


def test_rendering_is_deterministic_and_marked_generated(tmp_path: Path) -> None:
    first, second = render_crds(), render_crds()
    assert first == second
    for text in first.values():
        assert text.startswith(HEADER) and "do not edit" in HEADER
        assert "&id" not in text  # no YAML anchors: each CRD reads on its own
    written = write_crds(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(FILES)
    assert {p.name: p.read_text(encoding="utf-8") for p in written} == first


@pytest.mark.parametrize("name", FILES)
def test_kubernetes_accepts_the_crd_object(name: str) -> None:
    crd = yaml.safe_load((CRDS_DIR / name).read_text(encoding="utf-8"))
    # validates apiextensions.k8s.io/v1 CustomResourceDefinition, unknown fields refused
    kubernetes_validate.validate(crd, "1.37.0", strict=True)


@pytest.mark.parametrize("name", FILES)
def test_the_schema_is_structural(name: str) -> None:
    for path, node in nodes(schema_of(CRDS[name])):
        # an int-or-string (a resource quantity) is the one node a structural schema leaves untyped
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{name} {path}: no type"
        for keyword in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const"):
            assert keyword not in node, f"{name} {path}: {keyword} is not allowed in a structural schema"
        assert node.get("additionalProperties") is not False, f"{name} {path}: additionalProperties: false"
        if node.get("type") == "object" and path not in (".", ".metadata"):
            assert (
                node.get("properties")
                or node.get("additionalProperties")
                or node.get("x-kubernetes-preserve-unknown-fields")  # a pod spec's part, kept as written
            ), f"{name} {path}: empty object"
        if path not in (".metadata",) and path.count(".") >= 1:
            assert node.get("description") or path.endswith(("[]", "{}")), f"{name} {path}: no description"
        for required in node.get("required", []):
            assert required in node["properties"], f"{name} {path}: required {required} is no property"
        if "default" in node:
            default = node["default"]
            python_type = {"string": str, "integer": int, "boolean": bool, "number": (int, float)}[
                node["type"]
            ]
            assert isinstance(default, python_type), (
                f"{name} {path}: default {default!r} is no {node['type']}"
            )
            assert default in node.get("enum", [default]), f"{name} {path}: default not in enum"


@pytest.mark.parametrize("name", FILES)
def test_printer_columns_point_at_fields_of_the_schema(name: str) -> None:
    version = CRDS[name]["spec"]["versions"][0]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    if "schedules" in name:
        assert list(columns) == ["Schedule", "Suspend", "Last Success", "Next", "Age"]
    else:
        assert {"Phase", "Size", "Documents", "Age"} <= set(columns)
    schema = schema_of(CRDS[name])
    for column in columns.values():
        node = schema
        for part in column["jsonPath"].strip(".").split("."):
            assert part in node.get("properties", {}) or part == "creationTimestamp", (
                f"{name}: column {column['name']} points at {column['jsonPath']}, which the schema lacks"
            )
            node = node.get("properties", {}).get(part, {})
        if column["type"] == "integer":
            assert node["type"] == "integer"
    if "mongorestores" in name:
        assert columns["Backup"]["jsonPath"] == ".status.backup"


def rules(node: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in node.get("x-kubernetes-validations", [])]


def test_cross_field_rules_are_in_the_schema() -> None:
    backup = schema_of(CRDS[FILES[0]])["properties"]["spec"]
    restore = schema_of(CRDS[FILES[1]])["properties"]["spec"]
    assert "self == oldSelf" in rules(backup) and "self == oldSelf" in rules(restore)
    assert "has(self.backupRef) != has(self.source)" in rules(restore)
    for storage in (
        backup["properties"]["storage"],
        restore["properties"]["source"]["properties"]["storage"],
    ):
        assert any("has(self.filesystem)" in r and "size() == 1" in r for r in rules(storage))
    for path, node in nodes(schema_of(CRDS[FILES[0]])):
        for validation in node.get("x-kubernetes-validations", []):
            assert validation["message"], f"{path}: a CEL rule without a message"


def test_the_schedule_embeds_the_backup_spec_and_stays_editable() -> None:
    backup = schema_of(CRDS[FILES[0]])["properties"]["spec"]
    schedule = schema_of(CRDS[FILES[2]])["properties"]["spec"]
    template = schedule["properties"]["backupTemplate"]
    # the MongoBackup spec as is: the same properties and rules, minus the run's immutability
    assert template["properties"] == backup["properties"]
    assert "self == oldSelf" not in rules(schedule) and "self == oldSelf" not in rules(template)
    assert any("has(self.keepLast)" in r for r in rules(schedule["properties"]["retention"]))
    assert schedule["properties"]["concurrencyPolicy"]["enum"] == ["Forbid", "Replace", "Allow"]
    assert schedule["properties"]["concurrencyPolicy"]["default"] == "Forbid"
    assert schedule["properties"]["timeZone"]["default"] == "UTC"


def test_names_scope_and_status_subresource() -> None:
    for name, short, kind in (
        (FILES[0], "mbk", "MongoBackup"),
        (FILES[1], "mrs", "MongoRestore"),
        (FILES[2], "mbs", "MongoBackupSchedule"),
    ):
        spec = CRDS[name]["spec"]
        assert spec["group"] == "mongobackup.io" and spec["scope"] == "Namespaced"
        assert spec["names"]["kind"] == kind and spec["names"]["shortNames"] == [short]
        assert spec["names"]["singular"] not in spec["names"]["categories"]
        version = spec["versions"][0]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        assert (
            "x-kubernetes-preserve-unknown-fields"
            not in version["schema"]["openAPIV3Schema"]["properties"]["status"]
        )


def test_credential_keys_are_documented() -> None:
    storage = schema_of(CRDS[FILES[0]])["properties"]["spec"]["properties"]["storage"]["properties"]
    docs = {
        name: storage[name]["properties"]["credentialsSecretRef"]["description"]
        for name in ("gcs", "s3", "azure")
    }
    assert "service-account.json" in docs["gcs"]
    assert all(k in docs["s3"] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))
    assert all(
        k in docs["azure"]
        for k in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN")
    )
