"""numba's compiler as the core uses it: cached per version of the core, typed for mypy.

numba's cache notices a change to the file of a function only, not to a constant or a compiled
function it takes from another module. So the core's loops are cached in a folder named by a hash
of every source file of the package and numba's version: `numba-<hash>` under NUMBA_CACHE_DIR
where it is set (the images set /tmp/numba), else beside the package, else in the temporary
folder. Where none can be written, they compile in every process, uncached.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
import numba.core.config

__all__ = ["compiled"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_PACKAGE = Path(__file__).resolve().parent
_CONFIG: Any = numba.core.config  # its settings are set at run time: mypy sees none


@lru_cache(maxsize=1)
def _cache_dir() -> str | None:
    digest = hashlib.sha256(numba.__version__.encode())
    for source in sorted(_PACKAGE.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    name = f"numba-{digest.hexdigest()[:16]}"
    bases = [Path(_CONFIG.CACHE_DIR)] if _CONFIG.CACHE_DIR else []
    for base in [*bases, _PACKAGE / "__pycache__", Path(tempfile.gettempdir())]:
        try:
            (base / name).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=base / name):
                return str(base / name)
        except OSError:
            continue
    log.warning("no folder for numba's cache can be written: the coder compiles in every process")
    return None


def compiled(function: F) -> F:
    """`function` compiled to machine code on its first call, or loaded from the cache; it keeps
    the signature mypy checked. It keeps the GIL: each call lasts microseconds, and a thread that
    lets the GIL go that often waits for it again behind the server's other threads (with
    nogil=True, 1024 real-time streams waited p99 8.4 s against 5.7 s: docs/benchmarks.md)."""
    folder = _cache_dir()
    if folder is None:
        return cast(F, numba.njit(function))
    was, _CONFIG.CACHE_DIR = _CONFIG.CACHE_DIR, folder
    try:  # numba's locator takes the folder when the function is decorated
        return cast(F, numba.njit(cache=True)(function))
    finally:
        _CONFIG.CACHE_DIR = was
