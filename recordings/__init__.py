"""Recordings on disk (WFDB, EDF, CSV, NPY, Bonn EEG text): read and written as one `Recording`."""

from recordings.recording import (
    BONN_SAMPLE_RATE_HZ,
    Recording,
    read_recording,
    write_recording,
)

__all__ = ["BONN_SAMPLE_RATE_HZ", "Recording", "read_recording", "write_recording"]
