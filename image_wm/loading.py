"""Load the diffusion model a command runs on: a local diffusers folder, or the reference world.

Why one loader: a real Stable Diffusion, SDXL, SD3 or FLUX folder must run as itself, not as the
64-pixel reference model. A folder keeps the dtype its weights are stored in unless ``dtype``
says otherwise (``auto``: the stored dtype, except that float16 becomes float32 on a CPU, where half
precision is slow or unsupported), runs on the given device, and generates at its family's
documented guidance (``image_wm.families``). Only when no folder is given does the reference world
(``image_wm.reference``) load, with what it was built for: guidance 2.0, its scene captioner for
SEAL and its procedural scenes as Tree-Ring's calibration probes. SEAL on any other model needs
a captioner that fits it (``captioner=``, a local transformers image-to-text folder,
``image_wm.captioning``); without one it is refused in one line.

This is the only module that imports the reference world (an import-linter contract keeps it so).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from image_wm import scenes
from image_wm.captioning import TransformersCaptioner
from image_wm.families import FamilyAdapter, adapter_for
from image_wm.pipeline import WatermarkedPipeline
from image_wm.schemes import SCHEME_NAMES, LatentWatermark, get_scheme
from image_wm.semantics import CaptionEmbedder, VariantCaptioner
from image_wm.tree_ring_calibration import ProbeImages
from provenance.device import resolve_device
from provenance.keys import WatermarkKey
from provenance.models import ModelNotFoundError, quiet_libraries

__all__ = ["DTYPE_CHOICES", "TASKS", "DiffusionModel", "folder_task", "stored_dtype", "resolve_dtype",
           "load_pipeline", "load_model", "shared_model", "default_captioner", "default_prompts", "describe"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
TASKS = ("text-to-image", "img2img", "text-to-video")
REFERENCE = "reference"
SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


@dataclass(frozen=True)
class DiffusionModel:
    """A loaded pipeline with what its provider says about it."""

    pipe: Any
    adapter: FamilyAdapter
    name: str  # "reference" or the folder
    guidance: float | None  # the generation default (None: the pipeline takes no guidance)
    captioner: Callable[[], VariantCaptioner] | None  # for SEAL; None: none fits this model
    probes: ProbeImages | None  # Tree-Ring calibration probes; None: the pipeline's own generations

    def semantics(self) -> CaptionEmbedder | None:
        return None if self.captioner is None else CaptionEmbedder(self.captioner(), device=self.pipe.device)

    def watermarked(self, scheme: LatentWatermark | str, key: WatermarkKey, calibrate: bool = True
                    ) -> WatermarkedPipeline:
        """``WatermarkedPipeline`` with this model's guidance, captioner and probes; SEAL without a
        captioner is refused in one line."""
        scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
        return WatermarkedPipeline(self.pipe, scheme, key, semantics=self.semantics() if scheme.semantic else None,
                                   model_name=self.name, calibrate=calibrate, guidance=self.guidance,
                                   probes=self.probes)


def folder_task(model: str | os.PathLike | None) -> str:
    """``text-to-video`` for a folder holding a video pipeline, else ``text-to-image``."""
    index = Path(model or "") / "model_index.json"
    if model is None or not index.is_file():
        return "text-to-image"
    try:
        stored = str(json.loads(index.read_text()).get("_class_name", ""))
    except (OSError, ValueError, AttributeError):
        return "text-to-image"  # the loader then names what is wrong with the folder
    return "text-to-video" if "Video" in stored else "text-to-image"


def stored_dtype(folder: str | os.PathLike) -> torch.dtype:
    """The dtype of the denoiser's first floating tensor in a diffusers folder (float32 if unknown)."""
    from safetensors import safe_open

    for part in ("transformer", "unet"):
        files = sorted((Path(folder) / part).glob("*.safetensors"))
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    dtype = SAFETENSORS_DTYPES.get(handle.get_slice(name).get_dtype())
                    if dtype is not None:
                        return dtype
    return torch.float32


def resolve_dtype(choice: str, stored: torch.dtype, device: torch.device) -> torch.dtype:
    """``choice`` as a dtype; ``auto`` keeps ``stored`` except float16 on a CPU, which becomes float32."""
    if choice not in DTYPE_CHOICES:
        raise ValueError(f"unknown dtype {choice!r} (use {', '.join(DTYPE_CHOICES)})")
    if choice != "auto":
        return DTYPES[choice]
    return torch.float32 if stored == torch.float16 and device.type == "cpu" else stored


