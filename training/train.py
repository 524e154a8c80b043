"""The training loop: one config, restarts, best-epoch restore, evaluation with sancodec.metrics."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as nnf
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sancodec import DecoderMode, metrics
from training.activations import Activation
from training.data import WindowSet
from training.init import initialize
from training.model import SAN
from training.sparsity import REGULARIZER_KINDS, KSparse, Regularizer

__all__ = ["FitResult", "TrainConfig", "evaluate", "fit", "resolve_device"]

log = logging.getLogger(__name__)

INITS = ("normal", "ones", "data", "mixed", "fan_in")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of one training run; saved with the checkpoint and in the bundle."""

    kernel_sizes: tuple[int, ...] = (64,)
    activation: str = Activation.EXTREMA.value
    decoder_mode: str = DecoderMode.ADJOINT.value
    border_tolerance: int = 3
    loss: str = "mae"  # the paper's; "mse" targets PRDN, an L2 figure
    init: str = "normal"  # "normal" N(0, 0.1) as the paper, "ones", "data", "mixed", "fan_in"
    epochs: int = 30
    batch_size: int = 2
    lr: float = 0.01
    seed: int = 0
    restarts: int = 1
    select: str = "flithos"  # validation metric that picks the epoch and the restart
    device: str = "auto"
    sparsifier: str = "none"  # "ksparse": keep the k = ratio * n largest |s| over all kernels
    ksparse_ratio: float = 0.01
    regularizer: str = "none"  # an activity penalty on the activation map (training.sparsity)
    regularizer_weight: float = 0.0
    target_rate: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel_sizes", tuple(int(m) for m in self.kernel_sizes))
        Activation(self.activation)
        DecoderMode(self.decoder_mode)
        checks = {
            "kernel sizes must be positive": min(self.kernel_sizes, default=0) >= 1,
            "loss must be mae or mse": self.loss in ("mae", "mse"),
            "init must be one of " + ", ".join(INITS): self.init in INITS,
            "sparsifier must be none or ksparse": self.sparsifier in ("none", "ksparse"),
            "regularizer must be none or one of " + ", ".join(REGULARIZER_KINDS): self.regularizer
            in ("none", *REGULARIZER_KINDS),
            "epochs, batch size and restarts must be positive": min(
                self.epochs, self.batch_size, self.restarts
            )
            >= 1,
            "lr must be positive": self.lr > 0,
            "select must be flithos or prdn_percent": self.select in ("flithos", "prdn_percent"),
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))
        self.penalty()  # validates weight and target rate

    def penalty(self) -> Regularizer | None:
        if self.regularizer == "none":
            return None
        return Regularizer(self.regularizer, self.regularizer_weight, self.target_rate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    model: SAN
    config: TrainConfig
    best_epoch: int
    restart: int
    validation: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(config: TrainConfig) -> SAN:
    sparsifier = KSparse(ratio=config.ksparse_ratio) if config.sparsifier == "ksparse" else None
    return SAN(
        config.kernel_sizes,
        config.activation,
        config.decoder_mode,
        config.border_tolerance,
        sparsifier,
    )


@torch.no_grad()
def evaluate(model: SAN, windows: WindowSet, chunk: int = 256) -> dict[str, float]:
    """Per-window paper metrics and PRDN (each from sancodec.metrics), averaged over windows;
    plus the fraction of exact zeros of the activation map and spikes per window."""
    model.eval()
    device = next(model.parameters()).device
    rows: list[tuple[float, float, float, float, int]] = []
    zeros = total = 0
    for lo in range(0, len(windows), chunk):
        x = windows.tensor(device)[lo : lo + chunk]  # (b, 1, n)
        x_hat, alpha = model(x)
        zeros += int((alpha == 0).sum())
        total += alpha.numel()
        for xi, yi, ai in zip(
            x[:, 0].cpu().numpy(), x_hat[:, 0].cpu().numpy(), alpha.cpu(), strict=True
        ):
            spikes = int(torch.count_nonzero(ai))
            inv_cr = metrics.inverse_compression_ratio(spikes, model.weight_count, xi.size)
            loss = metrics.normalized_loss(xi, yi)
            rows.append((loss, inv_cr, metrics.flithos(inv_cr, loss), metrics.prdn(xi, yi), spikes))
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    names = (
        "normalized_loss",
        "inverse_compression_ratio",
        "flithos",
        "prdn_percent",
        "spikes_per_window",
    )
    out = {
        name: float(table[:, i].mean()) if len(table) else math.nan for i, name in enumerate(names)
    }
    out["zero_fraction"] = zeros / total if total else math.nan
    return out


def _loss(
    config: TrainConfig, x: torch.Tensor, x_hat: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    loss = nnf.l1_loss(x_hat, x) if config.loss == "mae" else nnf.mse_loss(x_hat, x)
    penalty = config.penalty()
    return loss if penalty is None else loss + penalty(alpha)


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _epoch(
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: torch.Tensor,
    order: torch.Generator,
) -> float:
    """One pass; under data parallelism every rank takes an equal share of each global batch, so
    the averaged gradient is the single-process one."""
    rank, world = _rank_and_world()
    model.train()
    total = 0.0
    for batch in torch.split(torch.randperm(len(data), generator=order), config.batch_size):
        mine = batch[rank::world]
        x = data[mine.to(data.device)]  # (b, 1, L)
        x_hat, alpha = model(x)
        loss = _loss(config, x, x_hat, alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        total += float(loss.detach()) * len(mine)
    return total * world / len(data)


def _train_once(
    config: TrainConfig, train: WindowSet, val: WindowSet, restart: int, progress: bool
) -> FitResult:
    seed = config.seed + restart
    torch.manual_seed(seed)
    rank, world = _rank_and_world()
    if config.batch_size % world:
        raise ValueError(f"batch size {config.batch_size} must divide among {world} processes")
    device = resolve_device(config.device)
    model = build_model(config)
    initialize(model, config.init, train, seed, restart)
    model.to(device)
    wrapped: nn.Module = DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    data, order = train.tensor(device), torch.Generator().manual_seed(seed)
    best: tuple[float, int, dict[str, Any], dict[str, float]] | None = None
    history = []
    epochs = tqdm(
        range(config.epochs),
        desc=f"restart {restart}",
        disable=not progress or rank > 0,
        leave=False,
    )
    for epoch in epochs:
        train_loss = _epoch(config, wrapped, optimizer, data, order)
        scores = evaluate(model, val)
        history.append({"epoch": epoch, "train_loss": train_loss, **scores})
        epochs.set_postfix(val=f"{scores[config.select]:.3f}")
        if best is None or scores[config.select] < best[0]:
            best = (scores[config.select], epoch, copy.deepcopy(model.state_dict()), scores)
    assert best is not None  # epochs >= 1
    model.load_state_dict(best[2])  # the truly best epoch, not the last (san.md section 7)
    return FitResult(model, config, best[1], restart, best[3], history)


def fit(
    config: TrainConfig, train: WindowSet, val: WindowSet, *, progress: bool = False
) -> FitResult:
    """Train `restarts` times from different seeds and keep the best on validation."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"need training and validation windows, got {len(train)} and {len(val)}")
    results = []
    for restart in range(config.restarts):
        result = _train_once(config, train, val, restart, progress)
        log.info(
            "restart %d: best epoch %d, validation %s %.4f",
            restart, result.best_epoch, config.select, result.validation[config.select],
        )  # fmt: skip
        results.append(result)
    return min(results, key=lambda r: r.validation[config.select])
