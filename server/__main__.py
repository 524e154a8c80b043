"""`python -m server` (= `sancodec-server`): run the codec server until SIGTERM, in one process or
in `--workers N` (default: one per core)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from sancodec.errors import SancodecError
from server.config import ServerConfig, check_config
from server.workers import available_cores, serve_workers


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = ServerConfig.from_args(sys.argv[1:] if argv is None else argv, os.environ)
        check_config(config)
        workers = config.workers or available_cores()
        if workers > 1:
            return serve_workers(config, workers)
        from server.app import serve  # one process: the server itself (workers import it)

        asyncio.run(serve(config))
    except SancodecError as exc:
        print(f"sancodec-server: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
