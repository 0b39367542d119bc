"""Diffusion image watermarks in the initial noise: schemes (``image_wm.schemes``), the diffusers
plugin (``image_wm.pipeline``), image -> initial-noise inversion (``image_wm.inversion``), caption
embeddings for semantic schemes (``image_wm.semantics``) and the reference world
(``image_wm.reference``)."""
