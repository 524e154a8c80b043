"""The one error tree of sancodec; the server maps it to gRPC status codes, the client back.

SancodecError
 ├── InvalidInputError            INVALID_ARGUMENT   bad samples, config or arguments
 │    ├── InvalidSignalError                          NaN/Inf, wrong dtype or length
 │    └── InvalidConfigError                          a setting that cannot be honoured
 ├── ProtocolError                FAILED_PRECONDITION messages in the wrong order
 ├── NotFoundError                NOT_FOUND          unknown model or version
 ├── OverloadedError              RESOURCE_EXHAUSTED queue full, limits reached
 ├── UnavailableError             UNAVAILABLE        not ready, draining, not reachable
 ├── AuthenticationError          UNAUTHENTICATED    missing or wrong credentials
 ├── DeadlineExceededError        DEADLINE_EXCEEDED  the call took longer than allowed
 ├── CorruptDataError             DATA_LOSS          codes or files that fail validation
 │    ├── CorruptCodeError                            a malformed or out-of-range code message
 │    └── CorruptFileError                            a damaged .sanc file (names the first bad block)
 └── BundleError                  FAILED_PRECONDITION a model bundle that does not match its manifest

Each class names its gRPC status code as a string, so this module needs no grpc import.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BundleError",
    "CorruptCodeError",
    "CorruptDataError",
    "CorruptFileError",
    "DeadlineExceededError",
    "InvalidConfigError",
    "InvalidInputError",
    "InvalidSignalError",
    "NotFoundError",
    "OverloadedError",
    "ProtocolError",
    "SancodecError",
    "UnavailableError",
    "error_for_status",
]


class SancodecError(Exception):
    """Base of every error sancodec raises on purpose."""

    status_code: str = "INTERNAL"


class InvalidInputError(SancodecError):
    status_code = "INVALID_ARGUMENT"


class InvalidSignalError(InvalidInputError):
    pass


class InvalidConfigError(InvalidInputError):
    pass


class ProtocolError(SancodecError):
    status_code = "FAILED_PRECONDITION"


class NotFoundError(SancodecError):
    status_code = "NOT_FOUND"


class OverloadedError(SancodecError):
    """`retry_after_s`, when set, is how long the caller should wait before trying again."""

    status_code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(SancodecError):
    status_code = "UNAVAILABLE"


class AuthenticationError(SancodecError):
    status_code = "UNAUTHENTICATED"


class DeadlineExceededError(SancodecError):
    status_code = "DEADLINE_EXCEEDED"


class CorruptDataError(SancodecError):
    status_code = "DATA_LOSS"


class CorruptCodeError(CorruptDataError):
    pass


class CorruptFileError(CorruptDataError):
    """A damaged .sanc file; `block_index` is the first bad block (None: header or trailer)."""

    def __init__(self, message: str, *, block_index: int | None = None) -> None:
        super().__init__(message)
        self.block_index = block_index


class BundleError(SancodecError):
    status_code = "FAILED_PRECONDITION"


_BY_STATUS: dict[str, type[SancodecError]] = {
    "INVALID_ARGUMENT": InvalidInputError,
    "FAILED_PRECONDITION": ProtocolError,
    "NOT_FOUND": NotFoundError,
    "RESOURCE_EXHAUSTED": OverloadedError,
    "UNAVAILABLE": UnavailableError,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": AuthenticationError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "DATA_LOSS": CorruptDataError,
}


def error_for_status(status_code: str, message: str) -> SancodecError:
    """The error a client raises for a gRPC status code name (e.g. "NOT_FOUND")."""
    return _BY_STATUS.get(status_code, SancodecError)(message)
