"""Black-box synonym watermark: word rules, exact-null detection and its FPR, marking with real models."""

from __future__ import annotations

import time

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from provenance.keys import WatermarkKey
from text_wm.blackbox import BlackBoxWatermark, word_bit
from text_wm.posthoc_cli import dataset, text_watermark
from text_wm.synonyms import SynonymProposer, apply_replacements, words

if "watermark" not in cli.text.commands:
    cli.text.add_command(text_watermark)
if "dataset" not in cli.main.commands:
    cli.main.add_command(dataset)


def run(*args):
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def _eligible(text: str) -> list[str]:
    return [w.text for w in words(text) if w.eligible]


def test_word_rules_skip_stop_words_names_numbers_code_and_quotes():
    text = (
        'Yesterday Alice bought 12 sturdy boxes. She said "remarkable bargain" and ran `grep pattern` '
        "on the x86 server\u2019s e-mail archive."
    )
    # "server’s" is glued to its possessive, "e-mail" is hyphenated: both skipped
    assert _eligible(text) == ["Yesterday", "bought", "sturdy", "boxes", "said", "ran", "archive"]
    # sentence-initial capitals are allowed, capitals elsewhere (names) are not
    assert "Alice" not in _eligible(text) and "She" not in _eligible(text)


def test_replacements_rebuild_the_text_exactly():
    text = "The  quick brown fox,\njumps (over) the lazy dog!"
    word_list = words(text)
    assert apply_replacements(text, {}, word_list) == text
    index = {w.text: w.index for w in word_list}
    changed = apply_replacements(text, {index["quick"]: "speedy", index["lazy"]: "idle"}, word_list)
    assert changed == "The  speedy brown fox,\njumps (over) the idle dog!"
    with pytest.raises(ValueError):
        apply_replacements(text, {99: "x"}, word_list)


def test_detection_counts_each_distinct_word_once_and_rejects_empty_text():
    key = WatermarkKey.from_seed("bb-repeat")
    ones = [w for w in ("apple", "river", "window", "garden", "silver", "engine", "planet") if word_bit(key, w) == 1]
    zeros = [w for w in ("apple", "river", "window", "garden", "silver", "engine", "planet") if word_bit(key, w) == 0]
    text = " ".join(ones * 50 + zeros)
    result = BlackBoxWatermark().detect(text, key)
    assert result.details["n_scored"] == len(ones) + len(zeros)
    assert result.details["n_ones"] == len(ones)
    assert not result.detected
    assert key.secret.hex() not in result.to_json()
    for bad in ("", "   ", "the of and 42"):
        with pytest.raises(ValueError):
            BlackBoxWatermark().detect(bad, key)


class _NoModels:
    """A proposer that fails if marking gets as far as asking it for anything."""

    def __getattr__(self, name):
        raise AssertionError(f"the proposer was used ({name}) for a text that should be refused first")


class _NoCandidates:
    """A proposer that finds no accepted synonym for any word."""

    def candidates(self, text, positions=None, k=5, accept=None):
        return {}

    def substitute(self, text, options, rounds=2):
        return {}


def test_watermark_refuses_text_it_cannot_mark():
    """If detect() would refuse the marked text, or nothing was marked, watermark() refuses too (one line)."""
    key = WatermarkKey.from_seed("bb-refuse")
    for text in ("a a a a.", "12345 67890 2024.", "the of and 42", "It is in the 1990s, or so."):
        with pytest.raises(ValueError, match="no word in the text is eligible") as refused:
            BlackBoxWatermark(proposer=_NoModels()).watermark(text, key)
        assert "\n" not in str(refused.value) and "nothing was marked" in str(refused.value)
        with pytest.raises(ValueError):  # and the detector agrees: nothing to test
            BlackBoxWatermark().detect(text, key)
    pool = ("apple", "river", "window", "garden", "silver", "engine", "planet", "forest", "candle", "harbour")
    zeros = [w for w in pool if word_bit(key, w) == 0]
    ones = [w for w in pool if word_bit(key, w) == 1]
    assert zeros and ones
    with pytest.raises(ValueError, match=r"none with an accepted synonym candidate\); nothing was marked"):
        BlackBoxWatermark(proposer=_NoCandidates()).watermark("the " + " and ".join(zeros + ones) + ".", key)
    # every eligible word already carries bit 1: nothing to change, and the text reads as marked
    already = "the " + " and ".join(ones) + "."
    marked = BlackBoxWatermark(proposer=_NoCandidates()).watermark(already, key)
    assert marked.text == already and marked.n_changed == 0
    assert BlackBoxWatermark().detect(marked.text, key).details["n_ones"] == len(ones)


