from __future__ import annotations

import numpy as np
import pytest
import torch

from sancodec import DecoderMode
from sancodec.decoder import paint_spikes
from training.data import make_windows, paper_splits, record_splits, time_splits
from training.init import data_kernels
from training.model import SAN
from training.train import TrainConfig, evaluate, fit


@pytest.mark.parametrize("mode", list(DecoderMode))
def test_model_decoder_matches_the_reference_decoder(mode: DecoderMode) -> None:
    torch.manual_seed(0)
    model = SAN((5, 8, 13), "extrema", mode)
    x = torch.randn(3, 1, 200)
    x_hat, alpha = model(x)
    assert x_hat.shape == (3, 1, 200)
    assert alpha.shape == (3, 3, 200)
    codebook = model.codebook()
    for b in range(3):
        kernels, positions = np.nonzero(alpha[b].detach().numpy())
        out = np.zeros(200)
        amplitudes = alpha[b].detach().numpy()[kernels, positions].astype(np.float64)
        paint_spikes(
            out, 0, codebook, kernels.astype(np.int32), positions.astype(np.int64), amplitudes
        )
        assert np.allclose(out, x_hat[b, 0].detach().numpy(), atol=1e-5)


def test_gradients_reach_every_kernel() -> None:
    model = SAN((7, 16), "topk_absolutes")
    x_hat, _ = model(torch.randn(2, 1, 128))
    x_hat.square().sum().backward()
    assert all(w.grad is not None and torch.any(w.grad != 0) for w in model.weights)


def test_windows_zscore_and_refuse_missing_samples() -> None:
    signal = np.arange(50.0)
    signal[23] = np.nan
    ws = make_windows(signal, 10)
    assert len(ws) == 4
    assert ws.dropped_missing == 1
    assert ws.start_samples.tolist() == [0, 10, 30, 40]
    assert np.allclose(ws.windows.mean(axis=1), 0, atol=1e-6)
    assert np.allclose(ws.windows.std(axis=1, ddof=1), 1, atol=1e-6)
    assert np.allclose(ws.windows[1] * ws.stds[1] + ws.means[1], signal[10:20])
    assert make_windows(np.ones(30), 10).dropped_flat == 3


def test_evaluation_uses_the_paper_metrics(mitdb100: np.ndarray) -> None:
    splits = paper_splits(mitdb100)
    model = SAN((10,), "extrema_pool_indices", "correlation")
    scores = evaluate(model, splits["test"])
    # Ext-Pool with m = 10 on 1000 samples keeps one spike per window: CR^-1 = (2*100 + 10)/1000
    assert scores["spikes_per_window"] == 100
    assert scores["inverse_compression_ratio"] == pytest.approx(0.21)
    assert scores["zero_fraction"] == pytest.approx(0.9)
    assert scores["flithos"] == pytest.approx(np.hypot(0.21, scores["normalized_loss"]), rel=0.05)


def test_short_training_lowers_the_loss_and_keeps_the_best_epoch(mitdb100: np.ndarray) -> None:
    splits = paper_splits(mitdb100)
    config = TrainConfig(kernel_sizes=(64,), activation="extrema", epochs=6, seed=1)
    before = evaluate(SAN((64,), "extrema"), splits["val"])
    result = fit(config, splits["train"], splits["val"])
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    best = min(result.history, key=lambda h: h["flithos"])
    assert result.best_epoch == best["epoch"]
    assert evaluate(result.model, splits["val"])["flithos"] == pytest.approx(best["flithos"])
    assert result.validation["flithos"] < before["flithos"]


def test_data_init_gives_unit_norm_beat_shaped_kernels(mitdb100: np.ndarray) -> None:
    ws = make_windows(mitdb100, 2048)
    kernels = data_kernels(ws.windows, (128, 128, 32), np.random.default_rng(0))
    assert [k.size for k in kernels] == [128, 128, 32]
    assert all(np.isclose(np.linalg.norm(k), 1) for k in kernels)
    assert not np.allclose(kernels[0], kernels[1])
    # centred on an extremum: the centre is the largest magnitude of the R-wave kernel
    assert max(abs(k[(k.size - 1) // 2]) for k in kernels[:2]) > 0.3


def test_config_refuses_bad_knobs() -> None:
    with pytest.raises(ValueError, match="loss must be mae or mse"):
        TrainConfig(loss="huber")
    with pytest.raises(ValueError, match="extrema_pol"):
        TrainConfig(activation="extrema_pol")


def test_splits_by_record_and_global_scale(mitdb100: np.ndarray) -> None:
    signals = {"a": mitdb100[:8192], "b": mitdb100[8192:12288] * 2, "c": mitdb100[12288:16384]}
    splits = record_splits(
        signals, {"train": ["a"], "val": ["b"], "test": ["c"]}, 1024, normalization="global"
    )
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 4, 4]
    scale = float(np.std(signals["a"]))
    assert np.allclose(splits["train"].stds, scale)
    assert np.allclose(splits["val"].windows.std(), 2 * splits["test"].windows.std(), rtol=0.5)
    with pytest.raises(ValueError, match="unknown"):
        record_splits(signals, {"train": ["z"], "val": ["b"], "test": ["c"]}, 1024)


def test_global_normalization_keeps_one_scale(mitdb100: np.ndarray) -> None:
    splits = time_splits(mitdb100, 2048, normalization="global")
    stds = np.concatenate([splits[s].stds for s in ("train", "val", "test")])
    assert np.allclose(stds, stds[0])
    assert np.allclose(splits["test"].windows.mean(axis=1), 0, atol=1e-5)


def test_same_seed_same_model(mitdb100: np.ndarray) -> None:
    splits = paper_splits(mitdb100)
    config = TrainConfig(
        kernel_sizes=(16, 16), activation="topk_absolutes", epochs=2, init="data", seed=3
    )
    one = fit(config, splits["train"], splits["val"]).model.state_dict()
    two = fit(config, splits["train"], splits["val"]).model.state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_ksparse_and_regularizer_options_train(mitdb100: np.ndarray) -> None:
    splits = paper_splits(mitdb100)
    config = TrainConfig(kernel_sizes=(32, 32), sparsifier="ksparse", ksparse_ratio=0.02, init="fan_in",
                         regularizer="l1", regularizer_weight=1e-3, epochs=2)  # fmt: skip
    result = fit(config, splits["train"], splits["val"])
    assert result.validation["spikes_per_window"] == pytest.approx(20 * 2)  # k per kernel row
    assert result.validation["zero_fraction"] == pytest.approx(1 - 40 / 2000)
