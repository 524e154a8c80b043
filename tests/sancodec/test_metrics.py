from __future__ import annotations

import math

import numpy as np
import pytest

from sancodec import metrics
from sancodec.errors import InvalidInputError


@pytest.mark.parametrize(("n", "m"), [(1000, 1), (1000, 229), (178, 15)])
def test_identity_single_kernel_anchor(n: int, m: int) -> None:
    # Identity keeps every sample: A = n, so CR^-1 = 2 + m/n (san.md section 1).
    assert metrics.inverse_compression_ratio(n, m, n) == pytest.approx(2 + m / n)


def test_paper_table_consistency() -> None:
    # apnea-ecg top-k at m=74 keeps k=13; mitdb Ext-Pool m=10 keeps 100; MNIST top-k m=6 (2-D).
    assert metrics.inverse_compression_ratio(13, 74, 1000) == pytest.approx(0.10)
    assert metrics.inverse_compression_ratio(100, 10, 1000) == pytest.approx(0.21)
    mnist = metrics.inverse_compression_ratio(32, 12, 784, kernel_ndim=2)
    assert round(mnist, 2) == 0.14


def test_normalized_loss_hand_computed() -> None:
    assert metrics.normalized_loss([1, -2, 3], [1, 0, 2]) == pytest.approx(3 / 6)
    assert metrics.normalized_loss([0, 0], [0, 0]) == 0.0
    assert metrics.normalized_loss([0, 0], [0, 1]) == math.inf


def test_flithos_is_the_l2_norm() -> None:
    assert metrics.flithos(0.3, 0.4) == pytest.approx(0.5)
    assert metrics.flithos(0.24, 0.38) == pytest.approx(math.sqrt(0.24**2 + 0.38**2))


def test_prd_removes_the_adc_baseline() -> None:
    x = np.array([1025.0, 1023.0, 1030.0])
    x_hat = x + np.array([0.0, 1.0, 0.0])
    assert metrics.prd(x, x_hat, baseline=1024) == pytest.approx(100 / math.sqrt(38))
    # with the offset kept, the same error looks ~1000x smaller: the artefact we never quote
    assert metrics.prd(x, x_hat) < metrics.prd(x, x_hat, baseline=1024) / 100


def test_prdn_hand_computed() -> None:
    assert metrics.prdn([1, 2, 3, 4], [1, 2, 3, 5]) == pytest.approx(100 / math.sqrt(5))
    # PRDN ignores any offset of the signal
    assert metrics.prdn([101, 102, 103, 104], [101, 102, 103, 105]) == pytest.approx(
        100 / math.sqrt(5)
    )


def test_byte_metrics() -> None:
    assert metrics.bits_per_sample(100, 800) == 1.0
    raw = metrics.raw_bytes(800, 11)
    assert raw == 1100
    assert metrics.compression_ratio(raw, 100) == 11
    assert metrics.compression_ratio(raw, 0) == math.inf


def test_bad_arguments_are_named() -> None:
    with pytest.raises(InvalidInputError, match="shape"):
        metrics.prdn([1, 2], [1, 2, 3])
    with pytest.raises(InvalidInputError, match="at least one sample"):
        metrics.normalized_loss([], [])
    with pytest.raises(InvalidInputError, match="sample_count"):
        metrics.bits_per_sample(10, 0)
    with pytest.raises(InvalidInputError, match="sample_count"):
        metrics.inverse_compression_ratio(1, 1, 0)
