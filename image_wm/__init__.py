"""Diffusion image and video watermarks: so far the reference world's procedural scenes."""
