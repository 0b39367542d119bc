"""Attacks and robustness audits; not built yet."""
