"""sancodec: the shared core of the SAN biosignal codec (metrics, codes, .sanc files, decoder)."""

from sancodec.codebook import Codebook, DecoderMode
from sancodec.codes import BlockCode, ChannelCode, ResidualLayer, SanLayer
from sancodec.coefficients import encode_residual
from sancodec.decoder import StreamingDecoder, check_block, decode
from sancodec.errors import (
    CorruptCodeError,
    CorruptDataError,
    CorruptFileError,
    InvalidInputError,
    SancodecError,
)
from sancodec.header import ChannelInfo, ModelRef, StreamHeader
from sancodec.payload import block_bytes, decode_block, encode_block, parse_block
from sancodec.quantization import Quantizer
from sancodec.residual import ResidualSpec, WaveletTransform
from sancodec.samples import SampleDtype, pack_samples, unpack_samples
from sancodec.sancfile import SancReader, SancWriter, decode_file, read_sanc
from sancodec.tables import CodingTables

__version__ = "0.1.0"

__all__ = [
    "BlockCode",
    "ChannelCode",
    "ChannelInfo",
    "Codebook",
    "CodingTables",
    "CorruptCodeError",
    "CorruptDataError",
    "CorruptFileError",
    "DecoderMode",
    "InvalidInputError",
    "ModelRef",
    "Quantizer",
    "ResidualLayer",
    "ResidualSpec",
    "SampleDtype",
    "SanLayer",
    "SancReader",
    "SancWriter",
    "SancodecError",
    "StreamHeader",
    "StreamingDecoder",
    "WaveletTransform",
    "block_bytes",
    "check_block",
    "decode",
    "decode_block",
    "decode_file",
    "encode_block",
    "encode_residual",
    "pack_samples",
    "parse_block",
    "read_sanc",
    "unpack_samples",
]
