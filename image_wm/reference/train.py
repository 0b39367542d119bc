"""Reproducible, resumable training of the reference models, on a CPU or a GPU.

The shipped weights under ``image_wm/reference/weights/`` are what these commands produced,
run in this order on a 2-core AMD EPYC with AVX512-BF16 (bf16 autocast; the thread count is fixed
at start-up and is part of the recipe, since float reductions differ between thread counts)::

    python -m image_wm.reference.train vae       --bf16 --threads 2   # 3200 steps of 32 crops
    python -m image_wm.reference.train unet      --bf16 --threads 2   # 7000 steps of 64, 32,768-scene pool
    python -m image_wm.reference.train video     --bf16 --threads 2   # 300 steps of 2 clips
    python -m image_wm.reference.train captioner --bf16 --threads 2   # 9000 steps of 64
    python -m image_wm.reference.train export

On a CPU without AVX512-BF16 or AMX, leave out ``--bf16`` (fp32; bf16 convolutions there run
on a slow reference path). On a GPU the same commands take ``--device cuda --bf16`` and
``--workers N`` (scenes rendered ahead in N processes: the same batches as inline rendering,
which at one core's 1,300 textured scenes/s would starve a GPU); ``--max-minutes`` stops at a
checkpoint for a fixed-length lease, and a work folder without a VAE checkpoint trains the UNet
on the shipped VAE. No GPU run has been made yet; ``scripts/device/run.sh`` is the prepared one
(UNet: 10,000 steps of 256 on a pool of 131,072 scenes; captioner: 12,000 steps of 256).

Every model trains on the world's scenes, which carry a smooth random texture
(``scenes.WORLD_TEXTURE``; ``--texture`` changes it, 0 gives the bare scenes the first weights
were trained on). Why the texture is there, with the A/B test, is in
``docs/reference_models.md``.

``vae-cycle`` (``train vae-cycle --threads 2``, 600 steps, after ``vae``) is a measured
experiment, not part of the shipped recipe: it fine-tunes the VAE for the latent round trip and
``export`` ignores it (results in ``docs/reference_models.md``).

Every batch is drawn from ``(seed, step)`` alone and the learning-rate schedule runs over
steps, so a run is determined by its arguments; interrupting a command and rerunning it resumes
from the last checkpoint in ``--work`` (default ``~/.cache/provenance/reference-train``).
``export`` writes the EMA weights in fp16 safetensors, diffusers' folder layout, under the package.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from image_wm import scenes
from image_wm.reference import components

DEFAULT_WORK = Path(os.environ.get("PROVENANCE_CACHE", Path.home() / ".cache" / "provenance")) / "reference-train"


# --------------------------------------------------------------------------- data


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1] (diffusers' pixel convention)."""
    t = torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3)


def batch_seed(seed: int, step: int, stream: int = 0) -> int:
    """One independent data seed per (run seed, step, stream)."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0])


def quantise_pixels(x: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] pixels to the 8-bit grid, as saving a PNG does."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def worker_pool(workers: int):
    """Forked single-threaded worker processes (scene rendering is numpy; torch threads would oversubscribe)."""
    return multiprocessing.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,))


class Prefetch:
    """``make(step)`` computed ahead in ``workers`` processes; the same batches as calling it inline.

    Scene rendering is numpy on one core (about 3,000 scenes/s): enough for a CPU run, the
    bottleneck of a GPU run. ``make`` must be picklable (a module-level function or partial).
    """

    def __init__(self, make: Callable[[int], Any], workers: int, last: int):
        self.make, self.workers, self.last = make, workers, last
        self.next_step: int | None = None
        self.pool: Any = None
        self.results: Iterator[Any] = iter(())

    def __call__(self, step: int) -> Any:
        if self.workers <= 0:
            return self.make(step)
        if step != self.next_step:  # first call, or a resume at another step
            if self.pool is None:
                self.pool = worker_pool(self.workers)
            self.results = self.pool.imap(self.make, range(step, self.last), chunksize=4)
        self.next_step = step + 1
        return next(self.results)


def parallel_map(fn: Callable[[Any], Any], items: list, workers: int) -> list:
    """``[fn(x) for x in items]``, in ``workers`` processes when there are several."""
    if workers <= 1:
        return [fn(x) for x in items]
    with worker_pool(workers) as pool:
        return pool.map(fn, items)


# --------------------------------------------------------------------------- loop


class EMA:
    """Exponential moving average of a model's parameters (what gets exported)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        # one fused update for all tensors: a per-parameter loop is hundreds of kernel launches on a GPU
        torch._foreach_lerp_(list(self.shadow.parameters()), [p.detach() for p in model.parameters()], 1 - d)


