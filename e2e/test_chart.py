"""The Helm chart `charts/cachefleet`: lint, golden renders, schema, and a real install.

Without a cluster: `helm lint --strict`, `helm template` against golden files for three value
sets (`e2e/golden/chart/`; CRDs are compared with `crds/` instead), the rendered CRDs, the
operator's arguments parsed by its own CLI, the RBAC rules against docs/operator.md, and the
values schema rejecting bad values with the key's path.

On the full local control plane (`kube_cluster`): docs/quickstart.md's `helm install`, run
verbatim, gives an operator pod Ready on a kwok node in a namespace enforcing PodSecurity
`restricted` (the image cannot run here; kwok marks the pod Ready, which shows the manifests
are accepted and schedulable); the operator as a local process with a token of the chart's
ServiceAccount reconciles an example to Ready, and stalls `Forbidden` once the ClusterRole is
narrowed; the aggregated view/edit roles; `helm upgrade` with a changed CRD; `helm uninstall`
keeping the CRDs and the custom resources.

helm is the binary `make k8s-bins` builds; without it these tests skip with the reason
(fail with CI=true).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import chartgen
from chart_harness import (
    CHART,
    RELEASE,
    RELEASE_NAMESPACE,
    ROOT,
    Helm,
    HelmError,
    as_kubectl,
    documents,
    find,
    helm_binary,
    service_account_kubeconfig,
)
from cluster import BinariesUnavailable, Cluster, Kubectl, wait_for
from docs_commands import commands_of
from operator_harness import EXAMPLES, in_namespace, running_operator, wait_condition

GOLDEN = Path(__file__).parent / "golden" / "chart"
VALUE_SETS = sorted(p.name.removesuffix(".values.yaml") for p in GOLDEN.glob("*.values.yaml"))
UPDATE = os.environ.get("CACHEFLEET_UPDATE_GOLDEN") == "1"
IN_CI = os.environ.get("CI", "").lower() == "true"
SERVICE_ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}"
#: In a pod the chart's operator finds its Lease through $POD_NAMESPACE and --lease-name; a
#: local process with the chart's ServiceAccount is told the same.
LEASE_AS_THE_CHART = [f"--lease-namespace={RELEASE_NAMESPACE}", f"--lease-name={RELEASE}"]

#: Rules the chart grants for the operator's CacheInvalidation controller; allowed to be
#: missing from docs/operator.md's table only while the table lists no CacheInvalidation rule
#: at all (then chart and table must be equal).
ANTICIPATED = {
    ("cachefleet.io", "cacheinvalidations", verb) for verb in ("get", "list", "watch")
} | {("cachefleet.io", "cacheinvalidations/status", "patch")}


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = helm_binary()
    except BinariesUnavailable as error:
        message = f"helm unavailable (built by `make k8s-bins` with the control plane): {error}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        print(f"\nSKIP: {message}")
        pytest.skip(message)
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


def _values(name: str) -> Path:
    return GOLDEN / f"{name}.values.yaml"


def _without_crds(rendered: str) -> str:
    """The rendered text minus the CRD documents (checked against crds/ instead)."""
    parts = re.split(r"(?m)^---\n", rendered)
    kept = [p for p in parts if p.strip() and "# Source: cachefleet/templates/crds/" not in p]
    return "".join(f"---\n{p}" for p in kept)


# --- no cluster --------------------------------------------------------------------------------


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert package is not None
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == package.group(1)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict(helm: Helm, value_set: str) -> None:
    result = helm.run("lint", "--strict", str(CHART), "--values", str(_values(value_set)))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout
    assert not re.search(r"\[(WARNING|ERROR)\]", result.stdout), result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_template_matches_golden(helm: Helm, value_set: str) -> None:
    rendered = _without_crds(helm.template(values=[_values(value_set)]).stdout)
    golden = GOLDEN / f"{value_set}.yaml"
    if UPDATE:
        golden.write_text(rendered)
    assert golden.is_file(), f"no golden file {golden}: run with CACHEFLEET_UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(), (
        f"`helm template` with {value_set}.values.yaml differs from {golden.name}; if intended, "
        "regenerate with CACHEFLEET_UPDATE_GOLDEN=1 and review the diff"
    )


def test_generated_chart_files_are_fresh() -> None:
    assert chartgen.stale() == [], "run `make chart-crds`"


@pytest.mark.parametrize(
    ("set_values", "keep"),
    [((), True), (("crds.keep=false",), False), (("crds.install=false",), None)],
)
def test_crds_are_the_generated_ones(
    helm: Helm, set_values: tuple[str, ...], keep: bool | None
) -> None:
    docs = documents(helm.template(set_values=set_values).stdout)
    rendered = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    if keep is None:
        assert rendered == {}
        return
    sources = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
    assert set(rendered) == {s["metadata"]["name"] for s in sources}
    for source in sources:
        crd = rendered[source["metadata"]["name"]]
        assert crd["spec"] == source["spec"]
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        annotations = crd["metadata"].get("annotations", {})
        assert (annotations.get("helm.sh/resource-policy") == "keep") is keep


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_operator_arguments_parse_with_its_cli(helm: Helm, value_set: str) -> None:
    from cachefleet_operator.cli import parse_config

    values = yaml.safe_load(_values(value_set).read_text()) or {}
    docs = documents(helm.template(values=[_values(value_set)]).stdout)
    deployment = _deployment(docs)
    spec = deployment["spec"]
    # several pods, one leader (the Lease), so pods may overlap in a rolling update
    assert spec["replicas"] == values.get("replicaCount", 2)
    assert spec["strategy"]["type"] == "RollingUpdate"
    (container,) = spec["template"]["spec"]["containers"]
    config = parse_config(container["args"])
    assert config.leader_election is True
    assert config.lease_name == deployment["metadata"]["name"]
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"][:2]}
    assert downward == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    watched = values.get("watchNamespaces", [])
    assert config.namespaces == watched
    assert config.all_namespaces is (not watched)
    assert config.node_endpoints_from_annotation is False
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": config.http_port, "protocol": "TCP"}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    image = container["image"]
    if "image" in values and "digest" in values["image"]:
        assert image.endswith("@" + values["image"]["digest"])
    else:
        assert image.endswith(
            ":" + yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
        )


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _documented_rules() -> set[tuple[str, str, str]]:
    """docs/operator.md's RBAC table as (group, resource, verb) triples."""
    text = (ROOT / "docs" / "operator.md").read_text()
    section = text.split("\n## RBAC\n", 1)[1].split("\n## ", 1)[0]
    triples = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        group = cells[0].strip("`").replace('""', "")
        resources = re.findall(r"`([^`]+)`", cells[1])
        verbs = [v.strip() for v in cells[2].split(",")]
        triples |= {(group, r, v) for r in resources for v in verbs}
    assert triples, "no RBAC table found in docs/operator.md"
    return triples


