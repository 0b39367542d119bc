"""Content Credentials: signed manifests that name the watermark (provenance.c2pa_link), the
development certificates, and `provenance image|video sign|verify` on the reference models."""

from __future__ import annotations

import json
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import cli
from provenance import c2pa_link
from provenance.c2pa_link import Credentials, ManifestSigner, cross_check, read_credentials, sign_file
from provenance.dev_certificates import write_development_certificates
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult

PROMPT = "a large red square on a plain white background"


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def detection(detected: bool = True, key_id: str = "0123456789abcdef", payload: str | None = "beef",
              scheme: str = "gaussian-shading") -> DetectionResult:
    return DetectionResult(detected, 1e-9 if detected else 0.4, 9.0, 6.0, 1e-6, scheme, key_id, payload=payload)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk) of every PNG chunk."""
    out, at = [], 8
    while at < len(data):
        length = struct.unpack(">I", data[at:at + 4])[0]
        out.append((data[at + 4:at + 8], data[at:at + 12 + length]))
        at += 12 + length
    return out


def transplant_manifest(signed: bytes, other: bytes) -> bytes:
    """``other`` PNG carrying ``signed``'s manifest chunk: what a forger copying credentials gets."""
    manifest = b"".join(chunk for kind, chunk in png_chunks(signed) if kind == b"caBX")
    chunks = png_chunks(other)
    return other[:8] + chunks[0][1] + manifest + b"".join(chunk for _, chunk in chunks[1:])


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return write_development_certificates(tmp_path_factory.mktemp("certs"))


def random_png(path, seed: int) -> None:
    cv2.imwrite(str(path), (np.random.default_rng(seed).random((64, 64, 3)) * 255).astype(np.uint8))


def test_signed_manifest_names_the_watermark_and_validates(certificates, tmp_path):
    random_png(tmp_path / "a.png", 0)
    signer = ManifestSigner.from_files(certificates["chain"], certificates["key"])
    result = detection()
    sign_file(tmp_path / "a.png", tmp_path / "b.png", c2pa_link.watermark_manifest(result, "b.png"), signer)
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png")), cv2.imread(str(tmp_path / "b.png")))
    credentials = read_credentials(tmp_path / "b.png")
    assert credentials.state == "Valid" and "signingCredential.untrusted" in credentials.problems
    assert credentials.soft_bindings == (("org.provenance-suite.gaussian-shading.1", "0123456789abcdef:beef"),)
    assert credentials.source_types == (c2pa_link.TRAINED_ALGORITHMIC_MEDIA,)
    assert credentials.watermark["p_value"] == 1e-9 and credentials.generator == "provenance-suite"
    assert cross_check(credentials, result) == "consistent"
    trusted = read_credentials(tmp_path / "b.png", trust_anchors=certificates["ca"].read_bytes())
    assert trusted.state == "Trusted" and trusted.problems == ()
    assert read_credentials(tmp_path / "a.png") is None


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_other_formats_keep_their_bytes_of_image(certificates, tmp_path, suffix):
    source, signed = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    cv2.imwrite(str(source), (np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8))
    signer = ManifestSigner.from_files(certificates["chain"], certificates["key"])
    sign_file(source, signed, c2pa_link.watermark_manifest(detection(), signed.name), signer)
    assert np.array_equal(cv2.imread(str(source)), cv2.imread(str(signed)))
    assert read_credentials(signed).soft_bindings[0][1] == "0123456789abcdef:beef"
    with pytest.raises(ValueError, match="same format"):
        sign_file(source, tmp_path / "b.png", {}, signer)


def test_a_transplanted_manifest_is_invalid(certificates, tmp_path):
    random_png(tmp_path / "a.png", 0)
    random_png(tmp_path / "other.png", 1)
    signer = ManifestSigner.from_files(certificates["chain"], certificates["key"])
    sign_file(tmp_path / "a.png", tmp_path / "b.png", c2pa_link.watermark_manifest(detection(), "b.png"), signer)
    (tmp_path / "forged.png").write_bytes(transplant_manifest((tmp_path / "b.png").read_bytes(),
                                                              (tmp_path / "other.png").read_bytes()))
    forged = read_credentials(tmp_path / "forged.png")
    assert forged.state == "Invalid" and "assertion.dataHash.mismatch" in forged.problems
    assert cross_check(forged, detection()) == "manifest-invalid"


