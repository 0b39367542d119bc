"""Text-to-video UNets (``TextToVideoSDPipeline``: ModelScope-style and the reference video model).

A 3D UNet on text-encoder states, sampled and inverted like Stable Diffusion; its latents are
``(B, C, F, h, w)``, frames on the third axis, and the frame count is the caller's.
"""

from __future__ import annotations

from image_wm.families.stable_diffusion import StableDiffusionAdapter

__all__ = ["TextToVideoAdapter"]


class TextToVideoAdapter(StableDiffusionAdapter):
    """A ``UNet3DConditionModel`` predicting noise or ``v``."""

    family = "text-to-video"
    unet_class = "UNet3DConditionModel"
    video = True

    def latent_shape(self, batch: int, frames: int | None = None) -> tuple[int, ...]:
        if frames is None:
            raise ValueError(f"{type(self.pipe).__name__} makes clips: give the number of frames")
        _, channels, height, width = super().latent_shape(batch)
        return batch, channels, frames, height, width
