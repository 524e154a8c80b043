"""`python -m server` (= `sancodec-server`): run the codec server until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from sancodec.errors import SancodecError
from server.app import serve
from server.config import ServerConfig


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = ServerConfig.from_args(sys.argv[1:] if argv is None else argv, os.environ)
        asyncio.run(serve(config))
    except SancodecError as exc:
        print(f"sancodec-server: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