def test_no_manifest_claims_an_undetected_watermark(certificates, tmp_path):
    with pytest.raises(ValueError, match="not detected"):
        c2pa_link.watermark_manifest(detection(detected=False), "x.png")


def corrupt_manifest(signed: bytes) -> bytes:
    """``signed`` with bytes inside its manifest chunk scrambled (and the chunk's CRC fixed, so the
    PNG itself stays valid): a manifest store that is present but cannot be parsed."""
    out = signed[:8]
    for kind, chunk in png_chunks(signed):
        if kind == b"caBX":
            body = bytearray(chunk[8:-4])
            body[16:200] = bytes(reversed(body[16:200]))
            chunk = chunk[:8] + bytes(body) + struct.pack(">I", zlib.crc32(kind + bytes(body)))
        out += chunk
    return out


def test_a_corrupt_manifest_is_invalid_and_the_batch_goes_on(certificates, tmp_path):
    random_png(tmp_path / "a.png", 0)
    signer = ManifestSigner.from_files(certificates["chain"], certificates["key"])
    sign_file(tmp_path / "a.png", tmp_path / "b.png", c2pa_link.watermark_manifest(detection(), "b.png"), signer)
    (tmp_path / "corrupt.png").write_bytes(corrupt_manifest((tmp_path / "b.png").read_bytes()))
    result = run("image", "verify", "--json", tmp_path / "corrupt.png", tmp_path / "b.png", tmp_path / "gone.png")
    assert result.exit_code == 2  # one input could not be read; the others were verified
    corrupt, good, gone = [json.loads(line) for line in result.stdout.splitlines()]
    assert corrupt["credentials"]["state"] == "Invalid" and good["credentials"]["state"] == "Valid"
    assert set(gone) == {"input", "error"} and "no such image file" in gone["error"]
    assert cross_check(read_credentials(tmp_path / "corrupt.png"), detection()) == "manifest-invalid"


def test_cross_check_covers_every_verdict():
    claim = Credentials("Valid", "s", "i", "g", (), (("org.provenance-suite.gaussian-shading.1", "0123456789abcdef:beef"),),
                        None, ())
    unrelated = Credentials("Valid", "s", "i", "g", (), (("com.digimarc.validate.1", "xyz"),), None, ())
    cases = {
        (None, True): "watermark-only", (None, False): "no-provenance",
        (claim, True): "consistent", (claim, False): "watermark-missing",
        (unrelated, True): "unclaimed-watermark", (unrelated, False): "no-claim-for-key",
    }
    for (credentials, detected), verdict in cases.items():
        assert cross_check(credentials, detection(detected)) == verdict
    assert cross_check(claim, detection(payload="f00d")) == "payload-mismatch"
    assert cross_check(claim, detection(payload=None)) == "consistent"  # undecoded payload: no contradiction
    assert cross_check(claim, detection(key_id="fedcba9876543210")) == "unclaimed-watermark"
    assert set(c2pa_link.VERDICTS) == {*cases.values(), "payload-mismatch", "manifest-invalid"}


def test_development_certificates_keep_the_key_private_and_refuse_to_overwrite(certificates, tmp_path):
    assert os.stat(certificates["key"]).st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_development_certificates(certificates["key"].parent)
    assert run("keys", "dev-cert", "--out", tmp_path).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "chain.pem", "signer-key.pem"]
    before = (tmp_path / "signer-key.pem").read_bytes()
    again = run("keys", "dev-cert", "--out", tmp_path)
    assert again.exit_code == 2 and "already exists" in again.output
    assert (tmp_path / "signer-key.pem").read_bytes() == before
    signer = ManifestSigner.from_files(certificates["chain"], certificates["key"])
    assert "PRIVATE" not in repr(signer) and "CERTIFICATE" not in repr(signer)
    with pytest.raises(ValueError, match="no PEM private key"):
        ManifestSigner.from_files(certificates["chain"], certificates["chain"])


