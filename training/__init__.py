"""Offline training of SAN models (PyTorch)."""
