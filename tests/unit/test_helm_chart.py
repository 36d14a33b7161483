"""The Helm chart, rendered by Helm's own Go engine (helm-python-sdk): it lints, every object is
valid Kubernetes, values do what they say, and it installs what the kustomize base installs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import promql_parser
import pytest
import yaml

from mongo_backup.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mongo-backup-operator"
NAMESPACED_VALUES = CHART / "ci" / "namespaced-values.yaml"
KUBE_VERSION = "1.37"
RELEASE = "mbo"
RELEASE_NAMESPACE = "backup-system"

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> tuple[list[Obj], str]:
    """The objects a `helm install` would create, and its NOTES."""
    files = chart.render(values=values, name=RELEASE, namespace=RELEASE_NAMESPACE, is_install=True)
    objects: list[Obj] = []
    notes = ""
    for name, text in files.items():
        if name.endswith("NOTES.txt"):
            notes = text
        else:
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects, notes


def namespaced_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(NAMESPACED_VALUES.read_text())
    return values


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def deployment_of(objects: list[Obj]) -> Obj:
    (deployment,) = of_kind(objects, "Deployment")
    return deployment


def kustomize_base() -> list[Obj]:
    kubectl = Path(sys.executable).parent / "kubectl"
    result = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "manifests")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


#: the Prometheus Operator's kinds: no Kubernetes schema to validate them against (their own tests below)
MONITORING = "monitoring.coreos.com/v1"


def validate_all(objects: list[Obj]) -> None:
    for obj in objects:
        if obj["apiVersion"] == MONITORING:
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")


@pytest.mark.parametrize("values_file", [None, NAMESPACED_VALUES], ids=["defaults", "namespaced"])
def test_chart_lints_clean(values_file: Path | None) -> None:
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    report = helm.lint(CHART, values, strict=True, namespace=RELEASE_NAMESPACE, kube_version="v1.37.0")
    assert report["errors"] == []
    # Severity 2 = warning, 3 = error; 1 (info) is only "icon is recommended".
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_install_is_valid_kubernetes(chart: helm.Chart) -> None:
    objects, notes = render(chart)
    assert Counter(o["kind"] for o in objects) == {
        "ServiceAccount": 1,
        "ClusterRole": 2,
        "ClusterRoleBinding": 2,
        "Deployment": 1,
        "Service": 1,
    }
    validate_all(objects)
    assert "all namespaces" in notes


def test_namespaced_install_is_valid_kubernetes(chart: helm.Chart) -> None:
    values = namespaced_values()
    objects, notes = render(chart, values)
    validate_all(objects)
    assert "databases, analytics" in notes


def test_crds_equal_the_generated_crds(chart: helm.Chart) -> None:
    generated = {p.name: p.read_text() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    assert generated, "no generated CRDs in crds/: run `make crds`"
    copies = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert sorted(copies) == sorted(generated), "the chart's crds/ must hold exactly the files of crds/"
    for name, text in generated.items():
        assert copies[name] == text, f"helm/.../crds/{name} differs from crds/{name}: run `make crds`"
    # Helm itself sees them as the chart's CRDs (installed before the templates).
    assert sorted(c["filename"] for c in chart.crds) == sorted(f"{CHART.name}/crds/{n}" for n in generated)


def test_values_schema_rejects_mistakes(chart: helm.Chart) -> None:
    chart.validate_schema(namespaced_values())
    for bad in (
        {"logFormat": "xml"},
        {"watchNamespaces": "databases"},  # a string where a list is meant
        {"image": {"pullPolicy": "Sometimes"}},
        {"replicaCount": 1},  # another chart's key name: unknown keys are refused
        {"replicas": 2},  # two operators without peering would both run every backup
        {"metrics": {"serviceMonitor": {"enable": True}}},  # a typo of `enabled`
        {"metrics": {"prometheusRule": {"consecutiveFailures": 0}}},
        {"metrics": {"port": "9090"}},
        {"metrics": {"serviceMonitor": {"interval": "one minute"}}},
    ):
        with pytest.raises(helm.HelmError):
            chart.validate_schema(bad)


def test_chart_installs_what_the_kustomize_base_installs(chart: helm.Chart) -> None:
    """Same RBAC rules, same locked-down container, same probes and environment."""
    base = kustomize_base()
    objects, _ = render(chart)
    fullname = deployment_of(objects)["metadata"]["name"]
    chart_roles = {
        o["metadata"]["name"].replace(fullname, "ROLE"): o["rules"] for o in of_kind(objects, "ClusterRole")
    }
    base_roles = {
        o["metadata"]["name"].replace("mongo-backup-operator", "ROLE"): o["rules"]
        for o in of_kind(base, "ClusterRole")
    }
    assert chart_roles == base_roles

    chart_pod = deployment_of(objects)["spec"]["template"]["spec"]
    base_pod = deployment_of(base)["spec"]["template"]["spec"]
    assert chart_pod["securityContext"] == base_pod["securityContext"]
    (chart_container,) = chart_pod["containers"]
    (base_container,) = base_pod["containers"]
    for field in ("securityContext", "livenessProbe", "readinessProbe", "ports", "args", "env", "resources"):
        assert chart_container[field] == base_container[field], field
    assert chart_container["volumeMounts"] == base_container["volumeMounts"]
    assert chart_pod["volumes"] == base_pod["volumes"]
    for field in ("replicas", "strategy"):
        assert deployment_of(objects)["spec"][field] == deployment_of(base)["spec"][field]


def test_default_install_binds_everything_cluster_wide(chart: helm.Chart) -> None:
    objects, _ = render(chart)
    (account,) = of_kind(objects, "ServiceAccount")
    assert (
        deployment_of(objects)["spec"]["template"]["spec"]["serviceAccountName"]
        == account["metadata"]["name"]
    )
    roles = {o["metadata"]["name"] for o in of_kind(objects, "ClusterRole")}
    bindings = of_kind(objects, "ClusterRoleBinding")
    assert {b["roleRef"]["name"] for b in bindings} == roles
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": RELEASE_NAMESPACE}
        ]
    assert of_kind(objects, "RoleBinding") == []


def test_watched_namespaces_limit_the_operator_and_its_permissions(chart: helm.Chart) -> None:
    values = namespaced_values()
    objects, _ = render(chart, values)
    deployment = deployment_of(objects)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MONGO_BACKUP_NAMESPACES"] == "databases,analytics"

    # Namespaced permissions (Secrets included) only in the watched namespaces...
    namespaced_role = deployment["metadata"]["name"]
    role_bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in role_bindings) == ["analytics", "databases"]
    for binding in role_bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": namespaced_role,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "mongo-backup-sa", "namespace": RELEASE_NAMESPACE}
        ]
    # ...and no cluster-wide binding of them.
    assert [b["roleRef"]["name"] for b in of_kind(objects, "ClusterRoleBinding")] == [
        f"{namespaced_role}-cluster"
    ]
    # The cluster-wide role carries nothing that reaches into namespaces: no Secrets, no backups.
    (cluster_role,) = [
        r for r in of_kind(objects, "ClusterRole") if r["metadata"]["name"].endswith("-cluster")
    ]
    for rule in cluster_role["rules"]:
        assert not {"secrets", "mongobackups", "mongorestores"} & set(rule["resources"]), rule


def test_values_reach_the_deployment(chart: helm.Chart) -> None:
    values = namespaced_values()
    objects, _ = render(chart, values)
    deployment = deployment_of(objects)
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert deployment["metadata"]["name"] == "mongo-backup"
    assert container["image"] == "registry.example.com/platform/mongo-backup-operator:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert env["MONGO_BACKUP_LOG_FORMAT"] == "plain"
    assert env["MONGO_BACKUP_MAX_CONCURRENT_RUNS"] == "4"
    assert container["args"] == [
        *("run", "--liveness", "http://0.0.0.0:9090/healthz"),
        *("--metrics-port", "9091"),
    ]
    assert env["TZ"] == "UTC"
    assert container["ports"] == [
        {"name": "health", "containerPort": 9090, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9091, "protocol": "TCP"},
    ]
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert container["resources"] == values["resources"]
    assert {"name": "backups", "mountPath": "/backups"} in container["volumeMounts"]
    assert {"name": "backups", "persistentVolumeClaim": {"claimName": "mongo-backups"}} in spec["volumes"]
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == values["affinity"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["serviceAccountName"] == "mongo-backup-sa"
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "dba"
    # Selector labels stay fixed whatever the pod labels: a Deployment's selector is immutable.
    assert "team" not in deployment["spec"]["selector"]["matchLabels"]
    (account,) = of_kind(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]


def test_existing_service_account_and_no_rbac(chart: helm.Chart) -> None:
    objects, _ = render(
        chart, {"serviceAccount": {"create": False, "name": "platform-sa"}, "rbac": {"create": False}}
    )
    assert sorted(o["kind"] for o in objects) == ["Deployment", "Service"]
    assert deployment_of(objects)["spec"]["template"]["spec"]["serviceAccountName"] == "platform-sa"


def test_existing_service_account_needs_a_name(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmError, match=r"serviceAccount\.name is required"):
        render(chart, {"serviceAccount": {"create": False}})


# Metrics: the Service always (unless metrics are off), the monitoring objects when asked.


def exposed_metric_names() -> set[str]:
    """Every sample name metrics.py can expose (a counter's samples end in _total)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


#: Grafana's variables, replaced by values of their type before the PromQL is parsed
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*"}


def referenced_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, from Prometheus' grammar (a parse error fails)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()
    pending: list[Any] = [promql_parser.parse(expr)]
    while pending:
        node = pending.pop()
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
        elif isinstance(node, promql_parser.MatrixSelector):
            pending.append(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            pending += [node.lhs, node.rhs]
        elif isinstance(node, promql_parser.AggregateExpr):
            pending += [node.expr] + ([node.param] if node.param is not None else [])
        elif isinstance(node, promql_parser.Call):
            pending += list(node.args)
        elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
            pending.append(node.expr)
    return names


def container_of(objects: list[Obj]) -> Obj:
    (container,) = deployment_of(objects)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_default_install_serves_metrics_behind_a_service_and_nothing_more(chart: helm.Chart) -> None:
    objects, _ = render(chart)
    container = container_of(objects)
    assert container["args"][3:] == ["--metrics-port", "9090"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    (service,) = of_kind(objects, "Service")
    pod_labels = deployment_of(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert not [o for o in objects if o["apiVersion"] == MONITORING]
    assert of_kind(objects, "ConfigMap") == []
    _, notes = render(chart)
    assert f"service/{service['metadata']['name']}, port 9090, GET /metrics" in notes
    assert "metrics.serviceMonitor.enabled=true" in notes


def test_metrics_off_serve_nothing_and_install_nothing(chart: helm.Chart) -> None:
    objects, _ = render(
        chart,
        {
            "metrics": {
                "enabled": False,
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True},
            }
        },
    )
    container = container_of(objects)
    assert container["args"][3:] == ["--metrics-port", "0"]
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert sorted({o["kind"] for o in objects}) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ServiceAccount",
    ]


def test_metrics_port_must_differ_from_the_health_port(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmError, match=r"metrics\.port must differ from healthPort"):
        render(chart, {"healthPort": 9090})


def test_service_monitor_scrapes_the_metrics_service(chart: helm.Chart) -> None:
    objects, _ = render(chart, namespaced_values())
    (service,) = of_kind(objects, "Service")
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == MONITORING
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "1m", "scrapeTimeout": "10s"}
    ]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert service["metadata"]["annotations"] == {"example.com/team": "dba"}


