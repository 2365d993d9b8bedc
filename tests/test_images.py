"""Container images: Dockerfile policy, build context, each image's own code and dependencies
(the node's and the operator's extras over the contract), CI.

The images cannot be built on this machine (no container runtime); hadolint (`make
lint-images`) lints them and these tests hold them to the project's rules.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cachefleet_operator.domain.render import NODE_UID

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
HADOLINT = Path(sys.executable).parent / "hadolint"
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _final_stage(path: Path) -> list[tuple[str, str]]:
    instructions = _instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
#: Per image: the extra it installs and the source folders it copies (its own and the contract).
IMAGE_PARTS = {
    "cache-node.Dockerfile": (
        "node",
        {"contract/cachefleet_contract", "cache-node/cachefleet_node"},
    ),
    "operator.Dockerfile": (
        "operator",
        {"contract/cachefleet_contract", "operator/cachefleet_operator"},
    ),
}


def test_both_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == ["cache-node.Dockerfile", "operator.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_is_pinned_and_shared_by_both_stages(path: Path) -> None:
    bases = [args.split()[0] for keyword, args in _instructions(path) if keyword == "FROM"]
    assert len(bases) == 2, "multi-stage: a build stage and a runtime stage"
    assert len(set(bases)) == 1
    assert PINNED_BASE.match(bases[0]), bases[0]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_runs_as_the_uid_the_operator_renders(path: Path) -> None:
    final = _final_stage(path)
    users = [args for keyword, args in final if keyword == "USER"]
    assert users == [f"{NODE_UID}:{NODE_UID}"]  # numeric, so runAsNonRoot can verify it
    run = " ".join(args for keyword, args in final if keyword == "RUN")
    assert f"--uid {NODE_UID}" in run
    assert any(keyword == "HEALTHCHECK" for keyword, _ in final)
    assert any(keyword == "ENTRYPOINT" for keyword, _ in final)
    # Only the build stage's virtualenv is copied in: no sources, no build tools.
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/cachefleet /opt/cachefleet"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_installs_pinned_runtime_dependencies_only(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "-c requirements.lock" in text
    assert "--no-deps" in text  # the project itself adds nothing unpinned
    assert "[dev]" not in text
    extra, _ = IMAGE_PARTS[path.name]
    assert re.findall(r"--extra (\S+)", text) == [extra]  # its own extra, never `dev`
    assert re.search(r"uv==\$\{UV_VERSION\}", text)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    uv_make = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    uv_image = re.search(r"^ARG UV_VERSION=(\S+)$", text, re.MULTILINE)
    assert uv_make
    assert uv_image
    assert uv_image.group(1) == uv_make.group(1)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_no_model_or_data_is_baked_in(path: Path) -> None:
    text = path.read_text(encoding="utf-8").lower()
    for needle in ("shared/", "all-minilm", ".onnx", "huggingface.co", "hf download"):
        assert needle not in text


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_each_image_holds_its_own_code_and_the_contract_only(path: Path) -> None:
    """The operator image holds no node code, the node image no operator code."""
    _, sources = IMAGE_PARTS[path.name]
    packages = {
        args.split()[0]
        for keyword, args in _instructions(path)
        if keyword == "COPY" and "/cachefleet_" in args and not args.startswith("--from")
    }
    assert packages == sources


def _dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) for prefix in prefixes) or (
            pattern.startswith("**/") and any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        ):
            allowed = negate
    return allowed


def test_build_context_holds_what_the_dockerfiles_copy_and_nothing_else() -> None:
    sources = {
        source
        for path in DOCKERFILES
        for keyword, args in _instructions(path)
        if keyword == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert sources
    for source in sources:
        assert _dockerignore_allows(source), source
        assert (ROOT / source).exists(), source
    for excluded in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "e2e/conftest.py",
        "docs/architecture.md",
        ".demo/report.json",
        "cache-node/cachefleet_node/__pycache__/config.cpython-311.pyc",
    ):
        assert not _dockerignore_allows(excluded), excluded


def _closure(names: set[str]) -> set[str]:
    """Distributions `names` pull in when installed (markers evaluated here)."""
    from importlib.metadata import PackageNotFoundError, requires

    seen: set[str] = set()
    todo = [canonicalize_name(name) for name in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = requires(name) or []
        except PackageNotFoundError:
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def _requirements(extra: str | None) -> set[str]:
    """The distributions an image installs: the contract's dependencies and `extra`'s."""
    listed = PROJECT["dependencies"] + (
        [] if extra is None else PROJECT["optional-dependencies"][extra]
    )
    return {Requirement(text).name for text in listed}


def _import_isolated(
    script: str, distributions: set[str], folders: list[str], tmp_path: Path
) -> str:
    """Run `script` in an interpreter that sees only the closure of `distributions` (no site, an
    isolated site-packages) and the source `folders`, as in an image; return its stdout."""
    _site_packages_of(_closure(distributions), tmp_path)
    path = [str(tmp_path), *(str(ROOT / folder) for folder in folders)]
    result = subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


_IMPORT_CONTRACT = """
import importlib, pkgutil, sys
import cachefleet_contract
for module in pkgutil.walk_packages(cachefleet_contract.__path__, "cachefleet_contract."):
    importlib.import_module(module.name)
