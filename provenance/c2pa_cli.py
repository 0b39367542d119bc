"""What ``image sign|verify`` and ``video sign|verify`` share: their options, and signing and
verifying once a modality has said how to detect its watermark (``provenance.c2pa_link``).

Each modality's command reads its own files first (so bad input gets that modality's one-line
error before any model loads) and passes a ``detect`` callable; everything else is here, once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import click

from provenance.c2pa_link import (
    SIGNING_ALGORITHMS, VERDICTS, ManifestSigner, check_formats, cross_check, read_credentials, sign_file,
    soft_binding_alg, soft_binding_value, watermark_manifest,
)
from provenance.files import check_new_output
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


def verify(paths: tuple[str, ...], trust_anchors: str | None,
           detect: Callable[[], list[DetectionResult]] | None, as_json: bool) -> None:
    """Print each file's Content Credentials and, given ``detect``, the verdict with its watermark."""
    anchors = None if trust_anchors is None else Path(trust_anchors).read_bytes()
    found = [read_credentials(path, anchors) for path in paths]
    results = detect() if detect is not None else [None] * len(paths)
    for name, credentials, result in zip(paths, found, results):
        verdict = None if result is None else cross_check(credentials, result)
        if as_json:
            click.echo(json.dumps({"input": name, "verdict": verdict,
                                   "credentials": credentials.to_dict() if credentials else None,
                                   "watermark": result.to_dict() if result else None}))
            continue
        manifest = "no Content Credentials" if credentials is None else (
            f"Content Credentials {credentials.state}, signed by {credentials.signer or '?'}")
        line = f"{name}: {manifest}"
        if result is not None:
            line += f"; watermark {result.summary()}; {verdict}: {VERDICTS[verdict]}"
            if verdict == "watermark-only":
                line += f" ({soft_binding_alg(result.scheme)} {soft_binding_value(result)})"
        click.echo(line)


def verify_help(files: str, key_options: str) -> str:
    """The help text of a ``verify`` command."""
    return (f"Read {files}' Content Credentials (C2PA) and, with {key_options}, test the watermark too.\n\n"
            "With a key, each file gets one verdict of manifest and watermark together: consistent, "
            "watermark-only (the watermark gives the soft binding to search a manifest repository by), "
            "no-provenance, manifest-invalid, watermark-missing, payload-mismatch, unclaimed-watermark or "
            "no-claim-for-key.")
