"""PRC watermark (Gunn, Zhao, Song, ICLR 2025): the signs of the initial latent are a codeword of
a pseudorandom code, its magnitudes ``|N(0, 1)|``.

Why it is the flagship scheme: without the key a codeword is indistinguishable from uniform
bits, so a watermarked latent is distributed exactly like N(0, I). Unlike Gaussian Shading
with a fixed key, no two images share a sign pattern (each encoding draws fresh code
randomness and noise), so averaging many images reveals nothing.

Generation: the code (``provenance.codes.prc``) is drawn from the key for codeword length
``n = C * h * w``; each image encodes ``[test bits | random | payload]`` with the encoder's
noise, and its latent entry ``i`` is ``sign_i * |xi_i|``. Per-image randomness (code
randomness, noise, magnitudes) comes from the caller's generator, so a (key, payload, seed)
triple reproduces the image.

Detection runs two tests on the inverted latent's soft signs
(``erf(z' / sqrt(2 s^2 (1 + s^2)))``, ``s^2 = noise_var``):
- the zero-bit parity-check test, exact under H0 (signs are fair coins independent of the
  key; see the code module), ``p_zero``;
- decoding (belief propagation + GF(2) solve), accepted only if the decoded test bits equal
  the key's; under H0 that happens with probability at most ``2 ** -test_bits``.
The image's p-value is ``min(1, 2 * min(p_zero, p_decode))`` (Bonferroni over the two tests,
``p_decode = 2 ** -test_bits`` when decoding succeeds, else 1), so "detected" keeps its stated
FPR even though the reference ORs the two decisions without accounting for it.

Capacity on the reference model's 4x16x16 latent: n = 1024 leaves about 900 parity checks
with a 16-bit payload. The zero-bit test then needs roughly 80% sign agreement after
inversion (75% at n = 4096, 70% at n = 16384; see docs/benchmarks.md, "PRC code").
"""

from __future__ import annotations

import math

import numpy as np
import torch

from image_wm.schemes.base import DEFAULT_FPR, bits_to_hex, check_latent_shape, payload_to_bits
from provenance import stats
from provenance.codes import prc as code
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult


class PRCWatermark:
    """Pseudo-Gaussian latents from PRC codewords; zero-bit detection and payload decoding."""

    name = "prc"
    default_fpr = DEFAULT_FPR
    semantic = False
    erasable = True  # a zero latent entry is a zero soft sign: no weight in either test

    def __init__(self, payload_bytes: int = 2, t: int = 3, decode_fpr: float = 1e-9, noise_var: float = 1.5) -> None:
        if payload_bytes < 0:
            raise ValueError("payload_bytes must be non-negative")
        self.payload_bytes = payload_bytes
        self.t = t
        self.decode_fpr = stats.check_fpr(decode_fpr)
        self.noise_var = noise_var
        self._codes: dict[tuple[str, int], code.PRCKey] = {}

    def code_for(self, key: WatermarkKey, n: int) -> code.PRCKey:
        """The key's PRC code for ``n`` latent entries (drawn once per key and size, then cached)."""
        slot = (key.key_id, n)
        if slot not in self._codes:
            params = code.PRCParams.for_length(n, message_bits=8 * self.payload_bytes, fpr=self.decode_fpr, t=self.t)
            self._codes[slot] = code.generate_key(key, params)
        return self._codes[slot]

    def initial_latents(self, shape: tuple[int, ...], key: WatermarkKey, generator: torch.Generator,
                        payload: bytes | None = None, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = check_latent_shape(shape)
        bits = payload_to_bits(payload, self.payload_bytes, self.name)
        prc = self.code_for(key, channels * height * width)
        seeds = torch.randint(0, 2**62, (batch,), generator=generator).tolist()
        rows = []
        for seed in seeds:  # one codeword per image: encoding is a vectorised popcount
            rng = np.random.default_rng(seed)
            rows.append(code.codeword_to_latent(code.encode(prc, bits, rng), rng))
        return torch.from_numpy(np.stack(rows)).float().reshape(shape)

    def detect(self, latents: torch.Tensor, key: WatermarkKey, fpr: float = DEFAULT_FPR,
               embeddings: torch.Tensor | None = None) -> list[DetectionResult]:
        fpr = stats.check_fpr(fpr)
        flat = latents.detach().cpu().double().reshape(len(latents), -1).numpy()
        prc = self.code_for(key, flat.shape[1])
        posteriors = code.latent_to_posterior(flat, self.noise_var)
        p_zero = np.atleast_1d(code.p_values(prc, posteriors))
        return [self._result(prc, post, float(pz), key, fpr) for post, pz in zip(posteriors, p_zero)]

    def _result(self, prc: code.PRCKey, posterior: np.ndarray, p_zero: float, key: WatermarkKey,
                fpr: float) -> DetectionResult:
        payload, confidence, p_decode = None, None, 1.0
        try:
            decoded = code.decode(prc, posterior)
        except code.PRCDecodeError:
            pass
        else:
            p_decode = 2.0 ** -prc.params.test_bits
            if self.payload_bytes:
                payload, confidence = bits_to_hex(decoded.payload_bits), decoded.bit_confidence
        p_value = min(1.0, 2.0 * min(p_zero, p_decode))
        return DetectionResult(
            detected=p_value <= fpr,
            p_value=p_value,
            score=-math.log10(max(p_value, 1e-300)),
            threshold=-math.log10(fpr),
            fpr=fpr,
            scheme=self.name,
            key_id=key.key_id,
            payload=payload,
            details={
                "null": "initial-latent signs are fair coins independent of the key",
                "p_value_zero_bit": p_zero,
                "decoded": p_decode < 1.0,
                "p_value_decode": p_decode,
                "combination": "Bonferroni over the zero-bit test and test-bit decoding",
                "bit_confidence": confidence,
                "n": prc.params.n,
                "checks": prc.params.r,
            },
        )
