# The codec server on NVIDIA GPUs: onnxruntime-gpu 1.31.1 on the CUDA 13 runtime with cuDNN 9
# (what its wheel is built for: nvidia-cuda-runtime~=13.0, nvidia-cudnn-cu13~=9.0), Ubuntu 24.04's
# Python 3.12. The host needs an NVIDIA driver for CUDA 13 (>= 580) and the NVIDIA Container Toolkit.
# Build from the repository root (BuildKit reads server-gpu.Dockerfile.dockerignore beside this):
#   docker build -f deploy/docker/server-gpu.Dockerfile -t sancodec/server-gpu:0.1.0 .
# Run:
#   docker run --rm --gpus all -p 50051:50051 -p 9464:9464 sancodec/server-gpu:0.1.0
# SANCODEC_PROVIDERS=auto (the default here) falls back to the CPU when CUDA does not run;
# SANCODEC_PROVIDERS=cuda makes that an error instead (the Kubernetes GPU overlay sets it).

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS runtime-base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba
# The distribution's Python follows the pinned base tag; its security updates should still apply.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 sancodec \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --no-log-init sancodec

FROM runtime-base AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY deploy/docker/requirements.py deploy/docker/requirements.py
# The server's dependencies (onnxruntime-gpu); onnx, which server/repository.py imports though the
# server extra does not list it; tqdm, which the `sancodec` CLI (the health check) imports at start.
RUN python3 deploy/docker/requirements.py server --also onnx tqdm --onnxruntime gpu > requirements.txt \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary :all: \
        -c constraints.txt -r requirements.txt
COPY sancodec sancodec
COPY server server
COPY recordings recordings
COPY client client
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps .

FROM runtime-base AS server
LABEL org.opencontainers.image.title="sancodec-server (GPU)" \
      org.opencontainers.image.description="sancodec gRPC biosignal codec server, ONNX Runtime CUDA" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/venv /opt/venv
# The shipped bundles; a volume mounted at /models replaces them (a new named volume starts as a
# copy of them), so more bundles can be added there.
COPY models /models
ENV SANCODEC_MODELS=/models \
    SANCODEC_PROVIDERS=auto
VOLUME ["/models"]
EXPOSE 50051 9464
# Exits 0 only when the codec service reports SERVING (models loaded and warmed up on the GPU).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "python -m client health --server 127.0.0.1:${SANCODEC_PORT:-50051} --timeout 3 || exit 1"]
USER 10001:10001
ENTRYPOINT ["sancodec-server"]