def test_sign_and_verify_on_the_reference_model(certificates, tmp_path):
    """Generate -> sign -> verify (consistent) -> strip (watermark-only, soft binding recovered);
    an unwatermarked image is not signed; a wrong key finds no claim."""
    key, other = tmp_path / "key.json", tmp_path / "other.json"
    WatermarkKey.from_seed("c2pa-cli").save(key)
    WatermarkKey.from_seed("c2pa-cli-other").save(other)
    key_id = WatermarkKey.load(key).key_id
    image, signed = tmp_path / "wm.png", tmp_path / "signed.png"
    common = ("--scheme", "gaussian-shading", "--steps", "10")
    assert run("image", "generate", "--key", key, "--scheme", "gaussian-shading", "--prompt", PROMPT,
               "--payload", "beef", "--steps", "10", "--out", image).exit_code == 0
    certs = ("--cert", certificates["chain"], "--private-key", certificates["key"])
    made = run("image", "sign", "--key", key, *common, *certs, "--out", signed, image)
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["soft_binding"]["value"] == f"{key_id}:beef"
    assert json.loads(made.stdout)["output"] == str(signed)

    verified = json.loads(run("image", "verify", "--key", key, *common, "--json", signed).stdout)
    assert verified["verdict"] == "consistent" and verified["credentials"]["state"] == "Valid"
    stripped = tmp_path / "stripped.png"
    cv2.imwrite(str(stripped), cv2.imread(str(signed)))  # re-encoding drops the manifest, keeps the pixels
    line = run("image", "verify", "--key", key, *common, stripped).stdout
    assert "watermark-only" in line and f"{key_id}:beef" in line
    wrong = json.loads(run("image", "verify", "--key", other, *common, "--json", signed).stdout)
    assert wrong["verdict"] == "no-claim-for-key"
    only_manifest = json.loads(run("image", "verify", "--json", signed).stdout)
    assert only_manifest["verdict"] is None and only_manifest["watermark"] is None
    assert "secret" not in made.output + line

    plain = tmp_path / "plain.png"
    random_png(plain, 2)
    refused = run("image", "sign", "--key", key, *common, *certs, "--out", tmp_path / "no.png", plain)
    assert refused.exit_code == 2 and "not detected" in refused.output and not (tmp_path / "no.png").exists()
    again = run("image", "sign", "--key", key, *common, *certs, "--out", signed, image)
    assert again.exit_code == 2 and "already exists" in again.output
    jpeg_out = run("image", "sign", "--key", key, *common, *certs, "--out", tmp_path / "x.jpg", image)
    assert jpeg_out.exit_code == 2 and "same format" in jpeg_out.output
    assert run("image", "verify", "--key", key, signed).exit_code == 2  # --key without --scheme
    (tmp_path / "junk.png").write_bytes(b"junk")
    junk = run("image", "verify", tmp_path / "junk.png")
    assert junk.exit_code == 2 and junk.output.strip().startswith(f"error: {tmp_path / 'junk.png'}: not a readable image")


def test_video_sign_and_verify_on_the_reference_model(certificates, tmp_path):
    """A VideoMark clip signed as MP4 verifies as consistent; its reversed copy has no manifest, and
    the watermark still gives the soft binding back."""
    key = tmp_path / "key.json"
    WatermarkKey.from_seed("c2pa-video").save(key)
    clip, signed, reversed_clip = tmp_path / "clip.mp4", tmp_path / "signed.mp4", tmp_path / "reversed.mp4"
    assert run("video", "generate", "--key", key, "--prompt", "a small red circle moving right on a plain white background",
               "--frames", "8", "--steps", "10", "--seed", "3", "--out", clip).exit_code == 0
    made = run("video", "sign", "--key", key, "--steps", "10", "--cert", certificates["chain"],
               "--private-key", certificates["key"], "--out", signed, clip)
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["soft_binding"] == {"alg": "org.provenance-suite.videomark.1",
                                                       "value": WatermarkKey.load(key).key_id}
    assert run("attack", "video", "--name", "reverse", signed, "--out", reversed_clip).exit_code == 0
    rows = [json.loads(line) for line in run("video", "verify", "--key", key, "--steps", "10", "--json",
                                             signed, reversed_clip).stdout.splitlines()]
    assert [r["verdict"] for r in rows] == ["consistent", "watermark-only"]
