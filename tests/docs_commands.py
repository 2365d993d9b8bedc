"""The shell commands in the docs, and what exercises each one.

`doc_commands()` extracts every command line from the ```bash/```sh/```shell/```console
blocks of README.md, docs/**/*.md, examples/**/README.md and charts/**/README.md (comments
dropped, `\\` continuations joined). `EXERCISED` maps each one, by a regular expression, to
the test or make target that runs it (or the same operation, where the doc shows a
placeholder); a command with no entry fails tests/test_docs.py. "not exercised" is allowed only
for the tools this machine cannot run (Docker, kind, k3d, eksctl, and a port forward to real
pods, the detached local cluster of `make cluster-up`) and says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def doc_files() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "examples").rglob("README.md")),
        *sorted((ROOT / "charts").rglob("README.md")),
    ]


def _strip_comment(line: str) -> str:
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def commands_in(text: str) -> list[str]:
    """The command lines of the shell blocks of one Markdown text."""
    commands: list[str] = []
    for language, body in _FENCE.findall(text):
        if language not in SHELL_LANGUAGES:
            continue
        pending = ""
        for raw in body.splitlines():
            line = _strip_comment(raw.strip()) if not pending else raw.strip()
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            command = " ".join((pending + line).split())
            pending = ""
            if command:
                commands.append(command)
    return commands


def doc_commands() -> list[tuple[Path, str]]:
    """(file, command) for every command in the docs."""
    return [
        (path, command)
        for path in doc_files()
        for command in commands_in(path.read_text(encoding="utf-8"))
    ]


def commands_of(relative: str, prefix: str) -> list[str]:
    """The commands of one doc that start with `prefix` (what a test runs verbatim)."""
    found = [
        c
        for c in commands_in((ROOT / relative).read_text(encoding="utf-8"))
        if c.startswith(prefix)
    ]
    assert found, f"no command starting with {prefix!r} in {relative}"
    return found


@dataclass(frozen=True)
class Exercised:
    pattern: str  # regular expression, matched against the whole command
    by: str  # "make TARGET", "PATH::TEST" or "not exercised: REASON"


NOT_EXERCISED_TOOLS = (
    "kind ",
    "k3d ",
    "eksctl ",
    "docker ",
    "kubectl -n team-chat port-forward ",
    "make cluster-",
)

EXERCISED: tuple[Exercised, ...] = (
    # README: the two entry points, CI runs the second
    Exercised(r"make demo", "make demo"),
    Exercised(r"make test", "make test"),
    # README: a node and the operator from a checkout
    Exercised(
        r"export CACHEFLEET_UPSTREAM_API_KEY=\.\.\.",
        "tests/test_proxy.py::test_tenants_from_api_keys_never_share_entries",
    ),
    Exercised(
        r"\.venv/bin/cachefleet-node serve --upstream \S+ --port 8080",
        "tests/test_docs.py::test_quickstart_curl_commands_against_a_real_node",
    ),
    Exercised(
        r"\.venv/bin/cachefleet-node serve --config node\.yaml --redis \S+ --milvus \S+",
        "tests/test_coherence.py::test_nodes_share_tiers_and_invalidation_reaches_every_l1",
    ),
    Exercised(
        r"kubectl apply --server-side -f crds/",
        "e2e/test_docs_commands.py::test_helm_install_adopts_crds_applied_with_kubectl",
    ),
    Exercised(
        r"(\.venv/bin/)?cachefleet-operator (--namespace inference|--all-namespaces)",
        "e2e/test_operator_cluster.py::test_examples_become_ready_and_show_the_hit_rate",
    ),
    Exercised(
        r"\.venv/bin/cachefleet-operator --all-namespaces --node-endpoints-from-annotation",
        "e2e/test_docs_commands.py::test_quickstart_top_to_bottom_reaches_ready",
    ),
    Exercised(
        r"kubectl apply -n inference -f examples/modelversion\.yaml -f examples/semanticcache-gpu\.yaml",
        "e2e/test_operator_cluster.py::test_examples_become_ready_and_show_the_hit_rate",
    ),
    Exercised(
        r"kubectl wait (-n \S+ )?--for=condition=Ready scache/chat( --timeout=\S+)?",
        "e2e/test_operator_cluster.py::test_examples_become_ready_and_show_the_hit_rate",
    ),
    Exercised(
        r"kubectl get -n inference scache -o wide|kubectl get scache -o wide",
        "e2e/test_crds.py::test_printer_columns_show_the_status",
    ),
    # examples/README.md
    Exercised(
        r"kubectl apply --server-side -f examples/modelversion\.yaml -f examples/semanticcache-dev\.yaml",
        "e2e/test_crds.py::test_examples_apply_and_get_the_models_defaults",
    ),
    Exercised(r"kubectl get cachefleet", "e2e/test_crds.py::test_printer_columns_show_the_status"),
    # docs/development.md: the local control plane
    Exercised(r"make k8s-bins", "make k8s-bins"),  # a prerequisite of `make test`
    Exercised(
        r"make (cluster-up|cluster-status|cluster-down)",
        "not exercised: wraps `python -m cluster`, whose ControlPlane the e2e fixtures start "
        "(docs/quickstart.md's on `fresh_kube_cluster`); run by hand",
    ),
    Exercised(
        r"export KUBECONFIG=~/\.cache/cachefleet/cluster/kubeconfig",
        "e2e/test_control_plane.py::test_kwok_nodes_are_ready_and_gpu_nodes_advertise_gpus",
    ),
    Exercised(
        r"kubectl get nodes",
        "e2e/test_control_plane.py::test_kwok_nodes_are_ready_and_gpu_nodes_advertise_gpus",
    ),
    Exercised(r"\.venv/bin/python -m pytest (e2e|-m \"not cluster\")", "make test"),
    # docs/quickstart.md
    Exercised(r"(kind|k3d|eksctl) .*", "not exercised: creates a real cluster (Docker or AWS)"),
    Exercised(
        r"docker build -f images/(cache-node|operator)\.Dockerfile .*|kind load docker-image .*",
        "not exercised: no container runtime here; `make lint-images` lints the Dockerfiles",
    ),
    # docs/quickstart.md and charts/cachefleet/README.md: the chart, on the full local cluster
    Exercised(
        r"helm install cachefleet charts/cachefleet --namespace cachefleet-system --create-namespace",
        "e2e/test_docs_commands.py::test_quickstart_top_to_bottom_reaches_ready",
    ),
    Exercised(
        r"helm install cachefleet charts/cachefleet --namespace cachefleet-system --create-namespace --take-ownership",
        "e2e/test_docs_commands.py::test_helm_install_adopts_crds_applied_with_kubectl",
    ),
    Exercised(
        r"kubectl -n cachefleet-system rollout status deployment/cachefleet",
        "e2e/test_docs_commands.py::test_quickstart_top_to_bottom_reaches_ready",
    ),
    Exercised(
        r"kubectl -n team-chat port-forward svc/chat-node 8080:8080",
        "not exercised: needs real node pods; the curl commands run against a real node process",
    ),
    Exercised(
        r"curl -s -o /dev/null -D - http://127\.0\.0\.1:8080/v1/chat/completions .*",
        "tests/test_docs.py::test_quickstart_curl_commands_against_a_real_node",
    ),
    Exercised(
        r"kubectl apply --server-side -k examples/gitops/cachefleet|kubectl get -n team-chat .*|kubectl delete namespace team-chat",
        "e2e/test_docs_commands.py::test_quickstart_top_to_bottom_reaches_ready",
    ),
    Exercised(
        r"kubectl wait -n team-chat --for=condition=Ready scache/chat --timeout=10m",
        "e2e/test_docs_commands.py::test_quickstart_top_to_bottom_reaches_ready",
    ),
    # docs/lifecycle.md: a rollover and a CacheInvalidation
    Exercised(
        r"kubectl patch mv gpt-4o-mini -n inference --type=merge -p .*|kubectl get scache -n inference chat",
        "e2e/test_operator_lifecycle.py::test_rollover_is_coherent_and_purges_the_old_namespace_after_retention",
    ),
    Exercised(
        r"kubectl apply -f purge-team-a\.yaml|kubectl get cinv -n inference",
        "e2e/test_operator_invalidation.py::test_dry_run_then_a_tenant_scoped_purge_then_a_semantic_one",
    ),
    # docs/operations.md
    Exercised(
        r"kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm\.yaml",
        "e2e/test_docs_commands.py::test_argocd_cm_patch_command",
    ),
)


def exercised_by(command: str) -> Exercised | None:
    return next((e for e in EXERCISED if re.fullmatch(e.pattern, command)), None)
