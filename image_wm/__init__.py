"""Diffusion image and video watermarks (latent-noise schemes); not built yet."""
