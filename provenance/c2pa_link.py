"""Content Credentials (C2PA) for watermarked content: a signed manifest that names the watermark,
and one check that reads the manifest and the watermark together.

Why both: a C2PA manifest is metadata, and re-encoding, screenshots and stripping tools remove it
(c2pa-org/specifications#128); a latent watermark survives those, but says only "made with this
key". Together they answer more than either. The manifest records who generated the content and
how (``c2pa.created`` with IPTC's ``trainedAlgorithmicMedia`` source type, a ``c2pa.watermarked``
action) and carries a ``c2pa.soft-binding`` assertion naming the watermark: scheme, public key id
and payload. When the manifest is gone, detecting the watermark gives that soft-binding value
back, which is what a provider's manifest repository is searched by. This is the role C2PA gives
soft bindings (TrustMark and Digimarc are watermarks in it too).

- ``alg`` is ``org.provenance-suite.<scheme>.1``. These schemes are not on the C2PA soft-binding
  algorithm list (c2pa-org/softbinding-algorithm-list), so other readers show an algorithm they do
  not know; the manifest itself stays valid.
- The soft-binding value is ``<key id>`` or ``<key id>:<payload hex>``. The key id is a one-way hash
  of the key, so nothing secret enters a manifest.
- Signing refuses content whose watermark the detector does not find at the stated FPR: a
  manifest must not claim a watermark the content does not carry. The detection's p-value and
  FPR at signing are recorded beside the soft binding (``org.provenance-suite.watermark``).

Signing and validation are c2pa-python's (the c2pa-rs library). Manifests are embedded without a
thumbnail: for a 64x64 PNG the default JPEG thumbnail is 20 times the image.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provenance import __version__
from provenance.files import write_bytes_atomic
from provenance.readers import read_limited_bytes
from provenance.result import DetectionResult

GENERATOR = "provenance-suite"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
WATERMARK_LABEL = "org.provenance-suite.watermark"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
              ".tif": "image/tiff", ".tiff": "image/tiff", ".mp4": "video/mp4"}
MAX_PEM_BYTES = 1 << 20
MAX_SIGNED_BYTES = 1 << 30  # the largest file signed or verified (read whole into memory)
SIGNING_ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")


def soft_binding_alg(scheme: str) -> str:
    """The soft-binding algorithm name of one of this toolkit's schemes."""
    return f"org.provenance-suite.{scheme}.1"


def soft_binding_value(result: DetectionResult) -> str:
    """What a manifest repository is searched by: the key id, and the payload where there is one."""
    return f"{result.key_id}:{result.payload}" if result.payload else result.key_id


def mime_type(path: str | Path) -> str:
    """The media type C2PA needs, from the file name; ValueError for a format it cannot carry here."""
    suffix = Path(path).suffix.lower()
    if suffix not in MIME_TYPES:
        raise ValueError(f"{path}: Content Credentials support {', '.join(sorted(MIME_TYPES))} files")
    return MIME_TYPES[suffix]


def check_formats(source: str | Path, destination: str | Path) -> str:
    """The media type of a signing's source, which its destination must share (the pixels are copied)."""
    kind = mime_type(source)
    if mime_type(destination) != kind:
        raise ValueError(f"{destination}: must have the same format as {source}")
    return kind


def watermark_manifest(result: DetectionResult, title: str) -> dict[str, Any]:
    """The manifest definition for content whose watermark ``result`` detected."""
    if not result.detected:
        raise ValueError(f"the {result.scheme} watermark was not detected (p = {result.p_value:.3g} > fpr "
                         f"{result.fpr:g}); a manifest must not claim it")
    agent = {"name": GENERATOR, "version": __version__}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent},
                {"action": "c2pa.watermarked", "softwareAgent": agent,
                 "parameters": {"description": f"{result.scheme} watermark"}},
            ]}},
            {"label": SOFT_BINDING_LABEL, "data": {
                "alg": soft_binding_alg(result.scheme),
                "blocks": [{"scope": {}, "value": soft_binding_value(result)}],
            }},
            {"label": WATERMARK_LABEL, "data": {
                "scheme": result.scheme, "key_id": result.key_id, "payload": result.payload,
                "p_value": result.p_value, "fpr": result.fpr,
            }},
        ],
    }


