"""Samplers run backwards: DDIM and flow-matching Euler inversion as pure functions of a predictor.

Why apart from the pipeline families: the arithmetic of inverting a sampler does not depend on
which network predicts, so it is tested here on exact models (Gaussian data, whose noise, ``v``
and velocity are known in closed form), and each family adapter (``image_wm.families``) supplies
only its predictor and its levels.

Both inversions pair the levels the same way: going from level ``s`` up to level ``t``, the
prediction is made at the current latent with timestep ``t``, the usual first-order inversion
of a sampler that stepped from ``t`` down to ``s`` with its prediction at ``t``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ddim_scheduler", "ddim_inversion", "euler_inversion"]


def ddim_scheduler(config: Any, num_steps: int) -> Any:
    """A fresh DDIM scheduler on a DDPM-family scheduler's ``config``, set to ``num_steps`` (a PNDM or
    Euler pipeline gets the same noise schedule without PNDM's repeated timesteps)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(num_steps)
    return scheduler


def ddim_inversion(model: Callable[[torch.Tensor, int], torch.Tensor], latents: torch.Tensor,
                   alphas_cumprod: torch.Tensor, timesteps: list[int], final_alpha: float,
                   prediction_type: str = "epsilon") -> torch.Tensor:
    """Run DDIM's levels upwards, from the clean latent (level ``final_alpha``) to ``timesteps[0]``.

    Each step solves for the ``(x0, noise)`` pair that is consistent with the current latent and
    with the model's output at the level it goes to, then re-noises to that level. For noise
    prediction that is the usual ``noise = model(z, t)``; for ``v`` prediction the two linear
    equations ``z = sqrt(a_s) x0 + sqrt(1 - a_s) noise`` and ``v = sqrt(a_t) noise - sqrt(1 - a_t) x0``
    are solved exactly (``timesteps`` descending, as the sampler runs them).
    """
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"DDIM inversion needs epsilon or v prediction, not {prediction_type!r}")
    z, a_prev = latents, final_alpha
    for t in reversed(timesteps):
        a_t = float(alphas_cumprod[t])
        out = model(z, t)
        p, q, c, d = a_prev ** 0.5, (1 - a_prev) ** 0.5, a_t ** 0.5, (1 - a_t) ** 0.5
        if prediction_type == "epsilon":
            eps = out
            x0 = (z - q * eps) / p
        else:
            x0 = (c * z - q * out) / (p * c + q * d)
            eps = (out + d * x0) / c
        z = c * x0 + d * eps
        a_prev = a_t
    return z


def euler_inversion(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], latents: torch.Tensor,
                    sigmas: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Run a flow-matching Euler sampler's levels upwards, from the clean latent to ``sigmas[0]``.

    The sampler steps ``z <- z + (sigmas[i + 1] - sigmas[i]) * velocity(z, timesteps[i])`` from
    ``i = 0``; inversion takes each step back with the velocity at the current latent and the
    timestep of the level it goes to. ``sigmas`` has one more entry than ``timesteps`` (the final 0).
    """
    z = latents
    for i in reversed(range(len(timesteps))):
        z = z + float(sigmas[i] - sigmas[i + 1]) * velocity(z, timesteps[i])
    return z
