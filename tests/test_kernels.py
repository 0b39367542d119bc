"""Compiled generation kernels give exactly the eager processors' logits (KGW, MajorMark)."""

import pytest
import torch

from provenance.keys import WatermarkKey
from text_wm.kgw import KGW
from text_wm.majormark import MajorMarkPlus

KEY = WatermarkKey.from_seed(21)
VOCAB = 700


@pytest.mark.parametrize(
    "scheme, options",
    [
        (KGW(delta=2.5), {}),
        pytest.param(KGW(seeding="selfhash", context_width=2), {}, marks=pytest.mark.slow),  # 35 s to compile
        (MajorMarkPlus(block_bits=6), {"payload": "c0de"}),
    ],
    ids=["kgw-lefthash", "kgw-selfhash", "majormark+"],
)
def test_compiled_processor_matches_eager(scheme, options) -> None:
    eager = scheme.processor(KEY, VOCAB, **options)
    fused = scheme.processor(KEY, VOCAB, compile=True, **options)
    generator = torch.Generator().manual_seed(0)
    # two batch sizes and a padded logit width: dynamic shapes, no stale specialisation
    for rows, width in ((3, VOCAB + 9), (5, VOCAB)):
        input_ids = torch.randint(0, VOCAB, (rows, 6), generator=generator)
        scores = torch.randn(rows, width, generator=generator)
        expected = eager(input_ids, scores.clone())
        assert not torch.equal(expected, scores)
        assert torch.equal(fused(input_ids, scores.clone()), expected)
