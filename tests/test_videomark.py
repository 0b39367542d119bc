"""VideoMark without a model: the key's message sequence, per-frame codewords, the Temporal Matching
Module on synthetic decoded messages, and detection on synthetic (noisy, reordered) latents."""

import numpy as np
import pytest
import torch

from image_wm.video.temporal_matching import UNKNOWN, align_frames, nearest_messages
from image_wm.video.videomark import VideoMark
from provenance.keys import WatermarkKey

KEY = WatermarkKey.from_seed("videomark-test")
SHAPE = (1, 4, 8, 16, 16)


def test_sequence_is_keyed_distinct_and_reproducible():
    scheme = VideoMark()
    seq = scheme.sequence(KEY)
    assert seq.shape == (500, 16)
    assert len({row.tobytes() for row in seq}) == 500
    assert np.array_equal(seq, VideoMark().sequence(WatermarkKey.from_seed("videomark-test")))
    assert not np.array_equal(seq, scheme.sequence(WatermarkKey.from_seed("other")))


def test_latents_are_gaussian_and_record_the_start():
    latents, starts = VideoMark().initial_latents(SHAPE, KEY, torch.Generator().manual_seed(0))
    assert latents.shape == SHAPE and 0 <= starts[0] <= 500 - 8
    assert abs(latents.mean().item()) < 0.1 and abs(latents.std().item() - 1) < 0.1
    again, _ = VideoMark().initial_latents(SHAPE, KEY, torch.Generator().manual_seed(0))
    assert torch.equal(latents, again)


def _noisy_frames(latents: torch.Tensor, flip: float, seed: int) -> torch.Tensor:
    """Per-frame latents (F, C, h, w) with a fraction ``flip`` of signs flipped: imperfect inversion."""
    frames = latents[0].transpose(0, 1).clone()
    flips = torch.rand(frames.shape, generator=torch.Generator().manual_seed(seed)) < flip
    return torch.where(flips, -frames, frames)


def test_detects_and_recovers_frame_order_after_reordering():
    scheme = VideoMark()
    latents, (start,) = scheme.initial_latents(SHAPE, KEY, torch.Generator().manual_seed(1), start=100)
    frames = _noisy_frames(latents, 0.2, seed=2)
    order = [0, 2, 1, 3, 5, 4, 7]  # two swaps and frame 6 dropped
    result = scheme.detect(frames[order], KEY, fpr=1e-6, start=start, expected_frames=order)
    assert result.detected and result.p_value < 1e-6
    assert result.details["frame_order"] == order
    assert result.details["frame_accuracy"] == 1.0 and result.bit_accuracy == 1.0
    reversed_result = scheme.detect(frames.flip(0), KEY, fpr=1e-6)
    assert reversed_result.details["frame_order"] == list(range(7, -1, -1))


def test_clean_latents_and_wrong_key_are_not_detected():
    scheme = VideoMark()
    plain = torch.randn((8, 4, 16, 16), generator=torch.Generator().manual_seed(3))
    assert not scheme.detect(plain, KEY, fpr=0.01).detected
    latents, _ = scheme.initial_latents(SHAPE, KEY, torch.Generator().manual_seed(4))
    assert not scheme.detect(_noisy_frames(latents, 0.2, 5), WatermarkKey.from_seed("wrong"), fpr=0.01).detected


def test_video_p_values_are_calibrated_on_unwatermarked_latents():
    """Bonferroni over frames: the empirical FPR at 10% must not exceed it (it may be conservative)."""
    scheme = VideoMark()
    g = torch.Generator().manual_seed(6)
    p = np.array([scheme.detect(torch.randn((8, 4, 16, 16), generator=g), KEY, fpr=0.1).p_value for _ in range(60)])
    assert (p <= 0.1).mean() <= 0.1 + 2 * np.sqrt(0.1 * 0.9 / 60)


# -- the Temporal Matching Module on synthetic decoded messages ------------------------------------------------

def _sequence(m=50, bits=16, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.choice(2 ** bits, size=m, replace=False)
    return ((values[:, None] >> np.arange(bits - 1, -1, -1)) & 1).astype(np.uint8)


def test_nearest_messages_tolerates_bit_errors_and_refuses_ties():
    seq = _sequence()
    received = seq[[10, 11, 12]].copy()
    received[0, 3] ^= 1  # one bit error
    index, distance = nearest_messages(received, seq, max_distance=1)
    assert index.tolist() == [10, 11, 12] and distance.tolist() == [1, 0, 0]
    index, _ = nearest_messages(np.stack([seq[1]]), np.stack([seq[1], seq[1]]), max_distance=0)
    assert index.tolist() == [UNKNOWN]


@pytest.mark.parametrize("order", [
    [0, 1, 2, 4, 5, 6, 7],  # drop
    [0, 1, 1, 2, 3, 4, 5, 6, 7],  # insert a duplicate
    [0, 2, 1, 3, 4, 6, 5, 7],  # swaps
    list(range(7, -1, -1)),  # reverse
])
def test_alignment_recovers_order_and_fills_lone_undecoded_frames(order):
    seq, start = _sequence(), 20
    decoded = seq[start + np.array(order)]
    ok = np.ones(len(order), dtype=bool)
    alignment = align_frames(decoded, ok, seq, start=start)
    assert alignment.original_frame.tolist() == order
    # hide every third frame: a lone gap inside a monotone run comes back by interpolation, others stay unknown
    ok[1::3] = False
    alignment = align_frames(decoded, ok, seq, start=start)
    got = alignment.original_frame
    assert all(g in (o, UNKNOWN) for g, o in zip(got, order))
    assert (got[ok] == np.array(order)[ok]).all()
    assert alignment.interpolated[~ok].sum() == (got[~ok] != UNKNOWN).sum()


def test_alignment_leaves_longer_gaps_unplaced_since_a_swap_inside_keeps_their_ends():
    seq, order = _sequence(), [0, 1, 3, 2, 4]
    ok = np.array([True, False, False, False, True])
    alignment = align_frames(seq[10 + np.array(order)], ok, seq, start=10)
    assert alignment.original_frame.tolist() == [0, UNKNOWN, UNKNOWN, UNKNOWN, 4]


def test_alignment_estimates_start_and_ignores_failed_frames():
    seq = _sequence()
    decoded = seq[[30, 31, 32]].copy()
    decoded[1] ^= 1  # garbage bits from a frame whose decoding failed
    alignment = align_frames(decoded, np.array([True, False, True]), seq)
    assert alignment.start == 30
    assert alignment.original_frame.tolist() == [0, 1, 2]  # the middle one interpolated
    assert alignment.interpolated.tolist() == [False, True, False]