def test_rbac_is_exactly_the_documented_rules(helm: Helm) -> None:
    """The ClusterRole, and the Role in each watched namespace, hold docs/operator.md's
    table and nothing more (plus the anticipated CacheInvalidation rows)."""
    documented = _documented_rules()
    cluster_docs = documents(helm.template().stdout)
    cluster_role = find(cluster_docs, "ClusterRole", RELEASE)
    granted = _rules(cluster_role)
    if not any(resource.startswith("cacheinvalidations") for _, resource, _ in documented):
        documented |= ANTICIPATED  # docs/operator.md does not cover CacheInvalidations yet
    assert documented <= granted, f"missing from the chart: {sorted(documented - granted)}"
    assert granted <= documented, f"not in docs/operator.md: {sorted(granted - documented)}"
    assert granted == _rules({"rules": chartgen.operator_rules()})
    binding = find(cluster_docs, "ClusterRoleBinding", RELEASE)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": RELEASE_NAMESPACE}
    ]
    assert not any("*" in str(rule) for rule in cluster_role["rules"])

    namespaced = documents(helm.template(values=[_values("namespaced")]).stdout)
    assert not [d for d in namespaced if d["kind"].startswith("Cluster")]
    roles = [
        d
        for d in namespaced
        if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-leader-election")
    ]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-chat", "team-search"]
    assert all(_rules(role) == granted for role in roles)
    bindings = [
        d
        for d in namespaced
        if d["kind"] == "RoleBinding" and not d["metadata"]["name"].endswith("-leader-election")
    ]
    assert all(
        b["subjects"][0]["name"] == "cachefleet-operator" and b["roleRef"]["kind"] == "Role"
        for b in bindings
    )