def test_empirical_fpr_on_human_passages_is_at_most_nominal(human_passages):
    """600 human passages x 5 keys at fpr=0.01: the exact binomial null must hold (pure hashing, no model)."""
    scheme = BlackBoxWatermark()
    started = time.perf_counter()
    rates, p_values = [], []
    for seed in range(5):
        key = WatermarkKey.from_seed(f"bb-fpr-{seed}")
        results = [scheme.detect(p, key, fpr=0.01) for p in human_passages]
        rates.append(np.mean([r.detected for r in results]))
        p_values.extend(r.p_value for r in results)
    elapsed = time.perf_counter() - started
    print(f"\nblackbox FPR at 0.01 per key: {[round(float(r), 4) for r in rates]}; overall {np.mean(rates):.4f}; "
          f"{5 * len(human_passages) / elapsed:.0f} detections/s")
    assert len(human_passages) == 600
    assert 0.0 <= np.mean(rates) <= 0.02
    assert max(rates) <= 0.03
    # p-values are (super-)uniform: no excess of small ones at any level
    p_values = np.array(p_values)
    for level in (0.05, 0.1, 0.5):
        assert np.mean(p_values <= level) <= level + 0.03


def test_cli_watermark_refuses_bad_input_before_loading_models(tmp_path):
    key = tmp_path / "k.json"
    WatermarkKey.generate().save(key)
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("   \n")
    out.write_text("keep me")
    refused = run("text", "watermark", "--scheme", "blackbox", "--key", str(key), str(src), "--out", str(out))
    assert refused.exit_code == 2 and "--force" in refused.output and out.read_text() == "keep me"
    empty = run("text", "watermark", "--scheme", "blackbox", "--key", str(key), str(src), "--out", str(tmp_path / "o2"))
    assert empty.exit_code == 2 and "empty" in empty.output
    lines = empty.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"no_text": 1}\n')
    for args in (("dataset", "mark", str(bad), "--out", str(tmp_path / "m.jsonl")),
                 ("dataset", "verify", "--suspect", str(bad), "--reference", str(bad))):
        result = run(*args)
        assert result.exit_code == 2 and "text" in result.output


def test_proposer_candidates_are_eligible_and_substitution_changes_only_those_words(text_model):
    model, tokenizer = text_model
    proposer = SynonymProposer(model, tokenizer)
    text = "The storm hit the coast hard. Engineers repaired the damaged bridge quickly after the flood."
    options = proposer.candidates(text, k=3)
    word_list = words(text)
    assert options, "no candidates at all"
    for i, opts in options.items():
        assert word_list[i].eligible and 1 <= len(opts) <= 3
        for candidate in opts:
            assert candidate.isalpha() and candidate.lower() != word_list[i].text.lower()
            assert candidate[0].isupper() == word_list[i].text[0].isupper()
    chosen = proposer.substitute(text, options)
    marked = apply_replacements(text, chosen, word_list)
    after = words(marked)
    assert len(after) == len(word_list)
    assert [a.text for a, b in zip(after, word_list) if a.text != b.text] == [chosen[i] for i in sorted(chosen)]


@pytest.mark.slow
def test_marked_passages_are_detected_and_originals_are_not(text_model, human_passages, tmp_path):
    model, tokenizer = text_model
    scheme = BlackBoxWatermark(SynonymProposer(model, tokenizer))
    key = WatermarkKey.from_seed("bb-mark")
    others = [WatermarkKey.from_seed(f"bb-other-{i}") for i in range(10)]
    texts = []
    for j in (20, 40):
        joined = human_passages[j] + " " + human_passages[j + 1]
        texts.append(joined[: words(joined)[299].end])  # 300 words
    started = time.perf_counter()
    marked = [scheme.watermark(t, key) for t in texts]
    per_text = (time.perf_counter() - started) / len(texts)
    # the third passage goes through the CLI
    key_file, src, out = tmp_path / "k.json", tmp_path / "in.txt", tmp_path / "out.txt"
    key.save(key_file)
    joined = human_passages[60] + " " + human_passages[61]
    src.write_text(joined[: words(joined)[299].end])
    result = run("text", "watermark", "--scheme", "blackbox", "--key", str(key_file), str(src), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "changed" in result.output and key.secret.hex() not in result.output
    wrong_p = []
    for original, m in zip(texts + [src.read_text()], marked + [None]):
        marked_text = m.text if m is not None else out.read_text()
        assert scheme.detect(marked_text, key).p_value < 1e-3
        assert not scheme.detect(original, key).detected
        wrong = [scheme.detect(marked_text, other).p_value for other in others]
        wrong_p.extend(wrong)
        assert min(wrong) > 1e-3  # another key sees an ordinary text
    for m in marked:
        print(f"\nblackbox: changed {m.n_changed}/{m.n_words} words ({m.fraction_changed:.1%}), "
              f"MiniLM similarity {m.similarity:.3f}, p={scheme.detect(m.text, key).p_value:.2e}, "
              f"{per_text:.0f} s per 300-word text; e.g. {m.replacements[:8]}")
        assert 0.03 <= m.fraction_changed <= 0.25 and m.similarity >= 0.9
    print(result.output, f"wrong keys: {np.mean(np.array(wrong_p) <= 0.01):.3f} of {len(wrong_p)} flagged at 0.01")
    assert np.mean(np.array(wrong_p) <= 0.01) <= 0.1