@dataclass(frozen=True)
class ManifestSigner:
    """A signing certificate chain (PEM, signer first) and its private key (PEM, never printed)."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    alg: str = "es256"

    @classmethod
    def from_files(cls, certificate_chain: str | Path, private_key: str | Path, alg: str = "es256") -> "ManifestSigner":
        chain = read_limited_bytes(certificate_chain, MAX_PEM_BYTES, "certificate file")
        key = read_limited_bytes(private_key, MAX_PEM_BYTES, "private key file")
        if b"-----BEGIN CERTIFICATE-----" not in chain:
            raise ValueError(f"{certificate_chain}: holds no PEM certificate")
        if b"PRIVATE KEY-----" not in key:
            raise ValueError(f"{private_key}: holds no PEM private key")
        if alg.lower() not in SIGNING_ALGORITHMS:
            raise ValueError(f"unknown signing algorithm {alg!r} (one of {', '.join(SIGNING_ALGORITHMS)})")
        return cls(chain, key, alg.lower())

    def c2pa_signer(self):
        import c2pa

        algorithm = getattr(c2pa.C2paSigningAlg, self.alg.upper())
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm, self.certificate_chain, self.private_key, None))


def sign_file(source: str | Path, destination: str | Path, manifest: dict[str, Any], signer: ManifestSigner) -> Path:
    """Write ``source`` with ``manifest`` embedded and signed to ``destination`` (same format; the
    pixels are untouched), atomically: a failed signing leaves ``destination`` as it was."""
    import c2pa

    kind = check_formats(source, destination)
    context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
    signed = io.BytesIO()
    try:
        with c2pa.Builder(json.dumps(manifest), context) as builder:
            source_bytes = read_limited_bytes(source, MAX_SIGNED_BYTES, "file to sign")
            builder.sign(signer.c2pa_signer(), kind, io.BytesIO(source_bytes), signed)
    except c2pa.C2paError as exc:
        raise ValueError(f"C2PA signing failed: {_first_line(exc)}") from None
    return write_bytes_atomic(destination, signed.getvalue())


@dataclass(frozen=True)
class Credentials:
    """What a file's active manifest says, and whether it validated.

    ``state`` is c2pa's: ``Trusted`` (valid, signer chains to a given trust anchor), ``Valid``
    (signature and hashes check, signer not known to be trusted) or ``Invalid`` (the content or
    the manifest changed after signing, or the signature fails). ``problems`` lists the failure
    and warning codes (``signingCredential.untrusted``, ``assertion.dataHash.mismatch``, ...).
    """

    state: str
    signer: str | None
    issuer: str | None
    generator: str | None
    source_types: tuple[str, ...]
    soft_bindings: tuple[tuple[str, str], ...]
    watermark: dict[str, Any] | None
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "signer": self.signer, "issuer": self.issuer, "generator": self.generator,
                "source_types": list(self.source_types),
                "soft_bindings": [{"alg": alg, "value": value} for alg, value in self.soft_bindings],
                "watermark": self.watermark, "problems": list(self.problems)}


def read_credentials(path: str | Path, trust_anchors: bytes | None = None) -> Credentials | None:
    """The active manifest of ``path`` and its validation (None when the file carries none).

    ``trust_anchors``: PEM certificates whose chains count as trusted; without them a valid
    signature reads ``Valid``, never ``Trusted``.
    """
    import c2pa

    kind = mime_type(path)
    settings = {"trust": {"trust_anchors": trust_anchors.decode()}, "verify": {"verify_trust": True}} if trust_anchors else {}
    data = read_limited_bytes(path, MAX_SIGNED_BYTES, "file")
    try:
        with c2pa.Reader(kind, io.BytesIO(data), context=c2pa.Context(c2pa.Settings.from_dict(settings))) as reader:
            state, store = reader.get_validation_state(), json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return None
    except c2pa.C2paError as exc:  # a manifest is there but cannot be parsed: it does not validate
        return unreadable_credentials(_first_line(exc))
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    assertions = {a.get("label"): a.get("data", {}) for a in manifest.get("assertions", [])}
    actions = [a for label in ("c2pa.actions.v2", "c2pa.actions") for a in assertions.get(label, {}).get("actions", [])]
    bindings = assertions.get(SOFT_BINDING_LABEL, {})
    signature = manifest.get("signature_info", {})
    generators = manifest.get("claim_generator_info") or [{}]
    return Credentials(
        state=str(state),
        signer=signature.get("common_name"),
        issuer=signature.get("issuer"),
        generator=generators[0].get("name"),
        source_types=tuple(a["digitalSourceType"] for a in actions if a.get("digitalSourceType")),
        soft_bindings=tuple((bindings.get("alg", ""), str(block.get("value", ""))) for block in bindings.get("blocks", [])),
        watermark=assertions.get(WATERMARK_LABEL),
        problems=tuple(s.get("code", "") for s in store.get("validation_status", [])),
    )


def unreadable_credentials(reason: str) -> Credentials:
    """The credentials of a file whose manifest store is present but corrupt: ``Invalid``, with
    the reader's complaint as the problem (a corrupt manifest is a failed validation, not a crash)."""
    return Credentials(state="Invalid", signer=None, issuer=None, generator=None, source_types=(),
                       soft_bindings=(), watermark=None, problems=(f"manifest.unreadable: {reason}",))


VERDICTS = {
    "consistent": "valid manifest, and the watermark it names is present",
    "watermark-only": "no manifest (never signed, or stripped), but the watermark is present: search the manifest "
                      "repository by its soft binding",
    "no-provenance": "no manifest and no watermark of this key",
    "manifest-invalid": "the manifest does not validate: content or manifest changed after signing",
    "watermark-missing": "the manifest names this key's watermark, which the content no longer carries",
    "payload-mismatch": "the manifest names this key's watermark with another payload",
    "unclaimed-watermark": "the watermark is present, but the manifest does not name it",
    "no-claim-for-key": "the manifest names no watermark of this key, and there is none",
}


def cross_check(credentials: Credentials | None, result: DetectionResult) -> str:
    """One of ``VERDICTS``: what the manifest (if any) and the watermark detection say together."""
    if credentials is None:
        return "watermark-only" if result.detected else "no-provenance"
    if credentials.state == "Invalid":
        return "manifest-invalid"
    claims = [value for alg, value in credentials.soft_bindings
              if alg == soft_binding_alg(result.scheme) and value.split(":")[0] == result.key_id]
    if not claims:
        return "unclaimed-watermark" if result.detected else "no-claim-for-key"
    if not result.detected:
        return "watermark-missing"
    # a payload that did not decode is no contradiction: the key's watermark is there
    return "consistent" if result.payload is None or soft_binding_value(result) in claims else "payload-mismatch"


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
