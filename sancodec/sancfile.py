"""The .sanc file: a signature, a file id, then records (header, blocks, trailer) whose CRCs bind
them to that id; docs/sanc-format.md."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from sancodec.codes import BlockCode
from sancodec.decoder import check_block, decode
from sancodec.errors import CorruptCodeError, CorruptFileError, InvalidInputError
from sancodec.header import StreamHeader
from sancodec.payload import block_bytes, decode_block
from sancodec.v1 import codes_pb2

__all__ = ["SancContents", "SancReader", "SancWriter", "decode_file", "read_sanc"]

SIGNATURE = b"\x89SANC\r\n\x1a\n"
HEADER, BLOCK, TRAILER = b"H", b"B", b"T"
FILE_ID_BYTES = 16  # random per file; seeds every record's CRC, so a splice fails its checksum
PREAMBLE_BYTES = len(SIGNATURE) + FILE_ID_BYTES
MAX_RECORD_BYTES = 64 << 20
MAX_BLOCK_LENGTH = 1 << 20  # samples per channel of one block
MAX_BLOCK_VALUES = 1 << 23  # block length x channels: what one block may make a decoder hold


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


class SancWriter:
    """Streams blocks into a .sanc file; `close` writes the trailer (an error skips it, so an
    interrupted file reads as truncated and `salvage` still recovers every block written)."""

    def __init__(
        self, target: str | Path | BinaryIO, header: StreamHeader, file_id: bytes | None = None
    ) -> None:
        self.header = header
        self.file_id = os.urandom(FILE_ID_BYTES) if file_id is None else file_id
        if len(self.file_id) != FILE_ID_BYTES:
            raise InvalidInputError(f"a file id is {FILE_ID_BYTES} bytes")
        _check_header(header, InvalidInputError)
        self._codebook = header.codebook  # the stream's, as its blocks' updates leave it
        self._seed = zlib.crc32(self.file_id)
        self._owns = isinstance(target, str | Path)
        self._file: BinaryIO = open(target, "wb") if isinstance(target, str | Path) else target  # noqa: SIM115
        self._crcs: list[int] = []
        self._samples = 0
        self._code_bytes = 0
        self._closed = False
        self._file.write(SIGNATURE + self.file_id)
        self._record(HEADER, header.to_proto().SerializeToString(deterministic=True))

    def _record(self, kind: bytes, payload: bytes) -> int:
        framed = kind + _varint(len(payload)) + payload
        crc = zlib.crc32(framed, self._seed)
        self._file.write(framed + struct.pack("<I", crc))
        return crc

    def write(self, block: BlockCode) -> None:
        if self._closed:
            raise InvalidInputError("this .sanc writer is closed")
        if block.start_sample != self._samples:
            raise InvalidInputError(
                f"block starts at {block.start_sample}, expected {self._samples} (contiguous blocks)"
            )
        if block.sample_count > self.header.block_length:
            raise InvalidInputError(
                f"block of {block.sample_count} samples is longer than the header's "
                f"block length {self.header.block_length}"
            )
        if block.channels and block.channels[-1].channel >= self.header.channel_count:
            raise InvalidInputError(
                f"block codes channel {block.channels[-1].channel} of a "
                f"{self.header.channel_count}-channel stream"
            )
        payload = block_bytes(block, self._codebook)
        self._codebook = self._codebook.updated(block.kernels)
        self._crcs.append(self._record(BLOCK, payload))
        self._samples = block.end_sample
        self._code_bytes += len(payload)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        trailer = codes_pb2.SancTrailer(
            block_count=len(self._crcs),
            sample_count=self._samples,
            code_bytes=self._code_bytes,
            block_crc32=self._crcs,
        )
        self._record(TRAILER, trailer.SerializeToString(deterministic=True))
        self._finish()

    def _finish(self) -> None:
        self._file.flush()
        if self._owns:
            self._file.close()

    def __enter__(self) -> SancWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        elif not self._closed:
            self._closed = True
            self._finish()


@dataclass(frozen=True)
class SancContents:
    header: StreamHeader
    blocks: tuple[BlockCode, ...]
    trailer: codes_pb2.SancTrailer | None
    error: CorruptFileError | None  # set only when salvaging a damaged file

    @property
    def sample_count(self) -> int:
        return self.blocks[-1].end_sample if self.blocks else 0


class SancReader:
    """Reads and verifies a .sanc file; iterate `blocks()` to stream it."""

    def __init__(self, source: str | Path | bytes) -> None:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        self._data = memoryview(data)
        if bytes(self._data[: len(SIGNATURE)]) != SIGNATURE:
            raise CorruptFileError("not a .sanc file (bad signature)")
        if len(self._data) < PREAMBLE_BYTES:
            raise CorruptFileError("file ends in its preamble (truncated)")
        self.file_id = bytes(self._data[len(SIGNATURE) : PREAMBLE_BYTES])
        self._seed = zlib.crc32(self.file_id)
        self._offset = PREAMBLE_BYTES
        self.trailer: codes_pb2.SancTrailer | None = None
        kind, payload, _ = self._next_record(None)
        if kind != HEADER:
            raise CorruptFileError("the file does not start with a header record")
        try:
            message = codes_pb2.SancHeader.FromString(payload)
            self.header = StreamHeader.from_proto(message)
        except (DecodeError, CorruptCodeError) as exc:
            raise CorruptFileError(f"header is invalid: {exc}") from None
        _check_header(self.header, CorruptFileError)
        self._codebook = self.header.codebook  # the stream's, as the blocks read so far leave it

    def _next_record(self, block_index: int | None) -> tuple[bytes, bytes, int]:
        where = "header" if block_index is None else f"block {block_index}"
        data, start = self._data, self._offset
        if start >= len(data):
            raise CorruptFileError(f"file ends before {where} (truncated)", block_index=block_index)
        length, pos, shift = 0, start + 1, 0
        while True:
            if pos >= len(data) or shift > 35:
                raise CorruptFileError(
                    f"record length of {where} is damaged", block_index=block_index
                )
            byte = data[pos]
            length |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not byte & 0x80:
                break
        end = pos + length
        if length > MAX_RECORD_BYTES or end + 4 > len(data):
            raise CorruptFileError(
                f"{where} runs past the end of the file (truncated or damaged length)",
                block_index=block_index,
            )
        crc = zlib.crc32(data[start:end], self._seed)
        if struct.unpack_from("<I", data, end)[0] != crc:
            raise CorruptFileError(
                f"{where} fails its checksum (damaged, or spliced from another file)",
                block_index=block_index,
            )
        self._offset = end + 4
        return bytes(data[start : start + 1]), bytes(data[pos:end]), crc

    def blocks(self) -> Iterator[BlockCode]:
        """Yield verified blocks in order; raises CorruptFileError naming the first bad one."""
        crcs: list[int] = []
        expected_start = 0
        while True:
            index = len(crcs)
            kind, payload, crc = self._next_record(index)
            if kind == TRAILER:
                self._check_trailer(payload, crcs, expected_start)
                return
            if kind != BLOCK:
                raise CorruptFileError(
                    f"block {index} has unknown record type {kind!r}", block_index=index
                )
            try:
                block = self._parse(payload)
            except CorruptCodeError as exc:
                raise CorruptFileError(f"block {index}: {exc}", block_index=index) from None
            if block.start_sample != expected_start:
                raise CorruptFileError(
                    f"block {index} starts at sample {block.start_sample}, expected {expected_start}",
                    block_index=index,
                )
            crcs.append(crc)
            expected_start = block.end_sample
            yield block

    def _parse(self, payload: bytes) -> BlockCode:
        """A block checked against the header's bounds before anything is sized by it."""
        message = codes_pb2.EncodedBlock()
        try:
            message.ParseFromString(payload)
        except DecodeError as exc:
            raise CorruptCodeError(f"encoded block does not parse: {exc}") from None
        if message.sample_count > self.header.block_length:
            raise CorruptCodeError(
                f"{message.sample_count} samples, more than the header's block length "
                f"{self.header.block_length}"
            )
        block = decode_block(message, self._codebook, len(payload))
        self._codebook = self._codebook.updated(block.kernels)
        check_block(block, self._codebook, self.header.channel_count)
        return block

    def _check_trailer(self, payload: bytes, crcs: list[int], samples: int) -> None:
        try:
            trailer = codes_pb2.SancTrailer.FromString(payload)
        except DecodeError:
            raise CorruptFileError("trailer does not parse") from None
        if list(trailer.block_crc32) != crcs or trailer.sample_count != samples:
            raise CorruptFileError(
                f"trailer lists {trailer.block_count} blocks / {trailer.sample_count} samples, "
                f"the file holds {len(crcs)} / {samples} (blocks missing or reordered)",
                block_index=len(crcs),
            )
        if self._offset != len(self._data):
            raise CorruptFileError(
                f"{len(self._data) - self._offset} unexpected bytes after the trailer"
            )
        self.trailer = trailer


