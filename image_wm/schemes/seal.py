"""SEAL (Arabi et al., ICCV 2025): initial noise whose patches are keyed by what the image shows.

Design. The latent (B, C, h, w) is cut into k patches of C x s x s values (``patch_size`` s).
The caption embedding v (unit norm, ``image_wm.semantics``) is SimHashed per patch: b bits
[r_ji . v > 0] from secret Gaussian hyperplanes (sub-key "seal/hyperplanes"), read as an
integer h_j < 2^b. Patch j's noise is row (j, h_j) of a secret table of Gaussians (sub-key
"seal/patches"), looked up with one gather: a keyed PRF of (key, patch, hash), so the noise
is N(0, I) given the key and depends on the image only through its meaning. Similar captions
(small angle theta) share each patch with probability (1 - theta/180)^b, unrelated ones
share few patches, so a forger who reuses the noise for new content loses the watermark.

Detection recomputes the expected latent for each of V caption variants of the inspected
image and takes the matched filter: the cosine between the recovered latent and the expected
one, i.e. the sum of per-patch inner products over both norms. Null hypothesis H0: the
recovered latent is independent of this key's patches for these captions (not made with
this key, or made for unrelated content). The patterns are i.i.d. N(0, 1) given the key, so
the expected latent is isotropic and independent of the recovered one (equally, a recovered
latent N(0, s^2 I) of any s is isotropic); either way (1 + cos) / 2 ~ Beta((n-1)/2, (n-1)/2)
exactly, n = C h w. The best of the V variants is Bonferroni-corrected over its distinct
variants. Matched patches only add signal, so partial semantic matches give partial evidence.

Deviations from the paper, and why:
- Noise comes from a keyed table, not from ``seed(hash(bits))``: upstream each patch is one of
  2^b publicly enumerable patterns (the patch-search forgery); here it needs the key.
- The decision is the calibrated cosine test, not #{patches with d_p < tau} >= m_match: DDIM
  inversion recovers the noise only roughly (correlation ~0.4 on the reference model), and a
  hard per-patch distance threshold throws away most of that evidence. The paper's count
  (per-patch minimum over variants, its Alg. 3) and m_match = floor(k (1 - theta_mid/180)^b)
  are reported in ``details["lemma"]`` with tau and the per-patch H0 match rate (noncentral chi^2).
- Defaults scale with the latent: s is the smallest side giving at most ``max_patches`` (1024,
  the paper's k) patches, i.e. the paper's 4x2x2 patches on SD's 4x64x64 and 256 patches of
  4 values on the reference 4x16x16 (64 patches of the paper's 16 values measured the same
  rates below within noise; 1x1 patches localise an inserted object 4x finer).
  bits = 7 is the paper's. On template captions the stock MiniLM puts one-label paraphrases
  11-40 degrees apart (10th-90th percentile) and random scene pairs 39-64 (median 57). At
  inversion correlation 0.43 (z' = 0.43 z + noise, n = 1024, FPR 1e-6) bits 5/6/7 detect a
  paraphrase's embedding in 87/82/74% of images but also a random caption's in 7/4/1%
  (64/29/17% on clean latents): 7 resists noise-reuse forgery best, and the caption variants
  (which usually contain the generation caption itself) recover paraphrase robustness.
  theta_mid = 40 degrees sits between the two angle ranges; tau keeps the paper's per-patch
  H0 match rate (tau = 3 at 16 values per patch, 0.52 at 4).
- The latent is a function of the caption only; the per-image ``generator`` is unused, as in
  the paper (two images with the same caption start from the same noise).

Generation (``SEAL.generate``) makes a provisional image from plain noise, captions it, keys the
noise on that caption and re-keys up to ``caption_rounds`` times on the final image's own caption,
keeping each image's best keying. Measured rates on the reference model are in ``docs/images.md``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats as sps

from typing import Any

from image_wm.schemes.base import DEFAULT_FPR, GenerationHost, check_latent_shape, payload_to_bits
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult
from provenance.stats import check_fpr, cosine_tail, cosine_threshold

CAPTION_VARIANTS = 3  # captions of an inspected image that detection tries
GOOD_MATCH = 0.5  # a keying whose matched filter reaches this cosine is kept without another round
MAX_TABLE = 1 << 26  # Gaussians in the keyed patch table (256 MiB of float32)
_PAPER_NULL_RATE = float(sps.chi2.cdf(3.0**2 / 2.0, 16))  # P[d_p < 3] for unrelated 16-value patches


class SEAL:
    """Semantic zero-bit latent watermark; see the module docstring."""

    name = "seal"
    default_fpr = DEFAULT_FPR
    payload_bytes = 0
    semantic = True
    erasable = False  # zeros would move the patch distances

    def __init__(self, bits: int = 7, patch_size: int | None = None, max_patches: int = 1024,
                 theta_mid: float = 40.0, tau: float | None = None):
        if not 1 <= bits <= 16 or max_patches < 1 or not 0.0 < theta_mid < 180.0:
            raise ValueError("need 1 <= bits <= 16, max_patches >= 1 and 0 < theta_mid < 180")
        self.bits, self.patch_size, self.max_patches = bits, patch_size, max_patches
        self.theta_mid, self.tau = theta_mid, tau

    # -- geometry --------------------------------------------------------------------
    def geometry(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(patch side s, patches k, values per patch m) for latents of ``shape``."""
        _, c, h, w = check_latent_shape(shape)
        side = self.patch_size
        if side is None:  # the smallest patch side that gives at most max_patches patches
            sides = [s for s in range(1, math.gcd(h, w) + 1) if h % s == 0 and w % s == 0]
            side = next((s for s in sides if (h // s) * (w // s) <= self.max_patches), sides[-1])
        if h % side or w % side:
            raise ValueError(f"patch size {side} does not divide the latent's {h}x{w}")
        return side, (h // side) * (w // side), c * side * side

    @staticmethod
    def _to_patches(latents: torch.Tensor, side: int) -> torch.Tensor:
        b, c, h, w = latents.shape
        x = latents.reshape(b, c, h // side, side, w // side, side).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // side) * (w // side), c * side * side)

    @staticmethod
    def _from_patches(patches: torch.Tensor, shape: tuple[int, int, int, int], side: int) -> torch.Tensor:
        b, c, h, w = shape
        x = patches.reshape(b, h // side, w // side, c, side, side).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, c, h, w)

    # -- keyed hashing and patterns --------------------------------------------------
    def patch_hashes(self, key: WatermarkKey, embeddings: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """SimHash values ``(..., k)`` in [0, 2^bits) of embeddings ``(..., d)`` for latents of ``shape``."""
        _, k, _ = self.geometry(shape)
        emb = torch.as_tensor(embeddings).detach().to("cpu", torch.float64)
        gen, _ = key.generator("seal/hyperplanes", k, self.bits, emb.shape[-1])
        planes = torch.randn(k * self.bits, emb.shape[-1], generator=gen, dtype=torch.float64)
        signs = (emb @ planes.T > 0).reshape(*emb.shape[:-1], k, self.bits).long()
        return (signs << torch.arange(self.bits)).sum(-1)

    def expected_patches(self, key: WatermarkKey, embeddings: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The key's noise patches ``(..., k, m)`` (float32) for embeddings ``(..., d)``."""
        return self._lookup(key, self.patch_hashes(key, embeddings, shape), shape)

    def _lookup(self, key: WatermarkKey, hashes: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Rows (j, h_j) of the keyed table of Gaussians: one gather, no per-patch loop."""
        _, k, m = self.geometry(shape)
        if k * m << self.bits > MAX_TABLE:
            raise ValueError(f"a {k}x2^{self.bits}x{m} patch table is too large: use fewer bits or patches")
        gen, _ = key.generator("seal/patches", k, self.bits, m)
        return torch.randn(k, 1 << self.bits, m, generator=gen)[torch.arange(k), hashes]

    # -- protocol ----------------------------------------------------------------------
    def initial_latents(self, shape: tuple[int, ...], key: WatermarkKey, generator: torch.Generator,
                        payload: bytes | None = None, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Latents whose patches are the key's patterns for each image's caption embedding ``(B, d)``."""
        shape = check_latent_shape(shape)
        payload_to_bits(payload, self.payload_bytes, self.name)
        if embeddings is None or embeddings.ndim != 2 or embeddings.shape[0] != shape[0]:
            raise ValueError(f"SEAL needs caption embeddings shaped ({shape[0]}, d) to generate")
        side = self.geometry(shape)[0]
        return self._from_patches(self.expected_patches(key, embeddings, shape), shape, side).contiguous()

    def detect(self, latents: torch.Tensor, key: WatermarkKey, fpr: float = DEFAULT_FPR,
               embeddings: torch.Tensor | None = None) -> list[DetectionResult]:
        """Matched-filter test of recovered latents against V caption variants ``(B, V, d)`` each."""
        fpr = check_fpr(fpr)
        shape = check_latent_shape(tuple(latents.shape))
        if embeddings is not None and embeddings.ndim == 2:
            embeddings = embeddings[:, None]
        if embeddings is None or embeddings.ndim != 3 or embeddings.shape[0] != shape[0]:
            raise ValueError(f"SEAL needs caption embeddings shaped ({shape[0]}, V, d) to detect")
        side, k, m = self.geometry(shape)
        n = k * m
        z = self._to_patches(latents.detach().to("cpu", torch.float64), side)  # (B, k, m)
        hashes = self.patch_hashes(key, embeddings, shape)  # (B, V, k)
        ref = self._lookup(key, hashes, shape).double()  # (B, V, k, m)
        norms = z.flatten(1).norm(dim=1)[:, None] * ref.flatten(2).norm(dim=2)
        cos = torch.einsum("bkm,bvkm->bv", z, ref) / norms.clamp_min(1e-300)
        cos = torch.where(norms > 0, cos, torch.zeros_like(cos)).clamp(-1.0, 1.0).numpy()
        # variants with identical hashes are one hypothesis: Bonferroni over the distinct ones
        same = (hashes[:, :, None] == hashes[:, None]).all(-1).tril(-1).any(-1)
        distinct = (~same).sum(-1).numpy()
        p_variant = np.atleast_2d(cosine_tail(cos, n))
        best = cos.argmax(axis=1)
        lemma = self._lemma(z, ref)
        results = []
        for i in range(shape[0]):
            v, c = int(distinct[i]), float(cos[i, best[i]])
            p = min(1.0, v * float(p_variant[i, best[i]]))
            details = {"best_variant": int(best[i]), "variants": int(cos.shape[1]), "distinct_variants": v,
                       "cosine": cos[i].tolist(), "z": c * math.sqrt(n), "patches": k, "patch_values": m,
                       "bits": self.bits, "lemma": {name: _item(val, i) for name, val in lemma.items()}}
            results.append(DetectionResult(
                detected=p <= fpr, p_value=p, score=c, threshold=cosine_threshold(fpr / v, n),
                fpr=fpr, scheme=self.name, key_id=key.key_id, details=details))
        return results

    def _lemma(self, z: torch.Tensor, ref: torch.Tensor) -> dict:
        """The paper's count #{p: min_v d_p < tau} against m_match, and the per-patch, per-variant
        match rate under H0 (z ~ N(0, s^2 I), s from the latent: d_p^2 / s^2 is noncentral chi^2)."""
        k, m = ref.shape[-2:]
        tau = self.tau if self.tau is not None else math.sqrt(2.0 * sps.chi2.ppf(_PAPER_NULL_RATE, m))
        matched = ((z[:, None] - ref).norm(dim=-1).amin(dim=1) < tau).sum(-1).numpy()  # (B,)
        scale2 = z.square().mean(dim=(1, 2)).clamp_min(1e-12).numpy()[:, None, None]
        q0 = sps.ncx2.cdf(tau**2 / scale2, m, ref.square().sum(-1).numpy() / scale2)  # (B, V, k)
        m_match = math.floor(k * (1.0 - self.theta_mid / 180.0) ** self.bits)
        return {"tau": tau, "theta_mid": self.theta_mid, "m_match": m_match, "matched_patches": matched,
                "passed": matched >= m_match, "null_match_rate": q0.mean(axis=(1, 2))}


    def generate(self, host: GenerationHost, prompts: list[str], seeds: list[int], steps: int,
                 guidance: float | None, **kwargs: Any) -> tuple[torch.Tensor, np.ndarray]:
        """Two passes, then up to ``host.caption_rounds`` keyings per image; each keeps its best one.

        SEAL keys the noise on the caption of a provisional image; detection captions the final
        image. That only works if the final image means what its noise was keyed on, and where
        content is set mostly by the noise (the reference model) a new noise gives a new scene:
        re-keying on the new caption is a chaotic map, not a contraction. So each round keys the
        still-unmatched images on their latest image's caption and scores every candidate as the
        detector will see it: the cosine between the keyed latent and the latent expected for each of
        the final image's ``CAPTION_VARIANTS`` caption variants, i.e. the matched filter on a perfect
        inversion. Each image keeps its best-scoring round (not its last), and stops once it scores
        ``GOOD_MATCH``. Cost: one provisional and up to ``caption_rounds`` watermarked generations,
        plus captions.
        """
        noise = host.plain_latents(seeds)
        provisional = host.run_pipeline(prompts, noise, steps, guidance, **kwargs)
        keyed = host.semantics.embed(provisional, variants=1)[:, 0]
        latents = torch.empty_like(noise)
        images = np.empty_like(provisional)
        score = np.full(len(prompts), -np.inf)
        todo = np.arange(len(prompts))
        for _ in range(max(1, host.caption_rounds)):
            candidates = host.watermarked_latents([seeds[i] for i in todo], None, keyed[todo])
            made = host.run_pipeline([prompts[i] for i in todo], candidates, steps, guidance, **kwargs)
            seen = host.semantics.embed(made, variants=CAPTION_VARIANTS)  # (b, V, d), first: the plain caption
            expected = torch.stack([host.watermarked_latents([seeds[i]] * CAPTION_VARIANTS, None, seen[j])
                                    for j, i in enumerate(todo)])  # (b, V, C, h, w)
            cosine = torch.nn.functional.cosine_similarity(expected.flatten(2), candidates[:, None].flatten(2), dim=-1)
            got = cosine.amax(dim=1).double().numpy()
            better = got > score[todo]
            latents[todo[better]], images[todo[better]] = candidates[torch.from_numpy(better)], made[better]
            score[todo[better]] = got[better]
            keyed[todo] = seen[:, 0]  # the next round keys on what this round's image shows
            todo = todo[score[todo] < GOOD_MATCH]
            if len(todo) == 0:
                break
        return latents, images


def _item(value: object, i: int) -> object:
    """Row ``i`` of a per-image array, or a shared scalar as is."""
    return value[i].item() if isinstance(value, np.ndarray) else value