def test_prometheus_rule_alerts(chart: helm.Chart) -> None:
    objects, _ = render(chart, namespaced_values())
    (rule,) = of_kind(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert sorted(alerts) == ["MongoBackupDrillFailed", "MongoBackupFailedRepeatedly", "MongoBackupOverdue"]
    overdue = alerts["MongoBackupOverdue"]["expr"]
    assert "2 * " in overdue and "mongobackup_schedule_interval_seconds" in overdue
    assert "mongobackup_schedule_last_success_timestamp_seconds" in overdue
    assert alerts["MongoBackupFailedRepeatedly"]["expr"].endswith(">= 2")
    assert alerts["MongoBackupOverdue"]["for"] == "10m"
    for alert in alerts.values():
        assert alert["labels"] == {"severity": "critical"}
        # Prometheus' own templates reach Prometheus untouched by Helm
        assert "{{ $labels.namespace }}/{{ $labels.schedule }}" in alert["annotations"]["summary"]
        assert alert["annotations"]["description"]


def test_alerts_and_dashboard_use_only_metrics_the_operator_exposes(chart: helm.Chart) -> None:
    objects, _ = render(chart, namespaced_values())
    exposed = exposed_metric_names()
    (rule,) = of_kind(objects, "PrometheusRule")
    for alert in rule["spec"]["groups"][0]["rules"]:
        used = referenced_metric_names(alert["expr"])
        assert used, alert["alert"]
        assert used <= exposed, (
            f"{alert['alert']} uses metrics the operator does not expose: {used - exposed}"
        )
    (configmap,) = of_kind(objects, "ConfigMap")
    dashboard = json.loads(configmap["data"]["mongo-backup-operator.json"])
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    # label_values(METRIC, label) is Grafana's, not PromQL: its METRIC is checked as a selector
    exprs += [
        re.sub(r"^label_values\((.+), *\w+\)$", r"\1", v["definition"])
        for v in dashboard["templating"]["list"]
        if "definition" in v
    ]
    for expr in exprs:
        used = referenced_metric_names(expr)
        assert used and used <= exposed, f"{expr}: {used - exposed}"
    # and the per-schedule series alerts rely on are all on the dashboard
    on_dashboard = set().union(*(referenced_metric_names(e) for e in exprs))
    assert {
        "mongobackup_schedule_last_success_timestamp_seconds",
        "mongobackup_schedule_consecutive_failures",
        "mongobackup_drill_last_succeeded",
    } <= on_dashboard


def test_dashboard_configmap_carries_the_grafana_sidecar_label(chart: helm.Chart) -> None:
    objects, _ = render(chart, namespaced_values())
    (configmap,) = of_kind(objects, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == RELEASE_NAMESPACE
    dashboard = json.loads(configmap["data"]["mongo-backup-operator.json"])
    assert dashboard["uid"] == "mongo-backup-operator"
    assert (CHART / "dashboards" / "mongo-backup-operator.json").read_text().strip() == configmap["data"][
        "mongo-backup-operator.json"
    ].strip()


APP_VERSION = yaml.safe_load((ROOT / "helm" / "mongo-backup-operator" / "Chart.yaml").read_text())[
    "appVersion"
]


def test_runs_are_jobs_of_the_operators_own_image_by_default(chart: helm.Chart) -> None:
    def env(values: dict[str, Any] | None = None) -> dict[str, str]:
        objects, _ = render(chart, values)
        (container,) = deployment_of(objects)["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value", "") for e in container["env"]}

    default = env()
    assert default["MONGO_BACKUP_RUN_MODE"] == "Job"
    assert default["MONGO_BACKUP_RUNNER_IMAGE"] == f"mongo-backup-operator:{APP_VERSION}"
    assert json.loads(default["MONGO_BACKUP_RUNNER_RESOURCES"])["limits"] == {"memory": "2Gi"}
    custom = env({"image": {"repository": "reg/op", "tag": "1.2"}, "runMode": "InProcess"})
    assert custom["MONGO_BACKUP_RUN_MODE"] == "InProcess"
    assert custom["MONGO_BACKUP_RUNNER_IMAGE"] == "reg/op:1.2"
    assert env({"runner": {"image": "reg/runner:2"}})["MONGO_BACKUP_RUNNER_IMAGE"] == "reg/runner:2"
