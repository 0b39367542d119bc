"""The canonical form of text (``text_wm.canonical``) and detection on both forms: Unicode tricks undone,
the p-value corrected for the second test, nothing flagged more often than the level."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

import cli
from attacks.text import emoji, homoglyph, zero_width
from provenance.keys import WatermarkKey
from text_wm.canonical import CANONICAL_SHARE, canonical, detect_forms
from text_wm.generate import generate_watermarked
from text_wm.kgw import KGW

KEY = WatermarkKey.from_seed("canonical")
TRICKS = {"homoglyph": homoglyph, "zero-width": zero_width, "emoji": emoji}


def test_the_canonical_form_undoes_each_trick_and_leaves_plain_text_alone(human_passages):
    for text in human_passages[:50]:
        assert canonical(text) == text.replace("\r\n", "\n") or not text.isascii()
        for name, attack in TRICKS.items():
            attacked = attack(text, 1.0, 7)
            assert attacked != text and canonical(attacked) == canonical(text), name
    assert canonical("ｆｕｌｌ\u00a0width\u2028next\u200d") == "full width\nnext"


@pytest.fixture(scope="module")
def marked(text_model):
    model, tokenizer = text_model
    (record,) = generate_watermarked(model, tokenizer, ["Describe a walk in the forest."], KGW(), KEY, chat=True,
                                     seed=5, max_new_tokens=80, do_sample=True, top_k=0)
    return record.text, tokenizer


def test_a_watermark_hidden_by_tricks_is_found_in_canonical_form(marked):
    text, tokenizer = marked
    scheme = KGW()

    def detect(texts, level):
        return scheme.detect_batch(texts, KEY, tokenizer, fpr=level)

    (plain,) = detect_forms(detect, [text], 1e-4)
    assert plain.details["forms_tested"] == 1 and plain.p_value == scheme.detect(text, KEY, tokenizer).p_value
    for name, attack in TRICKS.items():
        attacked = attack(text, 1.0, 3)
        raw = scheme.detect(attacked, KEY, tokenizer, fpr=1e-4)
        (result,) = detect_forms(detect, [attacked], 1e-4)
        assert result.details["form"] == "canonical" and result.details["forms_tested"] == 2, name
        assert result.p_value == min(1.0, result.details["p_value_canonical"] / CANONICAL_SHARE) < raw.p_value, name
        assert result.detected, (name, result.summary())


def test_both_forms_keep_the_level_on_human_text(human_passages, tokenizer):
    """200 human passages with homoglyphs in half of them: flags at 5% within the binomial band."""
    scheme = KGW()
    texts = [homoglyph(t, 0.3, i) if i % 2 else t for i, t in enumerate(human_passages[:200])]
    results = detect_forms(lambda batch, level: scheme.detect_batch(batch, KEY, tokenizer, fpr=level), texts, 0.05)
    p = np.array([r.p_value for r in results])
    assert sum(r.details["forms_tested"] == 2 for r in results) >= 100  # every attacked one, and a few with double spaces
    assert np.sum(p <= 0.05) <= sps.binom.ppf(0.999, len(p), 0.05)


def test_the_cli_reports_the_form_that_matched(marked, tmp_path):
    text, _ = marked
    key_file = tmp_path / "key.json"
    KEY.save(key_file)
    (tmp_path / "tricked.txt").write_text(zero_width(text, 1.0, 1), encoding="utf-8")
    result = CliRunner().invoke(cli.main, ["text", "detect", "--scheme", "kgw", "--key", str(key_file), "--json",
                                           str(tmp_path / "tricked.txt")])
    assert result.exit_code == 0, result.output
    assert '"form": "canonical"' in result.output and '"detected": true' in result.output
