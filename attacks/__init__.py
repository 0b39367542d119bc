"""Attacks on watermarks for robustness audits: ``attacks.get("jpeg")(image, strength=50)``."""

from attacks.registry import Attack, get, names, register

__all__ = ["Attack", "get", "names", "register"]
