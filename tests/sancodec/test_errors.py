from __future__ import annotations

import pytest

from sancodec import errors


def test_tree_drawing_lists_every_error() -> None:
    classes = [getattr(errors, name) for name in errors.__all__ if name.endswith("Error")]
    assert errors.__doc__ is not None
    for cls in classes:
        assert issubclass(cls, errors.SancodecError)
        assert cls.__name__ in errors.__doc__
        assert (
            f"{cls.status_code}" in errors.__doc__
            or cls.status_code == errors.SancodecError.status_code
        )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("INVALID_ARGUMENT", errors.InvalidInputError),
        ("FAILED_PRECONDITION", errors.ProtocolError),
        ("NOT_FOUND", errors.NotFoundError),
        ("RESOURCE_EXHAUSTED", errors.OverloadedError),
        ("UNAVAILABLE", errors.UnavailableError),
        ("DATA_LOSS", errors.CorruptDataError),
        ("UNAUTHENTICATED", errors.AuthenticationError),
        ("INTERNAL", errors.SancodecError),
    ],
)
def test_status_codes_map_back_to_the_tree(
    status: str, expected: type[errors.SancodecError]
) -> None:
    error = errors.error_for_status(status, "model 'ecg' has no version 9")
    assert type(error) is expected
    assert str(error) == "model 'ecg' has no version 9"


def test_corrupt_file_error_names_its_block() -> None:
    error = errors.CorruptFileError("block 4 fails its checksum", block_index=4)
    assert error.block_index == 4
    assert error.status_code == "DATA_LOSS"
