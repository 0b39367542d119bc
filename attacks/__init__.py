"""Attacks on watermarks: random token edits so far; the registry and audits are not built yet."""
