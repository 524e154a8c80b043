"""Model bundles: `<name>/<version>/{encoder.onnx, decoder.onnx, model.json}`, verified on load.

`model.json` follows `sancodec/schemas/model.v1.json`; this module checks the same rules in code
(no jsonschema at run time) and refuses a bundle whose files do not match their hashes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from sancodec.codebook import Codebook, DecoderMode
from sancodec.errors import BundleError, InvalidInputError, NotFoundError
from sancodec.header import ModelRef
from sancodec.quantization import Quantizer
from sancodec.residual import ResidualSpec
from sancodec.tables import CodingTables

# where a model's spikes come from: "encoder", the detector a caller runs (encoder.onnx); "beats",
# one spike per QRS complex sancodec.beats finds (sancodec.beatlock), placed by the stream coder
SPIKE_SOURCES = ("encoder", "beats")

__all__ = [
    "ACTIVATIONS",
    "Bundle",
    "Manifest",
    "Normalization",
    "find_bundle",
    "load_bundle",
    "sha256_file",
    "version_key",
]

SCHEMA_VERSION = 1
ONNX_FILES = ("encoder.onnx", "decoder.onnx")
ACTIVATIONS = ("identity", "relu", "topk_absolutes", "extrema_pool_indices", "extrema", "ksparse")
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")  # \Z: "$" would allow a trailing newline


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Normalization:
    """model-domain = (physical - block mean) / scale; the mean travels as each block's offset."""

    scale: float
    units: str = ""
    per_block_mean: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InvalidInputError(f"normalization scale must be positive, got {self.scale}")


