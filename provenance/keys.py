"""Secret watermark keys and the keyed randomness every scheme draws from.

Why one key with named sub-keys: a user keeps a single key file, yet no two schemes
(or two uses inside one scheme) ever share a random stream. Every draw comes from
``HMAC-SHA256(secret, purpose | context...)``, so streams are independent, reproducible
in any process, and impossible to enumerate without the secret.

Patterns are drawn on the CPU from the returned generators and moved to the target
device afterwards, so a key produces bit-identical patterns on CPU, CUDA and MPS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from provenance.files import check_new_output, write_text_atomic
from provenance.readers import MAX_KEY_BYTES, InputError, read_json_file

SECRET_BYTES = 32
KEY_FILE_FORMAT = "provenance-watermark-key"
KEY_FILE_VERSION = 1
MAX_LABEL_CHARS = 200
MAX_CREATED = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can show


class KeyFileError(InputError):
    """A key file is missing, unreadable, malformed or truncated (never quotes the secret)."""


def _encode_part(part: object) -> bytes:
    """Length-prefix every context part so ("ab", "c") and ("a", "bc") never collide."""
    if isinstance(part, bytes):
        raw = b"b" + part
    elif isinstance(part, bool):
        raw = b"?" + (b"1" if part else b"0")
    elif isinstance(part, int):
        raw = b"i" + str(part).encode()
    elif isinstance(part, str):
        raw = b"s" + part.encode("utf-8")
    elif isinstance(part, float):
        raw = b"f" + repr(part).encode()
    else:
        raise TypeError(f"sub-key context must be bytes, str, int, bool or float, not {type(part).__name__}")
    return len(raw).to_bytes(4, "big") + raw


def label_is_valid(label: object) -> bool:
    """A label is absent, or a short printable string (it is shown on one line, never interpreted)."""
    return label is None or (isinstance(label, str) and len(label) <= MAX_LABEL_CHARS and label.isprintable())


@dataclass(frozen=True)
class WatermarkKey:
    """A 32-byte secret plus public metadata.

    ``key_id`` is a one-way function of the secret (a truncated SHA-256 under a fixed
    domain tag), safe to print and store in results; the secret itself never appears in
    ``repr``, ``str``, results or error messages.
    """

    secret: bytes = field(repr=False)
    created: float = field(default_factory=time.time)
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != SECRET_BYTES:
            raise ValueError(f"a watermark key secret must be exactly {SECRET_BYTES} bytes")
        if not label_is_valid(self.label):
            raise ValueError(f"a key label is at most {MAX_LABEL_CHARS} printable characters")

    @classmethod
    def generate(cls, label: str | None = None) -> "WatermarkKey":
        """A fresh key from the operating system's CSPRNG."""
        return cls(secret=secrets.token_bytes(SECRET_BYTES), label=label)

    @classmethod
    def from_seed(cls, seed: int | str, label: str | None = None) -> "WatermarkKey":
        """A deterministic key for tests and reproducible experiments only (never for deployment)."""
        secret = hashlib.sha256(b"provenance-test-key|" + str(seed).encode()).digest()
        return cls(secret=secret, created=0.0, label=label)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"provenance-key-id|" + self.secret).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"WatermarkKey(key_id={self.key_id!r}, label={self.label!r}, created={self.created!r})"

    __str__ = __repr__

    # -- keyed randomness -------------------------------------------------------------
    def subkey(self, purpose: str, *context: object) -> bytes:
        """32 bytes = HMAC-SHA256(secret, purpose | context...), independent per purpose/context."""
        message = _encode_part(purpose) + b"".join(_encode_part(c) for c in context)
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def seed(self, purpose: str, *context: object) -> int:
        """A 63-bit integer seed from the sub-key (fits torch.Generator.manual_seed)."""
        return int.from_bytes(self.subkey(purpose, *context)[:8], "big") >> 1

    def generator(self, purpose: str, *context: object) -> tuple[torch.Generator, np.random.Generator]:
        """A seeded CPU ``torch.Generator`` and a ``numpy`` Generator for this purpose.

        Both are seeded from the same sub-key but are separate streams; draw on the CPU
        and move the result to the device so patterns are identical everywhere.
        """
        sub = self.subkey(purpose, *context)
        torch_gen = torch.Generator(device="cpu")
        torch_gen.manual_seed(int.from_bytes(sub[:8], "big") >> 1)
        numpy_gen = np.random.Generator(np.random.PCG64(np.frombuffer(sub, dtype=np.uint32)))
        return torch_gen, numpy_gen

    # -- files -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": KEY_FILE_FORMAT,
            "version": KEY_FILE_VERSION,
            "key_id": self.key_id,
            "label": self.label,
            "created": self.created,
            "secret": self.secret.hex(),
        }

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the key as JSON with mode 0600, atomically (temp file + rename).

        Refuses to replace an existing file unless ``overwrite`` is set, so a key is
        never lost by a mistyped command.
        """
        path = check_new_output(path, overwrite)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n", mode=0o600)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WatermarkKey":
        """Read a key file; every failure is a ``KeyFileError`` naming the file, never the secret.

        The file must be a regular file of at most ``MAX_KEY_BYTES`` holding one JSON object of
        this format (no deeper than ``MAX_JSON_DEPTH``), with a 32-byte hex secret, a label of at
        most ``MAX_LABEL_CHARS`` printable characters and a creation time between 1970 and 9999.
        """
        try:
            data = read_json_file(path, MAX_KEY_BYTES, "key file")
        except InputError as exc:
            raise KeyFileError(exc.source, exc.problem) from None
        if not isinstance(data, dict) or data.get("format") != KEY_FILE_FORMAT:
            raise KeyFileError(path, "not a provenance watermark key file")
        if data.get("version") != KEY_FILE_VERSION or isinstance(data.get("version"), bool):
            version = data.get("version")
            shown = repr(version) if isinstance(version, (int, str)) and len(str(version)) <= 20 else "?"
            raise KeyFileError(path, f"unsupported key file version {shown}")
        secret_hex = data.get("secret")
        try:
            secret = bytes.fromhex(secret_hex) if isinstance(secret_hex, str) and len(secret_hex) < 256 else b""
        except ValueError:
            secret = b""
        if len(secret) != SECRET_BYTES:
            raise KeyFileError(path, f"malformed secret (expected {SECRET_BYTES} hex bytes)")
        label = data.get("label")
        if not label_is_valid(label):
            raise KeyFileError(path, f"malformed label (at most {MAX_LABEL_CHARS} printable characters)")
        created = data.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not 0 <= created <= MAX_CREATED:
            raise KeyFileError(path, "malformed creation time (seconds since 1970, up to the year 9999)")
        key = cls(secret=secret, created=float(created), label=label)
        if data.get("key_id") not in (None, key.key_id):
            raise KeyFileError(path, "inconsistent: its key id does not match its secret")
        return key
