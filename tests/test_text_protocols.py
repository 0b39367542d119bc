"""Every registered text scheme follows the Protocol its kind promises (text_wm.base)."""

from __future__ import annotations

import pytest

from text_wm.base import PayloadTokenWatermark, PostHocTextWatermark, TokenWatermark
from text_wm.registry import GENERATION_SCHEMES, get_scheme


@pytest.mark.parametrize("name", GENERATION_SCHEMES)
def test_sampler_schemes_are_token_watermarks_and_payloads_are_counted_in_bytes(name):
    scheme = get_scheme(name)
    assert isinstance(scheme, TokenWatermark)
    carries = name.startswith("majormark")
    assert isinstance(scheme, PayloadTokenWatermark) == carries
    assert getattr(scheme, "payload_bytes", 0) == (2 if carries else 0)


def test_the_black_box_watermark_is_post_hoc():
    scheme = get_scheme("blackbox")
    assert isinstance(scheme, PostHocTextWatermark) and not isinstance(scheme, TokenWatermark)
