"""Gaussian Shading (Yang et al., CVPR 2024): payload bits, replicated and encrypted with
ChaCha20, choose the signs of the initial latent; magnitudes stay |N(0, 1)|. Multi-bit.

Embedding: the L = 8 * payload_bytes payload bits are tiled over the n = C*h*w latent entries in a
keyed interleaved order (sub-key "gaussian-shading/interleave"): entry ``perm[j]`` carries bit
``j mod L`` for j < r*L, r = n // L. The paper's ``repeat`` tiling spreads a bit's copies over a
regular grid; tiling in flat order would put a 16-bit payload on whole columns of a 16-wide
latent, and block replication on one contiguous region, so a crop or a local inversion error
would erase whole bits. The keyed interleaver spreads every bit's r copies over all channels and
positions for any shape. The n - r*L leftover entries carry filler (bit 0, hence the raw
keystream) and are ignored at decoding. The tiled bits are XORed with a ChaCha20 keystream (key =
sub-key "gaussian-shading/chacha", 16-byte nonce = zero block counter + 12 bytes of sub-key
"gaussian-shading/nonce") and entry i becomes ``(+1 if bit else -1) * |xi_i|``, xi ~ N(0, 1)
from the caller's generator: the paper's truncated-normal sampling, exactly.
``payload=None`` embeds a key-derived pattern (sub-key "gaussian-shading/pattern") in its place;
with ``payload_bytes=0`` the scheme is zero-bit and the pattern has one bit per entry (L = n).

Key reuse (the paper's pitfall): the reference draws a fresh watermark, key and nonce per image.
Here key and nonce are fixed per WatermarkKey, so every image with the same payload shares one
sign pattern. Each latent alone is exactly N(0, I) to anyone without the key, but several images
together reveal the pattern (average their inverted latents), which enables forgery.

Detection: signs of the recovered latent XOR the keystream give one bit per entry; a majority vote
per payload bit decodes the payload, with per-bit confidence |votes / r - 1/2| * 2. H0: the image
was not made with this key. Its signs are then independent of the keystream, so the decrypted
entries are fair coins whatever correlations the image has, and both tests are exact:
- multi-bit, payload unknown: T = sum_g max(v_g, r - v_g), whose null law is the L-fold
  convolution of the law of max(Bin(r, 1/2), r - Bin(r, 1/2)) (cached per (L, r));
- zero-bit: the number of entries agreeing with the key's pattern, exact binomial tail.
Replication is what makes T informative: with r = 1 (payload as long as the latent) T is constant.
``bit_threshold`` is the paper's rule on decoded bit accuracy, used by ``trace`` to attribute an
image to one of several known payloads (users). With 16 bits the bit accuracy can only certify
FPRs down to 2**-16 per candidate, so at the default FPR 1e-6 ``trace`` never attributes; the
entry-level p-value it also returns has far more resolution.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from scipy import stats as sps

from image_wm.schemes.base import DEFAULT_FPR, bits_to_hex, check_latent_shape, payload_to_bits
from provenance import stats
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult


@functools.lru_cache(maxsize=64)
def vote_statistic_sf(bits: int, copies: int) -> tuple[int, np.ndarray]:
    """(t_min, sf) with sf[t - t_min] = P(T >= t) for T = sum over ``bits`` groups of max(V, r - V), V ~ Bin(r, 1/2)."""
    low = (copies + 1) // 2
    values = np.arange(low, copies + 1)
    group = 2.0 * sps.binom.pmf(values, copies, 0.5)
    if copies % 2 == 0:
        group[0] /= 2.0  # max = r/2 only when V = r/2 exactly
    pmf = np.ones(1)
    for _ in range(bits):
        pmf = np.convolve(pmf, group)
    sf = np.minimum(1.0, np.cumsum(pmf[::-1])[::-1])
    sf.setflags(write=False)
    return bits * low, sf


class GaussianShading:
    """Sign-encrypted replicated payload in the initial latent; exact vote and binomial tests."""

    name = "gaussian-shading"
    default_fpr = DEFAULT_FPR
    semantic = False
    erasable = False  # a zero entry would read as a sign bit

    def __init__(self, payload_bytes: int = 2) -> None:
        if payload_bytes < 0:
            raise ValueError("payload_bytes must be non-negative")
        self.payload_bytes = payload_bytes

    # -- keyed material ------------------------------------------------------------------
    def layout(self, key: WatermarkKey, n: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(L, r, used entries ordered so that ``used.reshape(r, L)[:, g]`` carry bit g, keystream bits)."""
        bits = 8 * self.payload_bytes or n
        copies = n // bits
        if copies < 1:
            raise ValueError(f"a latent with {n} entries cannot carry {bits} payload bits")
        order = torch.randperm(n, generator=key.generator("gaussian-shading/interleave", n)[0]).numpy()
        nonce = bytes(4) + key.subkey("gaussian-shading/nonce")[:12]
        cipher = Cipher(algorithms.ChaCha20(key.subkey("gaussian-shading/chacha"), nonce), mode=None)
        stream = np.unpackbits(np.frombuffer(cipher.encryptor().update(bytes((n + 7) // 8)), dtype=np.uint8))[:n]
        return bits, copies, order[: bits * copies], stream

    @staticmethod
    def key_pattern(key: WatermarkKey, bits: int) -> np.ndarray:
        """The zero-bit watermark: ``bits`` (= L) key-derived bits, embedded when no payload is given."""
        return key.generator("gaussian-shading/pattern", bits)[1].integers(0, 2, bits, dtype=np.uint8)

    # -- generation ----------------------------------------------------------------------
    def initial_latents(self, shape: tuple[int, ...], key: WatermarkKey, generator: torch.Generator,
                        payload: bytes | None = None, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = check_latent_shape(shape)
        n = channels * height * width
        message = payload_to_bits(payload, self.payload_bytes, self.name)
        bits, copies, used, stream = self.layout(key, n)
        tiled = np.zeros(n, dtype=np.uint8)  # leftover entries: filler 0, i.e. the raw keystream
        tiled[used] = np.tile(self.key_pattern(key, bits) if message is None else message, copies)
        signs = torch.from_numpy((tiled ^ stream).astype(np.float32) * 2.0 - 1.0)
        magnitudes = torch.randn(shape, generator=generator, dtype=torch.float32).abs()
        return magnitudes * signs.reshape(1, channels, height, width)

    # -- detection -----------------------------------------------------------------------
    def votes(self, latents: torch.Tensor, key: WatermarkKey) -> tuple[np.ndarray, int]:
        """(votes for 1 per payload bit, shape (B, L); copies r) from the recovered latents' signs."""
        batch, channels, height, width = check_latent_shape(tuple(latents.shape))
        n = channels * height * width
        bits, copies, used, stream = self.layout(key, n)
        entry_bits = (latents.detach().cpu().reshape(batch, n) > 0).numpy().astype(np.uint8) ^ stream
        return entry_bits[:, used].reshape(batch, copies, bits).sum(axis=1, dtype=np.int64), copies

    def detect(self, latents: torch.Tensor, key: WatermarkKey, fpr: float = DEFAULT_FPR,
               embeddings: torch.Tensor | None = None) -> list[DetectionResult]:
        fpr = stats.check_fpr(fpr)
        votes, copies = self.votes(latents, key)
        bits = votes.shape[1]
        confidence = np.abs(votes / copies - 0.5) * 2.0
        if self.payload_bytes:
            statistic = np.maximum(votes, copies - votes).sum(axis=1)
            t_min, sf = vote_statistic_sf(bits, copies)
            p_values = sf[statistic - t_min]
            test = "T = sum_g max(v_g, r - v_g), exact convolution null"
        else:
            pattern = self.key_pattern(key, bits)
            statistic = np.where(pattern == 1, votes, copies - votes).sum(axis=1)
            p_values = np.atleast_1d(stats.binomial_tail(statistic, bits * copies))
            test = "entries agreeing with the key pattern, exact binomial tail"
        results = []
        for vote, conf, t, p in zip(votes, confidence, statistic, p_values):
            details = {"null": "decrypted entry bits are fair coins (image not made with this key)",
                       "test": test, "statistic": int(t), "bits": bits, "copies": copies}
            payload = None
            if self.payload_bytes:
                payload = bits_to_hex(2 * vote > copies)
                details["bit_confidence"] = conf
            results.append(DetectionResult(
                detected=bool(p <= fpr), p_value=float(p), score=-math.log10(max(float(p), 1e-300)),
                threshold=-math.log10(fpr), fpr=fpr, scheme=self.name, key_id=key.key_id, payload=payload,
                bit_accuracy=None if self.payload_bytes else float(t) / (bits * copies), details=details))
        return results

    # -- attribution ---------------------------------------------------------------------
    def bit_threshold(self, fpr: float = DEFAULT_FPR, n_users: int = 1) -> float:
        """Bit accuracy needed: tau = k / L, k the smallest count with P(Bin(L, 1/2) >= k) <= fpr / n_users.

        Accept when accuracy >= tau; above 1 means never. The paper writes tau = i / L with
        I_{1/2}(i + 1, L - i) <= fpr and a strict ">", i.e. i = k - 1: the same decision.
        """
        bits = 8 * self.payload_bytes
        if not bits:
            raise ValueError("a zero-bit Gaussian Shading scheme has no payload bits to threshold")
        return stats.binomial_threshold(bits, stats.check_fpr(fpr) / n_users) / bits

    def trace(self, latents: torch.Tensor, key: WatermarkKey, candidates: list[bytes],
              fpr: float = DEFAULT_FPR) -> list[tuple[int | None, float]]:
        """Per image: (index of the best-matching candidate payload if its bit accuracy passes the
        Bonferroni-corrected ``bit_threshold`` else None, its entry-level p-value times len(candidates))."""
        if not candidates:
            raise ValueError("trace needs at least one candidate payload")
        users = np.stack([payload_to_bits(c, self.payload_bytes, self.name) for c in candidates]).astype(np.int64)
        votes, copies = self.votes(latents, key)
        decoded = (2 * votes > copies).astype(np.int64)
        matches = decoded @ users.T + (1 - decoded) @ (1 - users.T)  # (B, U) bits agreeing
        agree = votes @ users.T + (copies - votes) @ (1 - users.T)  # (B, U) entries agreeing
        best = np.argmax(matches * (copies * users.shape[1] + 1) + agree, axis=1)
        rows = np.arange(len(best))
        tau = self.bit_threshold(fpr, len(candidates))
        p_values = np.minimum(1.0, np.atleast_1d(stats.binomial_tail(agree[rows, best], copies * users.shape[1]))
                              * len(candidates))
        accuracy = matches[rows, best] / users.shape[1]
        return [(int(b) if a >= tau else None, float(p)) for b, a, p in zip(best, accuracy, p_values)]
