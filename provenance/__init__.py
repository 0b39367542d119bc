"""Core of the watermarking and provenance suite: keys, codes, statistics, results, models."""

__version__ = "0.1.0"
