"""sancodec: the shared core of the SAN biosignal codec (metrics, codes, .sanc files, decoder)."""

from sancodec.codebook import Codebook, DecoderMode
from sancodec.codes import (
    BlockCode,
    ChannelCode,
    EntropyCoder,
    ResidualLayer,
    SanLayer,
    parse_block,
)
from sancodec.decoder import StreamingDecoder, check_block, decode
from sancodec.errors import (
    CorruptCodeError,
    CorruptDataError,
    CorruptFileError,
    InvalidInputError,
    SancodecError,
)
from sancodec.header import ChannelInfo, ModelRef, StreamHeader
from sancodec.quantization import Quantizer
from sancodec.residual import ResidualSpec, WaveletTransform, encode_residual
from sancodec.samples import SampleDtype, pack_samples, unpack_samples
from sancodec.sancfile import SancReader, SancWriter, decode_file, read_sanc

__version__ = "0.1.0"

__all__ = [
    "BlockCode",
    "ChannelCode",
    "ChannelInfo",
    "Codebook",
    "CorruptCodeError",
    "CorruptDataError",
    "CorruptFileError",
    "DecoderMode",
    "EntropyCoder",
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
    "check_block",
    "decode",
    "decode_file",
    "encode_residual",
    "pack_samples",
    "parse_block",
    "read_sanc",
    "unpack_samples",
]
