# kurative's container image: `kurative serve` as uid 10001 on a read-only root file system.
#
# Registry build:   docker build -t kurative:0.1.0 .
# Without a registry (Debian's buildah on a base made by debootstrap, as CI does):
#   buildah build --isolation chroot --build-arg BASE=localhost/kurative-base:bookworm -t kurative .
# (tests/support/image.py makes that base; docs/image.md says how and why.)
#
# The build stage builds kurative's wheel from this repository and the wheels of its dependencies, then
# installs exactly those into a virtual environment and removes pip and setuptools from it. The final
# stage copies only that environment onto a fresh base: no compiler, no pip, no sources, no wheels.
ARG BASE=python:3.11.14-slim-bookworm
# checkov:skip=CKV_DOCKER_7: checkov does not resolve FROM ${BASE}; its default above is pinned by tag (tests/deploy/test_image.py checks it), and a build-arg replaces it only with a locally made base

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine/ engine/
RUN python3 -m venv /opt/kurative \
    && /opt/kurative/bin/pip wheel --wheel-dir /wheels . \
    && /opt/kurative/bin/pip install --no-index --find-links /wheels kurative \
    && /opt/kurative/bin/pip uninstall --yes pip setuptools \
    && /opt/kurative/bin/kurative --version

FROM ${BASE}
ARG BASE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kurative" \
      org.opencontainers.image.description="Turns Prometheus alerts into safe, audited remediation on Kubernetes." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE}"
# A fixed non-root uid and gid (the pod's securityContext names the same), and the journal's folder:
# the working directory, so the default journal sqlite:///./kurative.db lands on its volume. The
# python.org base ships pip, setuptools and wheel with its own interpreter: nothing installs at run time.
RUN if python3 -c "import pip" 2>/dev/null; then python3 -m pip uninstall --yes --quiet pip setuptools wheel; fi \
    && groupadd --system --gid 10001 kurative \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/kurative --no-create-home \
       --shell /usr/sbin/nologin kurative \
    && mkdir -p /var/lib/kurative \
    && chown 10001:10001 /var/lib/kurative
COPY --from=build /opt/kurative /opt/kurative
# Nothing is written outside /tmp and /var/lib/kurative: bytecode was compiled at install time.
ENV PATH="/opt/kurative/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/kurative \
    TMPDIR=/tmp
WORKDIR /var/lib/kurative
VOLUME ["/var/lib/kurative"]
USER 10001:10001
EXPOSE 9095
# Kubernetes ignores HEALTHCHECK (the Deployment's probes call /healthz and /readyz); it is here for
# `docker run` and podman, with the default listen address (set KURATIVE_HEALTH_URL when it differs).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('KURATIVE_HEALTH_URL', 'http://127.0.0.1:9095/healthz'), timeout=4)"]
ENTRYPOINT ["kurative"]
CMD ["serve"]
