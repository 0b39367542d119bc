"""What ``image sign|verify`` and ``video sign|verify`` share: their options, and signing and
verifying once a modality has said how to detect its watermark (``provenance.c2pa_link``).

Each modality's command reads its own files first (so bad input gets that modality's one-line
error before any model loads) and passes a ``detect`` callable; everything else is here, once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from provenance.c2pa_link import (
    MAX_PEM_BYTES, SIGNING_ALGORITHMS, VERDICTS, Credentials, ManifestSigner, check_formats, cross_check,
    read_credentials, sign_file, soft_binding_alg, soft_binding_value, watermark_manifest,
)
from provenance.cli_support import Outcome, attempt, detect_outcomes, report
from provenance.files import check_new_output
from provenance.readers import read_limited_bytes
from provenance.result import DetectionResult


def signing_options(command):
    """``--cert``, ``--private-key``, ``--alg``, ``--out`` and ``--force``."""
    for option in reversed((
        click.option("--cert", "chain_file", required=True, type=click.Path(dir_okay=False),
                     help="Signing certificate chain, PEM, signer first (`provenance keys dev-cert` makes a test one)."),
        click.option("--private-key", "private_key_file", required=True, type=click.Path(dir_okay=False),
                     help="The signer's private key, PEM."),
        click.option("--alg", default="es256", show_default=True, type=click.Choice(SIGNING_ALGORITHMS),
                     help="Signature algorithm matching the key."),
        click.option("--out", required=True, type=click.Path(dir_okay=False),
                     help="Signed copy to write (the input's format)."),
        click.option("--force", is_flag=True, help="Overwrite --out if it exists."),
    )):
        command = option(command)
    return command


trust_option = click.option("--trust-anchors", default=None, type=click.Path(dir_okay=False),
                            help="PEM certificates whose signers count as trusted.")


def prepare_signing(source: str, out: str, force: bool, chain_file: str, private_key_file: str,
                    alg: str) -> tuple[Path, ManifestSigner]:
    """The output path and the signer, after every check that needs no model: an existing output
    (refused without ``force``), the formats and the PEM files."""
    destination = check_new_output(out, force)
    check_formats(source, destination)
    return destination, ManifestSigner.from_files(chain_file, private_key_file, alg)


def sign(source: str, destination: Path, signer: ManifestSigner, detect: Callable[[], DetectionResult]) -> None:
    """Detect, refuse an undetected watermark, sign, and print what the manifest names."""
    result = detect()
    sign_file(source, destination, watermark_manifest(result, title=destination.name), signer)
    click.echo(json.dumps({"output": str(destination),
                           "soft_binding": {"alg": soft_binding_alg(result.scheme), "value": soft_binding_value(result)},
                           "p_value": result.p_value, "fpr": result.fpr}))


@dataclass(frozen=True)
class Verification:
    """One file's Content Credentials and, when a key was given, its watermark and the joint verdict."""

    credentials: Credentials | None
    result: DetectionResult | None

    @property
    def verdict(self) -> str | None:
        return None if self.result is None else cross_check(self.credentials, self.result)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "credentials": self.credentials.to_dict() if self.credentials else None,
                "watermark": self.result.to_dict() if self.result else None}

    def describe(self, name: str) -> str:
        credentials = self.credentials
        manifest = "no Content Credentials" if credentials is None else (
            f"Content Credentials {credentials.state}, signed by {credentials.signer or '?'}")
        line = f"{name}: {manifest}"
        verdict = self.verdict
        if self.result is not None and verdict is not None:
            line += f"; watermark {self.result.summary()}; {verdict}: {VERDICTS[verdict]}"
            if verdict == "watermark-only":
                line += f" ({soft_binding_alg(self.result.scheme)} {soft_binding_value(self.result)})"
        return line


def _verification(path: str, anchors: bytes | None, result: DetectionResult | None) -> Verification:
    return Verification(read_credentials(path, anchors), result)


def verify(read: list[Outcome], trust_anchors: str | None,
           detector: Callable[[], Callable[[list[Any]], list[DetectionResult]]] | None, as_json: bool) -> None:
    """Print each file's Content Credentials and, given ``detector``, the verdict with its watermark.

    ``read`` holds each file's decoded content or its read error. A file that cannot be read gets
    an error record; a file whose manifest is corrupt gets its ``manifest-invalid`` verdict; the
    other files are verified either way.
    """
    anchors = None if trust_anchors is None else read_limited_bytes(trust_anchors, MAX_PEM_BYTES, "trust anchor file")
    outcomes: list[Outcome] = []
    for name, outcome in (detect_outcomes(read, detector) if detector is not None else read):
        if isinstance(outcome, BaseException):
            outcomes.append((name, outcome))
            continue
        result = outcome if detector is not None else None
        outcomes.append((name, attempt(name, functools.partial(_verification, name, anchors, result))))
    report(outcomes, as_json, lambda name, verification: verification.describe(name), Verification.to_dict)


def verify_help(files: str, key_options: str) -> str:
    """The help text of a ``verify`` command."""
    return (f"Read {files}' Content Credentials (C2PA) and, with {key_options}, test the watermark too.\n\n"
            "With a key, each file gets one verdict of manifest and watermark together: consistent, "
            "watermark-only (the watermark gives the soft binding to search a manifest repository by), "
            "no-provenance, manifest-invalid, watermark-missing, payload-mismatch, unclaimed-watermark or "
            "no-claim-for-key.")