def cosine_lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train_loop(name: str, model: torch.nn.Module, loss_fn: Callable[[int], dict[str, torch.Tensor]],
               args: argparse.Namespace, *, lr: float, ema_decay: float = 0.999,
               params: list[torch.nn.Parameter] | None = None) -> EMA:
    """Run ``loss_fn(step)`` for ``args.steps`` steps with AdamW, cosine LR, EMA and checkpoints.

    ``args.max_minutes`` stops a run early at a checkpoint (resumable), for fixed-length leases.
    """
    model.to(args.device)
    work = Path(args.work) / name
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / "checkpoint.pt"
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
    ema = EMA(model, ema_decay)
    start, started = 0, time.monotonic()
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        ema.shadow.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
        torch.set_rng_state(state["torch_rng"])
        print(f"{name}: resuming at step {start}")

    def save(step: int) -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.shadow.state_dict(), "opt": opt.state_dict(),
                    "step": step, "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, ckpt_path)

    model.train()
    stop = args.steps if args.until is None else min(args.until, args.steps)
    bar = tqdm(range(start, stop), initial=start, total=args.steps, desc=name, mininterval=10)
    running: dict[str, float] = {}
    for step in bar:
        if args.max_minutes is not None and time.monotonic() - started > 60 * args.max_minutes:
            save(step)
            print(f"{name}: stopped at step {step} after {args.max_minutes} minutes (rerun to resume)")
            break
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args.steps, lr, warmup=min(200, args.steps // 10))
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.bf16):
            losses = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(model, step)
        if step % 20 == 0:  # reading a loss synchronises a GPU, so only every 20th step
            for k, v in losses.items():
                value = float(v.detach())
                running[k] = 0.7 * running.get(k, value) + 0.3 * value
            bar.set_postfix({k: f"{v:.4g}" for k, v in running.items()})
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == stop:
            save(step + 1)
    if start >= args.steps:
        print(f"{name}: already trained for {args.steps} steps")
    return ema


def final_model(name: str, model: torch.nn.Module, args: argparse.Namespace) -> torch.nn.Module:
    """The EMA weights of a finished run, loaded into ``model``."""
    state = torch.load(Path(args.work) / name / "checkpoint.pt", map_location="cpu", weights_only=False)
    if state["step"] < 1:
        raise SystemExit(f"{name} has no trained checkpoint in {args.work}")
    model.load_state_dict(state["ema"])
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------- VAE


def random_crops(x: torch.Tensor, size: int, seed: int, grid: int = 4) -> torch.Tensor:
    """One random ``size`` x ``size`` crop per item, at offsets on a ``grid`` lattice.

    Images use ``grid=4`` (the VAE's factor, so a crop's latent is the image latent's window);
    latents use ``grid=1``.
    """
    if size >= x.shape[-1]:
        return x
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, (x.shape[-1] - size) // grid + 1, size=(len(x), 2)) * grid
    return torch.stack([img[:, i:i + size, j:j + size] for img, (i, j) in zip(x, offsets)])


