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
# The benchmarks and training harnesses (bench/cachefleet_bench): not part of the installed
# distribution, so they run with bench/ on the import path (pytest's `pythonpath` does the same).
BENCH := PYTHONPATH=bench $(PY) -m cachefleet_bench

.PHONY: help venv system-deps demo demo-cluster test test-unit test-e2e lint lint-images typecheck fmt lock clean bench-latency bench-scale bench-partitions bench-index-sweep bench-filter-sweep bench-embedded-durable bench-quality bench-operator chaos crds chart-crds train-verifier lexicon

## List the targets with their `##` comments (every target has one).
help:
	@awk '/^## / { text[++n] = substr($$0, 4); next } \
	  /^[a-z][a-z0-9-]*:/ && n { sub(/:.*/, ""); printf "%-15s %s\n", $$0, text[1]; \
	    for (i = 2; i <= n; i++) printf "%-15s %s\n", "", text[i] } \
	  { n = 0 }' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml requirements.lock
	@echo "==> creating virtualenv $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q uv==$(UV_VERSION)
	@echo "==> installing pinned dependencies (requirements.lock)"
	@$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

## The virtualenv .venv: pinned dependencies (requirements.lock) and the project, editable.
venv: $(VENV)/.installed

## Debian packages the tests and the demo need (redis-server; wordnet-base, the source `make lint`
## checks the verifier's lexicon against; nodejs and npm, which run the `openai` npm package in
## the client matrix, tests/clients). Installs them when missing.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	test -f /usr/share/wordnet/index.noun || missing="$$missing wordnet-base"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing$$missing (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; fi; \
	fi
	@command -v redis-server >/dev/null || { echo "redis-server is required: apt-get install redis-server"; exit 1; }
	@test -f /usr/share/wordnet/index.noun || { echo "WordNet is required: apt-get install wordnet-base"; exit 1; }
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "Node.js and npm are required: apt-get install nodejs npm"; exit 1; }

## Recompile requirements.lock from pyproject.toml: the contract's dependencies and every extra
## (node, operator, dev), Python 3.11. The images install their extra's subset of it.
lock:
	$(VENV)/bin/uv pip compile -q pyproject.toml --all-extras --python-version 3.11 -o requirements.lock

## Ruff (check and format), import-linter contracts, hadolint and every generator's --check.
lint: venv system-deps lint-images
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=bench $(VENV)/bin/lint-imports --no-cache
	$(PY) -m cachefleet_operator.api.crdgen --check
	$(PY) -m cachefleet_operator.api.docgen --check
	$(PY) charts/chartgen.py --check
	$(BENCH) lexicon --check

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

## mypy --strict over the node, the operator, the benchmarks and the e2e cluster tooling.
typecheck: venv
	$(VENV)/bin/mypy

## Format and auto-fix with ruff.
fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Install, start a cache node on embedded defaults, replay a workload, print a report.
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

## Latency of the node's request path, alone and under concurrency: writes
## docs/benchmarks/latency.json and latency.png.
bench-latency: venv
	$(BENCH) latency

## The embedding model as float16 weights for the GPU machine (`.gpu/minilm`, 44 MiB, checked
## against the reference embeddings); then, there: bench/gpu/embed_throughput.py
## (docs/benchmarks/gpu.md). Needs `onnx`, installed into a throwaway environment by uv.
bench-gpu-prepare: venv
	$(VENV)/bin/uv run -q --no-project --python $(PY) --with onnx==1.23.2 \
	  --with numpy==2.4.6 --with tokenizers==0.23.3 python bench/gpu/prepare_model.py \
	  --model-dir $${CACHEFLEET_EMBEDDING_MODEL_DIR:-../shared/models/all-MiniLM-L6-v2} --out .gpu/minilm

## Scale run: lookups, inserts, memory per entry and restart time against entries (10k, 50k;
## SIZES=10000,1000000 for others), Cachefleet beside GPTCache and RedisVL on Redis Stack
## (installed at run time into .cache/bench-peers); SYSTEMS=cachefleet_durable: the Milvus
## tier alone through its index build (1M rows: ~45 min here, not in CI). Merges its rows into
## docs/benchmarks/scale.json; writes scale.png and scale-durable.png.
bench-scale: venv system-deps
	$(BENCH) scale $(if $(SIZES),--sizes $(SIZES)) $(if $(SYSTEMS),--systems $(SYSTEMS))

