"""Video watermarks: VideoMark (frame-aligned PRC with temporal matching), its diffusers plugin and video I/O."""

from image_wm.video.pipeline import VideoRecord, WatermarkedVideoPipeline
from image_wm.video.videomark import VideoMark

__all__ = ["VideoMark", "VideoRecord", "WatermarkedVideoPipeline"]
