"""VideoMark's Temporal Matching Module: which original frame is each received frame?

Frame ``f`` of a watermarked video carries message ``sequence[start + f]``. After frames are
dropped, inserted, swapped or reversed, each received frame that decodes is placed by the
sequence message nearest to its decoded bits (Hamming distance: decoded messages have fixed
length, so bit errors are substitutions and edit distance reduces to it). The video's start
offset is the earliest matched message (or the generation record's, when given), so a received
frame's original index is ``message_index - start``.

Improvements over the reference TMM, which leaves every undecoded frame at -1:
- ties between sequence messages (ambiguous matches) stay unmatched rather than taking the first;
- a single undecoded frame between two matched frames whose indices differ by exactly two
  (forwards, or backwards in a reversed clip) gets the index between them. One drop, insertion,
  duplication or adjacent swap touching that frame would change its neighbours' indices, so the
  guess is wrong only if the frame was replaced in place. Longer gaps stay unplaced: a swap
  inside them keeps their ends' indices (measured: two swapped frames in a 3-frame gap were
  placed in the wrong order when longer gaps were filled).

Pure numpy over all frames and messages at once; no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNKNOWN = -1


@dataclass
class FrameAlignment:
    message_index: np.ndarray  # (F,) sequence index per received frame, UNKNOWN if unplaced
    distance: np.ndarray  # (F,) Hamming distance to that message (-1 if the frame did not decode)
    interpolated: np.ndarray  # (F,) bool: placed by its neighbours, not by its own bits
    start: int  # the video's start offset in the sequence (UNKNOWN if no frame matched)

    @property
    def original_frame(self) -> np.ndarray:
        """(F,) original frame index of each received frame (UNKNOWN where unplaced)."""
        if self.start == UNKNOWN:
            return np.full_like(self.message_index, UNKNOWN)
        return np.where(self.message_index >= 0, self.message_index - self.start, UNKNOWN)


def nearest_messages(decoded: np.ndarray, sequence: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``decoded`` (F, L) bits: the index of the unique nearest row of ``sequence`` (M, L)
    within ``max_distance`` bits, else UNKNOWN; and that distance."""
    distances = (decoded[:, None, :] != sequence[None, :, :]).sum(axis=-1)  # (F, M)
    best = distances.min(axis=1)
    index = distances.argmin(axis=1)
    unique = (distances == best[:, None]).sum(axis=1) == 1
    return np.where(unique & (best <= max_distance), index, UNKNOWN), best


def _fill_runs(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Place a lone unplaced frame between two placed frames two indices apart."""
    placed = np.flatnonzero(index >= 0)
    filled, interpolated = index.copy(), np.zeros(len(index), dtype=bool)
    for a, b in zip(placed[:-1], placed[1:]):
        if b - a == 2 and abs(index[b] - index[a]) == 2:  # forwards, or backwards (a reversed run)
            filled[a + 1] = (index[a] + index[b]) // 2
            interpolated[a + 1] = True
    return filled, interpolated


def align_frames(decoded: np.ndarray, decoded_ok: np.ndarray, sequence: np.ndarray, *, max_distance: int = 0,
                 start: int | None = None) -> FrameAlignment:
    """Place received frames in the message sequence.

    ``decoded``: (F, L) bits per received frame; ``decoded_ok``: (F,) whether that frame's
    decoding passed its test (other rows are ignored); ``max_distance``: bit errors tolerated
    in a match (0 when decoding certifies its bits, as PRC's test bits do); ``start``: the
    start offset from the generation record, if known.
    """
    decoded = np.asarray(decoded, dtype=np.uint8)
    decoded_ok = np.asarray(decoded_ok, dtype=bool)
    if decoded.ndim != 2 or decoded.shape[1] != sequence.shape[1] or len(decoded_ok) != len(decoded):
        raise ValueError(f"decoded bits {decoded.shape} do not fit a sequence of {sequence.shape[1]}-bit messages")
    index, distance = nearest_messages(decoded, sequence, max_distance) if len(decoded) else (
        np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    index = np.where(decoded_ok, index, UNKNOWN)
    distance = np.where(decoded_ok, distance, -1)
    index, interpolated = _fill_runs(index)
    if start is None:
        start = int(index[index >= 0].min()) if (index >= 0).any() else UNKNOWN
    return FrameAlignment(index, distance, interpolated, start)
