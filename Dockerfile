# syntax=docker/dockerfile:1
# The operator image: `mongo-backup run` by default; every other subcommand of the CLI works too
# (`docker run IMAGE backup --uri ... --to ...`).
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: the project's wheel and the wheels of its runtime dependencies, pinned -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# A C compiler for the content digest's walk (operator/mongo_backup/engine/_bson_walk.c):
# it stays in this stage; the runtime stage gets the compiled wheel. Unpinned: Debian's
# security updates of the compiler are welcome and change nothing in the image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# Only what the wheel is built from (.dockerignore keeps the rest of the tree out of the context).
COPY pyproject.toml setup.py MANIFEST.in README.md constraints.txt ./
COPY operator/ operator/
# The project wheel first (no deps), then every runtime dependency as a wheel, resolved against
# constraints.txt so the image runs the versions CI tested. No extras: test tools (SecantusDB is
# GPL and test-only) never reach the image.
RUN pip wheel --no-deps --wheel-dir /wheels/project . \
    && pip wheel --constraint constraints.txt --wheel-dir /wheels/deps /wheels/project/*.whl

# ---- runtime: the wheels installed into a clean slim Python, nothing else ---------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mongo-backup-operator" \
      org.opencontainers.image.description="Kubernetes operator and CLI that back up and restore MongoDB as streamed raw BSON" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# Read-only root filesystem: no bytecode written at run time (it is compiled at install time),
# HOME on the /tmp emptyDir for any library that wants a cache directory.
# MALLOC_ARENA_MAX: glibc's per-thread arenas kept 35-40 MB of freed upload buffers (BENCHMARKS.md)
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HOME=/tmp
# The wheels are bind-mounted from the build stage, so they never become a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels/deps /wheels/project/*.whl \
    && mongo-backup --help >/dev/null \
    && python -c "from mongo_backup.engine.digest import NATIVE; assert NATIVE, 'the C walk was not built'"
# A numeric non-root UID/GID (the "nonroot" convention): runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
WORKDIR /tmp
# Kopf's liveness endpoint (see the Deployment's probes) and Prometheus metrics (--metrics-port).
EXPOSE 8080 9090
ENTRYPOINT ["mongo-backup"]
CMD ["run"]
