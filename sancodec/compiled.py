"""numba's compiler as the core uses it: cached beside the module, without the GIL, typed for mypy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["compiled"]

F = TypeVar("F", bound=Callable[..., Any])


def compiled(function: F) -> F:
    """`function` compiled to machine code on its first call (or loaded from numba's cache:
    NUMBA_CACHE_DIR where the package's folder is read-only). Codec threads run it in parallel,
    since it holds no GIL; it keeps the signature mypy checked."""
    return cast(F, numba.njit(cache=True, nogil=True)(function))
