# syntax=docker/dockerfile:1
# The cache node (cachefleet-node): the OpenAI-compatible caching proxy.
#
#   docker build -f images/cache-node.Dockerfile -t cachefleet/cache-node:dev .
#
# The embedding model is not in the image. Mount a model directory and point
# CACHEFLEET_EMBEDDING_MODEL_DIR at it, or let the node download the hub model into
# /var/cache/cachefleet/models (a volume: the operator mounts an emptyDir or a shared claim).
# Runs as uid/gid 10001 with a read-only root filesystem; writable paths are /tmp,
# /var/lib/cachefleet (data_dir) and /var/cache/cachefleet/models, all volumes in Kubernetes.

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
# Dependencies first (a source change does not reinstall them): the contract's dependencies
# and the `node` extra of pyproject.toml, each at the version pinned in requirements.lock.
COPY pyproject.toml requirements.lock ./
RUN uv pip install --python /opt/cachefleet/bin/python \
        -r pyproject.toml --extra node -c requirements.lock
COPY README.md ./
# The node and the contract it shares with the operator; no operator code.
COPY contract/cachefleet_contract ./contract/cachefleet_contract
COPY cache-node/cachefleet_node ./cache-node/cachefleet_node
RUN echo "setuptools==${SETUPTOOLS_VERSION}" > /tmp/build-constraints.txt \
    && uv pip install --python /opt/cachefleet/bin/python --no-deps \
        --build-constraint /tmp/build-constraints.txt . \
    && /opt/cachefleet/bin/cachefleet-node --help > /dev/null

FROM python:3.11.14-slim-bookworm
ARG VERSION=0.0.0-dev
LABEL org.opencontainers.image.title="cachefleet-node" \
      org.opencontainers.image.description="Cachefleet cache node: semantic cache proxy for OpenAI-compatible LLM APIs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN groupadd --system --gid 10001 cachefleet \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cachefleet \
    && mkdir -p /var/lib/cachefleet /var/cache/cachefleet/models \
    && chown -R 10001:10001 /var/lib/cachefleet /var/cache/cachefleet
COPY --from=build /opt/cachefleet /opt/cachefleet
# Bytecode was compiled at build time, so nothing writes next to the code at run time.
ENV PATH=/opt/cachefleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    CACHEFLEET_EMBEDDING__HUB_CACHE_DIR=/var/cache/cachefleet/models
USER 10001:10001
WORKDIR /var/lib/cachefleet
EXPOSE 8080
# Liveness only (/healthz); Kubernetes uses the probes the operator renders instead.
HEALTHCHECK --interval=30s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["cachefleet-node"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/var/lib/cachefleet"]
