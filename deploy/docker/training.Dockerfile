# Training (`sancodec-train`, `torchrun`): PyTorch, ONNX export, the readers; CPU torch by default.
# Build from the repository root (BuildKit reads training.Dockerfile.dockerignore beside this):
#   docker build -f deploy/docker/training.Dockerfile -t sancodec/training:0.1.0 .
# For NVIDIA GPUs, take torch from an index of CUDA builds (its wheels carry their CUDA libraries,
# so the base stays the same; the host needs a driver and the NVIDIA Container Toolkit):
#   docker build -f deploy/docker/training.Dockerfile \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 -t sancodec/training-cuda:0.1.0 .
# Run (recordings read-only at /data, results in the runs volume at /srv/runs):
#   docker run --rm -v "$PWD/data:/data:ro" -v sancodec-runs:/srv/runs sancodec/training:0.1.0 \
#     fit /data/demo/mitdb100_excerpt.hea --kernel-sizes 256 --out runs/demo
#   docker run --rm --gpus all --shm-size 2g --entrypoint torchrun ... sancodec/training-cuda:0.1.0 \
#     --standalone --nproc-per-node 2 -m training fit /data/REC.hea --device cuda --out runs/ddp

FROM python:3.11.14-slim-bookworm AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY deploy/docker/requirements.py deploy/docker/requirements.py
# torch first, alone, from TORCH_INDEX_URL at the version constraints.txt pins; then the rest
# (torch's own dependencies included) from PyPI under the same constraints. Export checks run on
# ONNX Runtime's CPU build.
RUN python deploy/docker/requirements.py training client --onnxruntime cpu > requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
        --index-url "${TORCH_INDEX_URL}" "$(grep -x 'torch==.*' constraints.txt)" \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary :all: \
        -c constraints.txt -r requirements.txt
COPY sancodec sancodec
COPY recordings recordings
COPY training training
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps .

FROM python:3.11.14-slim-bookworm AS training
LABEL org.opencontainers.image.title="sancodec-train" \
      org.opencontainers.image.description="sancodec training: PyTorch SANs, sweeps, ONNX export" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    HOME=/home/sancodec
RUN groupadd --gid 10001 sancodec \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/sancodec \
        --shell /usr/sbin/nologin --no-log-init sancodec \
    && mkdir -p /data /srv/runs \
    && chown -R 10001:10001 /srv
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
VOLUME ["/srv/runs"]
USER 10001:10001
ENTRYPOINT ["sancodec-train"]
CMD ["--help"]
