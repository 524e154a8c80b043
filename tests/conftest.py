"""Shared fixtures: paths to the real recordings in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mitdb100(shared_data: Path) -> npt.NDArray[np.float64]:
    """MIT-BIH record 100, channel 0 (MLII), first 20000 samples, ADC counts minus the 1024 zero."""
    import wfdb

    record = wfdb.rdrecord(
        str(shared_data / "wfdb" / "mitdb" / "100"), sampto=20000, physical=False
    )
    return record.d_signal[:, 0].astype(np.float64) - 1024.0