leaked = sorted(name for name in sys.modules if name.split(".")[0] in {"yaml", "httpx", "fastapi"})
assert not leaked, leaked
"""


def test_the_contract_needs_only_pydantic(tmp_path: Path) -> None:
    """`cachefleet_contract` imports with pydantic's closure alone and neither package beside it."""
    assert _requirements(None) == {"pydantic"}
    _import_isolated(_IMPORT_CONTRACT, {"pydantic"}, ["contract"], tmp_path)


_IMPORT_ALL = """
import importlib, pkgutil, sys
try:
    import onnxruntime
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("onnxruntime is importable: the isolated site-packages leaks")
import cachefleet_operator
for module in pkgutil.walk_packages(cachefleet_operator.__path__, "cachefleet_operator."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
print("imported", len(sys.modules), "modules")
"""


def _site_packages_of(distributions: set[str], target: Path) -> None:
    """Link the top-level files of `distributions` into `target`: a site-packages holding
    only them, like the image's virtualenv."""
    from importlib.metadata import distribution

    for name in distributions:
        dist = distribution(name)
        for file in dist.files or []:
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            source = Path(str(dist.locate_file(top)))
            link = target / top
            if source.exists() and not link.exists():
                link.symlink_to(source)


def test_operator_imports_with_only_its_extra_and_no_node_code(tmp_path: Path) -> None:
    """Import every operator module with only the contract and the operator on the path and the
    closure of the `operator` extra installed, as in the image: optional imports such as
    structlog's `rich` take their fallback there too."""
    required = _requirements("operator")
    assert "onnxruntime" not in _closure(required)  # the point of the extra
    _import_isolated(_IMPORT_ALL, required, ["contract", "operator"], tmp_path)


_NODE_SERVE_PATH = """
import pkgutil, importlib, sys
from cachefleet_node.cli import main
for package in ("server", "tiers", "embedders"):
    module = importlib.import_module(f"cachefleet_node.{package}")
    for info in pkgutil.walk_packages(module.__path__, f"cachefleet_node.{package}."):
        importlib.import_module(info.name)
for name in ("runtime", "engine", "coherence"):
    importlib.import_module(f"cachefleet_node.{name}")
sys.argv = ["cachefleet-node", "serve", "--help"]
main()
"""


def test_node_serves_with_only_the_runtime_dependencies(tmp_path: Path) -> None:
    """The node's CLI and its serve path import with only the contract and the node on the path
    and the `node` extra installed (what images/cache-node.Dockerfile installs: no dev extra,
    no operator)."""
    required = _requirements("node")
    assert not {"pytest", "matplotlib", "gptcache", "kopf"} & _closure(required)
    stdout = _import_isolated(_NODE_SERVE_PATH, required, ["contract", "cache-node"], tmp_path)
    assert "--config" in stdout


def test_hadolint_applies_the_project_settings(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM quay.io/library/python:3.11\nUSER root\nRUN pip install requests\n")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    for rule in ("DL3026", "DL3002", "DL3013", "DL3049"):  # registry, root, pins, labels
        assert rule in result.stdout, result.stdout
    clean = subprocess.run(
        [str(HADOLINT), *map(str, DOCKERFILES)], capture_output=True, text=True, cwd=ROOT
    )
    assert clean.returncode == 0, clean.stdout


def test_ci_workflow_builds_both_images_and_pushes_only_outside_pull_requests() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/images.yaml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["tags"] == ["v*.*.*"]
    assert "pull_request" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    build = workflow["jobs"]["build"]
    assert build["permissions"]["packages"] == "write"
    images = {entry["image"] for entry in build["strategy"]["matrix"]["include"]}
    assert {f"{image}.Dockerfile" for image in images} == {p.name for p in DOCKERFILES}
    steps = {step.get("uses", "").split("@")[0]: step for step in build["steps"]}
    push = steps["docker/build-push-action"]["with"]
    assert push["file"] == "images/${{ matrix.image }}.Dockerfile"
    assert push["push"] == "${{ github.event_name != 'pull_request' }}"
    assert steps["docker/login-action"]["if"] == "github.event_name != 'pull_request'"
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:  # every action is pinned to a major version or a commit
                assert re.search(r"@(v\d+|[0-9a-f]{40})$", step["uses"]), step["uses"]
    lint = " ".join(step.get("run", "") for step in workflow["jobs"]["lint"]["steps"])
    assert "hadolint images/*.Dockerfile" in lint