def _local_pipeline(folder: str | os.PathLike, task: str, dtype: str, device: torch.device) -> Any:
    """A local diffusers folder as its ``task`` pipeline, refused unless a family adapter supports it.
    Components the folder stores as absent (``[null, null]`` in ``model_index.json``, e.g. Stable
    Diffusion 3 without its T5 encoder) load as None."""
    from diffusers import AutoPipelineForText2Image, TextToVideoSDPipeline

    path = Path(folder)
    if not (path / "model_index.json").is_file():
        raise ModelNotFoundError(f"{path} is not a local diffusers pipeline folder (no model_index.json)")
    index = json.loads((path / "model_index.json").read_text())
    stored = str(index.get("_class_name", ""))
    video = task == "text-to-video"
    if ("Video" in stored) != video:
        wanted = "text-to-video" if video else "text-to-image"
        raise ValueError(f"{path} holds a {stored}, which does not match the {wanted} pipeline this command needs")
    absent = {name: None for name, entry in index.items()
              if not name.startswith("_") and isinstance(entry, list) and entry[0] is None}
    loader = TextToVideoSDPipeline if video else AutoPipelineForText2Image
    pipe = loader.from_pretrained(path, local_files_only=True, dtype=resolve_dtype(dtype, stored_dtype(path), device),
                                  **absent).to(device)
    adapter_for(pipe)
    return pipe


def load_pipeline(model: str | os.PathLike | None = None, *, task: str = "text-to-image", dtype: str = "auto",
                  device: str | torch.device | None = None) -> Any:
    """The diffusers pipeline for ``task`` (``TASKS``): a local folder's, or the reference world's when
    ``model`` is None; per-call progress bars off (commands and audits draw their own)."""
    from diffusers import AutoPipelineForImage2Image

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (use {', '.join(TASKS)})")
    if task == "img2img":
        pipe = AutoPipelineForImage2Image.from_pipe(load_pipeline(model, dtype=dtype, device=device))
    else:
        where = resolve_device(device)
        if model is not None:
            pipe = _local_pipeline(model, task, dtype, where)
        else:
            from image_wm import reference

            load = reference.load_text_to_video if task == "text-to-video" else reference.load_text_to_image
            pipe, wanted = load(where), resolve_dtype(dtype, torch.float32, where)  # stored in float32
            if wanted != torch.float32:
                pipe = pipe.to(wanted)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_model(model: str | os.PathLike | None = None, *, task: str = "text-to-image", dtype: str = "auto",
               device: str | torch.device | None = None, captioner: str | os.PathLike | None = None) -> DiffusionModel:
    """``load_pipeline`` plus its provider's defaults: for a folder the family's guidance, the captioner
    folder given (if any) and generated calibration probes; for the reference world its own."""
    if captioner is not None:
        TransformersCaptioner.check_folder(captioner)  # one line now, before a large model loads
    pipe = load_pipeline(model, task=task, dtype=dtype, device=device)
    adapter = adapter_for(pipe)
    captioner_loader: Callable[[], VariantCaptioner] | None = None  # loaded on first use
    if captioner is not None:
        captioner_loader = functools.partial(TransformersCaptioner, captioner, pipe.device)
    if model is not None:
        return DiffusionModel(pipe, adapter, str(model), adapter.default_guidance, captioner_loader, None)
    from image_wm import reference

    return DiffusionModel(pipe, adapter, REFERENCE, reference.REFERENCE_GUIDANCE,
                          captioner_loader or (lambda: reference.load_captioner(pipe.device)),
                          ProbeImages("reference procedural scenes", lambda n, seed: scenes.generate(n, seed)[0]))


@functools.lru_cache(maxsize=8)
def shared_model(model: str | None = None, task: str = "text-to-image") -> DiffusionModel:
    """``load_model(model, task=task)`` on the default device, once per process: attacks and audits
    reuse one copy. Library logging is quietened first (loading is where diffusers chatters)."""
    quiet_libraries()
    return load_model(model, task=task)


@functools.lru_cache(maxsize=1)
def default_captioner() -> VariantCaptioner:
    """The reference world's scene captioner, once per process (attacks that caption images use it
    unless given another)."""
    from image_wm import reference

    return reference.load_captioner()


def default_prompts(n: int, seed: int, video: bool = False) -> list[str]:
    """``n`` seeded prompts of the kind the reference models were built for (procedural scene captions)."""
    return scenes.generate_videos(n, seed, frames=2)[1] if video else scenes.generate(n, seed)[1]


def describe(model: DiffusionModel) -> dict[str, Any]:
    """What ``image inspect`` reports: how the folder is understood."""
    pipe, adapter = model.pipe, model.adapter
    shape = adapter.latent_shape(1, 16) if adapter.video else adapter.latent_shape(1)
    return {
        "model": model.name, "pipeline": type(pipe).__name__, "family": adapter.family,
        "dtype": str(adapter.denoiser.dtype).removeprefix("torch."), "device": str(pipe.device),
        "default_guidance": model.guidance, "native_size": adapter.image_side, "latent_shape": list(shape[1:]),
        "scheduler": type(pipe.scheduler).__name__, "prediction": adapter.prediction, "inversion": adapter.inversion,
        "schemes": {"videomark": "ready"} if adapter.video else {
            name: ("ready" if not get_scheme(name).semantic or model.captioner is not None else "needs --captioner")
            for name in SCHEME_NAMES},
    }