def train_vae(args: argparse.Namespace) -> None:
    """Reconstruction (MSE + L1 + tiny KL), then an encoder latent-cycle term.

    The VAE is fully convolutional (no attention), so it trains on random 32x32 crops: four
    times the images per second on a CPU, with the same local statistics as full scenes.

    From 60% of the run on, the encoder also learns to invert the decoder around the data
    manifold: z = E(x) plus noise is decoded, rounded to 8 bits and must encode back to z.
    Watermark detection runs exactly that path (generated latent -> PNG -> latent), so this is
    the VAE-side figure the latent schemes depend on.
    """
    vae = components.build_vae().to(memory_format=torch.channels_last)
    cycle_from = int(0.6 * args.steps)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        seed = batch_seed(args.seed, step)
        images, _, _ = scenes.generate(args.batch, seed=seed, texture=args.texture)
        x = random_crops(images_to_tensor(images), args.crop, seed).contiguous(memory_format=torch.channels_last)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample.float()
        mse = F.mse_loss(rec, x)
        out = {"mse": mse, "l1": F.l1_loss(rec, x), "kl": post.kl().mean()}
        loss = mse + 0.5 * out["l1"] + 1e-6 * out["kl"]
        if step >= cycle_from:
            mean = post.mean.detach().float()
            scale = mean.std()
            z = mean + 0.3 * scale * torch.randn_like(mean)
            with torch.no_grad():
                x_cycle = quantise_pixels(vae.decode(z).sample.float())
            out["cycle"] = F.mse_loss(vae.encode(x_cycle).latent_dist.mean.float(), z) / scale.square()
            loss = loss + 0.1 * out["cycle"]
        out["loss"] = loss
        return out

    train_loop("vae", vae, loss_fn, args, lr=args.lr or 1e-3, ema_decay=0.998)


@torch.no_grad()
def generated_latent_pool(args: argparse.Namespace) -> torch.Tensor:
    """``args.generated`` unscaled latents sampled by the shipped image pipeline (cached in the work folder).

    CFG ``REFERENCE_GUIDANCE``, 25 DDIM steps, captions and noise from their own seed stream:
    exactly the latents a watermarked generation hands to the decoder.
    """
    from image_wm.reference.pipelines import REFERENCE_GUIDANCE, load_text_to_image

    path = Path(args.work) / "vae-cycle" / f"generated-{args.generated}-{args.seed}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipe = load_text_to_image("cpu")
    latents = []
    for start in tqdm(range(0, args.generated, 64), desc="sampling latents", mininterval=10):
        n = min(64, args.generated - start)
        _, captions, _ = scenes.generate(n, seed=batch_seed(args.seed, start, stream=2))
        noise = torch.randn((n, 4, 16, 16), generator=torch.Generator().manual_seed(batch_seed(args.seed, start, 3)))
        z = pipe(captions, latents=noise, guidance_scale=REFERENCE_GUIDANCE, num_inference_steps=25,
                 output_type="latent").images
        latents.append(z / pipe.vae.config.scaling_factor)
    pool = torch.cat(latents)
    torch.save(pool, path)
    return pool


def train_vae_cycle(args: argparse.Namespace) -> None:
    """Joint encoder/decoder fine-tune so that encode(8-bit(decode(z))) returns z for generated z.

    A watermark lives in every entry of the initial noise, and DDIM carries it into the sampled
    latent, also along directions the data hardly uses. The first VAE's decoder ignored those
    directions (decoder inversion matched the pixels to 39.5 dB while the latent stayed 0.88
    relative error away), so the 8-bit image no longer held the watermark. Here the decoder
    learns to render every latent direction into pixels that survive 8-bit rounding (straight-
    through rounding) and the encoder learns to read them back, on latents the shipped UNet
    samples plus data latents with noise. Two anchors keep the rest of the world valid: the
    reconstruction loss on real scenes, and the encoder's latents of real scenes staying where
    the first VAE put them (the UNet was trained on those).

    Measured (docs/reference_models.md): the round trip's relative error fell from 0.99 to 0.29
    but sign agreement rose only from 0.647 to 0.663 and PSNR fell to 25.2 dB, so it is not shipped.
    """
    pool = generated_latent_pool(args)
    vae = trained_vae(args).requires_grad_(True).train()
    frozen_encoder = copy.deepcopy(vae).requires_grad_(False).eval()
    spread = float(pool.std())
    crop = args.crop // 4

    def round_through(x: torch.Tensor) -> torch.Tensor:
        return x + (quantise_pixels(x) - x).detach()

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        seed = batch_seed(args.seed, step)
        g = torch.Generator().manual_seed(seed)
        images, _, _ = scenes.generate(args.batch, seed=seed, texture=args.texture)
        x = random_crops(images_to_tensor(images), args.crop, seed)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample.float()
        with torch.no_grad():
            old = frozen_encoder.encode(x).latent_dist.mean
        half = args.batch // 2
        generated = random_crops(pool[torch.randint(len(pool), (half,), generator=g)], crop, seed, grid=1)
        noisy = old[:half] + 0.5 * spread * torch.randn(old[:half].shape, generator=g)
        z = torch.cat([generated, noisy])
        back = vae.encode(round_through(vae.decode(z).sample.float())).latent_dist.mean.float()
        out = {"mse": F.mse_loss(rec, x), "l1": F.l1_loss(rec, x),
               "anchor": F.mse_loss(post.mean.float(), old) / spread**2,
               "cycle": F.mse_loss(back, z) / spread**2}
        out["loss"] = out["mse"] + 0.5 * out["l1"] + args.anchor * out["anchor"] + args.cycle * out["cycle"]
        return out

    train_loop("vae-cycle", vae, loss_fn, args, lr=args.lr or 2e-4, ema_decay=0.995)


