"""VideoMark (Hu et al., 2025): one PRC codeword per frame, each carrying the next message of a
keyed message sequence, so frames can be re-ordered after temporal edits.

Why per-frame PRC: each frame's initial latent is then exactly N(0, I) (the PRC property), so
the watermark costs no quality, and each frame is an independent witness: a video keeps its
watermark as long as any frame keeps its codeword, whatever was dropped, inserted or swapped.

- Message sequence: ``sequence_length`` (default 500) *distinct* ``frame_bits``-bit messages
  drawn from the key (``WatermarkKey.generator``): re-derivable from the key alone, never from
  global random state (the reference draws it from ``np.random.seed`` and its two scripts use
  different seeds). Distinct messages make every decoded message point at one position.
- Embedding: a video picks a start offset ``s`` (uniform over the positions that fit its
  frames, from the caller's generator, recorded in the generation record); frame ``f``'s
  latent is the PRC codeword of message ``s + f``. All frames share the key's PRC code.
- Detection (``detect`` on per-frame inverted latents): the PRC zero-bit test and decoding per
  frame (``image_wm.schemes.prc``), then the Temporal Matching Module
  (``image_wm.video.temporal_matching``) on the frames whose decoding passed its test bits.

The video-level p-value. Null: the video was not made with this key. Each frame's PRC p-value
is valid under that null, but frames of one video are strongly dependent (a static clip
repeats the same frame), so Fisher's or Stouffer's combination, which assume independence,
would overstate the evidence. The video's p-value is the Bonferroni bound
``min(1, F * min_f p_f)``, valid under any dependence between frames; decoded frames have
``p_f <= 2 ** (1 - test_bits)``, far below any practical FPR, so one surviving decodable frame
is enough.

Capacity on the reference model: a frame latent has 4x16x16 = 1024 entries (ModelScope's has
4x64x64 = 16384), so a frame carries a 16-bit message where the paper's carries 512 bits; the
PRC code spends the rest on parity checks that let decoding certify its bits at a sign
agreement of about 0.68, which is what inversion of the reference video model gives.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from image_wm.schemes.base import DEFAULT_FPR
from image_wm.schemes.prc import PRCWatermark
from image_wm.video.temporal_matching import UNKNOWN, align_frames
from provenance import stats
from provenance.codes import prc as code
from provenance.keys import WatermarkKey
from provenance.result import DetectionResult


def check_video_latent_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int, int]:
    if len(shape) != 5 or min(shape) < 1:
        raise ValueError(f"video latents must be shaped (batch, channels, frames, height, width), got {tuple(shape)}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


class VideoMark:
    """Frame-aligned PRC watermark with a keyed message sequence."""

    name = "videomark"
    erasable = True  # frames are PRC codewords: a zero latent entry is a zero soft sign

    def __init__(self, frame_bits: int = 16, sequence_length: int = 500, t: int = 3, decode_fpr: float = 1e-9,
                 noise_var: float = 1.5) -> None:
        if frame_bits % 8 or frame_bits < 8:
            raise ValueError("frame_bits must be a positive multiple of 8")
        if not 1 <= sequence_length <= 2 ** frame_bits:
            raise ValueError("sequence_length must lie in [1, 2**frame_bits] for distinct messages")
        self.frame_bits = frame_bits
        self.sequence_length = sequence_length
        self.frame_scheme = PRCWatermark(payload_bytes=frame_bits // 8, t=t, decode_fpr=decode_fpr, noise_var=noise_var)

    def sequence(self, key: WatermarkKey) -> np.ndarray:
        """The key's message sequence: ``(sequence_length, frame_bits)`` uint8 bits, all rows distinct."""
        _, rng = key.generator("videomark/sequence", self.sequence_length, self.frame_bits)
        values = rng.choice(2 ** self.frame_bits, size=self.sequence_length, replace=False)
        shifts = np.arange(self.frame_bits - 1, -1, -1)
        return ((values[:, None] >> shifts) & 1).astype(np.uint8)

    def initial_latents(self, shape: tuple[int, ...], key: WatermarkKey, generator: torch.Generator,
                        start: int | None = None) -> tuple[torch.Tensor, list[int]]:
        """Latents ``(B, C, F, h, w)`` and each video's start offset (drawn unless given)."""
        batch, channels, frames, height, width = check_video_latent_shape(shape)
        if frames > self.sequence_length:
            raise ValueError(f"{frames} frames need a message sequence of at least {frames} (have {self.sequence_length})")
        positions = self.sequence_length - frames + 1
        if start is not None and not 0 <= start < positions:
            raise ValueError(f"start offset must lie in [0, {positions - 1}] for {frames} frames")
        starts = [start] * batch if start is not None else torch.randint(0, positions, (batch,), generator=generator).tolist()
        prc = self.frame_scheme.code_for(key, channels * height * width)
        messages = self.sequence(key)
        seeds = torch.randint(0, 2**62, (batch, frames), generator=generator).tolist()
        videos = []
        for s, frame_seeds in zip(starts, seeds):
            rows = []
            for f, seed in enumerate(frame_seeds):
                rng = np.random.default_rng(seed)
                rows.append(code.codeword_to_latent(code.encode(prc, messages[s + f], rng), rng))
            videos.append(np.stack(rows).reshape(frames, channels, height, width))
        latents = torch.from_numpy(np.stack(videos)).float().transpose(1, 2).contiguous()
        return latents, starts

    def detect(self, frame_latents: torch.Tensor, key: WatermarkKey, fpr: float = DEFAULT_FPR,
               start: int | None = None, expected_frames: list[int] | None = None) -> DetectionResult:
        """Test one video from its per-frame inverted latents ``(F, C, h, w)``.

        ``start``: the start offset from the generation record, if known (otherwise the earliest
        matched message). ``expected_frames``: for evaluation, the true original index of each
        received frame (with ``start``); bit and frame accuracy are then reported, an undecoded
        frame counting as chance (half its bits). The details hold the per-frame alignment.
        """
        fpr = stats.check_fpr(fpr)
        if frame_latents.ndim != 4 or len(frame_latents) == 0:
            raise ValueError(f"frame latents must be shaped (frames, channels, height, width), got {tuple(frame_latents.shape)}")
        frames = self.frame_scheme.detect(frame_latents, key, fpr=fpr)
        decoded_ok = np.array([f.details["decoded"] for f in frames])
        decoded = np.zeros((len(frames), self.frame_bits), dtype=np.uint8)
        for i, f in enumerate(frames):
            if f.decoded_payload is not None:
                decoded[i] = np.unpackbits(np.frombuffer(bytes.fromhex(f.decoded_payload), dtype=np.uint8))
        sequence = self.sequence(key)
        alignment = align_frames(decoded, decoded_ok, sequence, start=start)
        p_frames = np.array([f.p_value for f in frames])
        p_value = float(min(1.0, len(frames) * p_frames.min()))
        matched = alignment.message_index >= 0
        accuracy: dict[str, float] = {}
        if expected_frames is not None:
            if start is None or len(expected_frames) != len(frames):
                raise ValueError("expected_frames needs start= and one entry per received frame")
            truth = sequence[start + np.asarray(expected_frames)]
            agreement = np.where(decoded_ok[:, None], decoded == truth, 0.5)
            accuracy = {"bit_accuracy": float(agreement.mean()),
                        "frame_accuracy": float((alignment.original_frame == np.asarray(expected_frames)).mean())}
        per_frame = [
            {"frame": i, "p_value": float(p_frames[i]), "decoded": bool(decoded_ok[i]),
             "message_index": int(alignment.message_index[i]), "original_frame": int(alignment.original_frame[i]),
             "interpolated": bool(alignment.interpolated[i])}
            for i in range(len(frames))
        ]
        return DetectionResult(
            detected=p_value <= fpr, p_value=p_value, score=-math.log10(max(p_value, 1e-300)),
            threshold=-math.log10(fpr), fpr=fpr, scheme=self.name, key_id=key.key_id,
            bit_accuracy=accuracy.get("bit_accuracy"),
            details={
                **accuracy,
                "null": "the video was not made with this key (per-frame PRC nulls)",
                "combination": "Bonferroni over frames: min(1, F * min p_frame), valid under any frame dependence",
                "frames": len(frames),
                "frames_decoded": int(decoded_ok.sum()),
                "frames_placed": int(matched.sum()),
                "start_offset": None if alignment.start == UNKNOWN else alignment.start,
                "frame_order": alignment.original_frame.tolist(),
                "per_frame": per_frame,
            },
        )