## Many namespaces in Milvus: one collection with `namespace` as partition key (10k small
## namespaces of 20 rows plus 4 of 10k rows) against one collection per namespace (100), each on
## a fresh Milvus 2.3.5 server (installed at run time into .cache/bench-peers); writes
## docs/benchmarks/partitions.json. Options: ARGS="--partitions 1000 --collections 50".
bench-partitions: venv
	$(BENCH) partitions $(ARGS)

## Milvus index and search parameters: AUTOINDEX, HNSW efConstruction 100/64 and IVF_SQ8 at
## 160k rows, each with several search efforts, on a fresh Milvus 2.3.5 server; writes
## docs/benchmarks/index-sweep.json. Options: ARGS="--indexes 'HNSW M18 efC64' --segment-mb 1024".
bench-index-sweep: venv
	$(BENCH) index-sweep $(ARGS)

## What the durable tier's search filter costs (the node's filter, fewer terms, none, with
## scalar indexes) at 150k rows on a fresh Milvus 2.3.5 server; writes
## docs/benchmarks/milvus-filter.json. Options: ARGS="--rows 50000 --segment-mb 1024".
bench-filter-sweep: venv
	$(BENCH) filter-sweep $(ARGS)

## Embedded durable tier candidates beside Milvus Lite (faiss HNSW, usearch f32/f16/i8,
## sqlite-vec; the last two installed, pinned, into .cache/bench-embedded): inserts, search,
## recall, restart, RSS per row, kill -9; writes docs/benchmarks/embedded-durable.json and .png.
## Options: ARGS="--sizes 100000 --engines faiss-hnsw,usearch-i8" (1M: ~1 h here).
bench-embedded-durable: venv
	$(VENV)/bin/uv pip install -q --python $(PY) --target .cache/bench-embedded --no-deps \
	  usearch==2.26.6 numkong==7.8.6 sqlite-vec==0.1.9 pysqlite3-binary==0.5.4.post2
	PYTHONPATH=bench:.cache/bench-embedded $(PY) -m cachefleet_bench embedded-durable $(ARGS)

## Fault run: redis-server, Milvus, the stub upstream and two nodes; 1,000 clients while Redis
## and Milvus are killed (-9), stopped and restarted and the upstream turns slow and broken;
## writes docs/benchmarks/chaos.json and chaos.png (tests/test_chaos.py: the shortened run).
chaos: venv system-deps
	$(BENCH) chaos --clients 1000

## Semantic-correctness harness, full run (CLINC150 + all Quora pairs, peers, stream):
## writes docs/benchmarks/quality.json and PNGs. Data from $CACHEFLEET_DATA_DIR or ../shared/data.
bench-quality: venv
	$(BENCH) quality --subset full --qqp-pairs 0

## Train the verifier head (adversarial dev split + CLINC150; never the frozen split) and choose
## its operating point: writes cache-node/cachefleet_node/core/data/verifier_head.json.
train-verifier: venv
	$(BENCH) train-verifier

## The verifier's WordNet lexicon, from Debian's wordnet-base (`--check` in `make lint`).
lexicon: venv system-deps
	$(BENCH) lexicon

## Install everything the tests need, then lint, types and every test (tests/ and e2e/);
## what CI runs (.ci/run).
test: venv system-deps lint typecheck k8s-bins
	$(PY) -m pytest

## The node and operator tests of tests/ (real redis-server, Milvus, the ONNX model): minutes,
## no lint and no Kubernetes binaries.
test-unit: venv system-deps
	$(PY) -m pytest tests

## The end-to-end tests of e2e/ on a real kube-apiserver (built by k8s-bins).
test-e2e: venv system-deps k8s-bins
	$(PY) -m pytest e2e

## Remove the virtualenv, the tool caches and the demo's state.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo

# --- local Kubernetes control plane ---
# kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok and helm are built from the
# pinned Go tools module e2e/tools (versions.toml) into ~/.cache/cachefleet/k8s/<versions-key>/bin;
# a second build with the same pins is instant. See docs/development.md.
CLUSTER := PYTHONPATH=e2e $(PY) -m cluster

.PHONY: k8s-bins k8s-gomod cluster-up cluster-down cluster-status

## Build (or reuse) the Kubernetes binaries. Outside CI a failed build only warns: e2e tests then skip
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

## Stop the control plane that cluster-up started.
cluster-down: venv
	@$(CLUSTER) down

## Which control-plane processes run, and the apiserver's /readyz.
cluster-status: venv
	@$(CLUSTER) status