# --------------------------------------------------------------------------- captioner


def degrade(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Random blur and noise, so the captioner also reads the softer images a diffusion model makes."""
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    amount = torch.rand(n, 1, 1, 1, generator=g)
    noise = torch.randn(x.shape, generator=g) * 0.05 * torch.rand(n, 1, 1, 1, generator=g)
    return (x + amount * (blurred - x) + noise).clamp(-1, 1)


def captioner_batch(run_seed: int, batch: int, texture: float, step: int) -> tuple[torch.Tensor, list[dict[str, int]]]:
    """Degraded scene pixels and their canonical labels for one step (runs in a worker process)."""
    seed = batch_seed(run_seed, step)
    images, _, specs = scenes.generate(batch, seed=seed, texture=texture)
    return degrade(images_to_tensor(images), seed), [scenes.canonical_labels(spec.labels()) for spec in specs]


def train_captioner(args: argparse.Namespace) -> None:
    from image_wm.reference.captioner import SceneCaptioner

    model = SceneCaptioner()
    make_batch = functools.partial(captioner_batch, args.seed, args.batch, args.texture)
    batches = Prefetch(make_batch, args.workers, args.steps)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        pixels, labels = batches(step)
        logits = model(pixels.to(args.device))
        targets = {name: torch.tensor([lab[name] for lab in labels], device=args.device) for name in logits}
        loss = sum(F.cross_entropy(logits[name], targets[name]) for name in logits)
        correct = torch.stack([logits[n].argmax(-1) == targets[n] for n in logits]).all(0)
        return {"loss": loss, "acc": correct.float().mean()}  # every label right

    train_loop("captioner", model, loss_fn, args, lr=args.lr or 2e-3, ema_decay=0.995)


# --------------------------------------------------------------------------- UNets


def trained_vae(args: argparse.Namespace):
    """The VAE of this work folder's run, or the shipped one where the folder has none.

    The fallback lets a fresh machine (a GPU lent for one run) train a UNet on the shipped VAE;
    the shipped weights are that run's EMA in fp16, so the latents differ only by rounding.
    """
    if not (Path(args.work) / "vae" / "checkpoint.pt").is_file():
        from diffusers import AutoencoderKL

        print(f"vae: no checkpoint in {args.work}; using the shipped VAE")
        shipped = AutoencoderKL.from_pretrained(components.WEIGHTS_DIR / "vae", torch_dtype=torch.float32)
        vae = components.build_vae()  # a fresh config: no local path (_name_or_path) reaches an export
        vae.load_state_dict(shipped.state_dict())
        return vae.to(args.device).eval().requires_grad_(False)
    return final_model("vae", components.build_vae(), args).to(args.device)


@torch.no_grad()
def encode_images(vae, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Posterior means (unscaled) of [N, 3, 64, 64] pixels, in chunks, on the VAE's device."""
    return torch.cat([vae.encode(x[i:i + chunk].to(vae.device)).latent_dist.mean for i in range(0, len(x), chunk)])


def pool_chunk(run_seed: int, size: int, texture: float, start: int) -> tuple[np.ndarray, list[str]]:
    """Scenes ``start .. start + size`` of the UNet's pool (runs in a worker process)."""
    images, captions, _ = scenes.generate(size, seed=batch_seed(run_seed, start, stream=1), texture=texture)
    return images, captions


def latent_pool(args: argparse.Namespace, vae) -> tuple[torch.Tensor, list[str]]:
    """``args.pool`` scenes encoded once (cached in the work folder): fp16 latents and captions."""
    textured = f"-texture{args.texture:g}" if args.texture else ""
    path = Path(args.work) / "unet" / f"pool-{args.pool}-{args.seed}{textured}.pt"
    if path.is_file():
        cached = torch.load(path, weights_only=False)
        return cached["latents"], cached["captions"]
    path.parent.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, args.pool, 1024))
    chunks = parallel_map(functools.partial(pool_chunk, args.seed, 1024, args.texture), starts, args.workers)
    latents, captions = [], []
    for (images, caps), start in zip(tqdm(chunks, desc="encoding pool", mininterval=10), starts):
        n = min(1024, args.pool - start)  # every chunk is drawn at full size, so a pool is a prefix of a larger one
        latents.append(encode_images(vae, images_to_tensor(images[:n])).half().cpu())
        captions += caps[:n]
    pool = torch.cat(latents)
    torch.save({"latents": pool, "captions": captions}, path)
    return pool, captions


