"""Device parity and throughput check: run once on a borrowed GPU, compare every device path with the CPU.

Why it exists: tests and CI run on CPUs only, yet the library promises that a key gives the same
watermark on every device and offers device paths (KGW/EXP/ITS ``detect_batch(device=)``, the logits
processors, the diffusers pipeline and DDIM inversion). This runs each device path beside its CPU twin
in one process and records whether they agree, that watermarked inputs are detected and plain ones are
not, and how fast detection is on the device. It loads no model from outside the repo: text uses token
ids, a 49,152-token vocabulary and a tiny random-weight Llama (plumbing, not text quality); images use
the shipped reference UNet/VAE with fixed random caption embeddings instead of MiniLM.

Run: ``python benchmarks/gpu.py --device cuda --out $OUT/gpu.json`` (here: ``--device cpu --quick``).
Every check goes to the JSON (name, passed, values, error, seconds), rewritten after each section so a
run cut short keeps what it measured; exit status 1 if any check failed or raised. Tolerances: integer
results (KGW counts and p-values, processor outputs, latents) must be equal; EXP/ITS scores within 1e-4
relative (float32 DP sums in another order) and permutation p-values within 2/(T+1) (a null statistic
within rounding of the observed one may change side); latent-detector p-values within 1e-3 relative;
the diffusion round trip (TF32 off) within the bounds in ``pipeline_section``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from provenance.keys import WatermarkKey  # noqa: E402

V = 49152
PAYLOAD = b"\xbe\xef"
CPU = torch.device("cpu")
IMAGE_SCHEMES = (("tree-ring", None), ("gaussian-shading", PAYLOAD), ("prc", PAYLOAD))
CHECKS: list[dict[str, Any]] = []
T0 = time.perf_counter()
Result = tuple[bool, dict[str, Any]]


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time, synchronised with the device."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda _: None)
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def check(name: str, fn: Callable[[], Result]) -> dict[str, Any]:
    """Run one check; an exception fails it with its text recorded, never stopping the run."""
    start = time.perf_counter()
    try:
        passed, values = fn()
    except Exception as exc:  # noqa: BLE001 - one run must give every answer
        return record_error(name, exc, time.perf_counter() - start)
    entry = {"name": name, "passed": bool(passed), "values": values, "seconds": round(time.perf_counter() - start, 3)}
    CHECKS.append(entry)
    shown = json.dumps(values, default=to_json)
    print(f"  {'ok  ' if passed else 'FAIL'} {name:<44} {entry['seconds']:7.2f}s  {shown[:150]}", flush=True)
    return entry


def record_error(name: str, exc: BaseException, seconds: float = 0.0) -> dict[str, Any]:
    entry = {"name": name, "passed": False, "values": {}, "error": f"{type(exc).__name__}: {exc}",
             "trace": traceback.format_exc(limit=-8), "seconds": round(seconds, 3)}
    CHECKS.append(entry)
    print(f"  FAIL {name:<44} {seconds:7.2f}s  {entry['error'][:150]}", flush=True)
    return entry


def to_json(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300), initial=0.0))


# -- text ---------------------------------------------------------------------------------------------
def detect_text(scheme: Any, texts: list[torch.Tensor], key: WatermarkKey, device: torch.device) -> list[Any]:
    if scheme.name == "kgw":
        return scheme.detect_batch(texts, key, device=device)
    if scheme.name in ("exp", "its"):
        return scheme.detect_batch(texts, key, vocab=V, device=device, n_resamples=100)
    return scheme.detect_batch(texts, key, device=device)  # MajorMark: counting on the device, tests on the CPU


def text_section(dev: torch.device, key: WatermarkKey, n: int, length: int, n_par: int,
                 texts: dict[str, torch.Tensor]) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

    from text_wm.registry import get_scheme

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, bos_token_id=None, eos_token_id=None, pad_token_id=0)).to(dev).eval()
    g = torch.Generator().manual_seed(1)
    prompts, null = torch.randint(1, V, (n, 4), generator=g), list(torch.randint(0, V, (n, length), generator=g))
    ids, scores = torch.randint(0, V, (16, 8), generator=g), torch.randn(16, V, generator=g)
    schemes = {name: get_scheme(name) for name in ("kgw", "exp", "its", "majormark")}
    schemes["kgw-selfhash"] = get_scheme("kgw", seeding="selfhash", context_width=2)
    for name, scheme in schemes.items():
        extra: dict[str, Any] = {"payload": PAYLOAD} if name == "majormark" else {}

        def processor_parity() -> Result:
            shifts = {"shifts": list(range(16))} if name in ("exp", "its") else extra
            out = [scheme.processor(key, V, **shifts)(ids.to(d), scores.to(d)).cpu() for d in (CPU, dev)]
            if name in ("exp", "its"):  # the forced token must be the same
                same = int((out[0].argmax(-1) == out[1].argmax(-1)).sum())
                return same == 16, {"rows": 16, "same_token": same}
            values: dict[str, Any] = {"equal": torch.equal(out[0], out[1])}
            if name == "kgw":  # generation's green list == the detector's, on the device
                mask = scheme.green_mask(key, ids[:, -1:].to(dev), V).cpu()
                values["equals_green_mask"] = torch.equal((out[1] - scores) > 1.0, mask)
            return all(values.values()), values

        def generate() -> Result:
            processor = LogitsProcessorList([scheme.processor(key, V, **extra)])
            torch.manual_seed(3)
            with torch.inference_mode():
                out, seconds = timed(dev, lambda: model.generate(
                    input_ids=prompts.to(dev), attention_mask=torch.ones_like(prompts, device=dev),
                    logits_processor=processor, max_new_tokens=length, do_sample=True, top_k=0, pad_token_id=0))
            texts[name] = out[:, prompts.shape[1]:].cpu()
            return texts[name].shape == (n, length), {"shape": list(texts[name].shape),
                                                      "new_tokens_per_s": round(n * length / seconds)}

        def detect_parity() -> Result:
            (r_cpu, t_cpu), (r_dev, t_dev) = (timed(d, lambda d=d: detect_text(scheme, wm[:n_par], key, d))
                                              for d in (CPU, dev))
            p_cpu, p_dev = [r.p_value for r in r_cpu], [r.p_value for r in r_dev]
            s_cpu, s_dev = [r.score for r in r_cpu], [r.score for r in r_dev]
            values = {"texts": n_par, "max_rel_score": rel(s_cpu, s_dev), "max_abs_p": float(np.max(np.abs(
                np.subtract(p_cpu, p_dev)))), "cpu_s": round(t_cpu, 3), "dev_s": round(t_dev, 3)}
            if name == "kgw":
                greens = [[r.details["n_green"] for r in rs] for rs in (r_cpu, r_dev)]
                return p_cpu == p_dev and greens[0] == greens[1], values
            if name == "majormark":  # integer counts: every field must be equal
                return [r.to_dict() for r in r_cpu] == [r.to_dict() for r in r_dev], values
            return values["max_rel_score"] <= 1e-4 and values["max_abs_p"] <= 2 / 101, values

        def power() -> Result:
            k = n_par if name == "majormark" else n  # MajorMark's exact tails (CPU) cost ~0.1 s a text
            r_wm, r_null = detect_text(scheme, wm[:k], key, dev), detect_text(scheme, null[:k], key, dev)
            hits, false = sum(r.detected for r in r_wm), sum(r.detected for r in r_null)
            values = {"tpr@0.01": hits / k, "false_positives": f"{false}/{k}",
                      "median_p_wm": float(np.median([r.p_value for r in r_wm]))}
            if name == "majormark":
                values["payload_ok"] = sum(r.payload == PAYLOAD.hex() for r in r_wm) / k
            return hits >= 0.9 * k and false <= max(2, math.ceil(0.06 * k)), values

        check(f"text/{name}/processor cpu==dev", processor_parity)
        if name == "kgw-selfhash" or not check(f"text/{name}/generate on device", generate)["passed"]:
            continue
        wm = list(texts[name])
        check(f"text/{name}/detect cpu==dev", detect_parity)
        check(f"text/{name}/wm detected, null not", power)


def throughput_section(dev: torch.device, key: WatermarkKey, kgw_tokens: int, n_edit: int,
                       texts: dict[str, torch.Tensor]) -> None:
    from text_wm.registry import get_scheme

    g = torch.Generator().manual_seed(7)
    kgw, rows = get_scheme("kgw"), list(torch.randint(0, V, (kgw_tokens // 1000, 1000), generator=g))

    def kgw_speed() -> Result:
        kgw.detect_batch(rows[:4], key, device=dev)  # warm-up
        (_, t_dev), (_, t_cpu) = (timed(d, lambda d=d: kgw.detect_batch(rows, key, device=d)) for d in (dev, CPU))
        return True, {"tokens": kgw_tokens, "dev_tokens_per_s": round(kgw_tokens / t_dev),
                      "cpu_tokens_per_s": round(kgw_tokens / t_cpu)}

    check("speed/kgw detect", kgw_speed)
    for name in ("exp", "its"):
        scheme = get_scheme(name)
        batch = list(texts.get(name, torch.randint(0, V, (n_edit, 200), generator=g))[:n_edit])

        def edit_speed() -> Result:
            detect_text(scheme, batch[:2], key, dev)  # warm-up (key tables to the device)
            _, seconds = timed(dev, lambda: detect_text(scheme, batch, key, dev))
            tokens = sum(t.numel() for t in batch)
            return True, {"texts": len(batch), "tokens": tokens, "resamples": 100, "edit_robust": True,
                          "seconds": round(seconds, 3), "dev_tokens_per_s": round(tokens / seconds)}

        check(f"speed/{name} edit-robust detect", edit_speed)


# -- images -------------------------------------------------------------------------------------------
def image_latent_section(dev: torch.device, key: WatermarkKey) -> None:
    from image_wm.pipeline import initial_noise
    from image_wm.schemes import get_scheme

    for name, payload in IMAGE_SCHEMES:
        def run() -> Result:
            scheme = get_scheme(name)
            lat_cpu, lat_dev = (torch.cat([scheme.initial_latents((1, 4, 16, 16), key, torch.Generator().manual_seed(s),
                                                                  payload=payload) for s in range(4)]) for _ in "ab")
            lat_dev = lat_dev.to(dev)  # schemes draw on the CPU; the pipeline moves the latents
            r_cpu, r_dev = scheme.detect(lat_cpu, key), scheme.detect(lat_dev, key)
            r_null = scheme.detect(initial_noise((4, 4, 16, 16), [100, 101, 102, 103]).to(dev), key)
            p_cpu, p_dev = [r.p_value for r in r_cpu], [r.p_value for r in r_dev]
            values = {"latent_max_diff": float((lat_dev.cpu() - lat_cpu).abs().max()), "max_rel_p": rel(p_cpu, p_dev),
                      "p_wm_dev": p_dev, "p_plain_dev": [r.p_value for r in r_null],
                      "wm_detected": sum(r.detected for r in r_dev), "plain_detected": sum(r.detected for r in r_null)}
            if payload is not None:
                values["payload_ok"] = all(r.payload == payload.hex() for r in r_dev)
            return (values["latent_max_diff"] <= 1e-5 and values["max_rel_p"] <= 1e-3 and values["wm_detected"] == 4
                    and not values["plain_detected"] and values.get("payload_ok", True)), values

        check(f"image/{name}/latents+detect cpu==dev", run)


def pipeline_section(dev: torch.device, key: WatermarkKey, steps: int) -> None:
    """One image per scheme and a plain one, generated, inverted and detected on each device.

    No text encoder (MiniLM is absent on the GPU machine): fixed random caption embeddings of MiniLM's
    scale go in as ``prompt_embeds``, and another set serves as the empty prompt (guidance and inversion).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from image_wm.inversion import encode_images, invert_latents
    from image_wm.pipeline import WatermarkedPipeline, initial_noise
    from image_wm.reference.components import WEIGHTS_DIR
    from image_wm.reference.pipelines import REFERENCE_GUIDANCE
    from image_wm.schemes import get_scheme

    schemes = []
    for name, payload in IMAGE_SCHEMES:  # a scheme whose module cannot load fails alone
        try:
            schemes.append((name, payload, get_scheme(name)))
        except ImportError as exc:
            record_error(f"pipeline/{name} generate+invert cpu==dev", exc)
    batch = len(schemes) + 1  # one image per scheme and a plain one
    g = torch.Generator().manual_seed(5)
    cond, uncond = (0.45 * torch.randn(2, 1, 16, 384, generator=g)).expand(2, batch, 16, 384)
    runs = []
    for device in (CPU, dev):
        pipe = StableDiffusionPipeline(
            unet=UNet2DConditionModel.from_pretrained(WEIGHTS_DIR / "unet").to(device).eval(),
            vae=AutoencoderKL.from_pretrained(WEIGHTS_DIR / "vae").to(device).eval(),
            scheduler=DDIMScheduler.from_pretrained(WEIGHTS_DIR / "scheduler"), text_encoder=None, tokenizer=None,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        wps = [WatermarkedPipeline(pipe, scheme, key, guidance=REFERENCE_GUIDANCE) for _, _, scheme in schemes]
        latents = torch.cat([wp.watermarked_latents([10 + i], payload) for i, (wp, (_, payload, _))
                             in enumerate(zip(wps, schemes))] + [initial_noise((1, 4, 16, 16), [13])])
        with torch.inference_mode():
            (images, inverted), seconds = timed(device, lambda: (
                im := wps[0].run_pipeline(None, latents, steps, REFERENCE_GUIDANCE, prompt_embeds=cond.to(device),
                                          negative_prompt_embeds=uncond.to(device)),
                invert_latents(pipe, encode_images(pipe, im), steps,
                               condition={"encoder_hidden_states": uncond.to(device)})))
        runs.append({"images": images, "inverted": inverted.float().cpu(), "seconds": seconds,
                     "results": [(wp.scheme.detect(inverted[i:i + 1], key, fpr=0.01)[0],
                                  wp.scheme.detect(inverted[-1:], key, fpr=0.01)[0]) for i, wp in enumerate(wps)]})
    a, b = runs
    for i, (name, _, _) in enumerate(schemes):
        def compare() -> Result:
            pix = np.abs(a["images"][i].astype(int) - b["images"][i].astype(int))
            lat = float((a["inverted"][i] - b["inverted"][i]).norm() / a["inverted"][i].norm())
            (wa, na), (wb, nb) = a["results"][i], b["results"][i]
            values = {"pixel_mean_abs": float(pix.mean()), "pixel_max_abs": int(pix.max()), "inverted_rel_l2": lat,
                      "p_wm": [wa.p_value, wb.p_value], "p_plain": [na.p_value, nb.p_value],
                      "cpu_s": round(a["seconds"], 2), "dev_s": round(b["seconds"], 2)}
            return (pix.mean() <= 0.5 and lat <= 1e-2 and wa.detected == wb.detected and na.detected == nb.detected
                    and wb.detected and not nb.detected), values

        check(f"pipeline/{name} generate+invert cpu==dev", compare)


# -- driver -------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="gpu.json")
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU self-test)")
    parser.add_argument("--budget", type=float, default=90.0, help="no section starts after this many seconds")
    args = parser.parse_args()
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    dev, q, key, out = torch.device(args.device), args.quick, WatermarkKey.from_seed(2026), Path(args.out)
    env: dict[str, Any] = {"torch": torch.__version__, "device": str(dev), "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(dev), tf32_default=[
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32])
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # parity, not TF32 error
    texts: dict[str, torch.Tensor] = {}
    sections: list[tuple[str, Callable[[], None]]] = [
        ("text", lambda: text_section(dev, key, 16 if q else 64, 100 if q else 200, 4 if q else 16, texts)),
        ("image latents", lambda: image_latent_section(dev, key)),
        ("pipeline", lambda: pipeline_section(dev, key, 25)),
        ("throughput", lambda: throughput_section(dev, key, 100_000 if q else 1_000_000, 8 if q else 64, texts)),
    ]
    for title, run in sections:
        start = time.perf_counter()
        if start - T0 > args.budget:
            CHECKS.append({"name": f"{title}/skipped", "passed": False, "values": {"reason": "time budget"}})
            print(f"[{title}] skipped: {start - T0:.0f} s > budget {args.budget:.0f} s", flush=True)
            continue
        print(f"[{title}]", flush=True)
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - a section's set-up failing must not stop the others
            record_error(f"{title}/setup", exc)
        print(f"[{title}] {time.perf_counter() - start:.1f} s (total {time.perf_counter() - T0:.1f} s)", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"env": env, "elapsed_s": round(time.perf_counter() - T0, 1), "checks": CHECKS},
                                  indent=1, default=to_json))
    failed = [c["name"] for c in CHECKS if not c["passed"]]
    print(f"{len(CHECKS) - len(failed)}/{len(CHECKS)} checks passed in {time.perf_counter() - T0:.1f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
