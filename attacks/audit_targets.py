"""What an audit runs on: one target per scheme, which makes, detects, attacks and measures its items.

Why a target protocol: an audit must treat a latent image watermark, a post-hoc pixel mark, a
token watermark and a video watermark alike. Each modality only has to say how it makes ``n``
watermarked items with their unwatermarked twins, how it detects a batch, how it applies an
attack, and how far attacked content is from its original; ``attacks.audit`` turns that into
numbers.

Attacks get the models they name: an image attack's parameters called ``pipe`` or ``target``
receive the audit's diffusion pipeline or the cover items (for a forgery: the unwatermarked
content to forge the mark onto, paired one to one with the watermarked items); a text attack's
``model`` and ``tokenizer`` receive the audit's language model. Nothing else is passed, so every
other model an attack needs is its own default.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from attacks.quality import image_quality, text_similarity
from attacks.registry import Attack, Modality
from image_wm import loading
from image_wm.image_io import write_image
from image_wm.pipeline import DEFAULT_STEPS, initial_noise
from image_wm.schemes import SCHEME_NAMES, get_scheme
from image_wm.video.pipeline import WatermarkedVideoPipeline
from provenance.keys import WatermarkKey
from provenance.models import diffusion_weights, update_with_weights
from provenance.result import DetectionResult, UnscoreableInput

COVER_PARAM = "target"  # the keyword forgeries take their cover content by (``pm-transplant``)
DEFAULT_TEXT_TOKENS = 200
TEXT_BATCH = 16
IMAGE_BATCH = 16


@dataclass
class Items:
    """What a target made for one scheme: watermarked items, their unwatermarked twins, the payload."""

    marked: Any  # image: uint8 (n, H, W, 3); text: list[str]
    twins: Any
    payload: bytes | None = None


@runtime_checkable
class AuditTarget(Protocol):
    """One scheme of one modality under one key, as the audit runner sees it.

    ``make`` must be deterministic under ``seed``; ``apply`` must pass ``seed`` on to the attack;
    ``quality`` returns mean metrics (higher = closer to the original); ``save_example`` writes
    one item to ``path_stem`` plus a suffix of its choice and returns the file's name.
    ``setup_id`` names, without secrets, the model weights and settings that make and detect the
    items: a resumed audit reuses a finished cell only under the same setup.
    """

    modality: Modality
    scheme: str
    key_id: str
    setup_id: str

    def make(self, n: int, seed: int) -> Items: ...

    def detect(self, items: Any, fpr: float, payload: bytes | None) -> list[DetectionResult]: ...

    def apply(self, attack: Attack, items: Any, strength: float, seed: int, cover: Any) -> Any: ...

    def quality(self, original: Any, attacked: Any) -> dict[str, float]: ...

    def save_example(self, item: Any, path_stem: Path) -> str: ...


# -- shared helpers ---------------------------------------------------------------------
def describe_setup(settings: dict[str, Any], *modules: Any) -> str:
    """A short public id of ``settings`` and the modules' weights, in one hash (``update_with_weights``)."""
    digest = hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=8)
    update_with_weights(digest, modules)
    return digest.hexdigest()


def describe_diffusion_setup(pipe: Any, steps: int, guidance: float | None, **settings: Any) -> str:
    """``describe_setup`` for a diffusers pipeline run at ``steps`` and ``guidance``."""
    return describe_setup({"steps": steps, "guidance": guidance, **settings}, *diffusion_weights(pipe))