@dataclass(frozen=True, eq=False)
class Manifest:
    name: str
    version: str
    activation: str
    activation_params: Mapping[str, Any]
    codebook: Codebook
    sample_rate_hz: float
    block_length: int
    context: int
    normalization: Normalization
    san_step_exp: int
    residual_step_exp: int | None
    files: Mapping[str, str]
    description: str = ""
    modality: str = ""
    spikes: str = "encoder"  # one of SPIKE_SOURCES
    # a stream fits its own kernels once it holds this many samples per channel, and checks them
    # as often again (sancodec.kernelupdates); 0: a stream keeps the model's kernels
    adapt_after_samples: int = 0
    training: Mapping[str, Any] = field(default_factory=dict)
    test_metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = {
            f"name {self.name!r} must be 1-64 of a-z, 0-9, '.', '_', '-'": NAME.match(self.name),
            f"version {self.version!r} must be 1-64 of a-z, 0-9, '.', '_', '-'": NAME.match(
                self.version
            ),
            f"unknown activation {self.activation!r}": self.activation in ACTIVATIONS,
            f"spikes must be one of {SPIKE_SOURCES}, got {self.spikes!r}": self.spikes
            in SPIKE_SOURCES,
            f"sample rate must be positive, got {self.sample_rate_hz}": self.sample_rate_hz > 0,
            f"block length must be positive, got {self.block_length}": self.block_length > 0,
            f"context must be non-negative, got {self.context}": self.context >= 0,
            f"files must be exactly {', '.join(ONNX_FILES)}": set(self.files) == set(ONNX_FILES),
            "a residual step needs a residual transform, and back": (self.residual_step_exp is None)
            == (self.codebook.residual is None),
            f"adapt_after_samples must be 0 or whole blocks, got {self.adapt_after_samples}": (
                self.adapt_after_samples >= 0
                and self.adapt_after_samples % max(self.block_length, 1) == 0
            ),
            "kernels adapt only where the encoder finds the spikes and a residual layer codes "
            "what they miss": not self.adapt_after_samples
            or (self.spikes == "encoder" and self.residual_step_exp is not None),
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise InvalidInputError("; ".join(failed))
        Quantizer(self.san_step_exp)
        if self.residual_step_exp is not None:
            Quantizer(self.residual_step_exp)
        for key in ("activation_params", "files", "training", "test_metrics"):
            object.__setattr__(self, key, MappingProxyType(dict(getattr(self, key))))

    def model_ref(self, manifest_sha256: str = "") -> ModelRef:
        return ModelRef(self.name, self.version, manifest_sha256)

    def to_dict(self) -> dict[str, Any]:
        residual = self.codebook.residual
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name, "version": self.version,
            "description": self.description, "modality": self.modality, "spikes": self.spikes,
            "adapt_after_samples": self.adapt_after_samples,
            "activation": {"name": self.activation, "params": dict(self.activation_params)},
            "decoder_mode": self.codebook.decoder_mode.value,
            "kernels": [w.tolist() for w in self.codebook.kernels],
            "sample_rate_hz": self.sample_rate_hz, "block_length": self.block_length, "context": self.context,
            "normalization": {"scale": self.normalization.scale, "units": self.normalization.units,
                              "per_block_mean": self.normalization.per_block_mean},
            "quantization": {"san_step_exp": self.san_step_exp, "residual_step_exp": self.residual_step_exp},
            "residual": None if residual is None else {"wavelet": residual.wavelet, "level": residual.level},
            "tables": self.codebook.tables.to_dict(),
            "files": {name: {"sha256": digest} for name, digest in sorted(self.files.items())},
            "training": dict(self.training), "test_metrics": dict(self.test_metrics),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Build from parsed model.json; any missing or bad field raises InvalidInputError."""
        if data.get("schema_version") != SCHEMA_VERSION:
            raise InvalidInputError(
                f"schema_version must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}"
            )
        try:
            residual = data["residual"]
            codebook = Codebook(
                tuple(np.asarray(k, dtype=np.float32) for k in data["kernels"]),
                DecoderMode(data["decoder_mode"]),
                None
                if residual is None
                else ResidualSpec(residual["wavelet"], int(residual["level"])),
                CodingTables.from_dict(data["tables"]),
            )
            norm = data["normalization"]
            quant = data["quantization"]
            return cls(
                name=data["name"], version=data["version"],
                activation=data["activation"]["name"], activation_params=data["activation"]["params"],
                codebook=codebook, sample_rate_hz=float(data["sample_rate_hz"]),
                block_length=int(data["block_length"]), context=int(data["context"]),
                normalization=Normalization(float(norm["scale"]), norm.get("units", ""), bool(norm.get("per_block_mean", True))),
                san_step_exp=int(quant["san_step_exp"]),
                residual_step_exp=None if quant.get("residual_step_exp") is None else int(quant["residual_step_exp"]),
                files={name: entry["sha256"] for name, entry in data["files"].items()},
                description=data.get("description", ""), modality=data.get("modality", ""),
                spikes=data.get("spikes", "encoder"),
                adapt_after_samples=int(data.get("adapt_after_samples", 0)),
                training=data.get("training", {}), test_metrics=data.get("test_metrics", {}),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"model.json is missing or has a bad field: {exc!r}") from None


@dataclass(frozen=True, eq=False)
class Bundle:
    directory: Path
    manifest: Manifest
    manifest_sha256: str

    @property
    def encoder_path(self) -> Path:
        return self.directory / "encoder.onnx"

    @property
    def decoder_path(self) -> Path:
        return self.directory / "decoder.onnx"

    @property
    def ref(self) -> ModelRef:
        return self.manifest.model_ref(self.manifest_sha256)


def load_bundle(directory: str | Path) -> Bundle:
    """Read and verify a bundle: manifest fields, its name and version against the path, and the
    sha256 of each ONNX file against the manifest. Raises BundleError naming what is wrong."""
    root = Path(directory)
    path = root / "model.json"
    try:
        raw = path.read_bytes()
        manifest = Manifest.from_dict(json.loads(raw))
    except FileNotFoundError:
        raise BundleError(f"{root}: no model.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    except InvalidInputError as exc:
        raise BundleError(f"{path}: {exc}") from None
    if (root.parent.name, root.name) != (manifest.name, manifest.version):
        raise BundleError(
            f"{root}: the manifest names {manifest.name}/{manifest.version}; a bundle lives in "
            "<name>/<version>/"
        )
    for name, expected in manifest.files.items():
        file = root / name
        if not file.is_file():
            raise BundleError(f"{root}: {name} is missing")
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError(
                f"{file}: sha256 {actual[:12]}... does not match the manifest's {expected[:12]}..."
            )
    return Bundle(root, manifest, hashlib.sha256(raw).hexdigest())


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions as people read them: "10" after "9", "1.10" after "1.9"."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._-]", version))


def find_bundle(root: str | Path, name: str, version: str = "") -> Bundle:
    """The bundle `root/name/version` (the latest version when version is empty), verified.
    Names are checked, so nothing outside `root` is ever read."""
    if not NAME.match(name) or (version and not NAME.match(version)):
        raise NotFoundError(f"no model {name!r} version {version!r}: not a valid name")
    directory = Path(root) / name
    versions = sorted((p.name for p in directory.glob("*") if p.is_dir() and NAME.match(p.name)),
                      key=version_key)  # fmt: skip
    if not versions:
        raise NotFoundError(f"no model named {name!r} in {root}")
    if version and version not in versions:
        raise NotFoundError(
            f"model {name!r} has no version {version!r}; it has {', '.join(versions)}"
        )
    return load_bundle(directory / (version or versions[-1]))
