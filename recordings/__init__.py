"""Recordings on disk (WFDB, EDF, CSV, NPY, Bonn EEG text): read and written as one `Recording`."""

from recordings.files import read_recording, write_recording
from recordings.recording import BONN_SAMPLE_RATE_HZ, Recording

__all__ = ["BONN_SAMPLE_RATE_HZ", "Recording", "read_recording", "write_recording"]
