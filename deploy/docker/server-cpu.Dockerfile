# The codec server on CPU: ONNX Runtime's CPU build, no torch, no CUDA; the shipped models inside.
# Build from the repository root (BuildKit reads server-cpu.Dockerfile.dockerignore beside this):
#   docker build -f deploy/docker/server-cpu.Dockerfile -t sancodec/server-cpu:0.1.0 .
#   docker build -f deploy/docker/server-cpu.Dockerfile --target client -t sancodec/client:0.1.0 .
# Run:
#   docker run --rm -p 50051:50051 -p 9464:9464 sancodec/server-cpu:0.1.0
# Every server setting is a SANCODEC_* variable (docs/server.md); more models: docs/operations.md.

FROM python:3.11.14-slim-bookworm AS runtime-base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba
RUN groupadd --gid 10001 sancodec \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --no-log-init sancodec

# One virtual environment, built here and copied whole into the images below.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY deploy/docker/requirements.py deploy/docker/requirements.py
# The server's dependencies with the CPU build of ONNX Runtime; onnx, which server/repository.py
# imports (it builds the CUDA probe model) though the server extra does not list it; tqdm, which
# the `sancodec` CLI (the health check) imports at start. WFDB, EDF and plotting stay out: the
# CLI loads them only when a command needs them (tests/deploy/test_manifests.py checks this).
RUN python deploy/docker/requirements.py server --also onnx tqdm --onnxruntime cpu > requirements-server.txt \
    && python deploy/docker/requirements.py client --onnxruntime cpu > requirements-client.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary :all: \
        -c constraints.txt -r requirements-server.txt
COPY sancodec sancodec
COPY server server
COPY recordings recordings
COPY client client
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps .

FROM build AS build-client
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary :all: \
    -c constraints.txt -r requirements-client.txt

# `sancodec` with its readers and plots: the client job of deploy/compose.yaml.
FROM runtime-base AS client
COPY --from=build-client /opt/venv /opt/venv
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["sancodec"]
CMD ["--help"]

# The server (the default target).
FROM runtime-base AS server
LABEL org.opencontainers.image.title="sancodec-server (CPU)" \
      org.opencontainers.image.description="sancodec gRPC biosignal codec server, ONNX Runtime CPU" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/venv /opt/venv
# The shipped bundles; a volume mounted at /models replaces them (a new named volume starts as a
# copy of them), so more bundles can be added there.
COPY models /models
ENV SANCODEC_MODELS=/models \
    SANCODEC_PROVIDERS=cpu
VOLUME ["/models"]
EXPOSE 50051 9464
# Exits 0 only when the codec service reports SERVING (models loaded and warmed up).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "python -m client health --server 127.0.0.1:${SANCODEC_PORT:-50051} --timeout 3 || exit 1"]
USER 10001:10001
ENTRYPOINT ["sancodec-server"]
