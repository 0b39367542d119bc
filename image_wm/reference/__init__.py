"""The project's miniature text-to-image/video world: procedural scenes and models trained on them.

``load_text_to_image``, ``load_img2img``, ``load_text_to_video`` and ``load_captioner`` load the
shipped weights (``weights/``) as standard diffusers pipelines and a CNN captioner; ``scenes``
renders the seeded procedural data; ``train`` reproduces the weights; ``shared(load, path)``
keeps one loaded copy per process.
"""

from image_wm.reference.pipelines import (
    REFERENCE_GUIDANCE, load_captioner, load_img2img, load_text_to_image, load_text_to_video, shared,
)

__all__ = ["REFERENCE_GUIDANCE", "load_captioner", "load_img2img", "load_text_to_image", "load_text_to_video",
           "shared"]
