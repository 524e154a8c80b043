from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sancodec import BlockCode, Codebook, ResidualSpec, block_bytes, decode, encode_block
from sancodec.blockcoder import BlockCoder
from sancodec.bundle import load_bundle
from sancodec.channelcoder import ChannelCoder
from sancodec.errors import InvalidConfigError, InvalidInputError, ProtocolError
from sancodec.metrics import bits_per_sample, prdn
from sancodec.streamcoder import (
    CodedChannel,
    CodingPlan,
    Spikes,
    StreamCoder,
    Window,
    code_stream,
)

MODELS = Path(__file__).resolve().parents[2] / "models"


def _template(x: np.ndarray) -> np.ndarray:
    """A unit-norm beat-like kernel: the 129 samples around the largest peak."""
    t = int(np.argmax(np.abs(x[200:-200]))) + 200
    w = x[t - 64 : t + 65] - x[t - 64 : t + 65].mean()
    return (w / np.linalg.norm(w)).astype(np.float32)


def detect(window: Window, codebook: Codebook, spacing: int = 150) -> Spikes:
    """Greedy peaks of |correlation| at least `spacing` apart, amplitude = the correlation."""
    ids, positions, amplitudes = [], [], []
    for k, w in enumerate(codebook.kernels):
        c = (w.size - 1) // 2
        s = np.correlate(np.pad(window.samples.astype(np.float64), (c, w.size - 1 - c)), w, "valid")
        taken = np.zeros(s.size, dtype=bool)
        for t in np.argsort(-np.abs(s), kind="stable"):
            if abs(s[t]) < 0.5 * np.abs(s).max() or taken[t]:
                continue
            ids.append(k), positions.append(t), amplitudes.append(s[t])
            taken[max(t - spacing, 0) : t + spacing + 1] = True
    return Spikes(np.array(ids, np.int32), np.array(positions, np.int64), np.array(amplitudes))


def run(plan: CodingPlan, x: np.ndarray, chunk: int) -> list[CodedChannel]:
    coder, out = ChannelCoder(plan), []
    for lo in range(0, x.size, chunk):
        for window in coder.push(x[lo : lo + chunk]):
            out += coder.accept(window, detect(window, plan.codebook))
    for window in coder.finish():
        out += coder.accept(window, detect(window, plan.codebook))
    out += coder.ready()
    assert coder.done
    return out


def _plan(x: np.ndarray, **kw: object) -> CodingPlan:
    """The shipped ecg model's tables and steps, a beat of x as the kernel; x in ADC counts (the
    plan's scale: 40 counts a model unit, as ecg's 0.2 mV at 200 counts/mV)."""
    tables = load_bundle(MODELS / "ecg" / "1").manifest.codebook.tables
    codebook = Codebook((_template(x),), residual=ResidualSpec("bior4.4", 5), tables=tables)
    options = {"codebook": codebook, "block_length": 1024, "context": 256, "scale": 40.0,
               "san_step_exp": tables.san_step_exp, "residual_step_exp": tables.residual_step_exp} | kw  # fmt: skip
    return CodingPlan(**options)  # type: ignore[arg-type]


def test_codes_do_not_depend_on_chunking(mitdb100: np.ndarray) -> None:
    x = mitdb100[:6000]
    plan = _plan(x)
    reference = [c.code for c in run(plan, x, x.size)]
    assert len(reference) == 6  # 5 full blocks and a short one
    for chunk in (1, 997, 5000):
        assert [c.code for c in run(plan, x, chunk)] == reference


def test_a_coded_block_keeps_its_own_samples_while_the_stream_goes_on(mitdb100: np.ndarray) -> None:
    """The coder appends chunks in place: a block already out still holds its samples."""
    x = mitdb100[:9000]
    plan = _plan(x)
    for chunk in (1, 180, 997):
        blocks = run(plan, x, chunk)
        assert len(blocks) == 9
        for c in blocks:
            assert np.array_equal(c.signal, x[c.start : c.start + c.signal.size] / plan.scale)


