"""One Decode stream: its config, its decoder, and the chunks of samples it answers."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from sancodec import Codebook, StreamingDecoder, decode_block
from sancodec.errors import CorruptCodeError, InvalidConfigError
from sancodec.v1 import codec_pb2, codes_pb2
from server.channels import check_channel_count, output_channels
from server.config import ServerConfig
from server.repository import LoadedModel, ModelRepository
from server.telemetry import Telemetry

__all__ = ["DecodeSession"]

FRAME_SLACK_BYTES = 4096  # a decoded chunk's message beyond its samples
# A caller's own codebook (a .sanc header's, e.g. --adapt's blocks of 8 model blocks) names no
# block length: its blocks may hold this many samples, and this many values over all channels.
MAX_CUSTOM_BLOCK, MAX_CUSTOM_BLOCK_VALUES = 1 << 16, 1 << 22


class DecodeSession:
    """Decodes one stream's blocks; each block is bounded by the model's block length and
    painting work before anything is allocated, and its samples leave in chunks under the
    send limit."""

    def __init__(self, config: codec_pb2.DecodeConfig, repository: ModelRepository,
                 telemetry: Telemetry, settings: ServerConfig) -> None:  # fmt: skip
        check_channel_count(config.channel_count)
        scale: float | None
        if config.HasField("codebook"):
            codebook, units, scale = (
                _custom_codebook(config.codebook, repository.models()),
                "",
                None,
            )
            self.key = ("custom", "0")
            self.max_block = min(MAX_CUSTOM_BLOCK, MAX_CUSTOM_BLOCK_VALUES // config.channel_count)
        else:
            model = repository.get(config.model, config.model_version)
            m = model.manifest
            codebook, units, scale = m.codebook, m.normalization.units, m.normalization.scale
            self.key, self.max_block = model.key, m.block_length
        self.channels = output_channels(config.channels, config.channel_count, units, scale)
        self.decoder = StreamingDecoder(codebook, config.channel_count)
        self.telemetry = telemetry
        frame_bytes = 4 * config.channel_count
        self.frames_per_chunk = max(
            1, (settings.max_message_bytes - FRAME_SLACK_BYTES) // frame_bytes
        )

    def push(self, message: codes_pb2.EncodedBlock) -> list[codec_pb2.DecodeResponse]:
        """Decode one block; CorruptCodeError names what is wrong with it."""
        started = time.perf_counter()
        if message.sample_count > self.max_block:
            raise CorruptCodeError(
                f"{message.sample_count} samples, more than the block length {self.max_block} "
                "this stream allows (the model's, or the bound for a codebook of its own)"
            )
        block = decode_block(message, self.decoder.codebook)
        start, samples = self.decoder.push(block)
        self.telemetry.observe_decoded_block(
            *self.key, block.sample_count, time.perf_counter() - started
        )
        return self._chunks(start, samples)

    def finish(self) -> list[codec_pb2.DecodeResponse]:
        return self._chunks(*self.decoder.finish())

    def _chunks(
        self, start: int, samples: npt.NDArray[np.float64]
    ) -> list[codec_pb2.DecodeResponse]:
        physical = np.stack(
            [c.to_physical(row) for c, row in zip(self.channels, samples, strict=True)]
        ).astype("<f4")
        if not np.all(np.isfinite(physical)):
            raise CorruptCodeError("the block decodes to samples beyond float32 range")
        out = []
        step = self.frames_per_chunk
        for lo in range(0, max(physical.shape[1], 1), step):
            part = physical[:, lo : lo + step]
            out.append(codec_pb2.DecodeResponse(chunk=codec_pb2.DecodedChunk(
                start_sample=start + lo, sample_count=part.shape[1], samples=part.T.tobytes()
            )))  # fmt: skip
        return out


def _custom_codebook(message: codes_pb2.Codebook, models: list[LoadedModel]) -> Codebook:
    """A caller's codebook, whose kernels may be no longer than any loaded bundle's."""
    try:
        codebook = Codebook.from_proto(message)
    except CorruptCodeError as exc:
        raise InvalidConfigError(f"the config's codebook is invalid: {exc}") from None
    allowed = max((w.size for m in models for w in m.manifest.codebook.kernels), default=1)
    longest = max(w.size for w in codebook.kernels)
    if longest > allowed:
        raise InvalidConfigError(
            f"the config's codebook has a kernel of {longest} taps; this server's models "
            f"allow at most {allowed}"
        )
    return codebook
