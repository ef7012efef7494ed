"""Slow, obviously-correct references of every feature (docs/features.md), for differential tests and bench/kernels.py."""