def _check_header(header: StreamHeader, error: type[InvalidInputError | CorruptFileError]) -> None:
    """Bounds on what a header can make a decoder allocate (check_block bounds the painting)."""
    n, channels = header.block_length, header.channel_count
    if n > MAX_BLOCK_LENGTH or n * channels > MAX_BLOCK_VALUES:
        raise error(
            f"header: blocks of {n} samples x {channels} channels are beyond this reader's "
            f"bounds ({MAX_BLOCK_LENGTH} samples, {MAX_BLOCK_VALUES} values)"
        )


def read_sanc(source: str | Path | bytes, *, salvage: bool = False) -> SancContents:
    """Read a whole file; with salvage, a damaged file gives its intact blocks and the error."""
    reader = SancReader(source)
    blocks: list[BlockCode] = []
    try:
        for block in reader.blocks():
            blocks.append(block)
    except CorruptFileError as exc:
        if not salvage:
            raise
        return SancContents(reader.header, tuple(blocks), None, exc)
    return SancContents(reader.header, tuple(blocks), reader.trailer, None)


def decode_file(
    source: str | Path | bytes, *, salvage: bool = False, physical: bool = True
) -> tuple[StreamHeader, npt.NDArray[np.float64]]:
    """Decode a .sanc file offline to (channels, n) samples, in physical units by default."""
    contents = read_sanc(source, salvage=salvage)
    header = contents.header
    try:
        samples = decode(contents.blocks, header.codebook, header.channel_count)
    except CorruptCodeError as exc:
        raise CorruptFileError(str(exc)) from None
    out = header.to_physical(samples) if physical else samples
    if not np.all(np.isfinite(out.astype(np.float32))):
        raise CorruptFileError("the file decodes to samples beyond float32 range")
    return header, out
