"""The model repository: bundles under `<root>/<name>/<version>/`, verified, loaded and warmed up."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnx import TensorProto, helper

from sancodec.beats import kept_beats
from sancodec.bundle import NAME, Bundle, Manifest, load_bundle, version_key
from sancodec.decoder import decode
from sancodec.encodergraph import DetectorFactory, kernel_swapper, spikes_by_row
from sancodec.errors import BundleError, InvalidConfigError, NotFoundError, SancodecError
from sancodec.payload import parse_block
from sancodec.plan import CodingPlan
from sancodec.streamcoder import Spikes, StreamCoder, Window, code_stream
from sancodec.v1 import codes_pb2

__all__ = ["LoadedModel", "ModelRepository", "session_providers"]

log = logging.getLogger(__name__)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@lru_cache(maxsize=1)
def cuda_runs() -> bool:
    """Whether a session really runs on CUDA here: the GPU build lists the provider even on a
    machine without a GPU or CUDA libraries, and would fall back to the CPU with loud errors."""
    if CUDA not in ort.get_available_providers():
        return False
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    ort.set_default_logger_severity(4)  # the probe's failure is expected on CPU-only machines
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=[CUDA, CPU])
        return bool(session.get_providers()[0] == CUDA)
    except Exception:  # no usable CUDA: the CPU it is
        return False
    finally:
        ort.set_default_logger_severity(2)


def session_providers(choice: str) -> list[str]:
    """ONNX Runtime providers to ask for: CUDA first when it really runs here."""
    if choice == "cuda":
        if not cuda_runs():
            raise InvalidConfigError(
                f"CUDA was asked for, but ONNX Runtime cannot run on it here (it offers {ort.get_available_providers()})"
            )
        return [CUDA, CPU]
    if choice == "auto" and cuda_runs():
        return [CUDA, CPU]
    return [CPU]


@dataclass(frozen=True, eq=False)
class LoadedModel:
    bundle: Bundle
    encoder: ort.InferenceSession
    provider: str  # what actually runs the encoder
    # the codebook as every EncodeStarted carries it, built once (about 1 ms: its tables)
    codebook_proto: codes_pb2.Codebook = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_proto", self.manifest.codebook.to_proto())

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def key(self) -> tuple[str, str]:
        return self.manifest.name, self.manifest.version

    @property
    def measures_beats(self) -> bool:
        """Whether its blocks' answers carry their beat agreement (an ECG model's do)."""
        return self.manifest.modality == "ecg"

    @cached_property
    def detector_for(self) -> DetectorFactory:
        """Kernels -> the bundle's encoder with them in it, on the CPU, one thread (it runs in a
        codec thread): how a stream that fitted its own kernels detects."""
        return kernel_swapper(self.bundle, threads=1)

    def detect(self, batch: npt.NDArray[np.float32]) -> list[Spikes]:
        """Run the encoder on (B, 1, T) windows; the spikes of each row, positions in the row."""
        positions, amplitudes = self.encoder.run(["positions", "amplitudes"], {"signal": batch})
        return spikes_by_row(positions, amplitudes, batch.shape[0])

    def detect_windows(self, windows: Sequence[Window]) -> list[Spikes]:
        """The spikes of each window, in order: one encoder call per window length."""
        found: dict[int, Spikes] = {}
        for size in {w.samples.size for w in windows}:
            rows = [i for i, w in enumerate(windows) if w.samples.size == size]
            batch = np.stack([windows[i].samples for i in rows])[:, None, :]
            found.update(zip(rows, self.detect(batch), strict=True))
        return [found[i] for i in range(len(windows))]


def _warm_coder(model: LoadedModel, x: npt.NDArray[np.float64]) -> None:
    """Code two blocks of `x` under the model's plan, decode them and find their beats: the
    compiled loops are built (or loaded from numba's cache) before the model serves, not in a
    stream's first block."""
    plan = CodingPlan.from_manifest(model.manifest)
    blocks = code_stream(
        StreamCoder([plan], 0), x[None, :], lambda w: model.detect(w.samples[None, None, :])[0]
    )
    codes = [parse_block(b.message().SerializeToString(), plan.codebook) for b in blocks]
    decode(codes, plan.codebook, 1)
    if model.measures_beats:
        for b in blocks:
            kept_beats(b.parts[0].signal, b.parts[0].reconstruction, model.manifest.sample_rate_hz)


class ModelRepository:
    def __init__(self, root: Path, providers: str = "auto", threads: int = 0) -> None:
        self.root = root
        self._providers = session_providers(providers)
        self._threads = threads
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self.errors: list[str] = []

    def load(self) -> None:
        """Load every bundle; a broken one is logged, listed in `errors` and skipped."""
        if not self.root.is_dir():
            raise InvalidConfigError(f"model repository {self.root} is not a directory")
        root = self.root.resolve()
        for directory in sorted(p for p in self.root.glob("*/*") if p.is_dir()):
            try:
                if not (NAME.match(directory.parent.name) and NAME.match(directory.name)):
                    raise BundleError(
                        f"{directory}: not a <name>/<version> directory of valid names"
                    )
                if not directory.resolve().is_relative_to(root):
                    raise BundleError(f"{directory}: points outside the model repository")
                model = self._load_one(directory)
            except BundleError as exc:
                log.error("skipping bundle: %s", exc)
                self.errors.append(str(exc))
                continue
            self._models[model.key] = model
            modality = model.manifest.modality or "unknown"
            beats = "beat agreement measured" if model.measures_beats else "no beats to measure"
            log.info("loaded %s/%s on %s (%s: %s)", *model.key, model.provider, modality, beats)

    def _load_one(self, directory: Path) -> LoadedModel:
        bundle = load_bundle(directory)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        # spinning ORT threads compete with the event loop for the cores (bench/serving.py)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(
                str(bundle.encoder_path), options, providers=self._providers
            )
            model = LoadedModel(bundle, session, session.get_providers()[0])
            m = bundle.manifest
            warm = np.random.default_rng(0).normal(size=(2, 1, m.block_length + 2 * m.context))
            model.detect(warm.astype(np.float32))
        except Exception as exc:  # ORT raises its own types; any failure here means a broken bundle
            raise BundleError(f"{directory}: the encoder does not run: {exc}") from None
        try:
            _warm_coder(model, warm[0, 0])
        except SancodecError as exc:
            raise BundleError(f"{directory}: the coder does not run: {exc}") from None
        return model

    def models(self) -> list[LoadedModel]:
        return [self._models[k] for k in sorted(self._models)]

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The named model at `version`, or its latest version when version is empty."""
        if not NAME.match(name) or (version and not NAME.match(version)):
            raise NotFoundError(f"no model {name!r} version {version!r}: not a valid name")
        versions = [v for n, v in self._models if n == name]
        if not versions:
            known = sorted({n for n, _ in self._models})
            raise NotFoundError(
                f"no model named {name!r}; loaded models: {', '.join(known) or 'none'}"
            )
        if not version:
            version = max(versions, key=version_key)
        if (name, version) not in self._models:
            raise NotFoundError(
                f"model {name!r} has no version {version!r}; it has {', '.join(sorted(versions))}"
            )
        return self._models[(name, version)]