def attack_models(attack: Attack, offered: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``offered`` (``pipe``, ``model``, ``tokenizer``, ``target``) the attack's function names."""
    params = inspect.signature(attack.fn).parameters
    return {name: value for name, value in offered.items() if name in params and value is not None}


def apply_per_item(attack: Attack, items: Sequence[Any], strength: float, seed: int, cover: Sequence[Any],
                   models: dict[str, Any]) -> list[Any]:
    """Attack item ``i`` with seed ``seed + i`` (and cover ``cover[i]``): results do not depend on batching."""
    out = []
    for i, item in enumerate(items):
        extra = attack_models(attack, {**models, COVER_PARAM: cover[i]})
        out.append(attack(item, strength, seed + i, **extra))
    return out


def not_scoreable(reason: str, fpr: float, scheme: str, key_id: str) -> DetectionResult:
    """The result for content a detector cannot score at all (e.g. an attack deleted it): not detected."""
    return DetectionResult(detected=False, p_value=1.0, score=float("nan"), threshold=float("nan"), fpr=fpr,
                           scheme=scheme, key_id=key_id, details={"error": reason})


def derived_payload(n_bytes: int, seed: int) -> bytes | None:
    """The audit's payload for a scheme carrying ``n_bytes`` (public, from the seed; ``None`` for zero-bit)."""
    if n_bytes == 0:
        return None
    return np.random.default_rng([seed, 0x9A71]).bytes(n_bytes)


# -- image targets ----------------------------------------------------------------------
def audit_prompts(n: int, seed: int) -> list[str]:
    """``n`` seeded prompts (``image_wm.loading.default_prompts``: procedural scene captions)."""
    return loading.default_prompts(n, seed)


class ImageTarget:
    """Shared image plumbing: prompts, plain twins from the pipeline, batched attacks, PSNR/SSIM, PNG examples."""

    modality: Modality = "image"

    def __init__(self, scheme: str, key: WatermarkKey, *, model: str | None = None, steps: int | None = None,
                 resync: str = "off") -> None:
        self.scheme, self.key, self.key_id = scheme, key, key.key_id
        self._model = model
        self.steps = DEFAULT_STEPS if steps is None else int(steps)
        self.resync = resync  # latent schemes: the geometric search before inversion (image_wm.resync)

    @property
    def diffusion(self) -> loading.DiffusionModel:
        """The model (``--model`` folder, else the reference world), loaded once per process."""
        return loading.shared_model(self._model)

    @property
    def pipe(self) -> Any:
        return self.diffusion.pipe

    @cached_property
    def setup_id(self) -> str:
        return describe_diffusion_setup(self.pipe, self.steps, self.diffusion.guidance)

    def plain_images(self, prompts: list[str], seed: int) -> np.ndarray:
        """Unwatermarked images, image ``i`` from plain noise seeded ``seed + i``."""
        runner = self.diffusion.watermarked("tree-ring", self.key)  # any noise-only scheme: run_pipeline only
        out = []
        for a in range(0, len(prompts), IMAGE_BATCH):
            b = min(a + IMAGE_BATCH, len(prompts))
            out.append(runner.run_pipeline(prompts[a:b], runner.plain_latents(list(range(seed + a, seed + b))),
                                           self.steps, runner.guidance))
        return np.concatenate(out)

    def apply(self, attack: Attack, items: np.ndarray, strength: float, seed: int, cover: np.ndarray) -> np.ndarray:
        """One batched call (diffusion attacks batch on the pipeline's device)."""
        out = attack(items, strength, seed, **attack_models(attack, {"pipe": self.pipe, COVER_PARAM: cover}))
        return np.asarray(out)

    def quality(self, original: np.ndarray, attacked: np.ndarray) -> dict[str, float]:
        return image_quality(original, attacked)

    def save_example(self, item: np.ndarray, path_stem: Path) -> str:
        return write_image(path_stem.with_suffix(".png"), item).name


class LatentImageTarget(ImageTarget):
    """A latent-noise scheme (``image_wm.schemes``) through ``WatermarkedPipeline``; detection inverts."""

    def __init__(self, scheme: str, key: WatermarkKey, **kwargs: Any) -> None:
        super().__init__(scheme, key, **kwargs)
        self.watermark = get_scheme(scheme)
        self._wrapped: Any = None

    @property
    def wrapped(self) -> Any:
        if self._wrapped is None:
            self._wrapped = self.diffusion.watermarked(self.watermark, self.key)
        return self._wrapped

    def make(self, n: int, seed: int) -> Items:
        prompts = audit_prompts(n, seed)
        payload = derived_payload(self.watermark.payload_bytes, seed)
        marked = [self.wrapped(prompts[a:a + IMAGE_BATCH], payload=payload, seed=seed + a,
                               num_inference_steps=self.steps).images
                  for a in range(0, n, IMAGE_BATCH)]
        return Items(np.concatenate(marked), self.plain_images(prompts, seed), payload)

    def detect(self, items: np.ndarray, fpr: float, payload: bytes | None) -> list[DetectionResult]:
        return self.wrapped.detect(items, fpr=fpr, inversion_steps=self.steps, resync=self.resync)


class PostHocImageTarget(ImageTarget):
    """A pixel-level post-hoc mark (``embed(images, key)``, ``detect(images, key, fpr)``) on plain generated images."""

    def __init__(self, scheme: str, key: WatermarkKey, watermark: Any, **kwargs: Any) -> None:
        super().__init__(scheme, key, **kwargs)
        self.watermark = watermark

    def make(self, n: int, seed: int) -> Items:
        twins = self.plain_images(audit_prompts(n, seed), seed)
        return Items(np.asarray(self.watermark.embed(twins, self.key)), twins, None)

    def detect(self, items: np.ndarray, fpr: float, payload: bytes | None) -> list[DetectionResult]:
        return list(self.watermark.detect(items, self.key, fpr))


def image_target(scheme: str, key: WatermarkKey, **kwargs: Any) -> ImageTarget:
    """Latent schemes (``image_wm.schemes``) and post-hoc baselines (``attacks.baselines``) by name."""
    from attacks.baselines import BASELINE_NAMES, get_baseline

    if scheme in SCHEME_NAMES:
        return LatentImageTarget(scheme, key, **kwargs)
    if scheme in BASELINE_NAMES:
        return PostHocImageTarget(scheme, key, get_baseline(scheme), **kwargs)
    raise LookupError(f"unknown image scheme {scheme!r} (known: {', '.join(SCHEME_NAMES + BASELINE_NAMES)})")


# -- text target ------------------------------------------------------------------------
TEXT_TOPICS = ("the history of bread", "how glaciers move", "a storm at sea", "building a bridge",
               "the life of an ant colony", "why leaves change colour", "a night train journey",
               "the first printing press", "keeping bees in a city", "how a violin is made",
               "a lighthouse keeper", "the water cycle", "a village festival", "learning to swim")
TEXT_STYLES = ("Write a short story about {}.", "Explain {} to a child.", "Write a blog post about {}.")


def text_prompts(n: int, seed: int) -> list[str]:
    """``n`` chat prompts drawn by ``seed`` from a small set of topics and styles."""
    rng = np.random.default_rng([seed, 0x7E47])
    return [rng.choice(TEXT_STYLES).format(rng.choice(TEXT_TOPICS)) for _ in range(n)]


@lru_cache(maxsize=2)
def text_model(model: str | None = None) -> tuple[Any, Any]:
    """The causal LM and tokenizer (SmolLM2-135M unless ``model`` names a local one), loaded once."""
    from provenance.models import load_text_model, quiet_libraries

    quiet_libraries()
    return load_text_model(model)


class TextTarget:
    """A token watermark (``text_wm.registry``) on a causal LM: sampled continuations of chat prompts."""

    modality: Modality = "text"

    def __init__(self, scheme: str, key: WatermarkKey, *, model: str | None = None, lm: Any = None,
                 tokenizer: Any = None, tokens: int = DEFAULT_TEXT_TOKENS) -> None:
        from text_wm.registry import get_scheme as get_text_scheme

        self.scheme, self.key, self.key_id = scheme, key, key.key_id
        self.watermark = get_text_scheme(scheme)
        self._model, self._lm, self._tokenizer = model, lm, tokenizer
        self.tokens = int(tokens)

    def _load(self) -> tuple[Any, Any]:
        if self._lm is None:
            self._lm, self._tokenizer = text_model(self._model)
        return self._lm, self._tokenizer

    @cached_property
    def setup_id(self) -> str:
        return describe_setup({"tokens": self.tokens}, self._load()[0])

    def _generate(self, prompts: list[str], watermark: Any, seed: int, payload: bytes | None) -> list[str]:
        from text_wm.generate import generate_watermarked

        lm, tokenizer = self._load()
        kwargs: dict[str, Any] = {"payload": payload.hex()} if payload is not None else {}
        # a sampler that draws a random key shift per generation (EXP, ITS) gets seeded ones, so the
        # audit's texts are the same in every run and every worker
        shifted = watermark is not None and "shifts" in inspect.signature(watermark.processor).parameters
        texts = []
        for a in range(0, len(prompts), TEXT_BATCH):
            batch = prompts[a:a + TEXT_BATCH]
            if shifted:
                kwargs["shifts"] = np.random.default_rng([seed + a, 0x5817]).integers(
                    watermark.key_length, size=len(batch)).tolist()
            records = generate_watermarked(lm, tokenizer, batch, watermark,
                                           self.key if watermark is not None else None, chat=True, seed=seed + a,
                                           processor_kwargs=kwargs, max_new_tokens=self.tokens,
                                           min_new_tokens=self.tokens, do_sample=True, temperature=1.0, top_k=0,
                                           top_p=1.0)
            texts.extend(r.text for r in records)
        return texts

    def make(self, n: int, seed: int) -> Items:
        prompts = text_prompts(n, seed)
        payload = derived_payload(getattr(self.watermark, "payload_bytes", 0), seed)
        marked = self._generate(prompts, self.watermark, seed, payload)
        return Items(marked, self._generate(prompts, None, seed, None), payload)

    def detect(self, items: list[str], fpr: float, payload: bytes | None) -> list[DetectionResult]:
        """Batched where the scheme allows; a text the detector cannot score counts as not detected.

        Payload schemes are decoded even when not detected, so bit accuracy is measured.
        """
        _, tokenizer = self._load()
        verb, options = ("detect", {}) if payload is None else ("decode", {"expected_payload": payload})
        batch = getattr(self.watermark, f"{verb}_batch", None)
        if batch is not None:
            try:
                return batch(list(items), self.key, tokenizer, fpr=fpr, **options)
            except UnscoreableInput:
                pass  # some text is unscoreable: score one at a time to find it
        single = getattr(self.watermark, verb)
        results = []
        for text in items:
            try:
                results.append(single(text, self.key, tokenizer, fpr=fpr, **options))
            except UnscoreableInput as exc:  # any other error is a defect and fails the cell
                results.append(not_scoreable(str(exc), fpr, self.scheme, self.key_id))
        return results

    def apply(self, attack: Attack, items: list[str], strength: float, seed: int, cover: list[str]) -> list[str]:
        needs_lm = bool({"model", "tokenizer"} & set(inspect.signature(attack.fn).parameters))
        models = dict(zip(("model", "tokenizer"), self._load())) if needs_lm else {}
        return apply_per_item(attack, items, strength, seed, cover, models)

    def quality(self, original: list[str], attacked: list[str]) -> dict[str, float]:
        return {"similarity": float(np.mean(text_similarity(original, attacked)))}

    def save_example(self, item: str, path_stem: Path) -> str:
        from provenance.files import write_text_atomic

        return write_text_atomic(path_stem.with_suffix(".txt"), item).name


# -- video target -----------------------------------------------------------------------
class VideoTarget:
    """VideoMark through ``WatermarkedVideoPipeline`` on a text-to-video model; items are uint8 (F, H, W, 3) clips.

    Frame and bit accuracy under temporal attacks need the attack's frame map; ``benchmarks/video.py``
    measures them. Quality is mean PSNR/SSIM over frames when the attack keeps the frame count
    (temporal edits leave every frame's pixels untouched, so they report none).
    """

    modality: Modality = "video"
    scheme = "videomark"

    def __init__(self, key: WatermarkKey, *, model: str | None = None, steps: int | None = None,
                 frames: int = 8) -> None:
        self.key, self.key_id = key, key.key_id
        self._model, self.frames = model, frames
        self.steps = DEFAULT_STEPS if steps is None else int(steps)
        self._wrapped: WatermarkedVideoPipeline | None = None

    @property
    def wrapped(self) -> WatermarkedVideoPipeline:
        """The watermarking video pipeline, built on first use."""
        if self._wrapped is None:
            model = loading.shared_model(self._model, "text-to-video")
            self._wrapped = WatermarkedVideoPipeline(model.pipe, self.key, model_name=model.name, guidance=model.guidance)
        return self._wrapped

    @cached_property
    def setup_id(self) -> str:
        return describe_diffusion_setup(self.wrapped.pipe, self.steps, self.wrapped.guidance, frames=self.frames)

    def make(self, n: int, seed: int) -> Items:
        wrapped, prompts = self.wrapped, video_prompts(n, seed)
        marked = [wrapped(p, num_frames=self.frames, seed=seed + i, num_inference_steps=self.steps).videos[0]
                  for i, p in enumerate(prompts)]
        twins = [wrapped.run_pipeline([p], initial_noise(wrapped.latent_shape(self.frames), [seed + i]), self.steps,
                                      wrapped.guidance)[0] for i, p in enumerate(prompts)]
        return Items(marked, twins, None)

    def detect(self, items: list[np.ndarray], fpr: float, payload: bytes | None) -> list[DetectionResult]:
        wrapped = self.wrapped
        return [wrapped.detect(clip, fpr=fpr, inversion_steps=self.steps) for clip in items]

    def apply(self, attack: Attack, items: list[np.ndarray], strength: float, seed: int, cover: list[np.ndarray]
              ) -> list[np.ndarray]:
        return apply_per_item(attack, items, strength, seed, cover, {})

    def quality(self, original: list[np.ndarray], attacked: list[np.ndarray]) -> dict[str, float]:
        pairs = [(a, b) for a, b in zip(original, attacked) if len(a) == len(b)]
        if not pairs:
            return {}
        return image_quality(np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs]))

    def save_example(self, item: np.ndarray, path_stem: Path) -> str:
        return write_image(path_stem.with_suffix(".png"), np.concatenate(list(item), axis=1)).name  # frames side by side


def video_prompts(n: int, seed: int) -> list[str]:
    """``n`` seeded clip prompts (``image_wm.loading.default_prompts``: procedural clip captions)."""
    return loading.default_prompts(n, seed, video=True)


def make_targets(modality: Modality, schemes: Sequence[str], key: WatermarkKey, *, model: str | None = None,
                 steps: int | None = None, tokens: int = DEFAULT_TEXT_TOKENS, resync: str = "off") -> list[AuditTarget]:
    """Targets for named schemes (cheap: models load on first use). Unknown names raise ``LookupError``.

    Video audits use VideoMark (``videomark``), the one video scheme; ``resync`` applies to latent image schemes.
    """
    if modality == "image":
        return [image_target(s, key, model=model, steps=steps, resync=resync) for s in schemes]
    if modality == "text":
        return [TextTarget(s, key, model=model, tokens=tokens) for s in schemes]
    if modality == "video":
        unknown = [s for s in schemes if s != VideoTarget.scheme]
        if unknown:
            raise LookupError(f"unknown video scheme {unknown[0]!r} (known: {VideoTarget.scheme})")
        return [VideoTarget(key, model=model, steps=steps)]
    raise ValueError(f"unknown modality {modality!r} (image, video or text)")