def test_a_block_coded_as_its_layer_choice_weighed_it_is_coded_afresh_alike(
    mitdb100: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no neighbour paints into a block, its code is the layer choice's alternative (not
    transformed and estimated again); that code equals coding the block afresh."""
    x = mitdb100
    plans = [_plan(x), _plan(x, residual_step_exp=_plan(x).residual_step_exp + 12)]
    reused = {"blocks": 0}
    code_chosen = BlockCoder._code_chosen

    def counted(self: BlockCoder, *args: Any) -> CodedChannel:
        reused["blocks"] += 1
        return code_chosen(self, *args)

    monkeypatch.setattr(BlockCoder, "_code_chosen", counted)
    kept = [run(plan, x, 997) for plan in plans]
    assert reused["blocks"] > 0
    choose = BlockCoder.choose

    def forgetful(self: BlockCoder, x: np.ndarray, layer: Any, start: int) -> Any:
        out = choose(self, x, layer, start)
        self._chosen.clear()
        return out

    monkeypatch.setattr(BlockCoder, "choose", forgetful)
    reused["blocks"] = 0
    for plan, blocks in zip(plans, kept, strict=True):
        afresh = run(plan, x, 997)
        assert [(c.code, c.payload) for c in afresh] == [(c.code, c.payload) for c in blocks]
        for a, b in zip(afresh, blocks, strict=True):
            assert np.array_equal(a.reconstruction, b.reconstruction)
    assert reused["blocks"] == 0
    assert any(c.code.san.spike_count for c in kept[0])  # some blocks keep their spikes


def test_the_coder_reconstructs_what_the_decoder_paints(mitdb100: np.ndarray) -> None:
    x = mitdb100[:9000]
    plan = _plan(x, choose_layers=False)  # every block keeps its spikes
    coded = run(plan, x, 700)
    blocks = [BlockCode(c.start, c.signal.size, (c.code,)) for c in coded]
    decoded = decode(blocks, plan.codebook, 1)[0]
    assert np.allclose(decoded, np.concatenate([c.reconstruction for c in coded]), atol=1e-9)
    assert np.array_equal(np.concatenate([c.signal for c in coded]), x / plan.scale)
    assert sum(c.code.san.spike_count for c in coded) > 20  # the beats are coded as spikes
    assert prdn(x, decoded * plan.scale) < 15  # the model's own step


def test_prdn_target_is_met_per_block(mitdb100: np.ndarray) -> None:
    x = mitdb100[:8192]
    for target in (5.0, 15.0):
        coded = run(_plan(x, max_prdn_percent=target), x, 4096)
        assert all(prdn(c.signal, c.reconstruction) <= target for c in coded)
    coarse = run(_plan(x, max_prdn_percent=15.0), x, 4096)
    fine = run(_plan(x, max_prdn_percent=5.0), x, 4096)
    assert sum(c.code.residual.levels.size for c in coarse) < sum(
        c.code.residual.levels.size for c in fine
    )  # type: ignore[union-attr]


@pytest.mark.parametrize("budget", [0.15, 0.3, 0.5, 1.5])
def test_a_bit_budget_is_never_exceeded(mitdb100: np.ndarray, budget: float) -> None:
    x = mitdb100[:20000]
    plan = _plan(x, max_bits_per_sample=budget)
    coded = run(plan, x, 8192)
    rates = []
    for c in coded:
        size = len(block_bytes(BlockCode(c.start, c.signal.size, (c.code,)), plan.codebook))
        rate = bits_per_sample(size, c.signal.size)
        if c.missed:  # only where nothing fits: the framing of a short last block, say
            assert c.code.residual is None
            assert c.code.san.spike_count == 0
            assert "cannot be met" in c.missed
        else:
            assert rate <= budget
            rates.append(rate)
    assert len(rates) >= len(coded) - 1
    assert np.mean(rates) > 0.6 * budget  # and it is used, not wasted


def test_an_impossible_budget_says_so_in_band(mitdb100: np.ndarray) -> None:
    x = mitdb100[:4096]
    coded = run(_plan(x, max_bits_per_sample=0.001), x, 4096)
    assert all("cannot be met" in c.missed for c in coded)


def test_the_payload_is_the_blocks_code(mitdb100: np.ndarray) -> None:
    x = mitdb100[:6000]
    plan = _plan(x)
    for c in run(plan, x, 1000):
        message = encode_block(BlockCode(c.start, c.signal.size, (c.code,)), plan.codebook)
        assert message.channels[0].payload == c.payload


def test_a_stream_target_steers_one_step_toward_the_pooled_prdn(mitdb100: np.ndarray) -> None:
    x = mitdb100[:20000]
    for target in (4.0, 12.0):
        coded = run(_plan(x, stream_prdn_percent=target), x, 5000)
        x_hat = np.concatenate([c.reconstruction for c in coded]) * 40.0
        steps = [c.code.residual.step_exp for c in coded if c.code.residual is not None]
        assert abs(prdn(x, x_hat) - target) < 0.25 * target
        assert max(abs(a - b) for a, b in itertools.pairwise(steps)) <= 2  # slowly


def test_spikes_are_left_out_of_blocks_where_they_do_not_pay(mitdb100: np.ndarray) -> None:
    """A flat kernel matches nothing useful: no block keeps its spikes."""
    x = mitdb100[:8192]
    flat = Codebook((np.ones(129, np.float32) / 11.4,), residual=ResidualSpec("bior4.4", 5))
    plan = _plan(x)
    plan = _plan(
        x, codebook=Codebook(flat.kernels, residual=flat.residual, tables=plan.codebook.tables)
    )
    assert sum(c.code.san.spike_count for c in run(plan, x, 8192)) == 0
    assert sum(c.code.san.spike_count for c in run(_plan(x), x, 8192)) > 0


def test_san_layer_only(mitdb100: np.ndarray) -> None:
    x = mitdb100[:4096]
    plan = CodingPlan(Codebook((_template(x),)), 1024, 256, 40.0, -19)
    coded = run(plan, x, 1000)
    assert all(c.code.residual is None for c in coded)
    assert prdn(x, 40.0 * np.concatenate([c.reconstruction for c in coded])) < 100


def test_protocol_and_plan_errors(mitdb100: np.ndarray) -> None:
    plan = _plan(mitdb100)
    coder = ChannelCoder(plan)
    windows = coder.push(mitdb100[:5000])
    with pytest.raises(ProtocolError, match="expected block 0"):
        coder.accept(windows[1], detect(windows[1], plan.codebook))
    coder.finish()
    with pytest.raises(ProtocolError, match="after the end"):
        coder.push(mitdb100[:10])
    with pytest.raises(InvalidConfigError, match="one quality target"):
        _plan(mitdb100, max_prdn_percent=5.0, max_bits_per_sample=1.0)
    with pytest.raises(InvalidConfigError, match="beyond one block"):
        _plan(mitdb100, block_length=32)


def test_a_stream_coder_gives_each_block_once_final_on_every_channel(mitdb100: np.ndarray) -> None:
    """Two channels in chunks of 997 frames: each block comes out once, with both channels, in
    order, and each channel's part is what that channel alone through a ChannelCoder gives."""
    plan = _plan(mitdb100)
    x = np.stack([mitdb100, -0.5 * mitdb100[::-1]])
    coder, blocks = StreamCoder([plan, plan]), []
    for lo in range(0, x.shape[1], 997):
        windows = coder.push(x[:, lo : lo + 997])
        found = [detect(w, plan.codebook) for w in coder.to_detect(windows)]
        blocks += coder.accept(windows, found)
    windows = coder.finish()
    blocks += coder.accept(windows, [detect(w, plan.codebook) for w in coder.to_detect(windows)])
    blocks += coder.ready()
    assert coder.done
    assert [b.start for b in blocks] == list(range(0, x.shape[1], plan.block_length))
    for c in range(2):
        alone = run(plan, x[c], x.shape[1])
        assert [b.parts[c].payload for b in blocks] == [p.payload for p in alone]
    whole = code_stream(StreamCoder([plan, plan]), x, lambda w: detect(w, plan.codebook))
    assert [b.message() for b in whole] == [b.message() for b in blocks]
    assert whole[0].code().channels[1].channel == 1


def test_a_stream_coder_refuses_wrong_shapes_and_spikes(mitdb100: np.ndarray) -> None:
    plan = _plan(mitdb100)
    coder = StreamCoder([plan, plan])
    with pytest.raises(InvalidInputError, match="2 channels"):
        coder.push(mitdb100[:100])
    windows = coder.push(np.stack([mitdb100[:5000]] * 2))
    spikes = [detect(w, plan.codebook) for w in coder.to_detect(windows)]
    with pytest.raises(ProtocolError, match="more spikes"):
        coder.accept(windows, [*spikes, spikes[0]])
    with pytest.raises(InvalidInputError, match="at least one channel"):
        StreamCoder([])
