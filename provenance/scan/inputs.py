"""What a scan reads: its inputs (files, folders, globs) expanded into files, and the watermarks
to scan for (``--scheme``/``--key`` pairs, or a spec file).

A folder contributes every file under it that some modality claims (others, a README say, are
left alone); a file named on the command line that no modality claims is bad input, refused
before anything runs, as is a glob or a folder that yields nothing.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from provenance.readers import InputError, decode_text, read_limited_bytes

MAX_SPEC_BYTES = 1 << 20
GLOB_CHARACTERS = frozenset("*?[")


def expand_inputs(inputs: Sequence[str], claimed: Callable[[str], bool]) -> list[str]:
    """Every file the inputs name, sorted within each input, duplicates dropped; ``claimed(path)``
    says whether some modality scans a file of that name."""
    found: list[str] = []
    for name in inputs:
        if GLOB_CHARACTERS & set(name):
            matches = sorted(path for path in glob.glob(name, recursive=True) if os.path.isfile(path))
            files = [path for path in matches if claimed(path)]
            if not files:
                raise InputError(name, "matches no image, video or text dataset file")
        elif os.path.isdir(name):
            files = sorted(str(Path(root) / leaf) for root, _, leaves in os.walk(name) for leaf in leaves
                           if claimed(leaf))
            if not files:
                raise InputError(name, "holds no image, video or text dataset file")
        elif claimed(name):
            files = [name]
        elif not os.path.exists(name):
            raise InputError(name, "no such file or folder")
        else:
            raise InputError(name, "not an image, a video or a text dataset (.jsonl, .ndjson, .csv, .parquet)")
        found.extend(files)
    return list(dict.fromkeys(found))


def read_spec(path: str) -> list[tuple[str, str]]:
    """``(scheme, key file)`` pairs from a YAML or JSON list of ``{scheme: ..., key: ...}`` (a key
    file named relative to the spec file's folder)."""
    text = decode_text(read_limited_bytes(path, MAX_SPEC_BYTES, "spec file"), path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(path, f"not YAML or JSON: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(data, list) or not data:
        raise InputError(path, "a spec file is a non-empty list of {scheme: NAME, key: KEY_FILE}")
    pairs = []
    for number, entry in enumerate(data, start=1):
        if not (isinstance(entry, dict) and set(entry) == {"scheme", "key"}
                and all(isinstance(entry[field], str) and entry[field] for field in ("scheme", "key"))):
            raise InputError(path, f"entry {number} must be {{scheme: NAME, key: KEY_FILE}} (two strings)")
        pairs.append((entry["scheme"], str(Path(path).parent / entry["key"])))
    return pairs
