"""The project's miniature text-to-image/video world: procedural scenes and models trained on them.

``load_text_to_image``, ``load_text_to_video`` and ``load_captioner`` load the shipped weights
(``weights/``) as standard diffusers pipelines and a CNN captioner, trained on the seeded
procedural scenes of ``image_wm.scenes``; ``train`` reproduces the weights. Library code loads
them through ``image_wm.loading`` (the default when no model folder is given), never directly.
"""

from image_wm.reference.pipelines import REFERENCE_GUIDANCE, load_captioner, load_text_to_image, load_text_to_video

__all__ = ["REFERENCE_GUIDANCE", "load_captioner", "load_text_to_image", "load_text_to_video"]
