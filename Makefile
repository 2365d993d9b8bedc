# Cachefleet developer entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8
# The embedding model (all-MiniLM-L6-v2, ONNX) used by tests, demo and benchmarks.
CACHEFLEET_EMBEDDING_MODEL_DIR ?= $(abspath ../shared/models/all-MiniLM-L6-v2)
export CACHEFLEET_EMBEDDING_MODEL_DIR

.PHONY: help venv system-deps demo demo-cluster test lint lint-images typecheck fmt lock clean bench-latency bench-quality bench-operator crds chart-crds train-verifier lexicon

help:
	@echo "make demo   - install, start a cache node on embedded defaults, replay a workload, print a report"
	@echo "make test   - install everything the tests need and run lint, types and all tests"

$(VENV)/.installed: pyproject.toml requirements.lock
	@echo "==> creating virtualenv $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q uv==$(UV_VERSION)
	@echo "==> installing pinned dependencies (requirements.lock)"
	@$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

## Debian packages the tests and the demo need (redis-server; wordnet-base, the source `make lint`
## checks the verifier's lexicon against). Installs them when missing.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	test -f /usr/share/wordnet/index.noun || missing="$$missing wordnet-base"; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing$$missing (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; fi; \
	fi
	@command -v redis-server >/dev/null || { echo "redis-server is required: apt-get install redis-server"; exit 1; }
	@test -f /usr/share/wordnet/index.noun || { echo "WordNet is required: apt-get install wordnet-base"; exit 1; }

lock:
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

lint: venv system-deps lint-images
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m cachefleet_operator.api.crdgen --check
	$(PY) -m cachefleet_operator.api.docgen --check
	$(PY) charts/chartgen.py --check
	$(PY) -m cachefleet_node.bench.lexicon --check

## Lint the container images' Dockerfiles (hadolint from the dev extra; settings in .hadolint.yaml).
lint-images: venv
	$(VENV)/bin/hadolint images/*.Dockerfile

## Regenerate crds/ and docs/reference/ from the API models and the node's config model, and
## the chart's copy of the CRDs (`make lint` fails while any is stale).
crds: venv
	$(PY) -m cachefleet_operator.api.crdgen
	$(PY) -m cachefleet_operator.api.docgen
	$(PY) charts/chartgen.py

## The Helm chart's generated files: templates/crds/ from crds/, the values table of
## charts/cachefleet/README.md and the RBAC table of docs/security.md (`--check` in `make lint`).
chart-crds: venv
	$(PY) charts/chartgen.py

typecheck: venv
	$(VENV)/bin/mypy

fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: venv system-deps
	$(PY) -m cachefleet_node.demo

## The cluster demo: the full local control plane, `helm install` of charts/cachefleet, the
## operator with the chart's ServiceAccount, real cache nodes, traffic, a model rollover.
demo-cluster: venv system-deps k8s-bins
	PYTHONPATH=e2e $(PY) e2e/demo_cluster.py

## Operator: RSS with 200 SemanticCaches (api profile) and apply → Ready (full profile);
## writes docs/benchmarks/operator.json and operator-rss.png.
bench-operator: venv k8s-bins
	PYTHONPATH=e2e:tests $(PY) e2e/bench_operator.py --caches 200 --ready-runs 5

bench-latency: venv
	$(PY) -m cachefleet_node.bench.latency

## Semantic-correctness harness, full run (CLINC150 + all Quora pairs, peers, stream):
## writes docs/benchmarks/quality.json and PNGs. Data from $$CACHEFLEET_DATA_DIR or ../shared/data.
bench-quality: venv
	$(PY) -m cachefleet_node.cli bench quality --subset full --qqp-pairs 0

## Train the verifier head (adversarial dev split + CLINC150; never the frozen split) and choose
## its operating point: writes cache-node/cachefleet_node/core/data/verifier_head.json.
train-verifier: venv
	$(PY) -m cachefleet_node.cli bench train-verifier

## The verifier's WordNet lexicon, from Debian's wordnet-base (`--check` in `make lint`).
lexicon: venv system-deps
	$(PY) -m cachefleet_node.bench.lexicon

test: venv system-deps lint typecheck k8s-bins
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo

# --- local Kubernetes control plane ---
# kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok and helm are built from the
# pinned Go tools module e2e/tools (versions.toml) into ~/.cache/cachefleet/k8s/<versions-key>/bin;
# a second build with the same pins is instant. See docs/development.md.
CLUSTER := PYTHONPATH=e2e $(PY) -m cluster

.PHONY: k8s-bins k8s-gomod cluster-up cluster-down cluster-status

## Build (or reuse) the binaries. Outside CI a failed build only warns: e2e tests then skip
## with the reason. With CI=true it fails.
k8s-bins: venv
	@$(CLUSTER) build --soft

## Regenerate e2e/tools/go.mod (replace block for the k8s.io staging modules) after editing versions.toml.
k8s-gomod: venv
	@$(CLUSTER) gomod

## Start the full profile (etcd, apiserver, controller-manager, scheduler, kwok + fake CPU/GPU nodes,
## a default StorageClass) in the background, state in ~/.cache/cachefleet/cluster; prints the
## `export KUBECONFIG=...` line and an `export PATH=...` line (the venv's kubectl, the built helm).
cluster-up: venv k8s-bins
	@$(CLUSTER) up --profile full

cluster-down: venv
	@$(CLUSTER) down

cluster-status: venv
	@$(CLUSTER) status