def test_leader_election_may_touch_only_its_lease(helm: Helm) -> None:
    for value_set in (None, "namespaced"):
        docs = documents(helm.template(values=[_values(value_set)] if value_set else []).stdout)
        role = find(docs, "Role", f"{RELEASE}-leader-election")
        assert role["metadata"]["namespace"] == RELEASE_NAMESPACE
        create, use = role["rules"]
        assert (create["resources"], create["verbs"]) == (["leases"], ["create"])
        assert (use["resourceNames"], use["verbs"]) == ([RELEASE], ["get", "update"])
        binding = find(docs, "RoleBinding", f"{RELEASE}-leader-election")
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        budget = find(docs, "PodDisruptionBudget", RELEASE)
        assert budget["spec"]["minAvailable"] == 1
    single = documents(helm.template(set_values=["replicaCount=1"]).stdout)
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]


def test_aggregated_roles_render(helm: Helm) -> None:
    docs = documents(helm.template().stdout)
    view, edit = (
        find(docs, "ClusterRole", f"{RELEASE}-view"),
        find(docs, "ClusterRole", f"{RELEASE}-edit"),
    )
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for label in ("aggregate-to-edit", "aggregate-to-admin"):
        assert edit["metadata"]["labels"][f"rbac.authorization.k8s.io/{label}"] == "true"
    kinds = {"semanticcaches", "modelversions", "cacheinvalidations"}
    assert {r for _, r, _ in _rules(view)} == {r for _, r, _ in _rules(edit)} == kinds
    assert {v for *_, v in _rules(view)} == {"get", "list", "watch"}
    assert {"create", "update", "patch", "delete"} <= {v for *_, v in _rules(edit)}


