"""A StreamCoder that fits its own kernels (sancodec.kernelupdates): checks fall at sample
positions, so codes and updates never depend on chunking, and every decoder paints each block
with the kernels it was coded with."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sancodec import decode
from sancodec.bundle import load_bundle
from sancodec.encodergraph import kernel_swapper
from sancodec.errors import InvalidConfigError, InvalidInputError, ProtocolError
from sancodec.kernelupdates import Adapter
from sancodec.payload import block_bytes, parse_block
from sancodec.plan import CodingPlan
from sancodec.streamcoder import CodedBlock, StreamCoder, code_stream

BUNDLE = load_bundle(Path(__file__).resolve().parents[2] / "models" / "ecg" / "1")
# the shipped ecg, in blocks of 1024 checked every 8 blocks: two checks in 20000 samples
PLAN = dataclasses.replace(CodingPlan.from_manifest(BUNDLE.manifest), block_length=1024)
ADAPT = 8192


@pytest.fixture(scope="module")
def signal(mitdb100: np.ndarray) -> np.ndarray:
    return mitdb100[None, :] / 200.0  # mV


def _chunked(x: np.ndarray, chunk: int) -> list[CodedBlock]:
    adapter = Adapter(PLAN, kernel_swapper(BUNDLE, threads=1))
    coder, out = StreamCoder([PLAN], ADAPT), []

    def take(windows: list) -> None:
        while True:
            out.extend(coder.accept(windows, [adapter.spikes(w) for w in coder.to_detect(windows)]))
            request = coder.fit_due()
            if request is None:
                return
            windows = coder.update(adapter.refit(request))

    for lo in range(0, x.shape[1], chunk):
        take(coder.push(x[:, lo : lo + chunk]))
    take(coder.finish())
    out += coder.ready()
    assert coder.done
    return out


def test_updates_and_codes_do_not_depend_on_chunking(signal: np.ndarray) -> None:
    adapter = Adapter(PLAN, kernel_swapper(BUNDLE, threads=1))
    whole = code_stream(StreamCoder([PLAN], ADAPT), signal, adapter.spikes, adapter.refit)
    messages = [b.message() for b in whole]
    updates = [b.parts[0].index for b in whole if b.kernels]
    assert updates
    assert updates[0] == ADAPT // PLAN.block_length
    assert all(i % 8 == 0 for i in updates)  # only at checks
    for chunk in (1, 997, 5000):
        assert [b.message() for b in _chunked(signal, chunk)] == messages, chunk
    # each block decodes with the kernels it was coded with, from its bytes alone
    codebook, blocks = PLAN.codebook, []
    for message in messages:
        data = message.SerializeToString()
        block = parse_block(data, codebook)  # the stream's codebook before it: the update applies
        assert block_bytes(block, codebook) == data
        codebook = codebook.updated(block.kernels)
        blocks.append(block)
    decoded = decode(blocks, PLAN.codebook, 1)[0]
    painted = np.concatenate([b.parts[0].reconstruction for b in whole])
    np.testing.assert_allclose(decoded, painted, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n", [2000, ADAPT])
def test_a_stream_that_ends_by_its_first_check_is_coded_whole(signal: np.ndarray, n: int) -> None:
    """No check falls due where no block would use its answer (at most ADAPT samples)."""
    coder = StreamCoder([PLAN], ADAPT)
    adapter = Adapter(PLAN, kernel_swapper(BUNDLE, threads=1))
    blocks = code_stream(coder, signal[:, :n], adapter.spikes)  # no refit: a check due raises
    assert sum(b.sample_count for b in blocks) == n
    assert coder.done


def test_bad_adaptation_settings_and_calls_are_refused() -> None:
    with pytest.raises(InvalidConfigError, match="whole blocks"):
        StreamCoder([PLAN], 1000)
    with pytest.raises(InvalidConfigError, match="residual layer"):
        StreamCoder([dataclasses.replace(PLAN, codebook=dataclasses.replace(PLAN.codebook, residual=None),
                                         residual_step_exp=None)], ADAPT)  # fmt: skip
    with pytest.raises(InvalidConfigError, match="bit budget"):
        StreamCoder([dataclasses.replace(PLAN, max_bits_per_sample=0.5)], ADAPT)
    with pytest.raises(ProtocolError, match="no check"):
        StreamCoder([PLAN], ADAPT).update(None)
    longest = max(w.size for w in PLAN.codebook.kernels)
    with pytest.raises(InvalidInputError, match="no longer than"):
        PLAN.codebook.updated((np.ones(longest + 1, np.float32),))
    assert PLAN.codebook.updated(()) is PLAN.codebook
    shorter = PLAN.codebook.updated((np.full(3, 0.1, np.float32),))  # its kernels, the rest kept
    assert [w.tolist() for w in shorter.kernels] == [np.float32(0.1).repeat(3).tolist()]
    assert (shorter.decoder_mode, shorter.residual, shorter.tables) == (
        PLAN.codebook.decoder_mode,
        PLAN.codebook.residual,
        PLAN.codebook.tables,
    )