def diffusion_loss(unet, scheduler, z0: torch.Tensor, context: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Epsilon-prediction MSE at uniform timesteps (the objective Stable Diffusion trains with).

    Draws come from the CPU generator ``g`` on every device, so a run's noise is the same on any.
    """
    t = torch.randint(scheduler.config.num_train_timesteps, (len(z0),), generator=g).to(z0.device)
    noise = torch.randn(z0.shape, generator=g).to(z0.device)
    pred = unet(scheduler.add_noise(z0, noise, t), t, encoder_hidden_states=context).sample
    return F.mse_loss(pred.float(), noise)


def drop_captions(captions: list[str], g: torch.Generator, p: float = 0.1) -> list[str]:
    """Replace a fraction ``p`` by the empty prompt: classifier-free guidance's unconditional model."""
    keep = torch.rand(len(captions), generator=g) >= p
    return [c if k else "" for c, k in zip(captions, keep.tolist())]


def train_unet(args: argparse.Namespace) -> None:
    vae = trained_vae(args)
    pool, captions = latent_pool(args, vae)
    scale = 1.0 / float(pool.float().std())
    print(f"latent std {1 / scale:.4f} -> scaling factor {scale:.4f}")
    pool = pool.to(args.device)
    encoder, tokenizer = components.load_text_encoder(args.device)
    unet, scheduler = components.build_unet(), components.build_scheduler()

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(batch_seed(args.seed, step))
        idx = torch.randint(len(pool), (args.batch,), generator=g)
        context = components.embed_captions(encoder, tokenizer, drop_captions([captions[i] for i in idx], g))
        return {"loss": diffusion_loss(unet, scheduler, pool[idx.to(pool.device)].float() * scale, context, g)}

    train_loop("unet", unet, loss_fn, args, lr=args.lr or 5e-4, ema_decay=0.999)
    (Path(args.work) / "unet" / "scaling_factor.txt").write_text(f"{scale}\n")


def unet3d_from_image_unet(unet2d) -> torch.nn.Module:
    """A 3D UNet whose spatial layers are the image UNet's and whose temporal layers start as identity.

    Temporal convolutions end in a zero-initialised conv already; the temporal transformers'
    output projections are zeroed here, so at step 0 the video model denoises each frame
    exactly as the image model does and training only has to add motion.
    """
    unet3d = components.build_unet3d()
    target = unet3d.state_dict()
    # the 3D mid-block projects with Linear layers where the 2D one uses 1x1 convolutions
    source = {k: v.reshape(target[k].shape) if k in target else v for k, v in unet2d.state_dict().items()}
    missing, unexpected = unet3d.load_state_dict(source, strict=False)
    if unexpected or any("temp_" not in k and "transformer_in" not in k for k in missing):
        raise RuntimeError(f"image UNet does not map onto the 3D UNet: {unexpected[:3]} {missing[:3]}")
    with torch.no_grad():
        for name, module in unet3d.named_modules():
            if name.endswith("proj_out") and ("temp_attentions" in name or name.startswith("transformer_in")):
                module.weight.zero_()
                module.bias.zero_()
    return unet3d


def train_video(args: argparse.Namespace) -> None:
    vae = trained_vae(args)
    scale = float((Path(args.work) / "unet" / "scaling_factor.txt").read_text())
    unet2d = final_model("unet", components.build_unet(), args)
    unet3d = unet3d_from_image_unet(unet2d)
    del unet2d
    encoder, tokenizer = components.load_text_encoder(args.device)
    scheduler = components.build_scheduler()

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        seed = batch_seed(args.seed, step)
        g = torch.Generator().manual_seed(seed)
        videos, caps, _ = scenes.generate_videos(args.batch, seed=seed, frames=args.frames, texture=args.texture)
        frames = images_to_tensor(videos.reshape(-1, *videos.shape[2:]))
        z0 = encode_images(vae, frames) * scale  # (B*F, 4, 16, 16)
        z0 = z0.view(args.batch, args.frames, *z0.shape[1:]).transpose(1, 2)  # (B, 4, F, 16, 16)
        context = components.embed_captions(encoder, tokenizer, drop_captions(caps, g))
        return {"loss": diffusion_loss(unet3d, scheduler, z0, context, g)}

    train_loop("video", unet3d, loss_fn, args, lr=args.lr or 2e-4, ema_decay=0.998)


# --------------------------------------------------------------------------- export


def export(args: argparse.Namespace) -> None:
    """Write the EMA weights (fp16 safetensors) in diffusers' folder layout under ``weights/``.

    The UNet is required (it fixes the latent scaling factor). A work folder without a VAE
    re-exports the shipped one with that scaling factor (see ``trained_vae``); one without a
    video UNet or captioner leaves the files already under ``--out`` as they are, so a UNet-only
    run replaces just the UNet.
    """
    from image_wm.reference.captioner import SceneCaptioner

    out, work = Path(args.out), Path(args.work)
    scale = float((work / "unet" / "scaling_factor.txt").read_text())
    vae = trained_vae(args)
    vae.register_to_config(scaling_factor=scale)
    models = {"vae": vae, "unet": final_model("unet", components.build_unet(), args)}
    if (work / "video" / "checkpoint.pt").is_file():
        models["unet3d"] = final_model("video", components.build_unet3d(), args)
    for name, model in models.items():
        # shards of at most 16 MB keep every committed file small; diffusers loads them transparently
        model.to(torch.float16).save_pretrained(out / name, safe_serialization=True, max_shard_size="16MB")
    components.build_scheduler().save_pretrained(out / "scheduler")
    written = [*models, "scheduler"]
    if (work / "captioner" / "checkpoint.pt").is_file():
        final_model("captioner", SceneCaptioner(), args).save(out / "captioner")
        written.append("captioner")
    print(f"exported {', '.join(written)} to {out}")


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(COMMANDS))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default per model)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, ...)")
    parser.add_argument("--workers", type=int, default=0, help="processes rendering scenes ahead of the model")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop at a checkpoint after this many minutes (resumable)")
    parser.add_argument("--work", default=str(DEFAULT_WORK))
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--until", type=int, default=None,
                        help="stop after this step, keeping the learning-rate schedule of --steps (resumable)")
    parser.add_argument("--crop", type=int, default=32, help="VAE training crop size")
    parser.add_argument("--pool", type=int, default=32768, help="scenes in the UNet's pre-encoded latent pool")
    parser.add_argument("--generated", type=int, default=1024, help="sampled latents for the VAE cycle fine-tune")
    parser.add_argument("--anchor", type=float, default=1.0, help="weight of the encoder anchor (vae-cycle)")
    parser.add_argument("--cycle", type=float, default=1.0, help="weight of the latent-cycle loss (vae-cycle)")
    parser.add_argument("--texture", type=float, default=scenes.WORLD_TEXTURE,
                        help="std of the scenes' smooth random texture, 0..255 units (default: the shipped world's)")
    parser.add_argument("--frames", type=int, default=8, help="frames per training video")
    parser.add_argument("--out", default=str(components.WEIGHTS_DIR), help="export folder")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast (fast only on CPUs with AMX/AVX512-BF16; very slow on AVX2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    steps, batch = DEFAULTS.get(args.model, (0, 0))
    args.steps = args.steps or steps
    args.batch = args.batch or batch
    COMMANDS[args.model](args)


DEFAULTS: dict[str, tuple[int, int]] = {
    "vae": (3200, 32), "vae-cycle": (600, 32), "captioner": (9000, 64), "unet": (7000, 64), "video": (300, 2),
}
COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "vae": train_vae, "vae-cycle": train_vae_cycle, "captioner": train_captioner, "unet": train_unet, "video": train_video, "export": export,
}

if __name__ == "__main__":
    main()
