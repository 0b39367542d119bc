"""Diffusion image and video watermarks: so far the reference world (``image_wm.reference``) and
image -> initial-noise inversion (``image_wm.inversion``)."""
