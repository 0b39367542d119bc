"""Generate watermarked text with any transformers causal LM through ``model.generate``.

Why a helper at all: batching prompts needs left padding, chat models need their chat
template, and the caller needs a record of what was embedded (scheme, key id, payload,
per-generation settings such as EXP's random key shift). The watermark itself lives in
the scheme's logits processor (or, for a watermark transformers ships, its own ``generate`` options);
nothing here knows about any particular scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList

from provenance.keys import WatermarkKey
from text_wm.base import TokenWatermark


@dataclass
class GenerationRecord:
    """One generated continuation and what was embedded in it (never the secret): the scheme's
    configuration and the generation's own settings (EXP/ITS's key shift) in ``settings``."""

    prompt: str
    text: str
    token_ids: list[int]
    scheme: str
    key_id: str
    payload: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scheme_settings(scheme: Any) -> dict[str, Any]:
    """A scheme's configuration as plain values (``gamma``, ``delta``, ``key_length``, ...): with the
    key and the processor's per-generation settings, enough to detect the text again."""
    if not is_dataclass(scheme):
        return {}
    values = {f.name: getattr(scheme, f.name) for f in fields(scheme) if f.name != "device"}  # where, not what
    return {name: value for name, value in values.items() if isinstance(value, (bool, int, float, str, type(None)))}


def format_prompts(tokenizer: Any, prompts: Sequence[str], chat: bool) -> list[str]:
    """Apply the tokenizer's chat template when asked and available; plain text otherwise."""
    if not chat or not getattr(tokenizer, "chat_template", None):
        return list(prompts)
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]


def generate_watermarked(
    model: Any,
    tokenizer: Any,
    prompts: str | Sequence[str],
    scheme: TokenWatermark | None,
    key: WatermarkKey | None,
    *,
    chat: bool = False,
    seed: int | None = None,
    processor_kwargs: dict[str, Any] | None = None,
    **generate_kwargs: Any,
) -> list[GenerationRecord]:
    """Generate one continuation per prompt, watermarked by ``scheme`` under ``key``.

    ``scheme=None`` generates without a watermark (the same code path, for baselines).
    ``processor_kwargs`` go to ``scheme.processor`` (e.g. ``payload=`` for MajorMark);
    ``generate_kwargs`` go to ``model.generate`` (``max_new_tokens``, ``do_sample``, ...).
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise ValueError("no prompts given")
    texts = format_prompts(tokenizer, prompts, chat)
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
    finally:
        tokenizer.padding_side = padding_side
    batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
    processors = LogitsProcessorList()
    processor = None
    if scheme is not None:
        if key is None:
            raise ValueError("a key is needed to generate watermarked text")
        native = getattr(scheme, "generate_options", None)
        if native is not None:  # a watermark transformers ships (SynthID): its own generate path
            generate_kwargs.update(native(key))
        else:
            processor = scheme.processor(key, tokenizer, **(processor_kwargs or {}))
            processors.append(processor)
    if seed is not None:
        torch.manual_seed(seed)
    generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id or tokenizer.eos_token_id)
    with torch.inference_mode():
        output = model.generate(**batch, logits_processor=processors, **generate_kwargs)
    new_tokens = output[:, batch["input_ids"].shape[1]:].cpu()
    settings = {**scheme_settings(scheme), **(getattr(processor, "settings", {}) or {})}
    records = []
    for row, prompt in enumerate(prompts):
        ids = _strip_after_eos(new_tokens[row].tolist(), tokenizer)
        row_settings = {name: (value[row] if isinstance(value, list) else value) for name, value in settings.items()}
        records.append(
            GenerationRecord(
                prompt=prompt,
                text=tokenizer.decode(ids, skip_special_tokens=True),
                token_ids=ids,
                scheme=scheme.name if scheme is not None else "none",
                key_id=key.key_id if (key is not None and scheme is not None) else "",
                payload=(processor_kwargs or {}).get("payload") if scheme is not None else None,
                settings=row_settings,
            )
        )
    return records


def _strip_after_eos(ids: list[int], tokenizer: Any) -> list[int]:
    """Drop the first end-of-sequence token and the padding after it."""
    stops = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
    for position, token in enumerate(ids):
        if token in stops:
            return ids[:position]
    return ids
