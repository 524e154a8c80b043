"""`sancodec` (= `python -m client`): encode, decode, stream, inspect, compare, plot, models, health.

Exit codes: 0 done; 2 bad input (a file, a record, a setting, an unknown model); 3 no server;
4 damaged codes or files; 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from client.codec import CodecClient
from client.commands import (
    EncodeReport,
    decode_file_to,
    encode_adapted_recording,
    encode_recording,
    encode_summary,
    load_recording,
)
from client.config import ClientConfig
from client.offline import compare, inspect_file, to_json
from client.offline_plot import plot
from recordings import Recording, read_recording
from sancodec.adaptation import ROUNDS
from sancodec.errors import (
    CorruptDataError,
    InvalidConfigError,
    InvalidInputError,
    NotFoundError,
    ProtocolError,
    SancodecError,
    UnavailableError,
)
from sancodec.v1 import codec_pb2

__all__ = ["main"]

EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (UnavailableError, 3), (CorruptDataError, 4), (InvalidInputError, 2), (NotFoundError, 2), (ProtocolError, 2),
    (OSError, 2), (SancodecError, 1),
)  # fmt: skip


def _connection(p: argparse.ArgumentParser, config: ClientConfig) -> None:
    p.add_argument(
        "--server",
        default=config.server,
        help=f"host:port (default {config.server}; env SANCODEC_SERVER)",
    )
    p.add_argument("--token", default=config.token, help="bearer token (env SANCODEC_TOKEN)")
    p.add_argument("--tls-ca", type=Path, default=config.tls_ca, help="CA certificate: use TLS")
    p.add_argument(
        "--client-cert", type=Path, default=config.client_cert, help="client certificate (mTLS)"
    )
    p.add_argument("--client-key", type=Path, default=config.client_key, help="client key (mTLS)")
    p.add_argument(
        "--timeout", type=float, default=config.timeout_s, help="seconds per call or connection"
    )
    p.add_argument(
        "--round-robin", action="store_true", default=config.round_robin,
        help="spread calls over every address the server's name resolves to, e.g. a headless "
        "Service's pods (dns:///NAME:PORT); env SANCODEC_ROUND_ROBIN=1",
    )  # fmt: skip


def _input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="WFDB .hea, EDF, CSV, NPY or Bonn .txt")
    p.add_argument("--channels", help="comma-separated channel indices or names (default: all)")
    p.add_argument(
        "--sample-rate-hz", type=float, help="needed for NPY and CSV without a time column"
    )
    p.add_argument(
        "--fill-missing", action="store_true", help="hold the last value over missing samples"
    )
    p.add_argument(
        "--model", default="ecg", help="NAME or NAME@VERSION (default ecg, latest version)"
    )
    p.add_argument(
        "--max-prdn",
        type=float,
        help="per-block PRDN target in percent (models with a residual layer)",
    )
    p.add_argument(
        "--max-bits", type=float, help="per-block budget in bits per sample, never exceeded"
    )
    p.add_argument("--stream-prdn", type=float,
                   help="PRDN target in percent for the whole stream (one steered step)")  # fmt: skip


def build_parser(config: ClientConfig) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sancodec", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("encode", help="code a recording into a .sanc file through the server")
    _input(p)
    _connection(p, config)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--fixed-kernels", action="store_true",
                   help="code with the model's kernels throughout: no kernels fitted to the stream")  # fmt: skip
    p.add_argument(
        "--adapt",
        action="store_true",
        help="fit the model's kernels to this recording and code it locally (least squares "
        "at the spikes the model's encoder detects, in ONNX Runtime); the kernels travel in "
        "the .sanc header",
    )
    p.add_argument(
        "--models", type=Path, default=config.models,
        help="bundle directory for --adapt (env SANCODEC_MODELS, default ./models)",
    )  # fmt: skip
    p.add_argument(
        "--rounds", type=int, default=ROUNDS,
        help=f"--adapt: rounds of detection and least squares (default {ROUNDS})",
    )  # fmt: skip
    p.add_argument(
        "--block-length", type=int,
        help="--adapt: samples per block (default: 8 of the model's blocks, 16384 for ecg; "
        "longer blocks are smaller, shorter ones decode in smaller pieces)",
    )  # fmt: skip
    p = sub.add_parser(
        "stream", help="stream a recording like a device would, showing live quality"
    )
    _input(p)
    _connection(p, config)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="at the recording's own rate")
    pace.add_argument("--speed", type=float, help="this many times faster than real time")
    p.add_argument("-o", "--output", type=Path, help="also store the .sanc")
    p = sub.add_parser("decode", help="decode a .sanc to .npy, .csv, WFDB (.hea) or .edf")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument(
        "--salvage", action="store_true", help="recover every intact block of a damaged file"
    )
    _connection(p, config)
    p.set_defaults(server=None)  # offline unless --server names one
    p = sub.add_parser("inspect", help="header, model, channels and rates of a .sanc")
    p.add_argument("input", type=Path)
    p.add_argument("--salvage", action="store_true")
    p = sub.add_parser("compare", help="fidelity of a decoded recording against the original")
    p.add_argument("original", type=Path)
    p.add_argument("decoded", type=Path)
    p.add_argument("--sample-rate-hz", type=float, help="for NPY inputs")
    p.add_argument(
        "--beats", action="store_true",
        help="ECG: detect beats (wfdb GQRS) in both signals; report their agreement and RR error",
    )  # fmt: skip
    p.add_argument(
        "--annotations", metavar="ANNOTATOR|FILE",
        help="reference beats (implies --beats): an annotator of the original WFDB record (atr) "
        "or an annotation file wfdb reads; adds sensitivity and positive predictivity",
    )  # fmt: skip
    p = sub.add_parser("plot", help="PNG of original, reconstruction and spikes")
    p.add_argument("input", type=Path, help="the .sanc")
    p.add_argument("--original", type=Path, help="the recording it came from")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--start", type=float, default=0.0, help="seconds")
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    for name, text in (("models", "the server's models"), ("health", "the server's health")):
        _connection(sub.add_parser(name, help=text), config)
    return parser


def _client(args: argparse.Namespace) -> CodecClient:
    return CodecClient(args.server, tls_ca=args.tls_ca, client_cert=args.client_cert, client_key=args.client_key,
                       token=args.token, timeout_s=args.timeout, round_robin=args.round_robin)  # fmt: skip


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _encode(args: argparse.Namespace) -> int:
    recording = load_recording(args.input, args.sample_rate_hz, args.channels, args.fill_missing)
    name, _, version = args.model.partition("@")
    show = sys.stderr.isatty() and not args.json
    live = args.command == "stream" and not args.json
    speed = 1.0 if getattr(args, "realtime", False) else getattr(args, "speed", None)

    def on_block(start: int, q: codec_pb2.BlockQuality) -> None:
        print(f"t={start / recording.sample_rate_hz:8.1f} s  {q.bits_per_sample:6.3f} bit/sample  "
              f"CR {q.compression_ratio:7.1f}  PRDN {q.prdn_percent:6.2f}%  phi {q.flithos:.3f}", flush=True)  # fmt: skip

    if getattr(args, "block_length", None) is not None and not args.adapt:
        raise InvalidConfigError(
            "--block-length goes with --adapt: a server codes in its model's blocks"
        )
    if getattr(args, "adapt", False) and getattr(args, "fixed_kernels", False):
        raise InvalidConfigError("--fixed-kernels and --adapt contradict each other: pick one")
    if getattr(args, "adapt", False):
        if show:
            print(
                f"sancodec: fitting {args.model} kernels to {args.input.name} ...", file=sys.stderr
            )
        report = encode_adapted_recording(recording, args.output, models=args.models, model=name, version=version,
                                          rounds=args.rounds, max_prdn_percent=args.max_prdn,
                                          max_bits_per_sample=args.max_bits,
                                          block_length=args.block_length)  # fmt: skip
        return _encode_result(args, recording, report)
    with _client(args) as client:
        report = encode_recording(client, recording, args.output, model=name, version=version, frames=4096 if speed is None else max(1, int(recording.sample_rate_hz / 2)),
                                  speed=speed, show=show and not live, on_block=on_block if live else None,
                                  max_prdn_percent=args.max_prdn, max_bits_per_sample=args.max_bits,
                                  stream_prdn_percent=args.stream_prdn, fixed_kernels=getattr(args, "fixed_kernels", False))  # fmt: skip
    return _encode_result(args, recording, report)


def _encode_result(args: argparse.Namespace, recording: Recording, report: EncodeReport) -> int:
    for problem in report.problems:
        print(f"sancodec: chunk {problem.index} refused: {problem.message}", file=sys.stderr)
    if args.output is None:
        bits = sum(q.bits_per_sample for q in report.qualities) / max(len(report.qualities), 1)
        prdn = sum(q.prdn_percent for q in report.qualities) / max(len(report.qualities), 1)
        _emit(args, {"blocks": report.blocks, "bits_per_sample": bits, "prdn_percent": prdn},
              f"{report.blocks} blocks, mean {bits:.3f} bit/sample, PRDN {prdn:.2f}%")  # fmt: skip
        return 0
    summary = encode_summary(args.output, recording, report)
    lines = [f"{args.output}: {summary['model']}, {summary['blocks']} blocks, {summary['duration_s']:.1f} s, "
             f"file {summary['file_bits_per_sample']:.3f} bit/sample, mean phi {summary['flithos_mean']:.3f}"]  # fmt: skip
    for c in summary["channels"]:
        adc = f", CR vs ADC {c['compression_ratio_adc']:.1f}" if c["compression_ratio_adc"] else ""
        lines.append(
            f"  {c['channel']}: {c['bits_per_sample']:.3f} bit/sample, CR {c['compression_ratio']:.1f}{adc}, PRDN {c['prdn_percent']:.2f}%"
        )
    _emit(args, summary, "\n".join(lines))
    return 1 if report.problems else 0


def _decode(args: argparse.Namespace) -> int:
    if args.server is not None:  # decode on the server; otherwise the offline reference decoder
        with _client(args) as client:
            recording, damaged = decode_file_to(
                args.input, args.output, client=client, salvage=args.salvage
            )
    else:
        recording, damaged = decode_file_to(
            args.input, args.output, client=None, salvage=args.salvage
        )
    if damaged:
        print(
            f"sancodec: {args.input} is damaged; kept the intact blocks before it: {damaged}",
            file=sys.stderr,
        )
    _emit(args, {"output": str(args.output), "samples": recording.samples.shape[1], "channels": recording.channel_count, "damaged": damaged},
          f"{args.output}: {recording.channel_count} channels, {recording.samples.shape[1]} samples")  # fmt: skip
    return 0


def _inspect(args: argparse.Namespace) -> int:
    summary = inspect_file(args.input, salvage=args.salvage)
    data = to_json(summary)
    lines = [f"{k}: {v}" for k, v in data.items() if k != "channels"]
    lines += [f"  {json.dumps(c, default=str)}" for c in data.get("channels", [])]
    _emit(args, data, "\n".join(lines))
    return 0


def _compare(args: argparse.Namespace) -> int:
    original = read_recording(args.original, sample_rate_hz=args.sample_rate_hz)
    decoded = read_recording(
        args.decoded, sample_rate_hz=args.sample_rate_hz or original.sample_rate_hz
    )
    data = to_json(compare(original, decoded))
    lines = [f"{k}: {v}" for k, v in data.items()]
    if args.beats or args.annotations is not None:
        # Imported here: wfdb is slow to import, and the server images (which run `health`) lack it.
        from client import beats

        found = beats.compare_beats(original, decoded, args.original, args.annotations)
        data["beats"] = beats.beats_json(found)
        lines += beats.beats_text(found)
    _emit(args, data, "\n".join(lines))
    return 0


def _plot(args: argparse.Namespace) -> int:
    original = read_recording(args.original) if args.original else None
    out = plot(
        original,
        args.input,
        args.output,
        channel=args.channel,
        start_s=args.start,
        duration_s=args.duration,
    )
    _emit(args, {"output": str(out)}, f"wrote {out}")
    return 0


def _models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models()
    lines = [f"{m.name}@{m.version}: {m.description} [{m.activation}, kernels {m.kernel_sizes}, {m.sample_rate_hz:g} Hz in {m.units or '?'}, "
             f"residual {m.residual}, {m.execution_provider}]" for m in models]  # fmt: skip
    _emit(args, {"models": [asdict(m) for m in models]}, "\n".join(lines))
    return 0


def _health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.health()
    _emit(args, {"server": args.server, "status": status}, f"{args.server}: {status}")
    return 0 if status == "SERVING" else 3


COMMANDS = {"encode": _encode, "stream": _encode, "decode": _decode, "inspect": _inspect, "compare": _compare,
            "plot": _plot, "models": _models, "health": _health}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(ClientConfig.from_env(os.environ)).parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (SancodecError, OSError) as exc:
        code = next(c for kind, c in EXIT_CODES if isinstance(exc, kind))
        print(f"sancodec: error: {exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("sancodec: interrupted", file=sys.stderr)
        return 130
