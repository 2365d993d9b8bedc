# syntax=docker/dockerfile:1
# The operator (cachefleet-operator): kopf handlers that run SemanticCache fleets.
#
#   docker build -f images/operator.Dockerfile -t cachefleet/operator:dev .
#
# Only the operator's code (cachefleet_operator and the contract it shares with the node,
# cachefleet_contract) and its own dependencies (the contract's and the `operator` extra of
# pyproject.toml, at the versions in requirements.lock): no node code, no ONNX Runtime, faiss or
# Milvus. Runs as uid/gid 10001 with a read-only root filesystem; it writes nothing but /tmp.

# Base: an exact tag, the same in both stages (tests/test_images.py); Renovate or Dependabot
# can add and bump a digest (`python:3.11.14-slim-bookworm@sha256:…`).
FROM python:3.11.14-slim-bookworm AS build
ARG UV_VERSION=0.13.8
ARG SETUPTOOLS_VERSION=84.2.1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN pip install "uv==${UV_VERSION}" && python -m venv /opt/cachefleet
WORKDIR /src
COPY pyproject.toml requirements.lock ./
RUN uv pip install --python /opt/cachefleet/bin/python \
        -r pyproject.toml --extra operator -c requirements.lock
COPY README.md ./
COPY contract/cachefleet_contract ./contract/cachefleet_contract
COPY operator/cachefleet_operator ./operator/cachefleet_operator
# --no-deps: the dependencies are installed above. The import check fails the build if the
# operator needs something the `operator` extra misses.
RUN echo "setuptools==${SETUPTOOLS_VERSION}" > /tmp/build-constraints.txt \
    && uv pip install --python /opt/cachefleet/bin/python --no-deps \
        --build-constraint /tmp/build-constraints.txt . \
    && /opt/cachefleet/bin/python -c "import cachefleet_operator.cli" \
    && /opt/cachefleet/bin/cachefleet-operator --help > /dev/null

FROM python:3.11.14-slim-bookworm
ARG VERSION=0.0.0-dev
LABEL org.opencontainers.image.title="cachefleet-operator" \
      org.opencontainers.image.description="Cachefleet operator: runs semantic cache fleets on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN groupadd --system --gid 10001 cachefleet \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cachefleet
COPY --from=build /opt/cachefleet /opt/cachefleet
ENV PATH=/opt/cachefleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
# /healthz, /readyz and /metrics (CACHEFLEET_OPERATOR_HTTP_PORT, default 8080).
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# Give the watch scope as arguments (--all-namespaces or --namespace NS ...) or through
# CACHEFLEET_OPERATOR_ALL_NAMESPACES / CACHEFLEET_OPERATOR_NAMESPACES.
ENTRYPOINT ["cachefleet-operator"]
