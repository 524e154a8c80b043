"""Tests of the literature sparsity options (k-sparse with sensitivity, regularizers, zero fraction)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from training.sparsity import (
    KSparse,
    Regularizer,
    fan_in_init,
    kl_penalty,
    mean_target_penalty,
    zero_fraction,
)

# (B=2, K=1, n=3) with hand-computable sums.
H_SMALL = [[[1.0, -2.0, 0.0]], [[0.0, 3.0, 0.0]]]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _kl(p: float, rho: float) -> float:
    return p * math.log(p / rho) + (1 - p) * math.log((1 - p) / (1 - rho))


def _drifted(steps: int, s_max: float, tau: float) -> float:
    """Sensitivity after ``steps`` unselected steps from 1: closed form of s += (s_max - s)/tau."""
    return s_max - (s_max - 1.0) * (1.0 - 1.0 / tau) ** steps


# --- KSparse selection -------------------------------------------------------------------


def test_ksparse_keeps_exactly_k_signed_values_per_row() -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(4, 3, 50, generator=gen, dtype=torch.float64)  # (B, K, n)
    for training in (True, False):
        layer = KSparse(k=7).train(training)
        h = layer(s)
        kept = h != 0
        assert torch.equal(kept.sum(dim=-1), torch.full((4, 3), 7))
        assert torch.equal(h[kept], s[kept])  # signed values preserved
        # The kept entries are the 7 largest |s| of every row.
        thresh = s.abs().topk(7, dim=-1).values[..., -1:]  # (B, K, 1)
        assert torch.equal(kept, s.abs() >= thresh)
        assert bool((s[kept] < 0).any())  # negative values do get selected by magnitude


def test_ksparse_raw_value_selection_drops_large_negatives() -> None:
    s = torch.tensor([[[-9.0, 1.0, 2.0, -0.5, 3.0]]])
    h = KSparse(k=2, by_magnitude=False).eval()(s)
    assert h.tolist() == [[[0.0, 0.0, 2.0, 0.0, 3.0]]]
    h_mag = KSparse(k=2).eval()(s)
    assert h_mag.tolist() == [[[-9.0, 0.0, 0.0, 0.0, 3.0]]]


def test_ksparse_k_from_ratio_follows_n() -> None:
    layer = KSparse(ratio=0.25)
    gen = torch.Generator().manual_seed(1)
    for n, k in ((8, 2), (20, 5), (23, 5), (2, 1), (1, 1)):
        assert layer.k_for(n) == k
        h = layer(torch.randn(2, 3, n, generator=gen))
        assert torch.equal((h != 0).sum(dim=-1), torch.full((2, 3), k))
    assert layer.sensitivity.shape == (3, 23)  # grew to the longest n seen
    assert KSparse(k=10).k_for(4) == 4  # never more than n


def test_ksparse_rejects_bad_configuration() -> None:
    for kwargs in (
        {},
        {"k": 2, "ratio": 0.5},
        {"k": 0},
        {"ratio": 0.0},
        {"ratio": 1.5},
        {"k": 1, "s_max": 0.5},
        {"k": 1, "tau": 0.5},
    ):
        with pytest.raises(ValueError, match=r"k|ratio|s_max|tau"):
            KSparse(**kwargs)
    layer = KSparse(k=1)
    layer(torch.randn(1, 2, 5))
    with pytest.raises(ValueError, match="K=2"):
        layer(torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(5))


# --- sensitivity dynamics --------------------------------------------------------------


def test_sensitivity_one_unselected_step_from_one() -> None:
    layer = KSparse(k=1)  # defaults s_max=10, tau=100
    layer(torch.tensor([[[5.0, 1.0, 0.5]]]))
    expected = 1.0 + (10.0 - 1.0) / 100.0  # 1.09
    assert layer.sensitivity.shape == (1, 3)
    assert layer.sensitivity[0].tolist() == pytest.approx([1.0, expected, expected])


def test_sensitivity_approaches_s_max_and_follows_closed_form() -> None:
    layer = KSparse(k=1, s_max=4.0, tau=3.0)
    s = torch.tensor([[[5.0, 1.0]]])
    for _ in range(10):
        layer(s)
    assert layer.sensitivity[0, 1].item() == pytest.approx(_drifted(10, 4.0, 3.0))
    for _ in range(90):
        layer(s)
    assert layer.sensitivity[0, 1].item() == pytest.approx(4.0, abs=1e-6)
    assert layer.sensitivity[0, 0].item() == 1.0  # selected every step


def test_selected_gradient_is_scaled_by_sensitivity_before_reset() -> None:
    steps = 6
    layer = KSparse(k=1, s_max=10.0, tau=100.0)
    for _ in range(steps):  # node 1 unselected for `steps` steps
        layer(torch.tensor([[[5.0, 1.0, 0.5]], [[4.0, 0.1, 0.2]]]))
    before = _drifted(steps, 10.0, 100.0)
    assert layer.sensitivity[0, 1].item() == pytest.approx(before)
    # Now node 1 wins in example 0 and node 0 wins in example 1.
    s = torch.tensor([[[0.1, -5.0, 0.2]], [[3.0, 0.1, 0.2]]], requires_grad=True)
    h = layer(s)
    upstream = torch.tensor([[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]])
    h.backward(upstream)
    assert s.grad is not None
    expected = [[[0.0, 2.0 * before, 0.0]], [[4.0 * 1.0, 0.0, 0.0]]]
    assert s.grad.tolist() == [[pytest.approx(row) for row in ex] for ex in expected]
    # Node 1 was selected (in one example) so it resets; node 2 keeps drifting.
    assert layer.sensitivity[0].tolist() == pytest.approx([1.0, 1.0, _drifted(steps + 1, 10, 100)])


def test_eval_mode_does_not_change_sensitivity_and_gradient_is_plain() -> None:
    layer = KSparse(k=1)
    layer(torch.tensor([[[5.0, 1.0, 0.5]]]))
    saved = layer.sensitivity.clone()
    layer.eval()
    s = torch.tensor([[[0.1, 5.0, 0.5]]], requires_grad=True)
    layer(s).sum().backward()
    assert torch.equal(layer.sensitivity, saved)
    assert s.grad is not None
    assert s.grad.tolist() == [[[0.0, 1.0, 0.0]]]


def test_sensitivity_buffer_grows_and_round_trips_through_state_dict() -> None:
    layer = KSparse(k=1)
    layer(torch.tensor([[[5.0, 1.0]]]))
    layer(torch.tensor([[[5.0, 1.0, 0.5, 0.1]]]))
    grown = layer.sensitivity
    assert grown.shape == (1, 4)
    # Position 1 drifted twice; positions 2-3 are new (start at 1) and drifted once.
    assert grown[0].tolist() == pytest.approx([1.0, _drifted(2, 10, 100), 1.09, 1.09])
    fresh = KSparse(k=1)
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh.sensitivity, grown)
    fresh.reset_sensitivity()
    assert torch.equal(fresh.sensitivity, torch.ones(1, 4))


# --- fan-in initialization ------------------------------------------------------------


def test_fan_in_init_std_is_one_over_sqrt_k() -> None:
    torch.manual_seed(0)
    w = torch.zeros(1000, 1000)
    ptr = w.data_ptr()
    fan_in_init(w, 16)
    assert w.data_ptr() == ptr  # in place
    assert w.std().item() == pytest.approx(0.25, rel=0.01)
    assert abs(w.mean().item()) < 1e-3
    with pytest.raises(ValueError, match="k must be"):
        fan_in_init(w, 0)


# --- regularizers ---------------------------------------------------------------------


def test_regularizers_match_hand_computed_values() -> None:
    h = torch.tensor(H_SMALL, dtype=torch.float64)  # (B=2, K=1, n=3)
    assert Regularizer("l1", 1.0)(h).item() == pytest.approx((3 + 3) / 2)
    assert Regularizer("l2", 1.0)(h).item() == pytest.approx((1 + 4 + 9) / 2)
    student = (math.log(2) + math.log(5) + math.log(10)) / 2
    assert Regularizer("student_t", 1.0)(h).item() == pytest.approx(student)
    rho = (_sigmoid(1) + _sigmoid(-2) + _sigmoid(3) + 3 * 0.5) / 6
    assert Regularizer("kl", 1.0, 0.05)(h).item() == pytest.approx(_kl(0.05, rho))
    mean_target = (0.05 - 0.5) ** 2 + (0.05 - 0.5) ** 2 + (0.05 - 0.0) ** 2
    assert Regularizer("mean_target", 1.0, 0.05)(h).item() == pytest.approx(mean_target)
    assert Regularizer("l1", 0.5)(h).item() == pytest.approx(1.5)  # weight multiplies


def test_kl_is_per_kernel_and_sums_over_kernels() -> None:
    h = torch.tensor([[[0.0, 2.0], [-1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])  # (B=2, K=2, n=2)
    rho0 = (0.5 + _sigmoid(2) + _sigmoid(1) + 0.5) / 4
    rho1 = (_sigmoid(-1) + 3 * 0.5) / 4
    assert kl_penalty(h, 0.2).item() == pytest.approx(_kl(0.2, rho0) + _kl(0.2, rho1), rel=1e-5)


def test_kl_and_mean_target_vanish_at_target() -> None:
    p = 0.05
    h_logit = torch.full((3, 2, 5), math.log(p / (1 - p)), dtype=torch.float64)
    assert kl_penalty(h_logit, p).item() == pytest.approx(0.0, abs=1e-12)
    h_mean = torch.tensor([[[0.0, 0.1]], [[0.1, 0.0]]], dtype=torch.float64)  # batch means 0.05
    assert mean_target_penalty(h_mean, p).item() == pytest.approx(0.0, abs=1e-15)
    assert kl_penalty(torch.zeros(2, 1, 3), p).item() > 0


def test_kl_clamps_saturated_rates() -> None:
    h = torch.full((2, 1, 3), 100.0)  # sigmoid == 1 exactly in float32
    value = kl_penalty(h, 0.05)
    assert math.isfinite(value.item())
    assert value.item() == pytest.approx(_kl(0.05, 1 - 1e-6), rel=1e-3)


@pytest.mark.parametrize("kind", ["l1", "l2", "student_t", "kl", "mean_target"])
def test_regularizer_gradients_exist(kind: str) -> None:
    h = torch.tensor([[[1.0, -2.0, 0.5]], [[0.3, 3.0, -0.7]]], requires_grad=True)
    out = Regularizer(kind, 0.1)(h)
    assert out.dim() == 0
    out.backward()
    assert h.grad is not None
    assert bool(torch.isfinite(h.grad).all())
    assert bool((h.grad != 0).any())


def test_regularizer_validation() -> None:
    with pytest.raises(ValueError, match="'l3'"):
        Regularizer("l3", 1.0)
    with pytest.raises(ValueError, match=r"-1\.0"):
        Regularizer("l1", -1.0)
    with pytest.raises(ValueError, match="nan"):
        Regularizer("l2", float("nan"))
    with pytest.raises(ValueError, match=r"\(0, 1\).*0\.0"):
        Regularizer("kl", 1.0, 0.0)
    with pytest.raises(ValueError, match=r"1\.5"):
        Regularizer("mean_target", 1.0, 1.5)
    assert Regularizer("mean_target", 1.0, 0.0).target_rate == 0.0  # allowed outside KL
    reg = Regularizer("l1", 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.weight = 2.0  # type: ignore[misc]


# --- zero fraction --------------------------------------------------------------------


def test_zero_fraction_hand_computed() -> None:
    assert zero_fraction(torch.tensor(H_SMALL)) == pytest.approx(3 / 6)
    assert zero_fraction(torch.tensor([[-0.0, 1e-30, float("nan"), 0.0]])) == 0.5
    assert zero_fraction(torch.zeros(2, 3)) == 1.0
    assert zero_fraction(KSparse(k=2).eval()(torch.randn(4, 3, 10))) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="empty"):
        zero_fraction(torch.zeros(0))
