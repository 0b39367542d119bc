"""Keyed hashing: the int32 generation path and the int64 detection path give the same integers."""

import pytest
import torch

from text_wm.hashing import bucket, combine, fold, fold_top16, mix32, to_bits


def test_bucket_is_identical_on_both_representations_and_near_uniform() -> None:
    hashes = mix32(torch.arange(200_000, dtype=torch.long))  # int64 values in [0, 2**32)
    for n in (2, 3, 48, 1000):
        wide, narrow = bucket(hashes, n), bucket(to_bits(hashes), n)
        assert narrow.dtype == torch.int32
        assert torch.equal(wide, narrow.long())
        assert int(wide.min()) == 0 and int(wide.max()) == n - 1
        counts = torch.bincount(wide, minlength=n).double()
        expected = len(hashes) / n
        assert float(((counts - expected) ** 2 / expected).sum()) < n - 1 + 6 * (2 * (n - 1)) ** 0.5  # chi2 sanity


def test_combine_then_bucket_matches_across_representations() -> None:
    acc = torch.tensor([[7], [2**32 - 1], [123456789]], dtype=torch.long)
    tokens = torch.arange(5000)
    wide = bucket(combine(acc, tokens, 0xDEADBEEF), 48)
    narrow = bucket(combine(to_bits(acc), tokens.to(torch.int32), 0xDEADBEEF), 48)
    assert torch.equal(wide, narrow.long())


def test_fold_top16_buckets_exactly_like_fold_and_differs_only_in_the_low_half() -> None:
    """MajorMark's sublists use fold_top16; texts watermarked with the full fold must keep decoding."""
    inner = mix32(torch.arange(64, dtype=torch.long)).unsqueeze(1)
    tokens = torch.arange(49_152)
    for acc, values in ((inner, tokens), (to_bits(inner), tokens.to(torch.int32))):
        full, top = fold(acc, values), fold_top16(acc, values)
        assert torch.equal(bucket(full, 4), bucket(top, 4)) and torch.equal(bucket(full, 1000), bucket(top, 1000))
        assert torch.equal(full >> 16, top >> 16) and not torch.equal(full, top)


def test_bucket_rejects_counts_that_would_overflow() -> None:
    with pytest.raises(ValueError):
        bucket(torch.zeros(3, dtype=torch.int32), 2**15 + 1)