def test_pod_is_restricted_and_monitors_honor_labels(helm: Helm) -> None:
    docs = documents(helm.template(values=[_values("production")]).stdout)
    pod = _deployment(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    monitor = find(docs, "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] == "metrics"  # the keyless metrics port of the nodes
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "cachefleet-node"
    service = find(docs, "Service")
    assert (
        find(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"]
        == service["spec"]["ports"][0]["name"]
    )
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_pod_monitor_follows_the_watched_namespaces(helm: Helm) -> None:
    docs = documents(
        helm.template(
            values=[_values("namespaced")], set_values=["metrics.podMonitor.enabled=true"]
        ).stdout
    )
    selector = find(docs, "PodMonitor")["spec"]["namespaceSelector"]
    assert selector == {"matchNames": ["team-chat", "team-search"]}


def test_the_cache_node_labels_match_the_operator(helm: Helm) -> None:
    """The PodMonitor selects the labels the operator gives cache node pods."""
    from cachefleet_operator.api.v1alpha1 import SemanticCache
    from cachefleet_operator.domain.render import render_children

    docs = documents(helm.template(set_values=["metrics.podMonitor.enabled=true"]).stdout)
    monitor = find(docs, "PodMonitor")["spec"]
    selector = monitor["selector"]["matchLabels"]
    mv = yaml.safe_load((EXAMPLES / "modelversion.yaml").read_text())
    _, cache = documents((EXAMPLES / "semanticcache-dev.yaml").read_text())
    for doc in (mv, cache):
        doc["metadata"] |= {"namespace": "x", "uid": "u", "generation": 1}
    from cachefleet_operator.api.v1alpha1 import ModelVersion

    children = render_children(
        SemanticCache.model_validate(cache), [ModelVersion.model_validate(mv)]
    )
    node = next(
        c for c in children if c["kind"] == "Deployment" and c["metadata"]["name"] == "dev-node"
    )
    pod_labels = node["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    container = node["spec"]["template"]["spec"]["containers"][0]
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in container["ports"]}
    config = yaml.safe_load(
        next(
            c for c in children if c["metadata"]["name"] == "dev-node" and c["kind"] == "ConfigMap"
        )["data"]["node.yaml"]
    )
    port = next(p for p in container["ports"] if p["name"] == endpoint["port"])
    assert config["server"]["metrics_port"] == port["containerPort"]


BAD_VALUES = [
    ("watchNamespaces[0]=Team_A", r"at '/watchNamespaces/0': 'Team_A' does not match pattern"),
    ("operator.workers=0", r"at '/operator/workers': minimum: got 0, want 1"),
    ("operator.statsInterval=soon", r"at '/operator/statsInterval': 'soon' does not match pattern"),
    ("image.pullPolicy=Sometimes", r"at '/image/pullPolicy': value must be one of"),
    ("replicas=2", r"additional properties 'replicas' not allowed"),
    ("crds.install=yes", r"at '/crds/install': got string, want boolean"),
    ("securityContext.allowPrivilegeEscalation=true", r"at '/securityContext/allowPrivilegeEscalation'"),
    ("podSecurityContext.runAsNonRoot=false", r"at '/podSecurityContext/runAsNonRoot'"),
    ("service.type=LoadBalancer", r"at '/service/type': value must be 'ClusterIP'"),
    ("image.digest=latest", r"at '/image/digest': 'latest' does not match pattern"),
    ("operator.extraArgs[0]=--all-namespaces", r'operator.extraArgs: "--all-namespaces" is set by the chart'),
    ("operator.extraArgs[0]=--node-endpoints-from-annotation", r"--node-endpoints-from-annotation is for tests and development only"),
    ("serviceAccount.create=false", r"serviceAccount.name is required when serviceAccount.create is false"),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "message"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_fail_with_a_clear_message(helm: Helm, setting: str, message: str) -> None:
    result = helm.template(set_values=[setting], check=False)
    assert result.returncode != 0, f"{setting} was accepted"
    assert re.search(message, result.stderr), result.stderr


def _gitops_values() -> dict[str, dict[str, Any]]:
    gitops = ROOT / "examples" / "gitops"
    (app,) = documents((gitops / "argocd" / "application-operator.yaml").read_text())
    (release,) = documents((gitops / "flux" / "operator" / "helmrelease.yaml").read_text())
    return {
        "argocd": app["spec"]["source"]["helm"]["valuesObject"],
        "flux": release["spec"]["values"],
    }


@pytest.mark.parametrize("tool", ["argocd", "flux"])
def test_gitops_examples_values_render(helm: Helm, tool: str, tmp_path: Path) -> None:
    """The values examples/gitops gives the chart pass the schema and lint."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(_gitops_values()[tool]))
    lint = helm.run("lint", "--strict", str(CHART), "--values", str(values))
    assert "0 chart(s) failed" in lint.stdout
    docs = documents(helm.template(values=[values]).stdout)
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert crds
    for crd in crds:
        annotations = crd["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"
        if tool == "argocd":
            assert annotations["argocd.argoproj.io/sync-options"] == "Delete=false"


def test_durations_the_schema_accepts_parse_in_the_operator() -> None:
    from cachefleet_operator.domain.durations import parse_duration

    schema = json.loads((CHART / "values.schema.json").read_text())
    pattern = re.compile(schema["definitions"]["duration"]["pattern"])
    for text in ("90", "1.5", "90s", "15m", "1h30m", "250ms", "0s"):
        assert pattern.fullmatch(text), text
        parse_duration(text)
    for text in ("soon", "15 m", "-1s", "1d", ""):
        assert not pattern.fullmatch(text), text


# --- the full local control plane ---------------------------------------------------------------


def _bash(helm: Helm, command: str) -> str:
    """A docs command through bash, with the cluster's helm, kubectl and kubeconfig."""
    env = {**helm.env(), "PATH": f"{helm.env()['PATH']}{os.pathsep}{Path(sys.executable).parent}"}
    result = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def release(kube_cluster: Cluster, helm: Helm) -> Iterator[Helm]:
    """docs/quickstart.md's `helm install`, verbatim, into a namespace that enforces
    PodSecurity `restricted`; yields helm bound to the cluster. Uninstalled at the end."""
    kubectl = kube_cluster.kubectl
    bound = helm.for_cluster(kube_cluster)
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": RELEASE_NAMESPACE,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )
    install, adopt = commands_of("docs/quickstart.md", "helm install cachefleet charts/cachefleet")
    assert commands_of("charts/cachefleet/README.md", "helm install") == [install]
    # Other tests of this session may have installed the CRDs with kubectl: then the
    # quickstart's `--take-ownership` variant, which adopts them.
    if kubectl.run("get", "crd", "semanticcaches.cachefleet.io", check=False).returncode == 0:
        install = adopt
    print("\n" + _bash(bound, f"{install} --wait --timeout=180s"))
    try:
        yield bound
    finally:
        bound.run("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, check=False)
        kubectl.run("delete", "namespace", RELEASE_NAMESPACE, "--wait=false", check=False)


def test_install_runs_the_operator_pod_on_a_kwok_node(kube_cluster: Cluster, release: Helm) -> None:
    """docs/quickstart.md's `helm install` (in the fixture) and `kubectl rollout status`."""
    kubectl = kube_cluster.kubectl
    (rollout,) = commands_of("docs/quickstart.md", "kubectl -n cachefleet-system rollout status")
    assert "successfully rolled out" in _bash(release, f"{rollout} --timeout=120s")
    pods = kubectl.json(
        "get", "pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    assert len(pods) == 2  # replicaCount: one leads, one stands by
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-cpu-")
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"  # kwok runs no process: it marks pods ready
        assert pod["spec"]["serviceAccountName"] == RELEASE
    # The namespace enforces `restricted`: the pod was admitted, so it satisfies it.
    labels = kubectl.json("get", "namespace", RELEASE_NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for name in ("semanticcaches.cachefleet.io", "modelversions.cachefleet.io"):
        crd = kubectl.json("get", "crd", name)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    status = release.run("status", RELEASE, "--namespace", RELEASE_NAMESPACE).stdout
    assert "STATUS: deployed" in status


def _can(kubectl: Kubectl, *args: str) -> bool:
    result = kubectl.run("auth", "can-i", *args, f"--as={SERVICE_ACCOUNT}", check=False)
    return result.stdout.strip() == "yes"


def test_the_service_account_has_nothing_beyond_the_rules(
    kube_cluster: Cluster, release: Helm
) -> None:
    kubectl = kube_cluster.kubectl
    assert _can(kubectl, "watch", "semanticcaches.cachefleet.io", "-A")
    assert _can(kubectl, "patch", "semanticcaches.cachefleet.io/status", "-n", "any")
    assert _can(kubectl, "create", "statefulsets.apps", "-n", "any")
    assert _can(kubectl, "get", "secrets", "-n", "any")
    denied = [
        ("list", "secrets", "-A"),
        ("watch", "secrets", "-n", "any"),
        ("update", "semanticcaches.cachefleet.io", "-n", "any"),
        ("create", "semanticcaches.cachefleet.io", "-n", "any"),
        ("patch", "modelversions.cachefleet.io", "-n", "any"),
        ("patch", "cacheinvalidations.cachefleet.io", "-n", "any"),
        ("create", "pods", "-n", "any"),
        ("list", "namespaces"),
        ("get", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "leases.coordination.k8s.io", "-n", "any"),
        ("create", "rolebindings.rbac.authorization.k8s.io", "-n", "any"),
        ("get", "configmaps", "-n", "any"),
    ]
    granted = [args for args in denied if _can(kubectl, *args)]
    assert not granted, f"the chart's ServiceAccount may also: {granted}"


def _gpu_example(namespace: str, name: str) -> list[dict[str, Any]]:
    docs = documents((EXAMPLES / "semanticcache-gpu.yaml").read_text())
    cache = copy.deepcopy(docs[-1])
    cache["metadata"]["name"] = name
    return [in_namespace(d, namespace) for d in (*docs[:-1], cache)]


def _recreatable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as read, minus what the server sets (for replace or create)."""
    kept = ("name", "namespace", "labels", "annotations")
    metadata = {k: v for k, v in obj["metadata"].items() if k in kept}
    body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return copy.deepcopy({**body, "metadata": metadata})


def _wait_ready(kubectl: Kubectl, obj: str, namespace: str, timeout_s: int = 180) -> None:
    kubectl.run(
        "wait", "--for=condition=Ready", obj, "-n", namespace, f"--timeout={timeout_s}s",
        timeout_s=timeout_s + 10,
    )  # fmt: skip


def test_operator_with_the_chart_service_account_reconciles_and_fails_when_narrowed(
    kube_cluster: Cluster, release: Helm, cluster_namespace: str, tmp_path: Path
) -> None:
    """The operator as a local process, with a token of the chart's ServiceAccount and the
    chart's arguments (all namespaces): the GPU example (StatefulSets, Deployments, Services,
    ConfigMaps, PDB, HPA, Secrets read) becomes Ready. With `create`/`patch` on StatefulSets
    taken out of the ClusterRole, a new cache stalls `Forbidden`; put back, it recovers."""
    kubectl = kube_cluster.kubectl
    ns = cluster_namespace
    kubeconfig = service_account_kubeconfig(
        kube_cluster, RELEASE_NAMESPACE, RELEASE, tmp_path / "sa.kubeconfig"
    )
    whoami = as_kubectl(kube_cluster, kubeconfig).json("auth", "whoami")
    assert whoami["status"]["userInfo"]["username"] == SERVICE_ACCOUNT
    model_version = documents((EXAMPLES / "modelversion.yaml").read_text())[0]
    kubectl.apply([in_namespace(model_version, ns), *_gpu_example(ns, "chat")])
    with running_operator(
        kube_cluster, tmp_path, namespaces=[], kubeconfig=kubeconfig, extra=LEASE_AS_THE_CHART
    ) as operator:
        _wait_ready(kubectl, "scache/chat", ns)
        wait_condition(kubectl, "mv", "gpt-4o-mini", ns, "Ready", "True")
        assert "Forbidden" not in operator.log.read_text()

        original = kubectl.json("get", "clusterrole", RELEASE)
        narrowed = _recreatable(original)
        for rule in narrowed["rules"]:
            if "statefulsets" in rule["resources"]:
                rule["verbs"] = [v for v in rule["verbs"] if v not in ("create", "patch")]
        kubectl("replace", "-f", "-", input=json.dumps(narrowed))
        try:
            wait_for(
                lambda: not _can(kubectl, "create", "statefulsets.apps", "-n", ns),
                timeout_s=30,
                what="the narrowed ClusterRole in effect",
            )
            kubectl.apply(_gpu_example(ns, "chat2")[-1])
            stalled = wait_condition(
                kubectl, "scache", "chat2", ns, "Stalled", "True", reason="Forbidden", timeout_s=90
            )
            message = next(
                c["message"] for c in stalled["status"]["conditions"] if c["type"] == "Stalled"
            )
            assert "StatefulSet" in message, message
            assert "forbidden" in message.lower(), message
            ready = next(c for c in stalled["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "False"
        finally:
            kubectl("replace", "-f", "-", input=json.dumps(_recreatable(original)))
        # Put back, the stalled cache recovers on its own (retried with backoff).
        _wait_ready(kubectl, "scache/chat2", ns)

    # Without the ClusterRoleBinding the operator can watch nothing: every list is Forbidden,
    # a new ModelVersion is never resolved, and /readyz says why (the pod shows not ready).
    binding = kubectl.json("get", "clusterrolebinding", RELEASE)
    kubectl("delete", "clusterrolebinding", RELEASE)
    restored = False
    try:
        wait_for(
            lambda: not _can(kubectl, "list", "modelversions.cachefleet.io", "-A"),
            timeout_s=30,
            what="the binding removal in effect",
        )
        other = copy.deepcopy(in_namespace(model_version, ns))
        other["metadata"]["name"] = "other"
        kubectl.apply(other)
        with running_operator(
            kube_cluster,
            tmp_path,
            namespaces=[],
            kubeconfig=kubeconfig,
            wait_ready=False,
            extra=LEASE_AS_THE_CHART,
        ) as operator:
            wait_for(
                lambda: "modelversions.cachefleet.io is forbidden" in operator.log.read_text(),
                timeout_s=60,
                what="the operator's list of ModelVersions to be Forbidden",
            )
            assert "status" not in kubectl.json("get", "mv", "other", "-n", ns)
            code, body = operator.get("/readyz")
            assert code == 503, body
            problems = json.loads(body)["problems"]
            assert any(
                "cannot list modelversions.cachefleet.io in all namespaces (403 Forbidden)" in p
                for p in problems
            ), problems
            assert any("deployments.apps" in p for p in problems), problems
            # Bound again, the same process becomes ready and resolves the ModelVersion.
            kubectl.create(_recreatable(binding))
            restored = True
            wait_for(lambda: operator.get("/readyz")[0] == 200, timeout_s=60, what="/readyz back")
            wait_condition(kubectl, "mv", "other", ns, "Ready", "True", timeout_s=90)
    finally:
        if not restored:
            kubectl.create(_recreatable(binding))


def test_aggregated_roles_give_namespace_users_view_and_edit(
    kube_cluster: Cluster, release: Helm, cluster_namespace: str
) -> None:
    kubectl, user = kube_cluster.kubectl, kube_cluster.user_kubectl
    ns = cluster_namespace
    model_version = in_namespace(documents((EXAMPLES / "modelversion.yaml").read_text())[0], ns)
    kubectl.apply(model_version)
    assert user.run("get", "mv", "-n", ns, check=False).returncode != 0  # bound to nothing yet

    def bind(role: str) -> None:
        kubectl(
            "create", "rolebinding", f"dev-{role}", f"--clusterrole={role}",
            f"--user={kube_cluster.user.user}", "-n", ns,
        )  # fmt: skip

    bind("view")
    wait_for(
        lambda: user.run("get", "scache,mv", "-n", ns, check=False).returncode == 0,
        timeout_s=60,
        what="`view` to include cachefleet.io (aggregation)",
    )
    assert "gpt-4o-mini" in user("get", "mv", "-n", ns)
    for kind in ("semanticcaches", "modelversions", "cacheinvalidations"):
        can = user.run("auth", "can-i", "watch", f"{kind}.cachefleet.io", "-n", ns, check=False)
        assert can.stdout.strip() == "yes", kind
    denied = user.run("delete", "mv", "gpt-4o-mini", "-n", ns, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    bind("edit")
    wait_for(
        lambda: (
            user.run("auth", "can-i", "delete", "modelversions.cachefleet.io", "-n", ns,
                     check=False).stdout.strip() == "yes"
        ),
        timeout_s=60,
        what="`edit` to include cachefleet.io (aggregation)",
    )  # fmt: skip
    user("delete", "mv", "gpt-4o-mini", "-n", ns)
    for verb in ("create", "patch", "delete"):
        can = user.run("auth", "can-i", verb, "semanticcaches.cachefleet.io", "-n", ns, check=False)
        assert can.stdout.strip() == "yes", verb
    status = user.run(
        "auth", "can-i", "patch", "semanticcaches.cachefleet.io", "--subresource=status", "-n", ns,
        check=False,
    )  # fmt: skip
    assert status.stdout.strip() == "no"  # status is the operator's


def _chart_with_changed_crd(tmp_path: Path) -> Path:
    """A copy of the chart whose ModelVersion CRD gained `spec.owner` (a string)."""
    chart = tmp_path / "cachefleet"
    shutil.copytree(CHART, chart)
    source = ROOT / "crds" / "cachefleet.io_modelversions.yaml"
    crd = yaml.safe_load(source.read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["properties"]["owner"] = {"type": "string", "description": "Team that owns it."}
    changed = tmp_path / source.name
    changed.write_text(yaml.safe_dump(crd, sort_keys=False))
    name, text = chartgen.crd_template(changed)
    (chart / "templates" / "crds" / name).write_text(text)
    return chart


def _spec_properties(kubectl: Kubectl) -> dict[str, Any]:
    crd = kubectl.json("get", "crd", "modelversions.cachefleet.io")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"]["properties"])


def test_upgrade_upgrades_the_crds(
    kube_cluster: Cluster, release: Helm, cluster_namespace: str, tmp_path: Path
) -> None:
    kubectl = kube_cluster.kubectl
    ns = cluster_namespace
    assert "owner" not in _spec_properties(kubectl)
    changed = _chart_with_changed_crd(tmp_path)
    release.run("upgrade", RELEASE, str(changed), "--namespace", RELEASE_NAMESPACE, "--wait")
    assert _spec_properties(kubectl)["owner"] == {
        "type": "string", "description": "Team that owns it.",
    }  # fmt: skip
    model_version = in_namespace(documents((EXAMPLES / "modelversion.yaml").read_text())[0], ns)
    model_version["spec"]["owner"] = "team-chat"

    def stored_owner() -> bool:
        kubectl.apply(model_version)
        return (
            kubectl.json("get", "mv", "gpt-4o-mini", "-n", ns)["spec"].get("owner") == "team-chat"
        )

    # Not pruned: the API server serves the new schema (it may take a moment to switch).
    wait_for(stored_owner, timeout_s=30, what="spec.owner kept by the upgraded CRD")
    kubectl("delete", "mv", "gpt-4o-mini", "-n", ns)
    # And back: upgrading to the real chart removes the field again.
    release.run("upgrade", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--wait")
    assert "owner" not in _spec_properties(kubectl)
    history = release.run("history", RELEASE, "--namespace", RELEASE_NAMESPACE, "-o", "json")
    assert [r["status"] for r in json.loads(history.stdout)][-1] == "deployed"


def test_uninstall_keeps_the_crds_and_the_data(
    kube_cluster: Cluster, release: Helm, cluster_namespace: str
) -> None:
    kubectl = kube_cluster.kubectl
    ns = cluster_namespace
    model_version = in_namespace(documents((EXAMPLES / "modelversion.yaml").read_text())[0], ns)
    kubectl.apply(model_version)
    result = release.run("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE)
    assert "kept due to the resource policy" in result.stdout + result.stderr
    for name in ("semanticcaches.cachefleet.io", "modelversions.cachefleet.io"):
        assert kubectl.run("get", "crd", name, check=False).returncode == 0, name
    assert kubectl.json("get", "mv", "gpt-4o-mini", "-n", ns)["spec"]["version"] == "2024-07-18"
    for kind, name in (
        ("deployment", RELEASE),
        ("serviceaccount", RELEASE),
        ("clusterrole", RELEASE),
        ("clusterrolebinding", RELEASE),
        ("clusterrole", f"{RELEASE}-view"),
    ):
        namespace = ["-n", RELEASE_NAMESPACE] if kind in ("deployment", "serviceaccount") else []
        assert kubectl.run("get", kind, name, *namespace, check=False).returncode != 0, kind
    with pytest.raises(HelmError):
        release.run("status", RELEASE, "--namespace", RELEASE_NAMESPACE)
