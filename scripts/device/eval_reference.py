"""Evaluate freshly trained reference weights where they were trained: the issue's figures per CFG.

Captioner accuracy on real scenes, prompt adherence and sign agreement (full path and without the
VAE) at CFG 1 to 5, so one GPU run also says which guidance the schemes should use.
Run: ``python scripts/device/eval_reference.py OUT.json [device] [n_generated]`` (the scenes are the
shipped world's, ``scenes.WORLD_TEXTURE``).
"""
import json, sys, time
import numpy as np
import torch
sys.path.insert(0, ".")
from benchmarks.reference_models import (HELD_OUT_SEED, generate_latents, label_match, sign_agreement,
                                         vae_round_trip_psnr)
from image_wm import inversion, scenes
from image_wm.reference.pipelines import load_captioner, load_text_to_image

dev = sys.argv[2] if len(sys.argv) > 2 else "cuda"
N = int(sys.argv[3]) if len(sys.argv) > 3 else 200
M = N // 2
D = max(1, N // 10)  # images refined by decoder inversion (100 steps each): 20 of the default 200
out = {}
t0 = time.time()
pipe = load_text_to_image(dev)
captioner = load_captioner(dev)
real, _, real_specs = scenes.generate(N * 5 // 2, seed=HELD_OUT_SEED + 1)
out["captioner_real_500"] = label_match(captioner, real, real_specs)
held_out, _, _ = scenes.generate(500, seed=HELD_OUT_SEED)
out["vae_psnr_500"] = float(vae_round_trip_psnr(pipe, held_out).mean())
_, prompts, specs = scenes.generate(N, seed=HELD_OUT_SEED + 2)
noise = torch.randn((N, 4, 16, 16), generator=torch.Generator().manual_seed(3))
for cfg in (1.0, 1.5, 2.0, 3.0, 5.0):
    z0 = generate_latents(pipe, prompts, noise.to(dev), cfg)
    gen = inversion.decode_latents(pipe, z0)
    row = {"adherence": label_match(captioner, gen, specs), "latent_std": float(z0.float().std())}
    for steps in ((10, 25, 50) if cfg == 2.0 else (50,)):
        full = sign_agreement(inversion.invert_images(pipe, gen[:M], num_steps=steps), noise[:M])
        row[f"full_{steps}"] = [float(full.mean()), float(full.min())]
    nv = sign_agreement(inversion.invert_latents(pipe, z0[:M], 50), noise[:M])
    row["no_vae_50"] = [float(nv.mean()), float(nv.min())]
    if cfg == 2.0:
        ref = sign_agreement(inversion.invert_images(pipe, gen[:D], 50, decoder_steps=100), noise[:D])
        row[f"decinv_{D}"] = [float(ref.mean()), float(ref.min())]
        np.save("/tmp/gen_cfg2.npy", gen[:16])
    out[f"cfg_{cfg}"] = row
    print(cfg, row, flush=True)
out["seconds"] = time.time() - t0
print(json.dumps(out, indent=1))
json.dump(out, open(sys.argv[1], "w"), indent=1)
